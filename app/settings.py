"""Settings: a TOML file plus ``RQES_*`` environment variables (DESIGN.md §5).

Secrets (the PKCS#11 PIN) come from the environment or a file, never from the TOML. A bad
setting raises :class:`SettingsError` whose message is one line naming the setting; the CLI
prints it and exits 2.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import msgspec

from hsm.softhsm import default_module


class SettingsError(Exception):
    """One line: ``RQES_NAME: what is wrong``."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    data_dir: Path = Path("./var")
    database_url: str = ""
    pkcs11_module: str = ""
    pkcs11_token_label: str = "rqes"
    pkcs11_pin: str = msgspec.field(default="", name="pkcs11_pin")
    pkcs11_pin_file: str = ""
    public_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = 8080
    trusted_pid_issuers: str = ""
    demo: bool = False
    sad_lifetime: int = 300
    access_token_lifetime: int = 3600
    max_hashes: int = 1000
    default_multisign: int = 100
    max_body_bytes: int = 1_048_576
    audit_checkpoint_interval: int = 100
    csc_specs: str = "2.0.0.0"
    service_name: str = "rqes"
    region: str = "EU"
    log_level: str = "INFO"
    clock_skew: int = 30
    oid4vp_client_id_prefix: str = "x509_hash"
    qes_approval_type: str = "qes-approval"

    def __repr__(self) -> str:  # never print the PIN
        shown = {f: getattr(self, f) for f in self.__struct_fields__ if f != "pkcs11_pin"}
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ", pkcs11_pin=***)"

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")


# name -> (TOML/attribute name, type) ; PIN and PIN file are env-only (secrets).
_FIELDS: dict[str, type] = {
    "data_dir": Path,
    "database_url": str,
    "pkcs11_module": str,
    "pkcs11_token_label": str,
    "pkcs11_pin_file": str,
    "public_url": str,
    "host": str,
    "port": int,
    "trusted_pid_issuers": str,
    "demo": bool,
    "sad_lifetime": int,
    "access_token_lifetime": int,
    "max_hashes": int,
    "default_multisign": int,
    "max_body_bytes": int,
    "audit_checkpoint_interval": int,
    "csc_specs": str,
    "service_name": str,
    "region": str,
    "log_level": str,
    "clock_skew": int,
    "oid4vp_client_id_prefix": str,
    "qes_approval_type": str,
}
SECRET_ENV_ONLY = ("pkcs11_pin",)
ENV_PREFIX = "RQES_"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _coerce(field: str, raw: Any, source: str) -> Any:
    kind = _FIELDS[field]
    name = env_name(field) if source == "env" else field
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        val = str(raw).strip().lower()
        if val in ("1", "true", "yes", "on"):
            return True
        if val in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{name}: expected a boolean (1/0, true/false), got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise SettingsError(f"{name}: expected an integer, got {raw!r}")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if kind is Path:
        return Path(str(raw))
    if not isinstance(raw, str):
        raise SettingsError(f"{name}: expected a string, got {raw!r}")
    return raw


def load_settings(env: Mapping[str, str] | None = None, config_file: str | None = None) -> Settings:
    """Build settings from the TOML file (``RQES_CONFIG``) and then the environment."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = config_file or env.get("RQES_CONFIG") or None
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError:
            raise SettingsError(f"RQES_CONFIG: file not found: {config_file}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SettingsError(f"RQES_CONFIG: not valid TOML: {e}") from None
        data = data.get("rqes", data)
        for key, raw in data.items():
            if key in SECRET_ENV_ONLY:
                raise SettingsError(f"{key}: secrets are not read from the TOML file; use {env_name(key)} or {env_name(key)}_FILE")
            if key not in _FIELDS:
                raise SettingsError(f"{key}: unknown setting in {config_file}")
            values[key] = _coerce(key, raw, "toml")
    for key in _FIELDS:
        name = env_name(key)
        if name in env:
            values[key] = _coerce(key, env[name], "env")
    if env.get("RQES_PKCS11_PIN"):
        values["pkcs11_pin"] = env["RQES_PKCS11_PIN"]
    return finalize(Settings(**values))


def finalize(s: Settings) -> Settings:
    """Validate every setting and fill the embedded defaults derived from ``data_dir``."""
    data_dir = s.data_dir.expanduser().absolute()
    changes: dict[str, Any] = {"data_dir": data_dir}
    url = s.database_url or f"sqlite:///{data_dir / 'rqes.db'}"
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise SettingsError(f"RQES_DATABASE_URL: unsupported scheme {scheme!r} (use sqlite:/// or postgresql://)")
    changes["database_url"] = url
    changes["pkcs11_module"] = s.pkcs11_module or default_module()
    pin = s.pkcs11_pin
    pin_file = s.pkcs11_pin_file or (str(data_dir / "pkcs11.pin") if (data_dir / "pkcs11.pin").exists() else "")
    if not pin and pin_file:
        try:
            pin = Path(pin_file).read_text().strip()
        except OSError as e:
            raise SettingsError(f"RQES_PKCS11_PIN_FILE: cannot read {pin_file}: {e.strerror}") from None
        if not pin:
            raise SettingsError(f"RQES_PKCS11_PIN_FILE: {pin_file} is empty")
    changes["pkcs11_pin"] = pin
    changes["pkcs11_pin_file"] = pin_file
    pub = urlsplit(s.public_url)
    if pub.scheme not in ("http", "https") or not pub.netloc or pub.query or pub.fragment:
        raise SettingsError(f"RQES_PUBLIC_URL: must be an absolute http(s) URL, got {s.public_url!r}")
    if not 0 < s.port < 65536:
        raise SettingsError(f"RQES_PORT: must be between 1 and 65535, got {s.port}")
    if not 0 < s.sad_lifetime <= 300:
        raise SettingsError(f"RQES_SAD_LIFETIME: must be between 1 and 300 seconds (SCAL2 policy), got {s.sad_lifetime}")
    if not 60 <= s.access_token_lifetime <= 86400:
        raise SettingsError(f"RQES_ACCESS_TOKEN_LIFETIME: must be between 60 and 86400 seconds, got {s.access_token_lifetime}")
    if not 1 <= s.max_hashes <= 10000:
        raise SettingsError(f"RQES_MAX_HASHES: must be between 1 and 10000, got {s.max_hashes}")
    if not 1 <= s.default_multisign <= s.max_hashes:
        raise SettingsError(f"RQES_DEFAULT_MULTISIGN: must be between 1 and RQES_MAX_HASHES ({s.max_hashes}), got {s.default_multisign}")
    if not 1024 <= s.max_body_bytes <= 64 * 1024 * 1024:
        raise SettingsError(f"RQES_MAX_BODY_BYTES: must be between 1024 and 67108864, got {s.max_body_bytes}")
    if not 1 <= s.audit_checkpoint_interval <= 100000:
        raise SettingsError(f"RQES_AUDIT_CHECKPOINT_INTERVAL: must be between 1 and 100000, got {s.audit_checkpoint_interval}")
    if s.csc_specs not in ("2.0.0.0", "2.2.0.0"):
        raise SettingsError(f"RQES_CSC_SPECS: must be 2.0.0.0 or 2.2.0.0, got {s.csc_specs!r}")
    if len(s.region) != 2 or not s.region.isalpha() or not s.region.isupper():
        raise SettingsError(f"RQES_REGION: must be a two-letter upper-case code, got {s.region!r}")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"RQES_LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}")
    if not 0 <= s.clock_skew <= 300:
        raise SettingsError(f"RQES_CLOCK_SKEW: must be between 0 and 300 seconds, got {s.clock_skew}")
    if s.oid4vp_client_id_prefix not in ("x509_hash", "x509_san_dns"):
        raise SettingsError(f"RQES_OID4VP_CLIENT_ID_PREFIX: must be x509_hash or x509_san_dns, got {s.oid4vp_client_id_prefix!r}")
    if s.qes_approval_type not in ("qes-approval", "qes_authorization"):
        raise SettingsError(f"RQES_QES_APPROVAL_TYPE: must be qes-approval or qes_authorization, got {s.qes_approval_type!r}")
    if not s.pkcs11_token_label:
        raise SettingsError("RQES_PKCS11_TOKEN_LABEL: must not be empty")
    if s.trusted_pid_issuers and not Path(s.trusted_pid_issuers).exists():
        raise SettingsError(f"RQES_TRUSTED_PID_ISSUERS: no such file or folder: {s.trusted_pid_issuers}")
    return msgspec.structs.replace(s, **changes)


def require_runtime(s: Settings) -> None:
    """Checks that only matter when the service starts (not for ``--help``)."""
    if not os.path.exists(s.pkcs11_module):
        raise SettingsError(f"RQES_PKCS11_MODULE: no such file: {s.pkcs11_module}")
    if not s.pkcs11_pin:
        raise SettingsError("RQES_PKCS11_PIN: not set (set RQES_PKCS11_PIN or RQES_PKCS11_PIN_FILE, or run 'rqes init')")


SETTINGS_DOC: list[tuple[str, str, str]] = [
    ("RQES_CONFIG", "(none)", "TOML file with any of the settings below (lower-case names, optional [rqes] table); never secrets"),
    ("RQES_DATA_DIR", "./var", "SoftHSM config and token, SQLite database, PIN file, exported CA certificates"),
    ("RQES_DATABASE_URL", "sqlite:///$RQES_DATA_DIR/rqes.db", "sqlite:///PATH or postgresql://user@host:port/db"),
    ("RQES_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so", "PKCS#11 library (SoftHSM, Thales Luna libCryptoki2_64.so, ...)"),
    ("RQES_PKCS11_TOKEN_LABEL", "rqes", "token (Luna: partition) label"),
    ("RQES_PKCS11_PIN", "(none)", "user PIN, environment only"),
    ("RQES_PKCS11_PIN_FILE", "$RQES_DATA_DIR/pkcs11.pin if present", "file holding the user PIN ('rqes init' writes one for SoftHSM)"),
    ("RQES_PUBLIC_URL", "http://127.0.0.1:8080", "external base URL: token issuer, CSC oauth2, CRL/OCSP URLs in certificates"),
    ("RQES_HOST / RQES_PORT", "127.0.0.1 / 8080", "listen address for 'rqes serve'"),
    ("RQES_TRUSTED_PID_ISSUERS", "(none)", "PEM file or folder of PID issuer CA certificates (wallet flows)"),
    ("RQES_DEMO", "0", "also trust the embedded test PID issuer"),
    ("RQES_SAD_LIFETIME", "300", "SAD lifetime in seconds, 1..300"),
    ("RQES_ACCESS_TOKEN_LIFETIME", "3600", "service access token lifetime in seconds"),
    ("RQES_MAX_HASHES", "1000", "most hashes accepted in one authorize or signHash request"),
    ("RQES_DEFAULT_MULTISIGN", "100", "multisign of new credentials unless given"),
    ("RQES_MAX_BODY_BYTES", "1048576", "largest request body; larger ones get 413"),
    ("RQES_AUDIT_CHECKPOINT_INTERVAL", "100", "audit records between two HSM-signed checkpoints"),
    ("RQES_CSC_SPECS", "2.0.0.0", "info.specs: 2.0.0.0 or 2.2.0.0"),
    ("RQES_SERVICE_NAME / RQES_REGION", "rqes / EU", "CSC info name and region"),
    ("RQES_CLOCK_SKEW", "30", "seconds of clock skew tolerated on tokens and SADs"),
    ("RQES_OID4VP_CLIENT_ID_PREFIX", "x509_hash", "OpenID4VP client_id prefix of the verifier: x509_hash (HAIP) or x509_san_dns"),
    ("RQES_QES_APPROVAL_TYPE", "qes-approval", "transaction data type for signature approval: qes-approval (CSC-DMB 2025) or qes_authorization (legacy)"),
    ("RQES_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
]
