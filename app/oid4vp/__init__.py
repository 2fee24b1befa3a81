"""OpenID4VP 1.0 verifier: transactions, request objects, response endpoint, enrollment pages."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from ..settings import Settings, SettingsError

DEMO_PID_CA = Path(__file__).resolve().parent / "demo-pid-ca.pem"


def load_trust_anchors(settings: Settings) -> list[x509.Certificate]:
    """PID issuer CAs from ``RQES_TRUSTED_PID_ISSUERS`` (a PEM file or a folder of them), plus the
    embedded test PID CA when ``RQES_DEMO`` is on."""
    paths: list[Path] = []
    if settings.trusted_pid_issuers:
        root = Path(settings.trusted_pid_issuers)
        paths += sorted(p for p in root.iterdir() if p.suffix in (".pem", ".crt")) if root.is_dir() else [root]
    if settings.demo:
        paths.append(DEMO_PID_CA)
    anchors: list[x509.Certificate] = []
    for p in paths:
        try:
            anchors += x509.load_pem_x509_certificates(p.read_bytes())
        except (OSError, ValueError) as e:
            raise SettingsError(f"RQES_TRUSTED_PID_ISSUERS: cannot read certificates from {p}: {e}") from None
    return anchors
