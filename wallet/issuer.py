"""Test PID issuer: SD-JWT VC PIDs (draft-ietf-oauth-sd-jwt-vc, HAIP 1.0 §6) signed with an x5c
chain under the published test CA in ``wallet/testdata``, and a Token Status List
(draft-ietf-oauth-status-list) served over HTTP.

NOT FOR PRODUCTION: the CA private key is public. rqes trusts this CA only with ``RQES_DEMO=1``.

State directory (default ``~/.rqes-wallet/issuer``):

- ``issuer-key.pem``  P-256 issuer signing key, created once (0600);
- ``issuer-cert.pem`` leaf certificate for that key, signed by the test CA;
- ``issuer-state.json`` status lists and the indices allocated to issued PIDs.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import _statuslist
from ._files import locked, read_private, write_private, write_private_json
from ._jose import sign_es256, x5c_encode
from ._sdjwt import decoy_digest, digest, make_disclosure
from .errors import IssuerError

PID_VCT = "urn:eudi:pid:1"
DEFAULT_ISSUER_URL = "https://pid-issuer.rqes.test"
DEFAULT_PORT = 8090
DEFAULT_STATE_DIR = Path.home() / ".rqes-wallet" / "issuer"
TESTDATA = Path(__file__).resolve().parent / "testdata"
TEST_CA_CERT = TESTDATA / "test-pid-ca.pem"
TEST_CA_KEY = TESTDATA / "test-pid-ca.key.pem"
ISSUER_CN = "rqes Test PID Issuer"

STATUS_BITS = 2
STATUS_LIST_SIZE = 16384  # herd privacy (status-list draft §12.5): many indices per list
STATUS_TTL = 300
STATUS_TOKEN_LIFETIME = timedelta(hours=24)
PID_LIFETIME = timedelta(days=365)
_LEAF_LIFETIME = timedelta(days=3 * 365)

_STATE_FILE = "issuer-state.json"
_KEY_FILE = "issuer-key.pem"
_CERT_FILE = "issuer-cert.pem"
_LOCK_FILE = ".lock"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def load_test_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(TEST_CA_CERT.read_bytes())
    key = serialization.load_pem_private_key(TEST_CA_KEY.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IssuerError("the test CA key is not an EC key")
    return cert, key


@dataclass(frozen=True, kw_only=True)
class PidAttributes:
    """PID rulebook §2 claims in their SD-JWT VC names. Defaults are sample data."""

    given_name: str
    family_name: str
    birthdate: str
    nationalities: tuple[str, ...] = ("DE",)
    personal_administrative_number: str | None = None
    issuing_country: str = "DE"
    issuing_authority: str = "rqes Test PID Issuer"
    place_of_birth: dict[str, str] = field(default_factory=lambda: {"locality": "Berlin", "country": "DE"})
    document_number: str | None = None
    address: dict[str, str] = field(default_factory=lambda: {
        "street_address": "Musterstraße 1", "locality": "Berlin", "postal_code": "10115", "country": "DE"})

    def __post_init__(self) -> None:
        for name in ("given_name", "family_name"):
            if not getattr(self, name).strip():
                raise IssuerError(f"{name} must not be empty")
        try:
            date.fromisoformat(self.birthdate)
        except ValueError as e:
            raise IssuerError(f"birthdate must be YYYY-MM-DD, got {self.birthdate!r}") from e
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.birthdate):
            raise IssuerError(f"birthdate must be YYYY-MM-DD, got {self.birthdate!r}")
        for code in (*self.nationalities, self.issuing_country):
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise IssuerError(f"country codes are ISO 3166-1 alpha-2 (e.g. DE), got {code!r}")
        if not self.nationalities:
            raise IssuerError("at least one nationality is required")

    def claims(self) -> dict[str, Any]:
        """Top-level claims; each becomes one disclosure. ``address`` is handled apart because its
        members are disclosed one by one."""
        out: dict[str, Any] = {
            "given_name": self.given_name,
            "family_name": self.family_name,
            "birthdate": self.birthdate,
            "nationalities": list(self.nationalities),
            "personal_administrative_number": self.personal_administrative_number
            or f"{secrets.randbelow(10**10):010d}",
            "issuing_country": self.issuing_country,
            "issuing_authority": self.issuing_authority,
            "place_of_birth": dict(self.place_of_birth),
        }
        if self.document_number:
            out["document_number"] = self.document_number
        return out


@dataclass(frozen=True)
class IssuedPid:
    sd_jwt: str
    status_index: int
    status_uri: str
    status_list_id: str
    iat: int
    exp: int
    claims: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"vct": PID_VCT, "iat": self.iat, "exp": self.exp,
                "status": {"status_list": {"idx": self.status_index, "uri": self.status_uri}},
                "claims": sorted(self.claims)}


def build_sd_jwt_vc(*, key: ec.EllipticCurvePrivateKey, x5c: list[x509.Certificate], iss: str, vct: str,
                    claims: dict[str, Any], address: dict[str, str] | None, holder_jwk: dict[str, Any],
                    status: dict[str, Any], iat: int, exp: int, decoys: int = 2) -> str:
    """SD-JWT VC with one disclosure per claim; ``address`` is itself a disclosure whose value
    holds one disclosure per member (RFC 9901 §4.2.6 recursive disclosures)."""
    disclosures: list[str] = []
    top_digests: list[str] = []
    for name, value in claims.items():
        d = make_disclosure(name, value)
        disclosures.append(d)
        top_digests.append(digest(d))
    if address:
        inner: list[str] = []
        for name, value in address.items():
            d = make_disclosure(name, value)
            disclosures.append(d)
            inner.append(digest(d))
        inner += [decoy_digest() for _ in range(decoys)]
        d = make_disclosure("address", {"_sd": sorted(inner)})
        disclosures.append(d)
        top_digests.append(digest(d))
    top_digests += [decoy_digest() for _ in range(decoys)]
    payload = {
        "iss": iss,
        "iat": iat,
        "exp": exp,
        "vct": vct,
        "_sd": sorted(top_digests),  # sorted so the order leaks nothing (RFC 9901 §4.2.4.1)
        "_sd_alg": "sha-256",
        "cnf": {"jwk": {k: holder_jwk[k] for k in ("kty", "crv", "x", "y")}},
        "status": status,
    }
    header = {"alg": "ES256", "typ": "dc+sd-jwt", "x5c": x5c_encode(x5c)}
    jwt = sign_es256(key, header, payload)
    return "~".join([jwt, *disclosures]) + "~"


class PidIssuer:
    """A test PID issuer rooted in ``state_dir``. Every mutating call runs under a file lock and
    re-reads the state, so ``issue-pid``, ``revoke`` and ``serve`` can run side by side."""

    def __init__(self, state_dir: Path | str | None = None, *, issuer_url: str = DEFAULT_ISSUER_URL) -> None:
        self.state_dir = Path(state_dir).expanduser() if state_dir else DEFAULT_STATE_DIR
        if not issuer_url.startswith("https://"):
            raise IssuerError("the issuer identifier (iss) must be an https URL")
        self.issuer_url = issuer_url
        self._lock = self.state_dir / _LOCK_FILE
        with locked(self._lock):
            self._key = self._load_or_create_key()
            self._cert = self._load_or_create_cert()
            if not (self.state_dir / _STATE_FILE).exists():
                self._save({"version": 1, "public_url": f"http://127.0.0.1:{DEFAULT_PORT}", "lists": {}})

    # -- keys and certificate -------------------------------------------------------------------

    def _load_or_create_key(self) -> ec.EllipticCurvePrivateKey:
        path = self.state_dir / _KEY_FILE
        if path.exists():
            try:
                key = serialization.load_pem_private_key(read_private(path), password=None)
            except (OSError, ValueError) as e:
                raise IssuerError(f"cannot read the issuer key {path}: {e}") from e
            if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
                raise IssuerError(f"{path} is not a P-256 key")
            return key
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return key

    def _load_or_create_cert(self) -> x509.Certificate:
        path = self.state_dir / _CERT_FILE
        if path.exists():
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            if self._cert_fits(cert):
                return cert
        cert = self._make_leaf()
        write_private(path, cert.public_bytes(serialization.Encoding.PEM))
        return cert

    def _cert_fits(self, cert: x509.Certificate) -> bool:
        """The leaf must certify our key, name our ``iss`` (SD-JWT VC §3.5: iss bound to the
        certificate) and outlive a PID issued today."""
        if cert.public_key() != self._key.public_key():
            return False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        if self.issuer_url not in san.get_values_for_type(x509.UniformResourceIdentifier):
            return False
        return cert.not_valid_after_utc > _utcnow() + PID_LIFETIME + timedelta(days=1)

    def _make_leaf(self) -> x509.Certificate:
        ca_cert, ca_key = load_test_ca()
        now = _utcnow()
        name = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "EU"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rqes test PID provider (NOT FOR PRODUCTION)"),
            x509.NameAttribute(NameOID.COMMON_NAME, ISSUER_CN),
        ])
        host = urlsplit(self.issuer_url).hostname or "pid-issuer.rqes.test"
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_cert.subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(min(now + _LEAF_LIFETIME, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(self.issuer_url),
                                                        x509.DNSName(host)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def x5c(self) -> list[x509.Certificate]:
        """HAIP 1.0: the chain without its trust anchor."""
        return [self._cert]

    # -- state ----------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        path = self.state_dir / _STATE_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise IssuerError(f"cannot read issuer state {path}: {e}") from e

    def _save(self, state: dict[str, Any]) -> None:
        write_private_json(self.state_dir / _STATE_FILE, state)

    @property
    def public_url(self) -> str:
        return self._load()["public_url"]

    def set_public_url(self, url: str) -> None:
        """Where ``serve`` is reachable; status list URIs of PIDs issued from now on point there."""
        with locked(self._lock):
            state = self._load()
            state["public_url"] = url.rstrip("/")
            self._save(state)

    def _list_for(self, state: dict[str, Any], status_uri: str | None) -> tuple[str, dict[str, Any]]:
        lists: dict[str, Any] = state["lists"]
        if status_uri is None:
            base = state["public_url"]
            for list_id, lst in lists.items():
                if lst["uri"] == f"{base}/status/{list_id}":
                    return list_id, lst
            list_id = self._next_list_id(lists)
            status_uri = f"{base}/status/{list_id}"
        else:
            for list_id, lst in lists.items():
                if lst["uri"] == status_uri:
                    return list_id, lst
            m = re.search(r"/status/([A-Za-z0-9_-]+)$", urlsplit(status_uri).path)
            list_id = m.group(1) if m and m.group(1) not in lists else self._next_list_id(lists)
        lst = {"uri": status_uri, "bits": STATUS_BITS, "size": STATUS_LIST_SIZE, "statuses": {}}
        lists[list_id] = lst
        return list_id, lst

    @staticmethod
    def _next_list_id(lists: dict[str, Any]) -> str:
        n = 1
        while str(n) in lists:
            n += 1
        return str(n)

    @staticmethod
    def _allocated(state: dict[str, Any]) -> set[int]:
        return {int(i) for lst in state["lists"].values() for i in lst["statuses"]}

    # -- issuance -------------------------------------------------------------------------------

    def issue(self, holder_jwk: dict[str, Any], pid: PidAttributes, *, status_uri: str | None = None,
              vct: str = PID_VCT, lifetime: timedelta = PID_LIFETIME, now: datetime | None = None) -> IssuedPid:
        """Issue a PID bound to ``holder_jwk`` (``cnf.jwk``), with a fresh random status index
        (random, not sequential, so an index says nothing about issuance order)."""
        now = now or _utcnow()
        iat = int(now.timestamp())
        exp = int((now + lifetime).timestamp())
        with locked(self._lock):
            state = self._load()
            list_id, lst = self._list_for(state, status_uri)
            taken = self._allocated(state)
            if len(taken) >= lst["size"]:
                raise IssuerError("the status list is full")
            idx = secrets.randbelow(lst["size"])
            while idx in taken:
                idx = secrets.randbelow(lst["size"])
            lst["statuses"][str(idx)] = _statuslist.VALID
            self._save(state)
        claims = pid.claims()
        sd_jwt = build_sd_jwt_vc(
            key=self._key, x5c=self.x5c, iss=self.issuer_url, vct=vct, claims=claims, address=dict(pid.address),
            holder_jwk=holder_jwk, status={"status_list": {"idx": idx, "uri": lst["uri"]}}, iat=iat, exp=exp)
        all_claims = {**claims, "address": dict(pid.address)} if pid.address else claims
        return IssuedPid(sd_jwt, idx, lst["uri"], list_id, iat, exp, all_claims)

    # -- status ---------------------------------------------------------------------------------

    def set_status(self, index: int, value: int) -> str:
        """Set the status of an allocated index: 0 VALID, 1 INVALID (revoked), 2 SUSPENDED.
        Revocation is final. Returns the status list URI."""
        if value not in _statuslist.STATUS_NAMES:
            raise IssuerError(f"unknown status value {value}")
        with locked(self._lock):
            state = self._load()
            for lst in state["lists"].values():
                if str(index) in lst["statuses"]:
                    if lst["statuses"][str(index)] == _statuslist.INVALID and value != _statuslist.INVALID:
                        raise IssuerError(f"index {index} is revoked; revocation cannot be undone")
                    lst["statuses"][str(index)] = value
                    self._save(state)
                    return lst["uri"]
        raise IssuerError(f"no PID was issued with status index {index}")

    def revoke(self, index: int) -> str:
        return self.set_status(index, _statuslist.INVALID)

    def suspend(self, index: int) -> str:
        return self.set_status(index, _statuslist.SUSPENDED)

    def reinstate(self, index: int) -> str:
        return self.set_status(index, _statuslist.VALID)

    def status_of(self, index: int) -> int:
        for lst in self._load()["lists"].values():
            if str(index) in lst["statuses"]:
                return int(lst["statuses"][str(index)])
        raise IssuerError(f"no PID was issued with status index {index}")

    def list_ids(self) -> list[str]:
        return sorted(self._load()["lists"])

    def status_list_token(self, list_id: str, *, now: datetime | None = None) -> str:
        """draft-ietf-oauth-status-list §5.1: Status List Token, ``sub`` = the list's URI."""
        lst = self._load()["lists"].get(list_id)
        if lst is None:
            raise IssuerError(f"no status list {list_id!r}")
        now = now or _utcnow()
        iat = int(now.timestamp())
        payload = {
            "sub": lst["uri"],
            "iat": iat,
            "exp": iat + int(STATUS_TOKEN_LIFETIME.total_seconds()),
            "ttl": STATUS_TTL,
            "status_list": {"bits": lst["bits"],
                            "lst": _statuslist.encode_lst({int(k): v for k, v in lst["statuses"].items()},
                                                          lst["size"], lst["bits"])},
        }
        header = {"alg": "ES256", "typ": "statuslist+jwt", "x5c": x5c_encode(self.x5c)}
        return sign_es256(self._key, header, payload)


# -- HTTP ---------------------------------------------------------------------------------------

STATUS_LIST_MEDIA_TYPE = "application/statuslist+jwt"


def make_status_server(issuer: PidIssuer, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """``GET /status/<list-id>`` → the signed Status List Token. Each request re-reads the state,
    so a revocation shows up on the next fetch."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "rqes-test-pid-issuer"

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            m = re.fullmatch(r"/status/([A-Za-z0-9_-]+)", self.path.split("?", 1)[0])
            if not m:
                self._send(404, "application/json", b'{"error":"not_found"}')
                return
            accept = self.headers.get("Accept", "")
            if accept and not any(t.strip().split(";")[0] in (STATUS_LIST_MEDIA_TYPE, "*/*", "application/*")
                                  for t in accept.split(",")):
                self._send(406, "application/json", b'{"error":"not_acceptable"}')
                return
            try:
                token = issuer.status_list_token(m.group(1))
            except IssuerError:
                self._send(404, "application/json", b'{"error":"not_found"}')
                return
            self._send(200, STATUS_LIST_MEDIA_TYPE, token.encode("ascii"))

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", f"max-age={STATUS_TTL}")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(issuer: PidIssuer, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start the status endpoint on a background thread (tests); returns the server and its base URL."""
    server = make_status_server(issuer, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"
