"""The holder: a wallet file (P-256 holder key + PID), and OpenID4VP 1.0 over HTTP.

Each protocol step is a separate function so tests can stop, inspect or tamper in between::

    inv     = parse_invocation(uri)                       # §5.10 invocation link
    jws, n  = fetch_request_object(inv, http)             # §5.10 / §5.10.1 request_uri GET or POST
    request = verify_request_object(jws, client_id=...)   # §5.9.3 client_id prefixes, HAIP x509_hash
    pres    = build_presentation(wallet, request)         # §7, §8.1, B.3.3 (DCQL, KB-JWT)
    outcome = respond(pres, http)                         # §8.2 direct_post, §8.3 direct_post.jwt

``resolve(uri)`` runs the first three, ``approve(uri, wallet)`` all of them.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from jwcrypto import jwe as _jwe
from jwcrypto import jwk as _jwk

from . import _dcql
from ._dcql import CredentialMatch
from ._files import PrivateFileError, read_private, write_private_json
from ._jose import (JoseError, b64u, corrupt_signature, decode_jws, key_from_jwk, private_jwk, private_key_from_jwk,
                    public_jwk, sha256_b64u, sign_es256, verify_es256, x5c_decode)
from ._sdjwt import SdJwt, SdJwtError
from ._txdata import (HASH_ALG, QES_APPROVAL, QES_APPROVAL_CLAIM, TransactionData, parse_transaction_data,
                      qes_approval_digest)
from .errors import (AccessDenied, InvalidClient, InvalidRequest, InvalidRequestUriMethod, VerifierUnreachable,
                     WalletError, WalletFileError)

WALLET_FORMAT = "rqes-wallet/1"
PID_VCTS = ("urn:eudi:pid:1", "urn:eu.europa.ec.eudi:pid:1")
REQUEST_OBJECT_TYP = "oauth-authz-req+jwt"
REQUEST_OBJECT_MEDIA_TYPE = "application/oauth-authz-req+jwt"
INVOCATION_SCHEMES = ("openid4vp", "haip-vp", "eudi-openid4vp", "https", "http")
RESPONSE_MODES = ("direct_post", "direct_post.jwt")
SUPPORTED_ENCS = ("A128GCM", "A256GCM")  # preference order
CLOCK_SKEW = timedelta(minutes=5)
HTTP_TIMEOUT = 30.0
_MAX_REDIRECTS = 10


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- wallet file --------------------------------------------------------------------------------

@dataclass
class StoredCredential:
    id: str
    format: str
    vct: str
    credential: str
    issued_at: int
    status: dict[str, Any] | None = None

    @property
    def sd_jwt(self) -> SdJwt:
        return SdJwt.parse(self.credential)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "format": self.format, "vct": self.vct, "credential": self.credential,
                "issued_at": self.issued_at, "status": self.status}


class Wallet:
    """A holder key and its credentials in one JSON file, always written 0600 and refused when
    group or others can read it."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, credentials: list[StoredCredential] | None = None,
                 path: Path | None = None) -> None:
        self.key = key
        self.credentials = credentials or []
        self.path = path

    @classmethod
    def create(cls, path: Path | str | None = None) -> Wallet:
        wallet = cls(ec.generate_private_key(ec.SECP256R1()), [], Path(path) if path else None)
        if wallet.path:
            if wallet.path.exists():
                raise WalletFileError(f"{wallet.path} already exists")
            wallet.save()
        return wallet

    @classmethod
    def load(cls, path: Path | str) -> Wallet:
        path = Path(path)
        try:
            data = json.loads(read_private(path))
        except FileNotFoundError as e:
            raise WalletFileError(f"no wallet file at {path} (run issue-pid first)") from e
        except PrivateFileError as e:
            raise WalletFileError(str(e)) from e
        except (OSError, ValueError) as e:
            raise WalletFileError(f"cannot read wallet file {path}: {e}") from e
        if not isinstance(data, dict) or data.get("format") != WALLET_FORMAT:
            raise WalletFileError(f"{path} is not an rqes wallet file")
        try:
            key = private_key_from_jwk(data["holder_key"])
            creds = [StoredCredential(**c) for c in data.get("credentials", [])]
        except (JoseError, KeyError, TypeError) as e:
            raise WalletFileError(f"{path} is corrupt: {e}") from e
        return cls(key, creds, path)

    @classmethod
    def open(cls, path: Path | str, *, create: bool = False) -> Wallet:
        path = Path(path)
        if create and not path.exists():
            return cls.create(path)
        return cls.load(path)

    def save(self) -> None:
        if self.path is None:
            raise WalletFileError("this wallet has no file")
        write_private_json(self.path, {"format": WALLET_FORMAT, "holder_key": private_jwk(self.key),
                                       "credentials": [c.to_json() for c in self.credentials]})

    @property
    def holder_jwk(self) -> dict[str, str]:
        return public_jwk(self.key)

    def add_credential(self, sd_jwt: str) -> StoredCredential:
        """Store an SD-JWT VC issued to this holder, replacing one of the same ``vct``."""
        try:
            parsed = SdJwt.parse(sd_jwt)
            header, payload = parsed.header, parsed.payload
        except (SdJwtError, JoseError) as e:
            raise WalletError(f"not an SD-JWT VC: {e}") from e
        if header.get("typ") != "dc+sd-jwt" or not isinstance(payload.get("vct"), str):
            raise WalletError("not an SD-JWT VC (typ dc+sd-jwt with a vct)")
        cnf = (payload.get("cnf") or {}).get("jwk") or {}
        if {k: cnf.get(k) for k in ("kty", "crv", "x", "y")} != self.holder_jwk:
            raise WalletError("the credential is bound to another holder key")
        cred = StoredCredential(b64u(secrets.token_bytes(8)), "dc+sd-jwt", payload["vct"], sd_jwt,
                                int(payload.get("iat", 0)), payload.get("status"))
        self.credentials = [c for c in self.credentials if c.vct != cred.vct] + [cred]
        return cred

    @property
    def pid(self) -> StoredCredential | None:
        return next((c for c in self.credentials if c.vct in PID_VCTS), None)


# -- the authorization request ------------------------------------------------------------------

@dataclass(frozen=True)
class Invocation:
    """The parameters of an ``openid4vp://`` (or ``haip-vp://``, or https) link."""

    client_id: str | None
    request_uri: str | None
    request_uri_method: str = "get"
    request: str | None = None


def parse_invocation(uri: str) -> Invocation:
    """OpenID4VP §5.10: ``client_id`` + ``request_uri`` (+ ``request_uri_method``), or a request
    object by value in ``request``."""
    parts = urlsplit(uri.strip())
    if parts.scheme.lower() not in INVOCATION_SCHEMES:
        raise InvalidRequest(f"unsupported link scheme {parts.scheme!r}")
    q = parse_qs(parts.query, keep_blank_values=True)
    for name, values in q.items():
        if len(values) > 1:
            raise InvalidRequest(f"parameter {name} is repeated")
    get = lambda name: q[name][0] if name in q else None  # noqa: E731
    method = (get("request_uri_method") or "get").lower()
    if method not in ("get", "post"):
        raise InvalidRequestUriMethod(f"request_uri_method {method!r} is neither get nor post")
    inv = Invocation(get("client_id"), get("request_uri"), method, get("request"))
    if not inv.request_uri and not inv.request:
        raise InvalidRequest("the link carries neither request_uri nor request")
    if inv.request_uri and inv.request:
        raise InvalidRequest("the link carries both request_uri and request")
    if not inv.client_id:
        raise InvalidRequest("the link has no client_id")
    if inv.request_uri and urlsplit(inv.request_uri).scheme not in ("https", "http"):
        raise InvalidRequest("request_uri must be an http(s) URL")
    return inv


def wallet_metadata() -> dict[str, Any]:
    """OpenID4VP §10 wallet metadata sent with ``request_uri_method=post``."""
    return {
        "vp_formats_supported": {"dc+sd-jwt": {"sd-jwt_alg_values": ["ES256"], "kb-jwt_alg_values": ["ES256"]}},
        "client_id_prefixes_supported": ["x509_hash", "x509_san_dns"],
        "request_object_signing_alg_values_supported": ["ES256"],
        "response_types_supported": ["vp_token"],
        "response_modes_supported": list(RESPONSE_MODES),
        "authorization_encryption_alg_values_supported": ["ECDH-ES"],
        "authorization_encryption_enc_values_supported": list(SUPPORTED_ENCS),
    }


@contextlib.contextmanager
def _client(http: httpx.Client | None) -> Iterator[httpx.Client]:
    if http is not None:
        yield http
        return
    with httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
        yield client


def fetch_request_object(inv: Invocation, http: httpx.Client | None = None, *,
                         metadata: dict[str, Any] | None = None) -> tuple[str, str | None]:
    """OpenID4VP §5.10.1: GET the request_uri, or POST ``wallet_metadata`` and a fresh
    ``wallet_nonce``. Returns the request object and the wallet_nonce sent (to check the echo)."""
    if inv.request:
        return inv.request, None
    assert inv.request_uri is not None
    nonce = None
    try:
        with _client(http) as client:
            if inv.request_uri_method == "post":
                nonce = b64u(secrets.token_bytes(16))
                r = client.post(inv.request_uri, headers={"Accept": REQUEST_OBJECT_MEDIA_TYPE},
                                data={"wallet_metadata": json.dumps(metadata or wallet_metadata()),
                                      "wallet_nonce": nonce})
            else:
                r = client.get(inv.request_uri, headers={"Accept": REQUEST_OBJECT_MEDIA_TYPE})
    except httpx.HTTPError as e:
        raise VerifierUnreachable(f"cannot fetch the request object from {inv.request_uri}: {e}") from e
    if r.status_code != 200:
        raise VerifierUnreachable(f"request_uri answered HTTP {r.status_code}: {r.text[:200]}",
                                  status_code=r.status_code, body=r.text)
    return r.text.strip(), nonce


@dataclass
class AuthorizationRequest:
    """A verified request object. Only build this through :func:`verify_request_object`."""

    client_id: str
    nonce: str
    response_type: str
    response_mode: str
    response_uri: str
    state: str | None
    dcql_query: dict[str, Any]
    transaction_data: list[TransactionData]
    client_metadata: dict[str, Any]
    claims: dict[str, Any]
    header: dict[str, Any]
    x5c: list[x509.Certificate]
    request_object: str
    verifier_trusted: bool
    verifier_name: str

    @property
    def transaction_data_raw(self) -> list[str]:
        return [t.raw for t in self.transaction_data]


def _hash_leaf(cert: x509.Certificate) -> str:
    return b64u(_sha256(cert.public_bytes(Encoding.DER)))


def _sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)]


def _common_name(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.subject.rfc4514_string()


def validate_chain(chain: list[x509.Certificate], anchors: list[x509.Certificate], now: datetime) -> None:
    """RFC 5280 §6 reduced to what a request-signing chain needs: each certificate is signed by
    the next, intermediates are CAs, all are valid now, and the last one is an anchor or is
    signed by one (HAIP: the anchor is normally not in x5c)."""
    def valid_now(c: x509.Certificate) -> bool:
        return c.not_valid_before_utc - CLOCK_SKEW <= now <= c.not_valid_after_utc + CLOCK_SKEW

    def is_ca(c: x509.Certificate) -> bool:
        try:
            return c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    def signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    for c in chain:
        if not valid_now(c):
            raise InvalidClient(f"certificate {_common_name(c)!r} is expired or not yet valid")
    for child, parent in zip(chain, chain[1:]):
        if not is_ca(parent) or not signed_by(child, parent):
            raise InvalidClient(f"x5c is not a chain: {_common_name(child)!r} is not issued by {_common_name(parent)!r}")
    last = chain[-1]
    if last in anchors:
        return
    for anchor in anchors:
        if valid_now(anchor) and signed_by(last, anchor):
            return
    raise InvalidClient("the verifier's certificate chain does not lead to a trusted anchor")


def verify_request_object(jws: str, *, client_id: str | None, trust_anchors: list[x509.Certificate] | None = None,
                          wallet_nonce: str | None = None, now: datetime | None = None) -> AuthorizationRequest:
    """OpenID4VP §5 (signed request, JAR RFC 9101) with the §5.9.3 ``x509_hash`` and
    ``x509_san_dns`` client identifier prefixes and HAIP 1.0 §5. Nothing in the payload is read
    before the signature has been verified with the x5c leaf key."""
    now = now or _utcnow()
    try:
        header, payload, signing_input, signature = decode_jws(jws)
    except JoseError as e:
        raise InvalidRequest(f"the request object is not a signed JWT: {e}") from e
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != REQUEST_OBJECT_TYP:
        raise InvalidRequest(f"request object typ must be {REQUEST_OBJECT_TYP!r}, got {typ!r}")
    if header.get("alg") != "ES256":
        raise InvalidRequest(f"request object alg {header.get('alg')!r} is not allowed (ES256 only)")
    try:
        chain = x5c_decode(header.get("x5c"))
    except JoseError as e:
        raise InvalidClient(f"request object header: {e}") from e
    leaf = chain[0]
    leaf_key = leaf.public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey) or not verify_es256(leaf_key, signing_input, signature):
        raise InvalidRequest("the request object signature does not verify with the x5c leaf key")

    obj_client_id = payload.get("client_id")
    if not isinstance(obj_client_id, str) or not obj_client_id:
        raise InvalidRequest("the request object has no client_id")
    if client_id is not None and obj_client_id != client_id:
        raise InvalidRequest("client_id in the link and in the request object differ")
    prefix, _, value = obj_client_id.partition(":")
    if prefix == "x509_hash":
        if value != _hash_leaf(leaf):
            raise InvalidClient("x509_hash client_id does not match the x5c leaf certificate")
    elif prefix == "x509_san_dns":
        if value.lower() not in _dns_names(leaf):
            raise InvalidClient(f"x509_san_dns client_id {value!r} is not a dNSName of the x5c leaf certificate")
    else:
        raise InvalidClient(f"unsupported client identifier prefix in {obj_client_id!r}")
    trusted = False
    if trust_anchors:
        validate_chain(chain, trust_anchors, now)
        trusted = True

    ts = lambda name: payload.get(name) if isinstance(payload.get(name), (int, float)) else None  # noqa: E731
    t = now.timestamp()
    if ts("exp") is not None and ts("exp") < t - CLOCK_SKEW.total_seconds():
        raise InvalidRequest("the request object has expired")
    if ts("nbf") is not None and ts("nbf") > t + CLOCK_SKEW.total_seconds():
        raise InvalidRequest("the request object is not yet valid")
    if ts("iat") is not None and ts("iat") > t + CLOCK_SKEW.total_seconds():
        raise InvalidRequest("the request object is issued in the future")
    if wallet_nonce is not None and payload.get("wallet_nonce") != wallet_nonce:
        raise InvalidRequest("the request object does not echo our wallet_nonce")

    if payload.get("response_type") != "vp_token":
        raise InvalidRequest(f"response_type must be vp_token, got {payload.get('response_type')!r}")
    mode = payload.get("response_mode")
    if mode not in RESPONSE_MODES:
        raise InvalidRequest(f"response_mode {mode!r} is not supported (direct_post, direct_post.jwt)")
    response_uri = payload.get("response_uri")
    if not isinstance(response_uri, str) or urlsplit(response_uri).scheme not in ("https", "http"):
        raise InvalidRequest("response_uri is required with direct_post")
    if "redirect_uri" in payload:
        raise InvalidRequest("redirect_uri must not be present with response_uri")
    if prefix == "x509_san_dns" and (urlsplit(response_uri).hostname or "").lower() != value.lower():
        raise InvalidClient("response_uri host does not match the x509_san_dns client_id")
    nonce = payload.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise InvalidRequest("nonce is required")
    state = payload.get("state")
    if state is not None and not isinstance(state, str):
        raise InvalidRequest("state must be a string")
    if "scope" in payload and "dcql_query" in payload:
        raise InvalidRequest("scope and dcql_query must not both be present")
    dcql = payload.get("dcql_query")
    if not isinstance(dcql, dict):
        raise InvalidRequest("dcql_query is required")
    _dcql.validate(dcql)
    metadata = payload.get("client_metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidRequest("client_metadata must be an object")
    if mode == "direct_post.jwt":
        _encryption_key(metadata)
        _choose_enc(metadata)

    request = AuthorizationRequest(
        client_id=obj_client_id, nonce=nonce, response_type="vp_token", response_mode=mode,
        response_uri=response_uri, state=state, dcql_query=dcql, transaction_data=[], client_metadata=metadata,
        claims=payload, header=header, x5c=chain, request_object=jws, verifier_trusted=trusted,
        verifier_name=(_dns_names(leaf) or [_common_name(leaf)])[0])
    if "transaction_data" in payload:
        try:
            request.transaction_data = parse_transaction_data(
                payload["transaction_data"], [c["id"] for c in dcql["credentials"]], _dcql.holder_bound_ids(dcql))
        except WalletError as e:
            e.request = request  # authenticated: the error may go back to response_uri
            raise
    return request


def resolve(uri: str, *, http: httpx.Client | None = None, trust_anchors: list[x509.Certificate] | None = None,
            now: datetime | None = None) -> AuthorizationRequest:
    """Parse the link, fetch and verify the request object."""
    inv = parse_invocation(uri)
    jws, nonce = fetch_request_object(inv, http)
    return verify_request_object(jws, client_id=inv.client_id, trust_anchors=trust_anchors, wallet_nonce=nonce,
                                 now=now)


# -- the presentation ---------------------------------------------------------------------------

_REMOVE = None


@dataclass(frozen=True)
class Tamper:
    """Deliberate defects for negative tests of a verifier. ``kb_claims`` / ``kb_header`` are
    merged into the KB-JWT (a value of ``None`` removes the member)."""

    nonce: str | None = None
    aud: str | None = None
    iat_offset: int = 0
    kb_claims: dict[str, Any] = field(default_factory=dict)
    kb_header: dict[str, Any] = field(default_factory=dict)
    kb_key: ec.EllipticCurvePrivateKey | None = None
    corrupt_kb_signature: bool = False
    corrupt_issuer_signature: bool = False
    disclose_all: bool = False
    omit_kb_jwt: bool = False


@dataclass
class Presentation:
    request: AuthorizationRequest
    vp_token: dict[str, list[str]]
    matches: dict[str, list[CredentialMatch]]
    kb_payloads: dict[str, list[dict[str, Any]]]


def match_credentials(wallet: Wallet, request: AuthorizationRequest) -> dict[str, list[CredentialMatch]]:
    """Evaluate the DCQL query against the wallet (OpenID4VP §6.4)."""
    try:
        matches = _dcql.evaluate(request.dcql_query, wallet.credentials)
    except WalletError as e:
        e.request = request
        raise
    for td in request.transaction_data:
        if not any(cid in matches for cid in td.credential_ids):
            raise AccessDenied(f"no presented credential can carry the {td.type} transaction data", request=request)
    return matches


def kb_jwt_payload(request: AuthorizationRequest, query_id: str, presented_without_kb: str,
                   iat: int) -> dict[str, Any]:
    """RFC 9901 §4.3 KB-JWT claims, plus OpenID4VP B.3.3.1 ``transaction_data_hashes`` over the
    entries that name this credential query, plus CSC-DMB ``qesApproval``."""
    payload: dict[str, Any] = {"iat": iat, "aud": request.client_id, "nonce": request.nonce,
                               "sd_hash": sha256_b64u(presented_without_kb)}
    mine = [td for td in request.transaction_data if query_id in td.credential_ids]
    if mine:
        payload["transaction_data_hashes"] = [td.hash for td in mine]
        payload["transaction_data_hashes_alg"] = HASH_ALG
        qes = next((td for td in mine if td.type == QES_APPROVAL), None)
        if qes is not None:
            payload[QES_APPROVAL_CLAIM] = qes_approval_digest(qes.raw, qes.content.get("hashAlgorithmOID"))
    return payload


def build_presentation(wallet: Wallet, request: AuthorizationRequest, *,
                       matches: dict[str, list[CredentialMatch]] | None = None, now: datetime | None = None,
                       tamper: Tamper | None = None) -> Presentation:
    """OpenID4VP §8.1: ``vp_token`` = {credential query id: [SD-JWT+KB]}, disclosing only what the
    DCQL query asks for."""
    tamper = tamper or Tamper()
    now = now or _utcnow()
    matches = matches if matches is not None else match_credentials(wallet, request)
    vp_token: dict[str, list[str]] = {}
    kb_payloads: dict[str, list[dict[str, Any]]] = {}
    for query_id, found in matches.items():
        for m in found:
            sd = m.credential.sd_jwt
            issuer_jwt = corrupt_signature(sd.issuer_jwt) if tamper.corrupt_issuer_signature else sd.issuer_jwt
            disclosures = sd.disclosures if tamper.disclose_all else m.disclosures
            presented = SdJwt(issuer_jwt, list(disclosures)).serialize()
            payload = kb_jwt_payload(request, query_id, presented, int(now.timestamp()) + tamper.iat_offset)
            if tamper.nonce is not None:
                payload["nonce"] = tamper.nonce
            if tamper.aud is not None:
                payload["aud"] = tamper.aud
            for k, v in tamper.kb_claims.items():
                if v is _REMOVE:
                    payload.pop(k, None)
                else:
                    payload[k] = v
            header = {"typ": "kb+jwt", "alg": "ES256", **tamper.kb_header}
            header = {k: v for k, v in header.items() if v is not _REMOVE}
            kb = sign_es256(tamper.kb_key or wallet.key, header, payload)
            if tamper.corrupt_kb_signature:
                kb = corrupt_signature(kb)
            vp_token.setdefault(query_id, []).append(presented if tamper.omit_kb_jwt else presented + kb)
            kb_payloads.setdefault(query_id, []).append(payload)
    return Presentation(request, vp_token, matches, kb_payloads)


# -- the response -------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What the response endpoint said, and where its ``redirect_uri`` led."""

    status_code: int
    body: Any
    redirect_uri: str | None = None
    final_status: int | None = None
    final_url: str | None = None
    final_body: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300 and (self.final_status is None or self.final_status < 400)

    def to_json(self) -> dict[str, Any]:
        out = {"status": self.status_code, "body": self.body}
        if self.redirect_uri:
            out.update(redirect_uri=self.redirect_uri, final_status=self.final_status, final_url=self.final_url,
                       final_body=self.final_body)
        return out


def _encryption_key(metadata: dict[str, Any]) -> dict[str, Any]:
    """OpenID4VP §8.3: an ECDH-ES P-256 key from ``client_metadata.jwks``."""
    keys = (metadata.get("jwks") or {}).get("keys") if isinstance(metadata.get("jwks"), dict) else None
    if not isinstance(keys, list):
        raise InvalidRequest("direct_post.jwt needs client_metadata.jwks")
    for k in keys:
        if (isinstance(k, dict) and k.get("kty") == "EC" and k.get("crv") == "P-256"
                and k.get("alg", "ECDH-ES") == "ECDH-ES" and k.get("use", "enc") == "enc"):
            try:
                key_from_jwk(k)
            except JoseError:
                continue
            return k
    raise InvalidRequest("client_metadata.jwks has no ECDH-ES P-256 encryption key")


def _choose_enc(metadata: dict[str, Any]) -> str:
    offered = metadata.get("encrypted_response_enc_values_supported") or ["A128GCM"]
    for enc in SUPPORTED_ENCS:
        if enc in offered:
            return enc
    raise InvalidRequest(f"no supported content encryption in {offered}")


def encrypt_response(params: dict[str, Any], metadata: dict[str, Any], *, enc: str | None = None) -> str:
    """OpenID4VP §8.3: JWE compact, ``alg`` ECDH-ES, ``kid`` echoing the chosen JWK, an ephemeral
    key per response; the payload carries the response parameters as top-level members."""
    jwk = _encryption_key(metadata)
    header = {"alg": "ECDH-ES", "enc": enc or _choose_enc(metadata)}
    if "kid" in jwk:
        header["kid"] = jwk["kid"]
    token = _jwe.JWE(json.dumps(params, separators=(",", ":")).encode(), protected=json.dumps(header))
    token.add_recipient(_jwk.JWK(**{k: jwk[k] for k in ("kty", "crv", "x", "y")}))
    return token.serialize(compact=True)


def _body(r: httpx.Response) -> Any:
    if "json" in r.headers.get("content-type", ""):
        try:
            return r.json()
        except ValueError:
            pass
    return r.text


def post_response(request: AuthorizationRequest, params: dict[str, Any], *, http: httpx.Client | None = None,
                  encrypt: bool | None = None, enc: str | None = None, follow_redirect: bool = True) -> Outcome:
    """Send response parameters to ``response_uri`` (encrypted when ``response_mode`` is
    ``direct_post.jwt``, unless ``encrypt`` says otherwise) and follow a returned ``redirect_uri``."""
    encrypt = request.response_mode == "direct_post.jwt" if encrypt is None else encrypt
    if encrypt:
        form = {"response": encrypt_response(params, request.client_metadata, enc=enc)}
    else:
        form = {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in params.items()}
    with _client(http) as client:
        try:
            r = client.post(request.response_uri, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise VerifierUnreachable(f"cannot reach response_uri {request.response_uri}: {e}",
                                      request=request) from e
        outcome = Outcome(r.status_code, _body(r))
        redirect = outcome.body.get("redirect_uri") if isinstance(outcome.body, dict) else None
        if isinstance(redirect, str) and redirect:
            outcome.redirect_uri = redirect
            if follow_redirect:
                _follow(client, redirect, outcome)
    return outcome


def _follow(client: httpx.Client, url: str, outcome: Outcome) -> None:
    """GET the redirect in the same HTTP session (cookies kept: HAIP same-device binding) and
    follow http(s) redirects; stop at an app link the wallet cannot fetch."""
    for _ in range(_MAX_REDIRECTS):
        if urlsplit(url).scheme not in ("http", "https"):
            outcome.final_url = url
            return
        try:
            r = client.get(url, headers={"Accept": "application/json, text/html;q=0.9"})
        except httpx.HTTPError as e:
            outcome.final_url, outcome.final_status, outcome.final_body = url, None, f"unreachable: {e}"
            return
        outcome.final_url, outcome.final_status = url, r.status_code
        if r.is_redirect and "location" in r.headers:
            url = urljoin(url, r.headers["location"])
            continue
        outcome.final_body = _body(r)
        return
    outcome.final_body = "too many redirects"


_DEFAULT: Any = object()


def respond(presentation: Presentation, *, http: httpx.Client | None = None, encrypt: bool | None = None,
            enc: str | None = None, state: Any = _DEFAULT, extra: dict[str, Any] | None = None,
            follow_redirect: bool = True) -> Outcome:
    """OpenID4VP §8.2/§8.3: post ``vp_token`` (and the request's ``state``) to ``response_uri``.
    ``state`` overrides the echoed state (``None`` omits it); ``extra`` adds parameters."""
    params: dict[str, Any] = {"vp_token": presentation.vp_token}
    st = presentation.request.state if state is _DEFAULT else state
    if st is not None:
        params["state"] = st
    params.update(extra or {})
    return post_response(presentation.request, params, http=http, encrypt=encrypt, enc=enc,
                         follow_redirect=follow_redirect)


def respond_error(request: AuthorizationRequest, error: str, description: str | None = None, *,
                  http: httpx.Client | None = None) -> Outcome | None:
    """OpenID4VP §8.5 error response to an authenticated request; best effort."""
    params: dict[str, Any] = {"error": error}
    if description:
        params["error_description"] = description
    if request.state is not None:
        params["state"] = request.state
    try:
        return post_response(request, params, http=http, follow_redirect=False)
    except WalletError:
        return None


# -- review and the one-shot flow ---------------------------------------------------------------

def describe(request: AuthorizationRequest, matches: dict[str, list[CredentialMatch]]) -> dict[str, Any]:
    """What the user is asked to approve, as data."""
    return {
        "verifier": {"client_id": request.client_id, "name": request.verifier_name,
                     "trusted": request.verifier_trusted},
        "response_uri": request.response_uri,
        "response_mode": request.response_mode,
        "credentials": [{"query_id": qid, "vct": m.credential.vct, "disclosed": m.claims}
                        for qid, found in matches.items() for m in found],
        "transaction_data": [{"type": td.type, "credential_ids": list(td.credential_ids), "hash": td.hash,
                              **{k: v for k, v in td.summary.items() if k != "kind"}}
                             for td in request.transaction_data],
    }


def describe_text(request: AuthorizationRequest, matches: dict[str, list[CredentialMatch]]) -> list[str]:
    trust = "trusted chain" if request.verifier_trusted else "chain NOT checked (no --verifier-ca)"
    lines = [f"Verifier: {request.verifier_name} ({trust})", f"  client_id: {request.client_id}",
             f"  responds to: {request.response_uri} ({request.response_mode})"]
    for qid, found in matches.items():
        for m in found:
            shown = ", ".join(_flatten(m.claims)) or "(no claims, proof of possession only)"
            lines.append(f"Share {m.credential.vct} [{qid}]: {shown}")
    for n, td in enumerate(request.transaction_data, 1):
        lines.append(f"Transaction data {n}: " + td.describe()[0])
        lines.extend(td.describe()[1:])
    return lines


def _flatten(claims: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in claims.items():
        if k in ("iss", "iat", "exp", "nbf", "vct", "cnf", "status"):
            continue
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}")
    return out


Confirm = Callable[[AuthorizationRequest, dict[str, list[CredentialMatch]]], bool]


def approve(uri: str, wallet: Wallet, *, http: httpx.Client | None = None,
            trust_anchors: list[x509.Certificate] | None = None, confirm: Confirm | None = None,
            now: datetime | None = None) -> Outcome:
    """Answer an OpenID4VP request end to end. Failures found after the request object was
    authenticated (unknown transaction data, no matching credential, user declined) are also
    reported to the verifier as §8.5 error responses before the exception is raised."""
    with _client(http) as client:
        try:
            request = resolve(uri, http=client, trust_anchors=trust_anchors, now=now)
            matches = match_credentials(wallet, request)
            if confirm is not None and not confirm(request, matches):
                raise AccessDenied("declined by the user", request=request)
        except WalletError as e:
            if e.request is not None:
                respond_error(e.request, e.error, e.description, http=client)
            raise
        return respond(build_presentation(wallet, request, matches=matches, now=now), http=client)
