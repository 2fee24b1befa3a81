"""CSC API v2 (v2.0.0.2) and OAuth2 (RFC 6749, RFC 6750, RFC 8414) checks for a seal credential.

Every request body is literal JSON written here, and every expectation is read from the spec
(csc-api-v2.md §2-§7, §12), never from the server's own models: a field misspelt on both sides
would otherwise go unnoticed. Each check is a plain function taking a :class:`Context` and
raising :class:`CheckFailed` (or any exception) to fail.

The suite only spends SADs it obtained itself, so the credential stays usable afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed


class CheckFailed(Exception):
    """A conformance check did not hold; the message says what was seen."""


# -- spec constants (csc-api-v2.md §4, §7) --------------------------------------------------------------
INFO_REQUIRED = ("specs", "name", "logo", "region", "lang", "description", "authType", "methods",
                 "signAlgorithms", "signature_formats", "conformance_levels")

HASH_OIDS = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}

# Hash-specific signAlgo OIDs usable without signAlgoParams: OID -> (key family, hash OID).
SIGN_ALGOS = {
    "1.2.840.10045.4.3.2": ("ec", "2.16.840.1.101.3.4.2.1"),
    "1.2.840.10045.4.3.3": ("ec", "2.16.840.1.101.3.4.2.2"),
    "1.2.840.10045.4.3.4": ("ec", "2.16.840.1.101.3.4.2.3"),
    "1.2.840.113549.1.1.11": ("rsa", "2.16.840.1.101.3.4.2.1"),
    "1.2.840.113549.1.1.12": ("rsa", "2.16.840.1.101.3.4.2.2"),
    "1.2.840.113549.1.1.13": ("rsa", "2.16.840.1.101.3.4.2.3"),
}
HASH_SPECIFIC = set(SIGN_ALGOS) | {"1.2.840.113549.1.1.10"}  # pyHanko also accepts RSASSA-PSS

GENERALIZED_TIME = re.compile(r"^\d{14}Z$")

SERVICE_TOKEN = object()  # Context.csc: authenticate with the client_credentials token


# -- context -----------------------------------------------------------------------------------------------
@dataclass
class Context:
    """What the checks share: the target, one HTTP client, and lazily fetched server answers."""

    base_url: str
    client_id: str
    client_secret: str
    credential_id: str
    http: httpx.Client
    _info: dict[str, Any] | None = None
    _token: str | None = None
    _credential: dict[str, Any] | None = None
    _token_error: str | None = None  # a refused token request is reported once per check, not retried

    # The CSC API lives at <base>/csc/v2 (§2); the AS at info.oauth2, or the base URL as a fallback.
    def csc_url(self, method: str) -> str:
        return f"{self.base_url.rstrip('/')}/csc/v2/{method}"

    @property
    def oauth2_base(self) -> str:
        try:
            base = self.info().get("oauth2")
        except CheckFailed:
            base = None
        return (base if isinstance(base, str) and base else self.base_url).rstrip("/")

    @property
    def token_endpoint(self) -> str:
        return f"{self.oauth2_base}/oauth2/token"

    def info(self) -> dict[str, Any]:
        if self._info is None:
            r = self.http.post(self.csc_url("info"), json={"lang": "en-US"})
            self._info = expect_json(r, 200)
        return self._info

    def token(self) -> str:
        """A service access token via client_credentials, fetched once (RFC 6749 §4.4)."""
        if self._token is None:
            if self._token_error is not None:
                raise CheckFailed(self._token_error)
            r = self.http.post(self.token_endpoint, data={"grant_type": "client_credentials", "scope": "service"},
                               auth=(self.client_id, self.client_secret))
            if r.status_code != 200:
                self._token_error = f"no access token: token endpoint answered {r.status_code} {r.text[:200]}"
                raise CheckFailed(self._token_error)
            self._token = expect_json(r, 200)["access_token"]
        return self._token

    def csc(self, method: str, body: Any, *, bearer: str | None | object = SERVICE_TOKEN) -> httpx.Response:
        """POST a CSC method with the service token, another ``bearer`` token, or none (``None``)."""
        headers = {}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {self.token() if bearer is SERVICE_TOKEN else bearer}"
        return self.http.post(self.csc_url(method), json=body, headers=headers)

    def credential(self) -> dict[str, Any]:
        """credentials/info with the chain and certInfo, fetched once."""
        if self._credential is None:
            r = self.csc("credentials/info", {"credentialID": self.credential_id, "certificates": "chain",
                                              "certInfo": True, "authInfo": True})
            self._credential = expect_json(r, 200)
        return self._credential

    def leaf(self) -> x509.Certificate:
        certs = self.credential().get("cert", {}).get("certificates")
        if not isinstance(certs, list) or not certs:
            raise CheckFailed("credentials/info has no cert.certificates")
        return x509.load_der_x509_certificate(base64.b64decode(certs[0]))

    def sign_algo(self) -> tuple[str, str]:
        """(signAlgo, hashAlgorithmOID): the first hash-specific OID of key.algo this suite can verify."""
        family = "ec" if isinstance(self.leaf().public_key(), ec.EllipticCurvePublicKey) else "rsa"
        for oid in self.credential()["key"]["algo"]:
            if oid in SIGN_ALGOS and SIGN_ALGOS[oid][0] == family:
                return oid, SIGN_ALGOS[oid][1]
        raise CheckFailed(f"key.algo {self.credential()['key']['algo']} has no hash-specific {family} OID")

    def digest(self, label: str = "") -> tuple[bytes, str]:
        """A fresh digest for the credential's hash algorithm, raw and as standard base64."""
        _, hash_oid = self.sign_algo()
        h = hashlib.new(HASH_OIDS[hash_oid].name, f"rqes conformance {label} {secrets.token_hex(8)}".encode()).digest()
        return h, base64.b64encode(h).decode("ascii")

    def authorize(self, hashes_b64: list[str]) -> str:
        """credentials/authorize (explicit mode, RSSP-managed: authData []) -> SAD."""
        _, hash_oid = self.sign_algo()
        r = self.csc("credentials/authorize", {"credentialID": self.credential_id, "numSignatures": len(hashes_b64),
                                               "hashes": hashes_b64, "hashAlgorithmOID": hash_oid, "authData": []})
        body = expect_json(r, 200)
        if not isinstance(body.get("SAD"), str) or not body["SAD"]:
            raise CheckFailed(f"credentials/authorize returned no SAD: {body}")
        return body["SAD"]

    def sign_body(self, sad: str, hashes_b64: list[str]) -> dict[str, Any]:
        sign_algo, hash_oid = self.sign_algo()
        return {"credentialID": self.credential_id, "SAD": sad, "hashes": hashes_b64,
                "hashAlgorithmOID": hash_oid, "signAlgo": sign_algo}

    def verify(self, signature: bytes, digest: bytes) -> None:
        """The signature verifies against the leaf certificate's public key over the raw digest (§7)."""
        _, hash_oid = self.sign_algo()
        algo = Prehashed(HASH_OIDS[hash_oid]())
        key = self.leaf().public_key()
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, digest, ec.ECDSA(algo))  # DER ECDSA-Sig-Value, as §7 requires
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, digest, padding.PKCS1v15(), algo)
            else:
                raise CheckFailed(f"unexpected leaf key type {type(key).__name__}")
        except InvalidSignature:
            raise CheckFailed("signature does not verify against the leaf certificate's public key") from None


def expect_json(r: httpx.Response, status: int) -> Any:
    if r.status_code != status:
        raise CheckFailed(f"{r.request.method} {r.request.url.path}: expected {status}, got {r.status_code} {r.text[:300]}")
    try:
        return r.json()
    except ValueError:
        raise CheckFailed(f"{r.request.url.path}: response is not JSON: {r.text[:200]}") from None


def expect_error(r: httpx.Response, status: int, error: str, description: str | None = None) -> dict[str, Any]:
    """CSC §6 / RFC 6749 §5.2: exactly ``{"error", "error_description"}`` with the spec's status."""
    got = expect_json(r, status)
    if description is not None and got != {"error": error, "error_description": description}:
        raise CheckFailed(f"expected {{error: {error!r}, error_description: {description!r}}}, got {json.dumps(got)}")
    if got.get("error") != error or set(got) - {"error", "error_description"}:
        raise CheckFailed(f"expected error {error!r} with only error/error_description, got {json.dumps(got)}")
    return got


def require(cond: bool, why: str) -> None:
    if not cond:
        raise CheckFailed(why)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# -- info (§4) ---------------------------------------------------------------------------------------
def info_required_fields(ctx: Context) -> None:
    info = ctx.info()
    missing = [f for f in INFO_REQUIRED if f not in info or info[f] in (None, "", [])]
    require(not missing, f"info lacks required fields {missing}")
    require(isinstance(info["specs"], str) and info["specs"].startswith("2."), f"specs {info['specs']!r} is not 2.x")
    for f in ("name", "description"):
        require(isinstance(info[f], str) and len(info[f]) <= 255, f"{f} must be a string of at most 255 characters")
    require(isinstance(info["region"], str) and re.fullmatch(r"[A-Z]{2}", info["region"]) is not None,
            f"region {info['region']!r} is not ISO 3166-1 alpha-2")
    require(isinstance(info["authType"], list) and "oauth2client" in info["authType"],
            f"authType {info['authType']!r} lacks oauth2client")
    for m in ("info", "credentials/list", "credentials/info", "credentials/authorize", "signatures/signHash"):
        require(m in info["methods"], f"methods lacks {m}")
    algos = info["signAlgorithms"].get("algos") if isinstance(info["signAlgorithms"], dict) else None
    require(isinstance(algos, list) and algos and all(isinstance(a, str) for a in algos),
            "signAlgorithms.algos must be a non-empty list of OIDs")
    params = info["signAlgorithms"].get("algoParams", [])
    require(isinstance(params, list) and all(isinstance(p, str) for p in params),
            "signAlgorithms.algoParams must hold strings only")
    formats = info["signature_formats"].get("formats") if isinstance(info["signature_formats"], dict) else None
    require(isinstance(formats, list) and formats and set(formats) <= {"C", "X", "P", "J"},
            f"signature_formats.formats {formats!r} is not a subset of C/X/P/J")
    require(isinstance(info["conformance_levels"], list), "conformance_levels must be a list")


def info_oauth2_present(ctx: Context) -> None:
    info = ctx.info()
    require(isinstance(info.get("oauth2"), str) and urlsplit(info["oauth2"]).scheme in ("http", "https"),
            f"info.oauth2 must be the AS base URI (iOS clients require it), got {info.get('oauth2')!r}")
    require("oauth2Issuer" not in info, "oauth2 and oauth2Issuer are mutually exclusive")


def info_never_implicit(ctx: Context) -> None:
    bad = [s for s in _strings(ctx.info()) if s.lower() == "implicit"]
    require(not bad, "info contains the v1 value 'implicit'")


def info_empty_body(ctx: Context) -> None:
    """§2: info also answers an empty body."""
    r = ctx.http.post(ctx.csc_url("info"), json={})
    require(expect_json(r, 200).get("specs") == ctx.info()["specs"], "info with an empty body differs")


def info_logo_resolves(ctx: Context) -> None:
    """§4 info.logo is REQUIRED and a URI: it must resolve to an image."""
    r = ctx.http.get(ctx.info()["logo"])
    require(r.status_code == 200 and r.headers.get("content-type", "").startswith("image/"),
            f"info.logo answered {r.status_code} {r.headers.get('content-type')}")


# -- OAuth2 (RFC 8414, RFC 6749) -----------------------------------------------------------------------
def oauth2_metadata_issuer(ctx: Context) -> None:
    issuer = ctx.oauth2_base
    parts = urlsplit(issuer)
    # RFC 8414 §3: the well-known segment goes between the host and any issuer path.
    url = urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + parts.path.rstrip("/"), "", ""))
    meta = expect_json(ctx.http.get(url), 200)
    require(meta.get("issuer") == issuer, f"metadata issuer {meta.get('issuer')!r} != {issuer!r}")
    require(meta.get("token_endpoint") == ctx.token_endpoint,
            f"token_endpoint {meta.get('token_endpoint')!r} != {ctx.token_endpoint!r}")
    grants = meta.get("grant_types_supported", ["authorization_code", "implicit"])
    require("client_credentials" in grants, f"grant_types_supported {grants!r} lacks client_credentials")


def _token_ok(r: httpx.Response) -> None:
    body = expect_json(r, 200)
    require(isinstance(body.get("access_token"), str) and body["access_token"], "no access_token")
    require(str(body.get("token_type", "")).lower() == "bearer", f"token_type {body.get('token_type')!r} is not Bearer")
    require(isinstance(body.get("expires_in"), int) and not isinstance(body["expires_in"], bool),
            f"expires_in {body.get('expires_in')!r} is not an integer")
    require("no-store" in r.headers.get("cache-control", ""), "token response lacks Cache-Control: no-store (RFC 6749 §5.1)")


def oauth2_client_secret_basic(ctx: Context) -> None:
    _token_ok(ctx.http.post(ctx.token_endpoint, data={"grant_type": "client_credentials", "scope": "service"},
                            auth=(ctx.client_id, ctx.client_secret)))


def oauth2_client_secret_post(ctx: Context) -> None:
    _token_ok(ctx.http.post(ctx.token_endpoint, data={"grant_type": "client_credentials", "scope": "service",
                                                       "client_id": ctx.client_id, "client_secret": ctx.client_secret}))


def oauth2_wrong_secret(ctx: Context) -> None:
    r = ctx.http.post(ctx.token_endpoint, data={"grant_type": "client_credentials", "scope": "service"},
                      auth=(ctx.client_id, ctx.client_secret + "-wrong"))
    expect_error(r, 401, "invalid_client")
    # RFC 6749 §5.2: a client that used the Authorization header gets a WWW-Authenticate challenge.
    require("www-authenticate" in r.headers, "401 invalid_client after HTTP Basic lacks WWW-Authenticate")


def oauth2_unsupported_grant(ctx: Context) -> None:
    r = ctx.http.post(ctx.token_endpoint, data={"grant_type": "password", "username": "u", "password": "p"},
                      auth=(ctx.client_id, ctx.client_secret))
    expect_error(r, 400, "unsupported_grant_type")


# -- bearer tokens (RFC 6750) ----------------------------------------------------------------------------
def csc_no_bearer_token(ctx: Context) -> None:
    r = ctx.csc("credentials/list", {}, bearer=None)
    expect_json(r, 401)
    challenge = r.headers.get("www-authenticate", "")
    require(challenge.lower().startswith("bearer"), f"401 without a Bearer WWW-Authenticate challenge: {challenge!r}")


def csc_invalid_bearer_token(ctx: Context) -> None:
    r = ctx.csc("credentials/list", {}, bearer="not-a-token")
    expect_error(r, 401, "invalid_token")
    require(r.headers.get("www-authenticate", "").lower().startswith("bearer"), "401 lacks WWW-Authenticate: Bearer")


# -- credentials/list, credentials/info (§4) -----------------------------------------------------------
def credentials_list(ctx: Context) -> None:
    body = expect_json(ctx.csc("credentials/list", {}), 200)
    ids = body.get("credentialIDs")
    require(isinstance(ids, list) and ctx.credential_id in ids, f"credentialIDs {ids!r} lacks {ctx.credential_id}")
    require("credentialInfos" not in body, "credentialInfos returned although credentialInfo was not requested")


def credentials_list_with_info(ctx: Context) -> None:
    body = expect_json(ctx.csc("credentials/list", {"credentialInfo": True, "certificates": "chain",
                                                     "certInfo": True, "authInfo": True}), 200)
    infos = body.get("credentialInfos")
    require(isinstance(infos, list), "credentialInfos missing although credentialInfo=true")
    mine = [i for i in infos if i.get("credentialID") == ctx.credential_id]
    require(len(mine) == 1, f"credentialInfos has {len(mine)} entries for {ctx.credential_id}")
    for f in ("key", "cert", "multisign"):
        require(f in mine[0], f"credentialInfos entry lacks {f}")


def credentials_info_key(ctx: Context) -> None:
    key = ctx.credential().get("key")
    require(isinstance(key, dict), "key missing")
    require(key.get("status") == "enabled", f"key.status {key.get('status')!r} is not 'enabled'")
    algo = key.get("algo")
    require(isinstance(algo, list) and algo and all(isinstance(a, str) for a in algo), "key.algo is not a list of OIDs")
    require(bool(HASH_SPECIFIC & set(algo)), f"key.algo {algo} has no hash-specific OID (pyHanko needs one)")
    require(isinstance(key.get("len"), int) and not isinstance(key["len"], bool) and key["len"] > 0,
            f"key.len {key.get('len')!r} is not a positive integer")
    pub = ctx.leaf().public_key()
    require(pub.key_size == key["len"], f"key.len {key['len']} but the leaf key has {pub.key_size} bits")
    if isinstance(pub, ec.EllipticCurvePublicKey):
        require(isinstance(key.get("curve"), str), "EC key without key.curve")


def credentials_info_cert_chain(ctx: Context) -> None:
    certs = ctx.credential().get("cert", {}).get("certificates")
    require(isinstance(certs, list) and len(certs) >= 2, "certificates=chain returned fewer than 2 certificates")
    chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in certs]
    try:
        leaf_ca = chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        leaf_ca = False
    require(not leaf_ca, "the first certificate is a CA: the end-entity certificate must come first")
    for child, parent in zip(chain, chain[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise CheckFailed(f"{child.subject.rfc4514_string()} is not issued by the next certificate: {e}") from None
    single = expect_json(ctx.csc("credentials/info", {"credentialID": ctx.credential_id}), 200)
    one = single.get("cert", {}).get("certificates")
    require(isinstance(one, list) and len(one) == 1 and one[0] == certs[0],
            "default certificates=single must return only the end-entity certificate")


def credentials_info_scal_multisign_auth(ctx: Context) -> None:
    cred = ctx.credential()
    require(cred.get("SCAL") == "2", f"SCAL must be the string \"2\", got {cred.get('SCAL')!r}")
    ms = cred.get("multisign")
    require(isinstance(ms, int) and not isinstance(ms, bool) and ms >= 1, f"multisign {ms!r} is not an integer >= 1")
    auth = cred.get("auth")
    require(isinstance(auth, dict) and auth.get("mode") in ("explicit", "oauth2code"),
            f"auth.mode must be explicit or oauth2code, got {auth!r}")
    require("objects" in auth, "auth lacks the objects key (EUDI clients need it, null allowed)")
    require(not any(s.lower() == "implicit" for s in _strings(cred)), "credentials/info contains 'implicit'")


def credentials_info_cert_info(ctx: Context) -> None:
    cert = ctx.credential().get("cert", {})
    leaf = ctx.leaf()
    for f in ("issuerDN", "subjectDN", "serialNumber", "validFrom", "validTo"):
        require(isinstance(cert.get(f), str) and cert[f], f"certInfo=true but cert.{f} is missing")
    require(int(cert["serialNumber"], 16) == leaf.serial_number, "cert.serialNumber is not the leaf's serial in hex")
    for f, actual in (("validFrom", leaf.not_valid_before_utc), ("validTo", leaf.not_valid_after_utc)):
        require(GENERALIZED_TIME.match(cert[f]) is not None, f"cert.{f} {cert[f]!r} is not YYYYMMDDHHmmssZ")
        parsed = datetime.strptime(cert[f], "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)
        require(parsed == actual, f"cert.{f} {cert[f]} differs from the certificate ({actual:%Y%m%d%H%M%SZ})")
    require(cert.get("status") in (None, "valid", "expired", "revoked", "suspended"), f"cert.status {cert.get('status')!r}")


# -- authorize + signHash (§4) --------------------------------------------------------------------------
def sign_hash_v2_names(ctx: Context) -> None:
    digest, h = ctx.digest("v2")
    sign_algo, hash_oid = ctx.sign_algo()
    r = ctx.csc("credentials/authorize", {"credentialID": ctx.credential_id, "numSignatures": 1, "hashes": [h],
                                          "hashAlgorithmOID": hash_oid, "authData": []})
    grant = expect_json(r, 200)
    require(isinstance(grant.get("SAD"), str) and grant["SAD"], "no SAD")
    require(isinstance(grant.get("expiresIn", 3600), int) and grant.get("expiresIn", 3600) > 0,
            f"expiresIn {grant.get('expiresIn')!r} is not a positive integer")
    r = ctx.csc("signatures/signHash", {"credentialID": ctx.credential_id, "SAD": grant["SAD"], "hashes": [h],
                                        "hashAlgorithmOID": hash_oid, "signAlgo": sign_algo})
    sigs = expect_json(r, 200).get("signatures")
    require(isinstance(sigs, list) and len(sigs) == 1, f"expected 1 signature, got {sigs!r}")
    ctx.verify(base64.b64decode(sigs[0], validate=True), digest)


def sign_hash_v1_names(ctx: Context) -> None:
    """pyHanko and Documenso send v1 names: ``hash``, ``hashAlgo`` (§9, §11)."""
    digest, h = ctx.digest("v1")
    sign_algo, hash_oid = ctx.sign_algo()
    r = ctx.csc("credentials/authorize", {"credentialID": ctx.credential_id, "numSignatures": 1, "hash": [h],
                                          "hashAlgorithmOID": hash_oid, "authData": []})
    sad = expect_json(r, 200).get("SAD")
    r = ctx.csc("signatures/signHash", {"credentialID": ctx.credential_id, "SAD": sad, "hash": [h],
                                        "hashAlgo": hash_oid, "signAlgo": sign_algo})
    sigs = expect_json(r, 200).get("signatures")
    require(isinstance(sigs, list) and len(sigs) == 1, f"expected 1 signature, got {sigs!r}")
    ctx.verify(base64.b64decode(sigs[0], validate=True), digest)


def sign_hash_batch_order(ctx: Context) -> None:
    """Several hashes under one SAD: signatures come back in the order of ``hashes``."""
    n = min(3, ctx.credential()["multisign"])
    pairs = [ctx.digest(f"batch{i}") for i in range(n)]
    sad = ctx.authorize([h for _, h in pairs])
    sigs = expect_json(ctx.csc("signatures/signHash", ctx.sign_body(sad, [h for _, h in pairs])), 200).get("signatures")
    require(isinstance(sigs, list) and len(sigs) == n, f"expected {n} signatures, got {sigs!r}")
    for (digest, _), sig in zip(pairs, sigs):
        ctx.verify(base64.b64decode(sig, validate=True), digest)


# -- error cases (§4 signHash, §6) ---------------------------------------------------------------------
def error_missing_credential_id(ctx: Context) -> None:
    expect_error(ctx.csc("credentials/info", {"certificates": "single"}), 400, "invalid_request",
                 "Missing (or invalid type) string parameter credentialID")


def error_empty_hash_array(ctx: Context) -> None:
    _, h = ctx.digest("empty")
    sad = ctx.authorize([h])
    expect_error(ctx.csc("signatures/signHash", ctx.sign_body(sad, [])), 400, "invalid_request", "Empty hash array")


def error_bad_base64(ctx: Context) -> None:
    _, h = ctx.digest("b64")
    sad = ctx.authorize([h])
    expect_error(ctx.csc("signatures/signHash", ctx.sign_body(sad, ["not*base64!"])), 400, "invalid_request",
                 "Invalid Base64 hash string parameter")


def error_replayed_sad(ctx: Context) -> None:
    digest, h = ctx.digest("replay")
    sad = ctx.authorize([h])
    sigs = expect_json(ctx.csc("signatures/signHash", ctx.sign_body(sad, [h])), 200)["signatures"]
    ctx.verify(base64.b64decode(sigs[0]), digest)
    expect_error(ctx.csc("signatures/signHash", ctx.sign_body(sad, [h])), 400, "invalid_request",
                 "Invalid parameter SAD")


def error_sad_for_other_hash(ctx: Context) -> None:
    _, authorized = ctx.digest("authorized")
    _, other = ctx.digest("other")
    sad = ctx.authorize([authorized])
    expect_error(ctx.csc("signatures/signHash", ctx.sign_body(sad, [other])), 400, "invalid_request",
                 "Hash is not authorized by the SAD")


def error_wrong_digest_length(ctx: Context) -> None:
    digest, h = ctx.digest("length")
    sad = ctx.authorize([h])
    short = base64.b64encode(digest[:-1]).decode("ascii")
    expect_error(ctx.csc("signatures/signHash", ctx.sign_body(sad, [short])), 400, "invalid_request",
                 "Invalid digest value length")


def credential_still_usable(ctx: Context) -> None:
    """After every refusal above, the credential still seals (only the suite's own SADs were spent)."""
    digest, h = ctx.digest("final")
    sad = ctx.authorize([h])
    sigs = expect_json(ctx.csc("signatures/signHash", ctx.sign_body(sad, [h])), 200).get("signatures")
    require(isinstance(sigs, list) and len(sigs) == 1, f"expected 1 signature, got {sigs!r}")
    ctx.verify(base64.b64decode(sigs[0], validate=True), digest)


Check = Callable[[Context], None]

CHECKS: list[tuple[str, Check]] = [
    ("info.required_fields", info_required_fields),
    ("info.oauth2_present", info_oauth2_present),
    ("info.never_implicit", info_never_implicit),
    ("info.empty_body", info_empty_body),
    ("info.logo_resolves", info_logo_resolves),
    ("oauth2.metadata_issuer", oauth2_metadata_issuer),
    ("oauth2.token_client_secret_basic", oauth2_client_secret_basic),
    ("oauth2.token_client_secret_post", oauth2_client_secret_post),
    ("oauth2.token_wrong_secret", oauth2_wrong_secret),
    ("oauth2.token_unsupported_grant", oauth2_unsupported_grant),
    ("bearer.missing_token", csc_no_bearer_token),
    ("bearer.invalid_token", csc_invalid_bearer_token),
    ("credentials_list.contains_credential", credentials_list),
    ("credentials_list.credential_infos", credentials_list_with_info),
    ("credentials_info.key", credentials_info_key),
    ("credentials_info.cert_chain_leaf_first", credentials_info_cert_chain),
    ("credentials_info.scal_multisign_auth", credentials_info_scal_multisign_auth),
    ("credentials_info.cert_info", credentials_info_cert_info),
    ("sign_hash.v2_names", sign_hash_v2_names),
    ("sign_hash.v1_names", sign_hash_v1_names),
    ("sign_hash.batch_order", sign_hash_batch_order),
    ("errors.missing_credential_id", error_missing_credential_id),
    ("errors.empty_hash_array", error_empty_hash_array),
    ("errors.bad_base64", error_bad_base64),
    ("errors.replayed_sad", error_replayed_sad),
    ("errors.sad_for_other_hash", error_sad_for_other_hash),
    ("errors.wrong_digest_length", error_wrong_digest_length),
    ("credential.still_usable", credential_still_usable),
]


@dataclass(frozen=True)
class Result:
    name: str
    passed: bool
    why: str = ""


def run(ctx: Context, checks: list[tuple[str, Check]] = CHECKS) -> list[Result]:
    """Run every check; one failure never stops the others."""
    results = []
    for name, check in checks:
        try:
            check(ctx)
        except CheckFailed as e:
            results.append(Result(name, False, str(e)))
        except Exception as e:  # noqa: BLE001 - a malformed answer is a failed check, never a crash
            results.append(Result(name, False, f"{type(e).__name__}: {e}"))
        else:
            results.append(Result(name, True))
    return results
