"""The composition root: builds every adapter from settings, in one place (STYLE.md habit 2).

``Runtime.initialize`` is ``rqes init`` (idempotent): data dir, SoftHSM token and PIN file,
migrations, system keys, CA. ``Runtime.open`` is what a serving process or CLI command does.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hsm import HsmError, KeyStore, KeyType
from hsm import softhsm
from hsm.jws import sign_compact
from hsm.pkcs11 import Pkcs11KeyStore
from sam import SadSigner, SadVerifier, SignatureActivationModule, SystemClock
from sam.clock import Clock
from sam.ports import AuditEvent
from sam.sad import JwsVerifier

from .pki import (
    CA_KEY_TYPE, ISSUING_LABEL, ROOT_LABEL, VERIFIER_LABEL, CaUrls, issue_verifier_certificate, make_issuing, make_root,
)
from .settings import Settings, SettingsError, require_runtime
from .store import AuditLog, CaRepo, ClientRepo, CredentialRepo, NonceRepo, SadLedgerRepo, make_engine, migrate
from .store.evidence import EvidenceRepo
from .store.migrations import LATEST, current_version

log = logging.getLogger("rqes")

SAM_LABEL = "rqes/sys/sam"
AS_LABEL = "rqes/sys/as"
AUDIT_LABEL = "rqes/sys/audit"
SYSTEM_KEYS = {SAM_LABEL: KeyType.EC_P256, AS_LABEL: KeyType.EC_P256, AUDIT_LABEL: KeyType.EC_P256,
               ROOT_LABEL: CA_KEY_TYPE, ISSUING_LABEL: CA_KEY_TYPE, VERIFIER_LABEL: KeyType.EC_P256}
CHECKPOINT_TYP = "rqes-audit-checkpoint+jwt"


def kid_for(public_key_der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(public_key_der).digest()[:12]).rstrip(b"=").decode()


def open_keystore(settings: Settings) -> KeyStore:
    if softhsm.is_softhsm(settings.pkcs11_module):
        softhsm.use_config(settings.data_dir)
    require_runtime(settings)
    return Pkcs11KeyStore(settings.pkcs11_module, settings.pkcs11_token_label, settings.pkcs11_pin).open()


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    keys: Any
    engine: Any
    audit: AuditLog
    clients: ClientRepo
    credentials: CredentialRepo
    ca: CaRepo
    ledger: SadLedgerRepo
    nonces: NonceRepo
    evidence: EvidenceRepo
    sam: SignatureActivationModule
    checkpoint_verifier: JwsVerifier
    as_key: tuple[str, KeyType, str, bytes]  # label, type, kid, SPKI
    root_cert: x509.Certificate
    issuing_cert: x509.Certificate
    verifier_cert: x509.Certificate
    verifier_key_type: KeyType = KeyType.EC_P256
    wallet_verifier: Any = None  # Callable[[datetime | None], SdJwtVcVerifier] | None

    @property
    def ca_urls(self) -> CaUrls:
        return CaUrls.under(self.settings.public_url)

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock | None = None) -> "Runtime":
        clock = clock or SystemClock()
        keys = open_keystore(settings)
        engine = make_engine(settings.database_url)
        try:
            version = await current_version(engine)
            if version != LATEST:
                raise SettingsError(f"RQES_DATABASE_URL: schema version {version}, expected {LATEST}: run 'rqes init'")
            infos = {}
            for label in SYSTEM_KEYS:
                try:
                    infos[label] = await keys.key_info(label)
                except HsmError:
                    raise SettingsError(f"RQES_PKCS11_TOKEN_LABEL: system key {label} missing on the token: run 'rqes init'") from None
            ca = CaRepo(engine)
            root, issuing, verifier = await ca.get("root"), await ca.get("issuing"), await ca.get("verifier")
            if root is None or issuing is None or verifier is None:
                raise SettingsError("RQES_DATABASE_URL: the embedded CA is not initialised: run 'rqes init'")
        except BaseException:
            await engine.dispose()
            keys.close()
            raise
        audit_info = infos[AUDIT_LABEL]
        audit_kid = kid_for(audit_info.public_key_der)

        async def sign_checkpoint(claims: dict[str, Any]) -> str:
            return await sign_compact(keys, AUDIT_LABEL, audit_info.key_type, {"typ": CHECKPOINT_TYP, "kid": audit_kid}, claims)

        audit = AuditLog(engine, clock, interval=settings.audit_checkpoint_interval, signer=sign_checkpoint, key_label=AUDIT_LABEL)
        credentials = CredentialRepo(engine, audit)
        ledger = SadLedgerRepo(engine, audit)
        sam_info = infos[SAM_LABEL]
        sam_kid = kid_for(sam_info.public_key_der)
        evidence = EvidenceRepo(engine)
        wallet_verifier = _wallet_verifier_factory(settings, clock)
        sam = SignatureActivationModule(
            keys=keys, credentials=credentials, ledger=ledger, audit=audit,
            sad_signer=SadSigner(keys, SAM_LABEL, sam_info.key_type, sam_kid),
            sad_verifier=SadVerifier(sam_info.public_key_der, sam_info.key_type, sam_kid, issuer=settings.issuer,
                                     audience=settings.issuer + "/sam", clock=clock, max_lifetime=300, skew=settings.clock_skew),
            clock=clock, issuer=settings.issuer, audience=settings.issuer + "/sam",
            sad_lifetime=settings.sad_lifetime, max_hashes=settings.max_hashes,
            wallet_verifier=wallet_verifier, evidence=evidence,
        )
        as_info = infos[AS_LABEL]
        return cls(
            settings=settings, clock=clock, keys=keys, engine=engine, audit=audit,
            clients=ClientRepo(engine, audit), credentials=credentials, ca=ca, ledger=ledger, nonces=NonceRepo(engine),
            evidence=evidence,
            sam=sam, checkpoint_verifier=JwsVerifier(audit_info.public_key_der, audit_info.key_type, audit_kid, CHECKPOINT_TYP),
            as_key=(AS_LABEL, as_info.key_type, kid_for(as_info.public_key_der), as_info.public_key_der),
            root_cert=x509.load_der_x509_certificate(root[1]), issuing_cert=x509.load_der_x509_certificate(issuing[1]),
            verifier_cert=x509.load_der_x509_certificate(verifier[1]),
            wallet_verifier=wallet_verifier,
        )

    async def close(self) -> None:
        await self.engine.dispose()
        self.keys.close()

    def verify_checkpoint(self, token: str) -> dict[str, Any] | None:
        try:
            return self.checkpoint_verifier.verify(token)
        except ValueError:
            return None


def _wallet_verifier_factory(settings: Settings, clock: Clock):  # noqa: ANN202
    """SD-JWT VC verifiers for the SAM: now (live approvals) or at a past instant (re-checks of
    stored evidence). None when no PID issuer is trusted: wallet approvals are then refused."""
    from sam.clock import FixedClock
    from sam.sdjwt import SdJwtVcVerifier

    from .oid4vp import load_trust_anchors
    from .oid4vp.status import HttpStatusListFetcher

    anchors = load_trust_anchors(settings)
    if not anchors:
        return None
    fetcher = HttpStatusListFetcher()

    def make(at: datetime | None) -> SdJwtVcVerifier:
        return SdJwtVcVerifier(trust_anchors=anchors, clock=FixedClock(at) if at else clock, status=fetcher,
                               skew=settings.clock_skew)

    return make


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


async def initialize(settings: Settings, *, clock: Clock | None = None) -> list[str]:
    """``rqes init``: bring data dir, token, database, system keys and CA to a usable state.

    Idempotent: every step checks first and only creates what is missing. Returns what it did.
    """
    clock = clock or SystemClock()
    did: list[str] = []
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if softhsm.is_softhsm(settings.pkcs11_module):
        conf = softhsm.write_config(data_dir)
        os.environ.setdefault("SOFTHSM2_CONF", str(conf))
        pin = settings.pkcs11_pin
        pin_path = data_dir / "pkcs11.pin"
        if not pin:
            if pin_path.exists():
                pin = pin_path.read_text().strip()
            else:
                pin = secrets.token_hex(16)
                _write_secret(pin_path, pin)
                did.append(f"wrote PIN file {pin_path}")
        if not softhsm.token_exists(settings.pkcs11_token_label):
            so_path = data_dir / "pkcs11.so-pin"
            so_pin = so_path.read_text().strip() if so_path.exists() else secrets.token_hex(16)
            if not so_path.exists():
                _write_secret(so_path, so_pin)
            softhsm.init_token(settings.pkcs11_token_label, pin, so_pin)
            did.append(f"created SoftHSM token {settings.pkcs11_token_label!r}")
        from msgspec.structs import replace

        settings = replace(settings, pkcs11_pin=pin, pkcs11_pin_file=str(pin_path) if pin_path.exists() else settings.pkcs11_pin_file)
    require_runtime(settings)
    keys = Pkcs11KeyStore(settings.pkcs11_module, settings.pkcs11_token_label, settings.pkcs11_pin).open()
    engine = make_engine(settings.database_url)
    try:
        applied = await migrate(engine)
        if applied:
            did.append(f"applied migrations {applied}")
        audit_log = AuditLog(engine, clock, interval=settings.audit_checkpoint_interval, signer=None)
        for label, kt in SYSTEM_KEYS.items():
            if not await keys.has_key(label):
                info = await keys.generate_key(label, kt)
                await audit_log.append(AuditEvent("key.generated", "operator", {"label": label, "key_type": kt.value, "kid": kid_for(info.public_key_der)}))
                did.append(f"generated {label} ({kt.value})")
        audit_info = await keys.key_info(AUDIT_LABEL)
        audit_kid = kid_for(audit_info.public_key_der)

        async def sign_checkpoint(claims: dict[str, Any]) -> str:
            return await sign_compact(keys, AUDIT_LABEL, audit_info.key_type, {"typ": CHECKPOINT_TYP, "kid": audit_kid}, claims)

        audit_log = AuditLog(engine, clock, interval=settings.audit_checkpoint_interval, signer=sign_checkpoint, key_label=AUDIT_LABEL)
        ca = CaRepo(engine)
        now = clock.now()
        urls = CaUrls.under(settings.public_url)
        root = await ca.get("root")
        if root is None:
            cert = await _off_loop(lambda: make_root(keys, settings.region, now))
            der = cert.public_bytes(serialization.Encoding.DER)
            await ca.put("root", ROOT_LABEL, der, audit_log, AuditEvent("certificate.issued", "operator", {
                "ca": "root", "serial": format(cert.serial_number, "x"), "subject": cert.subject.rfc4514_string()}))
            root = (ROOT_LABEL, der)
            did.append("issued root CA certificate")
        if await ca.get("issuing") is None:
            root_cert = x509.load_der_x509_certificate(root[1])
            cert = await _off_loop(lambda: make_issuing(keys, root_cert, settings.region, urls, now))
            await ca.put("issuing", ISSUING_LABEL, cert.public_bytes(serialization.Encoding.DER), audit_log, AuditEvent(
                "certificate.issued", "operator", {"ca": "issuing", "serial": format(cert.serial_number, "x"),
                                                   "subject": cert.subject.rfc4514_string()}))
            did.append("issued issuing CA certificate")
        issuing_row = await ca.get("issuing")
        if await ca.get("verifier") is None and issuing_row is not None:
            issuing_cert = x509.load_der_x509_certificate(issuing_row[1])
            cert = await _off_loop(lambda: issue_verifier_certificate(keys, issuing_cert, settings.public_url, now))
            await ca.put("verifier", VERIFIER_LABEL, cert.public_bytes(serialization.Encoding.DER), audit_log, AuditEvent(
                "certificate.issued", "operator", {"ca": "verifier", "serial": format(cert.serial_number, "x"),
                                                   "subject": cert.subject.rfc4514_string()}))
            did.append("issued OpenID4VP verifier access certificate")
        await audit_log.checkpoint()
        pki_dir = data_dir / "ca"
        pki_dir.mkdir(exist_ok=True)
        for name in ("root", "issuing", "verifier"):
            row = await ca.get(name)
            assert row is not None
            pem = x509.load_der_x509_certificate(row[1]).public_bytes(serialization.Encoding.PEM)
            (pki_dir / f"{name}.pem").write_bytes(pem)
    finally:
        await engine.dispose()
        keys.close()
    return did


async def _off_loop(fn):  # noqa: ANN001, ANN202
    """cryptography's builders call the HSM synchronously: keep them off the event loop."""
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, fn)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
