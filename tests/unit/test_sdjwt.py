"""SD-JWT VC presentation verification (openid4vp-sdjwt.md §8–§10, §13 modules and extra cases, §14 vectors).

A small in-test PID provider (P-256 CA → issuer certificate, never self-signed) issues an SD-JWT
VC with one disclosure per claim (the nested ``address`` members and the ``nationalities``
elements included), ``cnf.jwk`` and ``status.status_list``; a holder key signs the KB-JWT. The
digests and hashes used to build the inputs are computed here with hashlib, never with the module
under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from sam.clock import FixedClock
from sam.sdjwt import (
    PresentationRejected,
    SdJwtVcVerifier,
    StatusUnavailable,
    check_transaction_data,
    decode_status_list,
    b64url_decode,
    disclosure_digest,
    qes_approval_hash,
    strict_json,
    transaction_data_hash,
)

AT = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
NOW = int(AT.timestamp())
YEAR = 365 * 86400
AUD = "x509_hash:Uvo3HtuIxuhC92rShpgqcT3YXwrqRxWEviRiA0OZszk"
NONCE = "bZq3F9yR4xLr0wKcT1eVhA8sQ2uNjPmG"
ISS = "https://pid-provider.test"
STATUS_URI = "https://pid-provider.test/status/1"
PID_VCT = "urn:eudi:pid:1"

# A qesApprovalRequest as the verifier sent it: compact JSON, base64url, no padding.
TD_ENTRY = base64.urlsafe_b64encode(json.dumps({
    "type": "https://cloudsignatureconsortium.org/2025/qes-approval", "credential_ids": ["pid"],
    "credentialID": "cred-1", "numSignatures": 1, "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
    "documentDigests": [{"hash": "sTOgwOm+474gFj0q0x1iSNspKqbcse4IeiqlDg/HWuI=", "label": "Contract"}],
}, separators=(",", ":")).encode()).rstrip(b"=").decode()

PID_CLAIMS: dict[str, Any] = {
    "given_name": "Erika",
    "family_name": "Mustermann",
    "birthdate": "1964-08-12",
    "nationalities": ["DE"],
    "address": {"street_address": "Heidestraße 17", "locality": "Köln", "postal_code": "51147", "country": "DE"},
    "issuing_authority": "DE",
    "issuing_country": "DE",
}


# --- an in-test PID provider and holder ----------------------------------------------------------


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def h256(s: str, fn: Callable[[bytes], Any] = hashlib.sha256) -> str:
    return b64u(fn(s.encode("ascii")).digest())


_ALG = {"ES256": (hashes.SHA256(), 32), "ES384": (hashes.SHA384(), 48)}


def sign_jws(key: ec.EllipticCurvePrivateKey | None, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """Compact JWS; ``key=None`` gives an unsigned token (alg none)."""
    signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    hash_, size = _ALG[header["alg"]]
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hash_)))
    return f"{signing_input}.{b64u(r.to_bytes(size, 'big') + s.to_bytes(size, 'big'))}"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(key: ec.EllipticCurvePrivateKey, subject: str, signer: ec.EllipticCurvePrivateKey, issuer: str, *,
              ca: bool, at: datetime) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(at - timedelta(days=365)).not_valid_after(at + timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False))
    return b.sign(signer, hashes.SHA256())


@dataclass
class Pki:
    """A PID provider: CA (the trust anchor) and the issuer certificate it signed."""

    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def x5c(self) -> list[str]:
        return [base64.b64encode(self.cert.public_bytes(Encoding.DER)).decode()]

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)


def make_pki(name: str, at: datetime = AT) -> Pki:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = make_cert(ca_key, f"{name} CA", ca_key, f"{name} CA", ca=True, at=at)
    return Pki(ca_key, ca, key, make_cert(key, f"{name} issuer", ca_key, f"{name} CA", ca=False, at=at))


def public_jwk(key: ec.EllipticCurvePrivateKey, **extra: str) -> dict[str, Any]:
    n = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big")), **extra}


@dataclass
class SdBuilder:
    """Makes every member of an object, and every array element, selectively disclosable."""

    disclosures: list[str] = field(default_factory=list)
    _n: int = 0

    def _salt(self) -> str:
        self._n += 1
        return b64u(hashlib.sha256(f"salt-{self._n}".encode()).digest()[:16])

    def disclose(self, *content: Any) -> str:
        d = b64u(json.dumps([self._salt(), *content]).encode())
        self.disclosures.append(d)
        return h256(d)

    def value(self, v: Any) -> Any:
        if isinstance(v, dict):
            return self.obj(v)
        if isinstance(v, list):
            return [{"...": self.disclose(self.value(e))} for e in v]
        return v

    def obj(self, claims: dict[str, Any]) -> dict[str, Any]:
        return {"_sd": sorted(self.disclose(k, self.value(v)) for k, v in claims.items())}


@dataclass
class Credential:
    jwt: str
    disclosures: list[str]
    by_name: dict[str, str]  # claim name → its (top-level or nested member) disclosure


def issue(pki: Pki, holder: dict[str, Any], *, claims: dict[str, Any] = PID_CLAIMS, set_: dict[str, Any] | None = None,
          drop: tuple[str, ...] = (), sd_plain: tuple[str, ...] = (), header: dict[str, Any] | None = None,
          key: ec.EllipticCurvePrivateKey | None | str = "pki", status_idx: int = 0, decoys: int = 2) -> Credential:
    b = SdBuilder()
    payload: dict[str, Any] = {
        "iss": ISS, "iat": NOW - 3600, "exp": NOW + 30 * 86400, "vct": PID_VCT, "cnf": {"jwk": holder},
        "status": {"status_list": {"idx": status_idx, "uri": STATUS_URI}}, "_sd_alg": "sha-256", **b.obj(claims),
    }
    for name in sd_plain:  # an issuer that (wrongly) makes a must-be-plain claim disclosable
        payload["_sd"].append(b.disclose(name, payload.pop(name)))
    payload["_sd"] += [h256(f"decoy-{i}") for i in range(decoys)]
    payload["_sd"].sort()
    payload.update(set_ or {})
    for name in drop:
        payload.pop(name)
    hdr = {"alg": "ES256", "typ": "dc+sd-jwt", "x5c": pki.x5c, **(header or {})}
    jwt = sign_jws(pki.key if key == "pki" else key, hdr, payload)  # type: ignore[arg-type]
    by_name = {}
    for d in b.disclosures:
        arr = json.loads(base64.urlsafe_b64decode(d + "=" * (-len(d) % 4)))
        if len(arr) == 3:
            by_name[arr[1]] = d
    return Credential(jwt, b.disclosures, by_name)


def present(cred: Credential, holder_key: ec.EllipticCurvePrivateKey | None, *, disclosures: list[str] | None = None,
            aud: str = AUD, nonce: str = NONCE, iat: int = NOW - 5, header: dict[str, Any] | None = None,
            sd_hash: str | None = None, set_: dict[str, Any] | None = None) -> str:
    ds = cred.disclosures if disclosures is None else disclosures
    prefix = "~".join([cred.jwt, *ds]) + "~"
    payload = {"iat": iat, "aud": aud, "nonce": nonce, "sd_hash": sd_hash or h256(prefix),
               "transaction_data_hashes": [h256(TD_ENTRY)], "transaction_data_hashes_alg": "sha-256", **(set_ or {})}
    return prefix + sign_jws(holder_key, {"alg": "ES256", "typ": "kb+jwt", **(header or {})}, payload)


def pack_status(values: list[int], bits: int) -> str:
    per = 8 // bits
    data = bytearray((len(values) + per - 1) // per)
    for i, v in enumerate(values):
        data[i // per] |= v << ((i % per) * bits)
    return b64u(zlib.compress(bytes(data)))


def status_token(pki: Pki, values: list[int], bits: int = 2, *, uri: str = STATUS_URI, key: Any = "pki",
                 typ: str = "statuslist+jwt", exp: int = NOW + 3600, x5c: list[str] | None = None) -> str:
    payload = {"sub": uri, "iat": NOW - 60, "exp": exp, "ttl": 300, "status_list": {"bits": bits, "lst": pack_status(values, bits)}}
    return sign_jws(pki.key if key == "pki" else key, {"alg": "ES256", "typ": typ, "x5c": x5c or pki.x5c}, payload)


class Fetcher:
    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.calls: list[str] = []

    async def fetch(self, uri: str) -> str:
        self.calls.append(uri)
        try:
            return self.tokens[uri]
        except KeyError:
            raise StatusUnavailable(uri) from None


# Status list at STATUS_URI (2 bits): 0 VALID, 1 INVALID, 2 SUSPENDED, 3 application-specific.
VALID, REVOKED, SUSPENDED, APP_SPECIFIC = 0, 1, 2, 3
STATUS_VALUES = [0, 1, 2, 3] + [0] * 28


@dataclass
class World:
    pki: Pki
    other: Pki  # a PID provider nobody trusts
    holder: ec.EllipticCurvePrivateKey
    holder_jwk: dict[str, Any]
    fetcher: Fetcher

    def verifier(self, *, anchors: list[x509.Certificate] | None = None, fetcher: Any = "default", **kw: Any) -> SdJwtVcVerifier:
        return SdJwtVcVerifier(trust_anchors=anchors or [self.pki.ca], clock=FixedClock(AT),
                               status=self.fetcher if fetcher == "default" else fetcher, **kw)

    def issue(self, **kw: Any) -> Credential:
        kw.setdefault("key", "pki")
        return issue(kw.pop("pki", self.pki), kw.pop("holder", self.holder_jwk), **kw)

    def present(self, cred: Credential | None = None, **kw: Any) -> str:
        return present(cred or self.issue(), kw.pop("holder_key", self.holder), **kw)


@pytest.fixture(scope="module")
def w() -> World:
    pki = make_pki("PID")
    holder = ec.generate_private_key(ec.SECP256R1())
    return World(pki, make_pki("Rogue"), holder, public_jwk(holder, kid="holder-1", use="sig", alg="ES256"),
                 Fetcher({STATUS_URI: status_token(pki, STATUS_VALUES)}))


async def rejected(v: SdJwtVcVerifier, presentation: Any, reason: str) -> PresentationRejected:
    with pytest.raises(PresentationRejected) as ei:
        await v.verify(presentation, audience=AUD, nonce=NONCE)
    assert ei.value.reason == reason, ei.value.description
    assert (ei.value.error, ei.value.status) == ("invalid_request", 400)
    return ei.value


def _walk(o: Any) -> list[str]:
    if isinstance(o, dict):
        return [k for k in o] + [k for v in o.values() for k in _walk(v)]
    if isinstance(o, list):
        return [k for v in o for k in _walk(v)]
    return []


# --- accepted ------------------------------------------------------------------------------------


async def test_happy_path(w: World) -> None:
    cred = w.issue()
    p = w.present(cred)
    fetcher = Fetcher(dict(w.fetcher.tokens))
    v = await w.verifier(fetcher=fetcher).verify(p, audience=AUD, nonce=NONCE)

    assert {k: v.claims[k] for k in PID_CLAIMS} == PID_CLAIMS  # nested address and array elements applied
    assert v.claims["iss"] == ISS and v.claims["cnf"] == {"jwk": w.holder_jwk}
    assert not {"_sd", "_sd_alg", "..."} & set(_walk(v.claims))
    assert v.vct == PID_VCT
    assert v.issuer_chain == (w.pki.der,)
    assert v.holder_jwk == w.holder_jwk
    assert v.kb["nonce"] == NONCE and v.kb["aud"] == AUD
    assert v.presentation == p and v.disclosed == tuple(cred.disclosures)
    assert fetcher.calls == [STATUS_URI]
    check_transaction_data(v.kb, [TD_ENTRY], [TD_ENTRY])


async def test_minimal_cnf_jwk(w: World) -> None:
    holder = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(holder)
    assert set(jwk) == {"kty", "crv", "x", "y"}
    v = await w.verifier().verify(w.present(w.issue(holder=jwk), holder_key=holder), audience=AUD, nonce=NONCE)
    assert v.holder_jwk == jwk


async def test_partial_disclosure_drops_undisclosed_claims_and_array_elements(w: World) -> None:
    cred = w.issue()
    chosen = [cred.by_name[n] for n in ("given_name", "address", "locality", "nationalities")]
    v = await w.verifier().verify(w.present(cred, disclosures=chosen), audience=AUD, nonce=NONCE)
    assert v.claims["given_name"] == "Erika"
    assert v.claims["address"] == {"locality": "Köln"}
    assert v.claims["nationalities"] == []  # the undisclosed {"...": digest} element is removed
    assert "family_name" not in v.claims and "birthdate" not in v.claims


async def test_chain_with_intermediate_and_anchor_included_in_x5c(w: World) -> None:
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = make_cert(root_key, "Root", root_key, "Root", ca=True, at=AT)
    mid = make_cert(mid_key, "Mid", root_key, "Root", ca=True, at=AT)
    leaf = make_cert(leaf_key, "Leaf", mid_key, "Mid", ca=False, at=AT)
    pki = Pki(mid_key, mid, leaf_key, leaf)
    der = lambda c: base64.b64encode(c.public_bytes(Encoding.DER)).decode()  # noqa: E731
    status = status_token(pki, STATUS_VALUES, x5c=[der(leaf), der(mid)])
    ok = w.verifier(anchors=[root], fetcher=Fetcher({STATUS_URI: status}))
    for chain in ([der(leaf), der(mid)], [der(leaf), der(mid), der(root)]):
        v = await ok.verify(w.present(w.issue(pki=pki, header={"x5c": chain})), audience=AUD, nonce=NONCE)
        assert v.issuer_chain[0] == leaf.public_bytes(Encoding.DER)
    await rejected(ok, w.present(w.issue(pki=pki)), "untrusted_issuer")  # intermediate missing from x5c


async def test_no_status_claim_needs_no_fetcher(w: World) -> None:
    v = await w.verifier(fetcher=None).verify(w.present(w.issue(drop=("status",))), audience=AUD, nonce=NONCE)
    assert "status" not in v.claims


# --- rejected: one case per conformance module and §13 extra --------------------------------------


def _sd_hash_without_last_disclosure(w: World) -> str:
    cred = w.issue()
    return w.present(cred, sd_hash=h256("~".join([cred.jwt, *cred.disclosures[:-1]]) + "~"))


def _payload_swapped(w: World) -> str:
    cred, forged = w.issue(), w.issue(set_={"exp": NOW + 10 * YEAR})
    h, _, sig = cred.jwt.split(".")
    return w.present(Credential(f"{h}.{forged.jwt.split('.')[1]}.{sig}", forged.disclosures, forged.by_name))


def _sd_hash_sha384(w: World) -> str:
    cred = w.issue()  # _sd_alg is sha-256, so sd_hash must be too
    return w.present(cred, sd_hash=h256("~".join([cred.jwt, *cred.disclosures]) + "~", hashlib.sha384))


def _unreferenced(w: World) -> str:
    cred = w.issue()
    stray = b64u(json.dumps(["c2FsdA", "given_name", "Mallory"]).encode())
    return w.present(Credential(cred.jwt, [*cred.disclosures, stray], cred.by_name))


def _nested_without_parent(w: World) -> str:
    cred = w.issue()
    return w.present(cred, disclosures=[cred.by_name["given_name"], cred.by_name["locality"]])


def _duplicate(w: World) -> str:
    cred = w.issue()
    return w.present(cred, disclosures=[*cred.disclosures, cred.by_name["family_name"]])


def _digest_twice_in_payload(w: World) -> str:
    b = SdBuilder()
    d = b.disclose("given_name", "Erika")
    return w.present(w.issue(claims={}, set_={"_sd": [d, d]}, decoys=0), disclosures=b.disclosures)


def _alg_none_issuer(w: World) -> str:
    return w.present(w.issue(key=None, header={"alg": "none"}))


def _hs256_issuer(w: World) -> str:
    cred = w.issue()
    hdr = b64u(json.dumps({"alg": "HS256", "typ": "dc+sd-jwt", "x5c": w.pki.x5c}).encode())
    _, payload, _ = cred.jwt.split(".")
    sig = b64u(hmac.new(w.pki.der, f"{hdr}.{payload}".encode(), hashlib.sha256).digest())
    return w.present(Credential(f"{hdr}.{payload}.{sig}", cred.disclosures, cred.by_name))


def _self_signed(w: World) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_cert(key, "Self", key, "Self", ca=False, at=AT)
    return w.present(w.issue(pki=Pki(key, cert, key, cert)))


def _self_signed_with_anchor_name_and_key(w: World) -> str:
    # Chains "to the anchor" by name and key, yet is self-signed: only the self-signed rule stops it.
    cert = make_cert(w.pki.ca_key, "PID CA", w.pki.ca_key, "PID CA", ca=False, at=AT)
    return w.present(w.issue(pki=Pki(w.pki.ca_key, cert, w.pki.ca_key, cert)))


def _non_canonical_kb_signature(w: World) -> str:
    # 64 signature bytes leave 2 unused bits in the last base64url character: same bytes, other string.
    p = w.present()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(p[-1])
    return p[:-1] + alphabet[last ^ 1]


def _ca_signs_credential(w: World) -> str:
    return w.present(w.issue(pki=Pki(w.pki.ca_key, w.pki.ca, w.pki.ca_key, w.pki.ca)))


def _transplanted_disclosure(w: World) -> str:
    # Another credential's disclosure: its digest is not in this credential.
    cred, other = w.issue(), w.issue(claims={"given_name": "Mallory"})
    return w.present(cred, disclosures=[cred.by_name["family_name"], other.by_name["given_name"]])


CASES: dict[str, tuple[Callable[[World], str], str]] = {
    "invalid_credential_signature": (lambda w: w.present(w.issue(key=w.other.key)), "bad_issuer_signature"),
    "payload_swapped_under_signature": (_payload_swapped, "bad_issuer_signature"),
    "invalid_kb_jwt_signature": (lambda w: w.present(holder_key=w.other.key), "bad_kb_signature"),
    "invalid_sd_hash": (_sd_hash_without_last_disclosure, "bad_sd_hash"),
    "sd_hash_with_sha384": (_sd_hash_sha384, "bad_sd_hash"),
    "invalid_kb_jwt_nonce": (lambda w: w.present(nonce=NONCE + "x"), "wrong_nonce"),
    "kb_jwt_nonce_missing": (lambda w: w.present(set_={"nonce": None}), "wrong_nonce"),
    "invalid_kb_jwt_aud": (lambda w: w.present(aud="x509_hash:someone-else"), "wrong_aud"),
    "kb_jwt_aud_without_prefix": (lambda w: w.present(aud=AUD.split(":", 1)[1]), "wrong_aud"),
    "kb_jwt_aud_as_array": (lambda w: w.present(set_={"aud": [AUD]}), "wrong_aud"),
    "kb_jwt_iat_in_past": (lambda w: w.present(iat=NOW - YEAR), "kb_iat_out_of_window"),
    "kb_jwt_iat_in_future": (lambda w: w.present(iat=NOW + YEAR), "kb_iat_out_of_window"),
    "kb_jwt_iat_just_too_old": (lambda w: w.present(iat=NOW - 300 - 60 - 1), "kb_iat_out_of_window"),
    "untrusted_issuer": (lambda w: w.present(w.issue(pki=w.other)), "untrusted_issuer"),
    "self_signed_issuer_leaf": (_self_signed, "untrusted_issuer"),
    "self_signed_leaf_with_anchor_name_and_key": (_self_signed_with_anchor_name_and_key, "untrusted_issuer"),
    "ca_certificate_as_leaf": (_ca_signs_credential, "untrusted_issuer"),
    "non_canonical_base64url": (_non_canonical_kb_signature, "malformed"),
    "x5c_missing": (lambda w: w.present(w.issue(header={"x5c": None})), "untrusted_issuer"),
    "expired_pid": (lambda w: w.present(w.issue(set_={"exp": NOW - 3600})), "expired"),
    "exp_missing": (lambda w: w.present(w.issue(drop=("exp",))), "malformed"),
    "not_yet_valid_pid": (lambda w: w.present(w.issue(set_={"nbf": NOW + 3600})), "not_yet_valid"),
    "issued_in_future": (lambda w: w.present(w.issue(set_={"iat": NOW + 3600})), "not_yet_valid"),
    "revoked_pid": (lambda w: w.present(w.issue(status_idx=REVOKED)), "revoked"),
    "suspended_pid": (lambda w: w.present(w.issue(status_idx=SUSPENDED)), "suspended"),
    "application_specific_status": (lambda w: w.present(w.issue(status_idx=APP_SPECIFIC)), "unknown_status"),
    "status_index_out_of_range": (lambda w: w.present(w.issue(status_idx=len(STATUS_VALUES))), "bad_status_list"),
    "status_unreachable": (
        lambda w: w.present(w.issue(set_={"status": {"status_list": {"idx": 0, "uri": "https://down.test/s"}}})),
        "status_unavailable"),
    "unsupported_status_mechanism": (
        lambda w: w.present(w.issue(set_={"status": {"status_attestation": {}}})), "status_unavailable"),
    "unreferenced_disclosure": (_unreferenced, "unreferenced_disclosure"),
    "nested_disclosure_without_parent": (_nested_without_parent, "unreferenced_disclosure"),
    "transplanted_disclosure": (_transplanted_disclosure, "unreferenced_disclosure"),
    "duplicate_disclosure": (_duplicate, "duplicate_disclosure"),
    "digest_twice_in_payload": (_digest_twice_in_payload, "duplicate_disclosure"),
    "selectively_disclosed_vct": (lambda w: w.present(w.issue(sd_plain=("vct",))), "forbidden_disclosure"),
    "selectively_disclosed_cnf": (lambda w: w.present(w.issue(sd_plain=("cnf",))), "forbidden_disclosure"),
    "selectively_disclosed_exp": (lambda w: w.present(w.issue(sd_plain=("exp",))), "forbidden_disclosure"),
    "selectively_disclosed_status": (lambda w: w.present(w.issue(sd_plain=("status",))), "forbidden_disclosure"),
    "disclosed_name_clashes_with_plain_claim": (
        lambda w: w.present(w.issue(set_={"given_name": "Plain"})), "malformed"),
    "sd_alg_not_allowed": (lambda w: w.present(w.issue(set_={"_sd_alg": "md5"})), "alg_not_allowed"),
    "alg_none_issuer": (_alg_none_issuer, "alg_not_allowed"),
    "alg_hs256_issuer": (_hs256_issuer, "alg_not_allowed"),
    "alg_none_kb": (lambda w: w.present(holder_key=None, header={"alg": "none"}), "alg_not_allowed"),
    "typ_vc_sd_jwt": (lambda w: w.present(w.issue(header={"typ": "vc+sd-jwt"})), "wrong_typ"),
    "kb_typ_jwt": (lambda w: w.present(header={"typ": "JWT"}), "wrong_typ"),
    "missing_kb_jwt": (lambda w: "~".join([(c := w.issue()).jwt, *c.disclosures]) + "~", "missing_kb"),
    "wrong_vct": (lambda w: w.present(w.issue(set_={"vct": "urn:example:diploma:1"})), "wrong_vct"),
    "cnf_without_jwk": (lambda w: w.present(w.issue(set_={"cnf": {"kid": "k"}})), "malformed"),
    "crit_header": (lambda w: w.present(w.issue(header={"crit": ["exp"]})), "malformed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_rejected(w: World, case: str) -> None:
    build, reason = CASES[case]
    await rejected(w.verifier(), build(w), reason)


async def test_self_signed_leaf_rejected_even_when_configured_as_anchor(w: World) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_cert(key, "Self", key, "Self", ca=False, at=AT)
    pki = Pki(key, cert, key, cert)
    v = w.verifier(anchors=[w.pki.ca, cert], fetcher=Fetcher({STATUS_URI: status_token(pki, STATUS_VALUES)}))
    await rejected(v, w.present(w.issue(pki=pki)), "untrusted_issuer")


async def test_leaf_outside_validity_at_clock_time_rejected(w: World) -> None:
    v = SdJwtVcVerifier(trust_anchors=[w.pki.ca], clock=FixedClock(AT + timedelta(days=400)), status=w.fetcher)
    cred = w.issue(set_={"iat": NOW + 400 * 86400 - 10, "exp": NOW + 500 * 86400})
    p = w.present(cred, iat=NOW + 400 * 86400)
    await rejected(v, p, "untrusted_issuer")


async def test_status_present_without_fetcher(w: World) -> None:
    await rejected(w.verifier(fetcher=None), w.present(), "status_unavailable")


@pytest.mark.parametrize("name,token", [
    ("bad_signature", lambda w: status_token(w.pki, STATUS_VALUES, key=w.other.key)),
    ("untrusted_signer", lambda w: status_token(w.other, STATUS_VALUES)),
    ("wrong_typ", lambda w: status_token(w.pki, STATUS_VALUES, typ="jwt")),
    ("other_sub", lambda w: status_token(w.pki, STATUS_VALUES, uri="https://pid-provider.test/status/2")),
    ("not_a_jwt", lambda w: "garbage"),
    ("alg_none", lambda w: sign_jws(None, {"alg": "none", "typ": "statuslist+jwt"}, {"sub": STATUS_URI})),
])
async def test_status_list_token_rejected(w: World, name: str, token: Callable[[World], str]) -> None:
    v = w.verifier(fetcher=Fetcher({STATUS_URI: token(w)}))
    await rejected(v, w.present(), "bad_status_list")


async def test_status_list_with_bad_signature(w: World) -> None:
    forged = status_token(w.pki, [0] * 32, key=w.other.key)  # says VALID, signed by someone else
    await rejected(w.verifier(fetcher=Fetcher({STATUS_URI: forged})), w.present(w.issue(status_idx=REVOKED)), "bad_status_list")


async def test_expired_status_list_token(w: World) -> None:
    v = w.verifier(fetcher=Fetcher({STATUS_URI: status_token(w.pki, STATUS_VALUES, exp=NOW - 3600)}))
    await rejected(v, w.present(), "status_unavailable")


async def test_fetcher_crash_fails_closed(w: World) -> None:
    class Broken:
        async def fetch(self, uri: str) -> str:
            raise RuntimeError("bug")

    await rejected(w.verifier(fetcher=Broken()), w.present(), "status_unavailable")


# --- garbage --------------------------------------------------------------------------------------


def _mutations(p: str) -> list[Any]:
    rng = random.Random(20261203)
    parts = p.split("~")
    out: list[Any] = [
        "", "~", "~~", "a~b~c", "..~", p.replace("~", ""), p + "~", p[:-1], p[1:], p[: len(p) // 2], p + "é",
        parts[0], "~".join(reversed(parts)), p.replace("~", "~~", 1), "x" * 70_000, p.replace(".", "", 1),
        "~".join([parts[0] + "=", *parts[1:]]), "~".join([parts[0], parts[1] + "=", *parts[2:]]),
        "~".join([parts[0].replace("-", "+").replace("_", "/"), *parts[1:]]),
        "~".join([*parts[:-1], parts[-1] + ".x"]), "~".join([parts[0], "[]", *parts[1:]]),
        "~".join([parts[0], b64u(b"[1,2,3,4]"), *parts[1:]]), "~".join([parts[0], b64u(b'{"a":1}'), *parts[1:]]),
        "~".join([parts[0], b64u(b"[" * 5000 + b"]" * 5000), *parts[1:]]),
        "~".join([parts[0], b64u(b'["s","n",1e999]'), *parts[1:]]), "~".join([parts[0], b64u(b"\xff\xfe"), *parts[1:]]),
        "~".join(["~".join(parts[:-1])] + ["~"] * 300 + [parts[-1]]),
        None, b"bytes", 42, ["list"],
    ]
    for _ in range(80):
        i = rng.randrange(len(p))
        c = rng.choice("AZaz09-_.~=+/ \x00")
        if p[i] != c:
            out.append(p[:i] + c + p[i + 1:])
    for _ in range(20):
        i = rng.randrange(len(p))
        out.append(p[:i] + p[i + rng.randrange(1, 40):])
    return [m for m in out if m != p]


async def test_garbage_input_always_presentation_rejected(w: World) -> None:
    p = w.present()
    v = w.verifier()
    await v.verify(p, audience=AUD, nonce=NONCE)  # the unmutated input is fine
    for m in _mutations(p):
        with pytest.raises(PresentationRejected):
            await v.verify(m, audience=AUD, nonce=NONCE)


# --- transaction_data (OpenID4VP B.3.3.1) --------------------------------------------------------

OTHER_ENTRY = b64u(json.dumps({"type": "https://cloudsignatureconsortium.org/2025/qes-approval",
                                "credential_ids": ["pid"], "numSignatures": 2}).encode())


def test_transaction_data_correct() -> None:
    check_transaction_data({"transaction_data_hashes": [h256(TD_ENTRY)], "transaction_data_hashes_alg": "sha-256"},
                           [TD_ENTRY], [TD_ENTRY])
    check_transaction_data({"transaction_data_hashes": [h256(TD_ENTRY)]}, [TD_ENTRY, OTHER_ENTRY], [TD_ENTRY])
    check_transaction_data({"transaction_data_hashes": [h256(TD_ENTRY, hashlib.sha384)],
                            "transaction_data_hashes_alg": "sha-384"}, [TD_ENTRY], [TD_ENTRY])


def test_transaction_data_hash_over_decoded_json_rejected() -> None:
    decoded = base64.urlsafe_b64decode(TD_ENTRY + "=" * (-len(TD_ENTRY) % 4))
    reserialised = json.dumps(json.loads(decoded)).encode()
    for wrong in (decoded, reserialised):
        with pytest.raises(PresentationRejected) as ei:
            check_transaction_data({"transaction_data_hashes": [b64u(hashlib.sha256(wrong).digest())]}, [TD_ENTRY], [TD_ENTRY])
        assert ei.value.reason == "bad_transaction_data_hash"


@pytest.mark.parametrize("alg,reason", [
    ("sha-1", "bad_transaction_data_alg"), ("md5", "bad_transaction_data_alg"), ("SHA-256", "bad_transaction_data_alg"),
    (["sha-256", "sha-384"], "bad_transaction_data_alg"), ([], "bad_transaction_data_alg"), (256, "bad_transaction_data_alg"),
    ("sha-384", "bad_transaction_data_hash"),  # names another allowed hash than the one used
])
def test_transaction_data_other_alg_named_rejected(alg: Any, reason: str) -> None:
    with pytest.raises(PresentationRejected) as ei:
        check_transaction_data({"transaction_data_hashes": [h256(TD_ENTRY)], "transaction_data_hashes_alg": alg},
                               [TD_ENTRY], [TD_ENTRY])
    assert ei.value.reason == reason


def test_transaction_data_single_element_array_alg_accepted() -> None:
    check_transaction_data({"transaction_data_hashes": [h256(TD_ENTRY)], "transaction_data_hashes_alg": ["sha-256"]},
                           [TD_ENTRY], [TD_ENTRY])


def test_transaction_data_missing_required_entry_rejected() -> None:
    with pytest.raises(PresentationRejected) as ei:
        check_transaction_data({"transaction_data_hashes": [h256(OTHER_ENTRY)]}, [TD_ENTRY, OTHER_ENTRY], [TD_ENTRY])
    assert ei.value.reason == "missing_transaction_data_hash"


@pytest.mark.parametrize("kb", [{"transaction_data_hashes": []}, {}, {"transaction_data_hashes": None}])
def test_transaction_data_empty_list_rejected(kb: dict[str, Any]) -> None:
    with pytest.raises(PresentationRejected) as ei:
        check_transaction_data(kb, [TD_ENTRY], [TD_ENTRY])
    assert ei.value.reason == "missing_transaction_data_hash"


@pytest.mark.parametrize("kb,reason", [
    ({"transaction_data_hashes": [h256(TD_ENTRY), h256(OTHER_ENTRY)]}, "bad_transaction_data_hash"),  # unsent entry
    ({"transaction_data_hashes": [h256(TD_ENTRY), h256(TD_ENTRY)]}, "bad_transaction_data_hash"),
    ({"transaction_data_hashes": h256(TD_ENTRY)}, "malformed"),
    ({"transaction_data_hashes": [1]}, "malformed"),
    ({"transaction_data_hashes": [h256(TD_ENTRY) + "="]}, "bad_transaction_data_hash"),
])
def test_transaction_data_other_rejections(kb: dict[str, Any], reason: str) -> None:
    with pytest.raises(PresentationRejected) as ei:
        check_transaction_data(kb, [TD_ENTRY], [TD_ENTRY])
    assert ei.value.reason == reason


# --- published vectors (openid4vp-sdjwt.md §14) ---------------------------------------------------

OID4VP_DISCLOSURES = [
    ("WyIyR0xDNDJzS1F2ZUNmR2ZyeU5STjl3IiwgImdpdmVuX25hbWUiLCAiSm9obiJd", "jsu9yVulwQQlhFlM_3JlzMaSFzglhQG0DpfayQwLUK4"),
    ("WyJlbHVWNU9nM2dTTklJOEVZbnN4QV9BIiwgImZhbWlseV9uYW1lIiwgIkRvZSJd", "TGf4oLbgwd5JQaHyKVQZU9UdGE0w5rtDsrZzfUaomLo"),
    ("WyI2SWo3dE0tYTVpVlBHYm9TNXRtdlZBIiwgImJpcnRoZGF0ZSIsICIxOTQwLTAxLTAxIl0", "tiTngp9_jhC389UP8_k67MXqoSfiHq3iK6o9un4we_Y"),
]


@pytest.mark.parametrize("disclosure,digest", OID4VP_DISCLOSURES, ids=["given_name", "family_name", "birthdate"])
def test_vector_oid4vp_disclosure_digest(disclosure: str, digest: str) -> None:
    assert disclosure_digest(disclosure) == digest


D31_QES_AUTHORIZATION = "ewogICJ0eXBlIjogInFlc19hdXRob3JpemF0aW9uIiwKICAiY3JlZGVudGlhbF9pZHMiOiBbXSwKICAic2lnbmF0dXJlUXVhbGlmaWVyIjogImV1X2VpZGFzX3FlcyIsCiAgImNyZWRlbnRpYWxJRCI6ICJvRW92QzJFSEZpRUZyRHBVeDhtUjBvN3llR0hrMmg3NGIzWHl3a05nQkdvPSIsCiAgImRvY3VtZW50RGlnZXN0cyI6IFsKICAgIHsKICAgICAgImxhYmVsIjogIkV4YW1wbGUgQ29udHJhY3QiLAogICAgICAiaGFzaCI6ICJzVE9nd09tKzQ3NGdGajBxMHgxaVNOc3BLcWJjc2U0SWVpcWxEZy9IV3VJPSIsCiAgICAgICJoYXNoQWxnb3JpdGhtT0lEIjogIjIuMTYuODQwLjEuMTAxLjMuNC4yLjEiLAogICAgICAiZG9jdW1lbnRMb2NhdGlvbl91cmkiOiAiaHR0cHM6Ly9wcm90ZWN0ZWQucnAuZXhhbXBsZS9jb250cmFjdC0wMS5wZGY_dG9rZW49SFM5bmFKS1d3cDkwMWhCY0szNDhJVUhpdUg4Mzc0IiwKICAgICAgImRvY3VtZW50TG9jYXRpb25fbWV0aG9kIjogewogICAgICAgICJkb2N1bWVudF9hY2Nlc3NfbW9kZSI6ICJPVFAiLAogICAgICAgICJvbmVUaW1lUGFzc3dvcmQiOiAibXlGaXJzdFBhc3N3b3JkIgogICAgICB9LAogICAgICAiRFRCUy9SIjogIlZZRGw0b1RlSjVUbUlQQ1hLZFRYMU1TV1JMSTlDS1ljeU1SejZ4bGFHZyIsCiAgICAgICJEVEJTL1JIYXNoQWxnb3JpdGhtT0lEIjogIjIuMTYuODQwLjEuMTAxLjMuNC4yLjEiCiAgICB9CiAgXSwKICAicHJvY2Vzc0lEIjogImVPWjZVd1h5ZUZMSzk4RG81MXgzM2ZtdXY0T3FBejVaYzRsc2hLTnRFZ1E9Igp9"  # noqa: E501
D31_QCERT_CREATION_ACCEPTANCE = "ewogICJ0eXBlIjogInFjZXJ0X2NyZWF0aW9uX2FjY2VwdGFuY2UiLAogICJjcmVkZW50aWFsX2lkcyI6IFtdLAogICJRQ190ZXJtc19jb25kaXRpb25zX3VyaSI6ICJodHRwczovL2V4YW1wbGUuY29tL3RvcyIsCiAgIlFDX2hhc2giOiAia1hBZ3dEY2RBZTNvYnhwbzhVb0RrQytEK2I3T0NyRG84SU9HWmpTWDgvTT0iLAogICJRQ19oYXNoQWxnb3JpdGhtT0lEIjogIjIuMTYuODQwLjEuMTAxLjMuNC4yLjEiCn0"  # noqa: E501

D31_VECTORS = [
    (D31_QES_AUTHORIZATION, "g4ImM4EBQmwLeorYbI7F6SwO3uoRaa-DCCIM2LgGmkA", "g4ImM4EBQmwLeorYbI7F6SwO3uoRaa+DCCIM2LgGmkA="),
    (D31_QCERT_CREATION_ACCEPTANCE, "GYU-3R92xQ78ZF2yqUvrMhgS6awwMvPl7B_glh_LbGs", "GYU+3R92xQ78ZF2yqUvrMhgS6awwMvPl7B/glh/LbGs="),
]


@pytest.mark.parametrize("entry,b64url_hash,qes_approval", D31_VECTORS, ids=["qes_authorization", "qcert_creation_acceptance"])
def test_vector_d31_transaction_data_hashes(entry: str, b64url_hash: str, qes_approval: str) -> None:
    assert transaction_data_hash(entry) == b64url_hash
    assert qes_approval_hash(entry) == qes_approval
    check_transaction_data({"transaction_data_hashes": [b64url_hash]}, [entry], [entry])


def test_vector_status_list_1bit() -> None:
    lst = decode_status_list("eNrbuRgAAhcBXQ", 1)
    assert len(lst) == 16
    assert list(lst) == [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]


def test_vector_status_list_2bit() -> None:
    assert b64u(bytes.fromhex("78da3be9f2130003df0207")) == "eNo76fITAAPfAgc"
    lst = decode_status_list("eNo76fITAAPfAgc", 2)
    assert list(lst) == [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]
    for outside in (12, -1):
        with pytest.raises(IndexError):
            lst[outside]


@pytest.mark.parametrize("lst,bits", [
    ("eNrbuRgAAhcBXQ", 3), ("eNrbuRgAAhcBXQ", 16), ("eNrbuRgAAhcBXQ", True), ("eNrbuRgAAhcBXQ=", 1),
    (b64u(bytes.fromhex("78dadbb918000217015d") + b"junk"), 1), (b64u(bytes.fromhex("78dadbb91800")), 1),
    (b64u(b"not zlib"), 1), (b64u(zlib.compress(b"\0" * (17 * 1024 * 1024))), 1),
])
def test_status_list_decoding_rejects(lst: str, bits: Any) -> None:
    with pytest.raises(ValueError):
        decode_status_list(lst, bits)


@pytest.mark.parametrize("raw", [
    b'{"exp": 1e999}', b'{"exp": NaN}', b'{"exp": Infinity}', b'{"a": 1, "a": 2}', b"[" * 40 + b"]" * 40,
    b'\xef\xbb\xbf{}', b'{"a": "\xff"}',
], ids=["overflow_to_inf", "nan", "infinity", "duplicate_member", "deep_nesting", "bom", "not_utf8"])
def test_strict_json_rejects(raw: bytes) -> None:
    with pytest.raises(ValueError):
        strict_json(raw)


@pytest.mark.parametrize("s", ["eB", "eA=", "e+A", "e/A", "eA.", "e A", "eA!", "e"])
def test_b64url_decode_is_strict_and_canonical(s: str) -> None:
    assert b64url_decode("eA") == b"x"
    with pytest.raises(ValueError):
        b64url_decode(s)
