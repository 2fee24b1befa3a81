"""SD-JWT VC presentation verification: the SAM's evidence check (openid4vp-sdjwt.md §8–§10).

A presentation is ``<issuer-jwt>~<d1>~…~<dn>~<kb-jwt>``. Nothing in it is trusted before it
verified: the issuer key comes only from an ``x5c`` chain that validates to a configured trust
anchor (``jwk``/``jku``/``x5u``/``kid`` are never used to pick a key), algorithms come from an
allow-list, and the claims are read only after the signature verified. Key binding is required
by policy, not by presence. Every failure, including malformed input of any kind, raises
:class:`PresentationRejected` with a short ``reason`` for the audit log.

References: RFC 9901 §4–§7 (SD-JWT), draft-ietf-oauth-sd-jwt-vc §3, OpenID4VP 1.0 B.3.3.1 and
B.3.6, HAIP 1.0, draft-ietf-oauth-status-list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko_certvalidator import CertificateValidator, ValidationContext

from .clock import Clock
from .errors import SamError

SD_JWT_TYP = "dc+sd-jwt"
KB_JWT_TYP = "kb+jwt"
STATUS_LIST_TYP = "statuslist+jwt"

MAX_PRESENTATION_CHARS = 64 * 1024
MAX_DISCLOSURES = 256
MAX_JSON_DEPTH = 32  # per JSON document
MAX_CLAIM_DEPTH = 64  # after disclosures are applied recursively
MAX_X5C = 8
MAX_STATUS_TOKEN_CHARS = 1_000_000
MAX_STATUS_LIST_BYTES = 16 * 1024 * 1024  # decompressed; a zlib bomb stops here

# RFC 7518 §3.4: ES* signatures are r‖s, each the curve's field size.
_JWS_ALGS: dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm, int]] = {
    "ES256": (ec.SECP256R1, hashes.SHA256(), 32),
    "ES384": (ec.SECP384R1, hashes.SHA384(), 48),
    "ES512": (ec.SECP521R1, hashes.SHA512(), 66),
}
_JWK_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48), "P-521": (ec.SECP521R1, 66),
}
# IANA "Named Information Hash Algorithm" names allowed for _sd_alg and transaction_data_hashes_alg.
_HASHES: dict[str, Callable[[bytes], Any]] = {
    "sha-256": hashlib.sha256, "sha-384": hashlib.sha384, "sha-512": hashlib.sha512,
}
_HASH_OIDS: dict[str, Callable[[bytes], Any]] = {
    "2.16.840.1.101.3.4.2.1": hashlib.sha256, "2.16.840.1.101.3.4.2.2": hashlib.sha384,
    "2.16.840.1.101.3.4.2.3": hashlib.sha512,
}
# SD-JWT VC §3.2.2: these must be plain claims so that a holder cannot withhold or swap them.
NEVER_DISCLOSED = frozenset({"iss", "nbf", "exp", "cnf", "vct", "vct#integrity", "aka_vcts", "status", "_sd_alg"})
_STATUS_BITS = frozenset({1, 2, 4, 8})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class PresentationRejected(SamError):
    """The wallet's evidence did not verify. ``reason`` is the audit code; ``description`` is public."""

    error = "invalid_request"
    status = 400
    reason = "presentation_rejected"

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description, reason=reason)


class StatusUnavailable(Exception):
    """The status list could not be retrieved (network, timeout, HTTP status)."""


class StatusListFetcher(Protocol):
    async def fetch(self, uri: str) -> str:
        """Return the Status List Token (compact JWT, ``typ statuslist+jwt``) published at ``uri``;
        raise :class:`StatusUnavailable` when it cannot be retrieved."""
        ...


@dataclass(frozen=True)
class VerifiedPresentation:
    claims: dict[str, Any]  # issuer-signed payload, disclosures applied, _sd/_sd_alg/undisclosed "..." removed
    vct: str
    issuer_chain: tuple[bytes, ...]  # DER from x5c, leaf first
    holder_jwk: dict[str, Any]  # cnf.jwk
    kb: dict[str, Any]  # verified KB-JWT payload
    presentation: str  # the exact string verified
    disclosed: tuple[str, ...]  # the disclosure strings, in presented order


# --- pure helpers --------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    """Strict, canonical base64url without padding (RFC 7515 §2): any other spelling fails."""
    if not isinstance(s, str) or not _B64URL.fullmatch(s) or len(s) % 4 == 1:
        raise ValueError("not base64url")
    out = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if b64url(out) != s:  # non-zero trailing bits: a second spelling of the same bytes
        raise ValueError("not canonical base64url")
    return out


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member {k!r}")
        out[k] = v
    return out


def _finite_float(s: str) -> float:
    f = float(s)
    if not math.isfinite(f):  # "1e999" parses to inf: an "exp" that never passes
        raise ValueError("non-finite number")
    return f


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_depth(obj: Any, limit: int) -> None:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            children = o.values()
        elif isinstance(o, list):
            children = o
        else:
            continue
        if d > limit:
            raise ValueError("JSON nested too deeply")
        stack.extend((c, d + 1) for c in children)


def strict_json(raw: bytes) -> Any:
    """UTF-8 JSON (RFC 8259) with duplicate members, NaN/Infinity and deep nesting refused."""
    obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                     parse_float=_finite_float, parse_constant=_reject_constant)
    _check_depth(obj, MAX_JSON_DEPTH)
    return obj


def _digest(data: bytes, alg: str) -> bytes:
    try:
        fn = _HASHES[alg]
    except (KeyError, TypeError):
        raise ValueError(f"hash algorithm {alg!r} not allowed") from None
    return fn(data).digest()


def disclosure_digest(disclosure: str, alg: str = "sha-256") -> str:
    """RFC 9901 §4.2.3: base64url(H(US-ASCII bytes of the base64url disclosure as presented))."""
    return b64url(_digest(disclosure.encode("ascii"), alg))


def sd_hash(presented_without_kb: str, alg: str = "sha-256") -> str:
    """RFC 9901 §4.3.1: hash over ``<issuer-jwt>~<d1>~…~<dn>~``, trailing ``~`` included."""
    return b64url(_digest(presented_without_kb.encode("ascii"), alg))


def transaction_data_hash(entry: str, alg: str = "sha-256") -> str:
    """OpenID4VP B.3.3.1: base64url(H(the exact base64url transaction_data string as sent))."""
    return b64url(_digest(entry.encode("ascii"), alg))


def qes_approval_hash(entry: str, hash_oid: str = "2.16.840.1.101.3.4.2.1") -> str:
    """CSC-DMB §7.2.1.2 ``org.cloudsignatureconsortium.dm.1.qesApproval``: standard base64 of
    H(UTF-8 bytes of the base64url ``qesApprovalRequest`` string as sent) (openid4vp-sdjwt.md §7)."""
    try:
        fn = _HASH_OIDS[hash_oid]
    except KeyError:
        raise ValueError(f"hash algorithm {hash_oid!r} not allowed") from None
    return base64.b64encode(fn(entry.encode("utf-8")).digest()).decode("ascii")


@dataclass(frozen=True)
class StatusList:
    """A decoded Token Status List: ``bits`` per entry, packed LSB-first (status-list §4.1)."""

    bits: int
    data: bytes

    def __len__(self) -> int:
        return len(self.data) * 8 // self.bits

    def __getitem__(self, idx: int) -> int:
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0 or idx >= len(self):
            raise IndexError("status index out of range")
        per_byte = 8 // self.bits
        byte = self.data[idx // per_byte]
        return (byte >> ((idx % per_byte) * self.bits)) & ((1 << self.bits) - 1)


def decode_status_list(lst: str, bits: int) -> StatusList:
    """status-list §4.1: ``lst`` = base64url(ZLIB(byte array)); ``bits`` ∈ {1, 2, 4, 8}."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in _STATUS_BITS:
        raise ValueError("status list bits must be 1, 2, 4 or 8")
    compressed = b64url_decode(lst)
    z = zlib.decompressobj()
    try:
        data = z.decompress(compressed, MAX_STATUS_LIST_BYTES)
    except zlib.error as e:
        raise ValueError("status list is not ZLIB") from e
    if z.unconsumed_tail:
        raise ValueError("status list too large")
    if not z.eof or z.unused_data:
        raise ValueError("status list ZLIB stream truncated or followed by junk")
    return StatusList(bits, data)


def check_transaction_data(kb: dict[str, Any], sent: Sequence[str], required: Sequence[str]) -> None:
    """OpenID4VP 1.0 B.3.3.1 (openid4vp-sdjwt.md §5): the KB-JWT binds the transaction data.

    ``transaction_data_hashes`` must be a non-empty list of base64url digests, each over the exact
    base64url string as sent (never decoded or re-serialised JSON), with the hash named by
    ``transaction_data_hashes_alg`` (default ``sha-256``; a string, or for wwWallet a
    single-element array; only sha-256/384/512). Every digest must belong to one of ``sent``, and
    every string in ``required`` must be covered. Comparisons run in constant time.
    """
    if not isinstance(kb, dict):
        raise PresentationRejected("malformed", "KB-JWT payload is not an object")
    alg: Any = kb.get("transaction_data_hashes_alg", "sha-256")
    if isinstance(alg, list) and len(alg) == 1:
        alg = alg[0]
    if not isinstance(alg, str) or alg not in _HASHES:
        raise PresentationRejected("bad_transaction_data_alg", "transaction_data_hashes_alg is not an allowed hash")
    actual = kb.get("transaction_data_hashes")
    if actual is None or actual == []:
        raise PresentationRejected("missing_transaction_data_hash", "KB-JWT carries no transaction_data_hashes")
    if not isinstance(actual, list) or not all(isinstance(h, str) for h in actual):
        raise PresentationRejected("malformed", "transaction_data_hashes is not a list of strings")
    if len(set(actual)) != len(actual):
        raise PresentationRejected("bad_transaction_data_hash", "transaction_data_hashes repeats a digest")
    try:
        expected = [transaction_data_hash(s, alg).encode("ascii") for s in sent]
        needed = [transaction_data_hash(s, alg).encode("ascii") for s in required]
        got = [h.encode("ascii") for h in actual]
    except (UnicodeError, AttributeError, TypeError, ValueError):
        raise PresentationRejected("malformed", "transaction_data is not base64url text") from None
    for g in got:
        hit = False
        for e in expected:  # no early exit: timing does not reveal which entry matched
            hit |= hmac.compare_digest(g, e)
        if not hit:
            raise PresentationRejected("bad_transaction_data_hash", "a transaction_data_hashes entry matches no transaction_data sent")
    for n in needed:
        hit = False
        for g in got:
            hit |= hmac.compare_digest(g, n)
        if not hit:
            raise PresentationRejected("missing_transaction_data_hash", "a required transaction_data entry is not bound by the KB-JWT")


# --- JWS -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Jws:
    header: dict[str, Any]
    payload_b64: str
    signing_input: bytes
    signature: bytes


def _split_jws(token: str) -> _Jws:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header = strict_json(b64url_decode(parts[0]))
    if not isinstance(header, dict):
        raise ValueError("JOSE header is not an object")
    return _Jws(header, parts[1], f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2]))


def _payload(jws: _Jws) -> dict[str, Any]:
    obj = strict_json(b64url_decode(jws.payload_b64))
    if not isinstance(obj, dict):
        raise ValueError("JWT claims are not an object")
    return obj


def _es_verify(key: Any, alg: str, jws: _Jws) -> bool:
    """RFC 7518 §3.4 with the curve pinned to the algorithm (no ES256 over a P-384 key)."""
    curve, hash_, size = _JWS_ALGS[alg]
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
        return False
    if len(jws.signature) != 2 * size:
        return False
    der = encode_dss_signature(int.from_bytes(jws.signature[:size], "big"), int.from_bytes(jws.signature[size:], "big"))
    try:
        key.verify(der, jws.signing_input, ec.ECDSA(hash_))
    except InvalidSignature:
        return False
    return True


def _jwk_public_key(jwk: Any) -> ec.EllipticCurvePublicKey:
    """RFC 7518 §6.2 public EC key; ``kty``/``crv``/``x``/``y`` suffice (HAIP minimal ``cnf.jwk``)."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or "d" in jwk:
        raise ValueError("cnf.jwk is not a public EC JWK")
    curve, size = _JWK_CURVES[jwk["crv"]]
    x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    if len(x) != size or len(y) != size:
        raise ValueError("cnf.jwk coordinates have the wrong length")
    return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve()).public_key()


def _x5c(header: dict[str, Any]) -> list[bytes]:
    """RFC 7515 §4.1.6: standard (not URL-safe) base64 DER, leaf first."""
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain or len(chain) > MAX_X5C:
        raise ValueError("x5c missing or too long")
    out = []
    for c in chain:
        if not isinstance(c, str):
            raise ValueError("x5c entry is not a string")
        out.append(base64.b64decode(c, validate=True))
    return out


def _numeric_date(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} is not a NumericDate")
    return float(v)


# --- the verifier --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Disclosure:
    name: str | None  # None for an array element
    value: Any


# Chains that validated (keyed by anchors + chain bytes) and the window in which every certificate
# of the validated path is valid. Path validation is the costliest step; an issuer's chain is the
# same for all its PIDs. Revocation of issuer certificates is not checked (no fetching) either way.
_VALID_CHAINS: dict[bytes, tuple[Any, Any]] = {}


class SdJwtVcVerifier:
    """Verifies one holder-bound SD-JWT VC presentation (openid4vp-sdjwt.md §8–§10)."""

    def __init__(
        self,
        *,
        trust_anchors: Sequence[x509.Certificate],
        clock: Clock,
        status: StatusListFetcher | None,
        accepted_vcts: Sequence[str] = ("urn:eudi:pid:1", "urn:eu.europa.ec.eudi:pid:1"),
        skew: int = 60,
        kb_max_age: int = 300,
        algs: Sequence[str] = ("ES256", "ES384"),
    ) -> None:
        if not trust_anchors:
            raise ValueError("at least one trust anchor is required")
        unknown = set(algs) - set(_JWS_ALGS)
        if unknown or not algs:
            raise ValueError(f"unsupported JWS algorithms {sorted(unknown)}; allowed: {sorted(_JWS_ALGS)}")
        self._anchor_der = tuple(a.public_bytes(Encoding.DER) for a in trust_anchors)
        self._anchors = [asn1_x509.Certificate.load(d) for d in self._anchor_der]
        self._clock = clock
        self._status = status
        self._vcts = frozenset(accepted_vcts)
        self._skew = skew
        self._kb_max_age = kb_max_age
        self._algs = frozenset(algs)

    async def verify(self, presentation: str, *, audience: str, nonce: str, check_status: bool = True) -> VerifiedPresentation:
        """RFC 9901 §7.1–§7.3 + SD-JWT VC §3.4–3.5 + OpenID4VP B.3.6; raises :class:`PresentationRejected`.

        ``check_status=False`` is for the offline re-check of stored evidence (the status was
        checked when the evidence was received; a later revocation does not undo a past approval)."""
        if not isinstance(audience, str) or not audience or not isinstance(nonce, str) or not nonce:
            raise ValueError("audience and nonce must be non-empty strings")
        try:
            return await self._verify(presentation, audience, nonce, check_status)
        except PresentationRejected:
            raise
        except Exception as e:  # fail closed: whatever slipped through is malformed input
            raise PresentationRejected("malformed", "The presentation is malformed") from e

    async def _verify(self, presentation: Any, audience: str, nonce: str, check_status: bool = True) -> VerifiedPresentation:
        # §8.1: split; key binding is required by policy.
        if not isinstance(presentation, str) or not presentation:
            raise PresentationRejected("malformed", "The presentation is not a string")
        if len(presentation) > MAX_PRESENTATION_CHARS or not presentation.isascii():
            raise PresentationRejected("malformed", "The presentation is too large or not ASCII")
        parts = presentation.split("~")
        if len(parts) < 2:
            raise PresentationRejected("malformed", "The presentation is not an SD-JWT")
        issuer_jwt, disclosures, kb_jwt = parts[0], parts[1:-1], parts[-1]
        if not kb_jwt:
            raise PresentationRejected("missing_kb", "The presentation carries no Key Binding JWT")
        if len(disclosures) > MAX_DISCLOSURES:
            raise PresentationRejected("malformed", "Too many disclosures")
        if any(not d for d in disclosures):
            raise PresentationRejected("malformed", "Empty disclosure")

        # §8.2: issuer JWT.
        jws = self._parse(issuer_jwt, "credential")
        self._check_header(jws, SD_JWT_TYP, "credential")
        chain, leaf_key = self._chain(jws, "untrusted_issuer")
        if not _es_verify(leaf_key, jws.header["alg"], jws):
            raise PresentationRejected("bad_issuer_signature", "The credential signature does not verify")
        await self._validate_chain(chain, "untrusted_issuer", "The credential issuer is not trusted")
        payload = self._claims(jws, "credential")

        # §8.3: _sd_alg.
        sd_alg = payload.get("_sd_alg", "sha-256")
        if not isinstance(sd_alg, str) or sd_alg not in _HASHES:
            raise PresentationRejected("alg_not_allowed", "The credential's _sd_alg is not allowed")

        # §8.4: disclosures.
        parsed = self._parse_disclosures(disclosures, sd_alg)
        used: set[str] = set()
        claims = self._unpack(payload, parsed, set(), used, 0, top=True)
        if used != set(parsed):
            raise PresentationRejected("unreferenced_disclosure", "A disclosure is not referenced by the credential")

        # §8.5: validity, type, holder key.
        now = self._clock.now().timestamp()
        self._check_validity(claims, now)
        vct = claims.get("vct")
        if not isinstance(vct, str) or vct not in self._vcts:
            raise PresentationRejected("wrong_vct", "The credential type is not accepted")
        cnf = claims.get("cnf")
        if not isinstance(cnf, dict) or "jwk" not in cnf:
            raise PresentationRejected("malformed", "The credential has no cnf.jwk holder key")
        holder_jwk = cnf["jwk"]
        try:
            holder_key = _jwk_public_key(holder_jwk)
        except (ValueError, KeyError, TypeError):
            raise PresentationRejected("malformed", "The credential's cnf.jwk is not a usable public key") from None

        # §9: KB-JWT.
        kb = self._verify_kb(kb_jwt, holder_jwk, holder_key, now, audience, nonce,
                             presentation[: len(presentation) - len(kb_jwt)], sd_alg)

        # §10: status, only after the credential itself verified.
        if check_status:
            await self._check_status(claims, now)

        return VerifiedPresentation(
            claims=claims, vct=vct, issuer_chain=tuple(chain), holder_jwk=holder_jwk, kb=kb,
            presentation=presentation, disclosed=tuple(disclosures),
        )

    # -- JWS pieces --

    @staticmethod
    def _parse(token: str, what: str) -> _Jws:
        try:
            return _split_jws(token)
        except (ValueError, TypeError, RecursionError, UnicodeError):
            raise PresentationRejected("malformed", f"The {what} JWT is malformed") from None

    def _check_header(self, jws: _Jws, typ: str, what: str) -> None:
        h = jws.header
        if h.get("typ") != typ:
            raise PresentationRejected("wrong_typ", f"The {what} JWT must have typ {typ}")
        alg = h.get("alg")
        if not isinstance(alg, str) or alg not in self._algs:
            raise PresentationRejected("alg_not_allowed", f"The {what} JWT algorithm is not allowed")
        if "crit" in h:  # RFC 7515 §4.1.11: we understand no extension
            raise PresentationRejected("malformed", f"The {what} JWT has critical header parameters")

    @staticmethod
    def _claims(jws: _Jws, what: str) -> dict[str, Any]:
        try:
            return _payload(jws)
        except (ValueError, TypeError, RecursionError, UnicodeError):
            raise PresentationRejected("malformed", f"The {what} JWT claims are malformed") from None

    def _chain(self, jws: _Jws, reason: str) -> tuple[list[bytes], Any]:
        """The signing key is the ``x5c`` leaf's, nothing else (HAIP; RFC 8725 §3.10)."""
        try:
            ders = _x5c(jws.header)
            leaf = x509.load_der_x509_certificate(ders[0])
            return ders, leaf.public_key()
        except (ValueError, TypeError, binascii.Error):
            raise PresentationRejected(reason, "The x5c certificate chain is missing or malformed") from None

    async def _validate_chain(self, ders: list[bytes], reason: str, description: str) -> None:
        """Path validation to a trust anchor at ``clock.now()`` (the anchor need not be in x5c).
        The leaf must be an end-entity certificate for digital signatures, not self-signed and not
        itself an anchor (HAIP: the anchor is never in x5c)."""
        moment = self._clock.now()
        key = hashlib.sha256(b"".join(hashlib.sha256(d).digest() for d in (*self._anchor_der, b"|", *ders))).digest()
        window = _VALID_CHAINS.get(key)
        if window is not None and window[0] <= moment <= window[1]:
            return  # this exact chain already validated to these anchors, and the moment is inside every validity period
        try:
            certs = [asn1_x509.Certificate.load(d, strict=True) for d in ders]
            leaf = certs[0]
            if leaf.self_signed != "no" or ders[0] in self._anchor_der or leaf.ca:
                raise PresentationRejected(reason, description)
            ctx = ValidationContext(trust_roots=self._anchors, allow_fetching=False, revocation_mode="soft-fail",
                                    moment=moment)
            validator = CertificateValidator(leaf, intermediate_certs=certs[1:], validation_context=ctx)
            path = await validator.async_validate_usage({"digital_signature"})
            validities = [c["tbs_certificate"]["validity"] for c in path]
            window = (max(v["not_before"].native for v in validities), min(v["not_after"].native for v in validities))
            if len(_VALID_CHAINS) >= 256:
                _VALID_CHAINS.clear()
            _VALID_CHAINS[key] = window
        except PresentationRejected:
            raise
        except Exception:  # path building, validity, usage, parse errors: all mean "not trusted"
            raise PresentationRejected(reason, description) from None

    # -- disclosures --

    @staticmethod
    def _parse_disclosures(disclosures: list[str], sd_alg: str) -> dict[str, _Disclosure]:
        out: dict[str, _Disclosure] = {}
        for d in disclosures:
            digest = disclosure_digest(d, sd_alg)
            if digest in out:
                raise PresentationRejected("duplicate_disclosure", "A disclosure is presented twice")
            try:
                arr = strict_json(b64url_decode(d))
            except (ValueError, RecursionError, UnicodeError):
                raise PresentationRejected("malformed", "A disclosure is not base64url JSON") from None
            if not isinstance(arr, list) or len(arr) not in (2, 3) or not isinstance(arr[0], str):
                raise PresentationRejected("malformed", "A disclosure is not [salt, name, value] or [salt, value]")
            if len(arr) == 3:
                if not isinstance(arr[1], str) or arr[1] in ("_sd", "..."):
                    raise PresentationRejected("malformed", "A disclosure has an invalid claim name")
                out[digest] = _Disclosure(arr[1], arr[2])
            else:
                out[digest] = _Disclosure(None, arr[1])
        return out

    def _unpack(self, node: Any, parsed: dict[str, _Disclosure], seen: set[str], used: set[str],
                depth: int, *, top: bool = False) -> Any:
        """RFC 9901 §7.1 steps 3–5, recursively; every digest may occur once in the whole token."""
        if depth > MAX_CLAIM_DEPTH:
            raise PresentationRejected("malformed", "The credential is nested too deeply")

        def take(digest: Any) -> _Disclosure | None:
            if not isinstance(digest, str):
                raise PresentationRejected("malformed", "A digest is not a string")
            if digest in seen:
                raise PresentationRejected("duplicate_disclosure", "A digest occurs more than once")
            seen.add(digest)
            d = parsed.get(digest)
            if d is not None:
                used.add(digest)
            return d  # None: a decoy or a claim the holder did not disclose

        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                if k == "_sd" or (k == "_sd_alg" and top):
                    continue
                if k in ("_sd_alg", "..."):
                    raise PresentationRejected("malformed", f"{k} is not allowed here")
                out[k] = self._unpack(v, parsed, seen, used, depth + 1)
            sd = node.get("_sd", [])
            if not isinstance(sd, list):
                raise PresentationRejected("malformed", "_sd is not an array")
            for digest in sd:
                d = take(digest)
                if d is None:
                    continue
                if d.name is None:
                    raise PresentationRejected("malformed", "An array-element disclosure is referenced from _sd")
                if top and d.name in NEVER_DISCLOSED:
                    raise PresentationRejected("forbidden_disclosure", f"{d.name} must not be selectively disclosed")
                if d.name in out:
                    raise PresentationRejected("malformed", "A disclosed claim name already exists")
                out[d.name] = self._unpack(d.value, parsed, seen, used, depth + 1)
            return out
        if isinstance(node, list):
            items: list[Any] = []
            for el in node:
                if isinstance(el, dict) and "..." in el:
                    if len(el) != 1:
                        raise PresentationRejected("malformed", "An array-element digest object has other members")
                    d = take(el["..."])
                    if d is None:
                        continue
                    if d.name is not None:
                        raise PresentationRejected("malformed", "An object-property disclosure is referenced from an array")
                    items.append(self._unpack(d.value, parsed, seen, used, depth + 1))
                else:
                    items.append(self._unpack(el, parsed, seen, used, depth + 1))
            return items
        return node

    # -- validity --

    def _check_validity(self, claims: dict[str, Any], now: float) -> None:
        try:
            exp = _numeric_date(claims.get("exp"), "exp")  # PID rulebook §4.1: nbf/exp carry validity
            nbf = _numeric_date(claims["nbf"], "nbf") if "nbf" in claims else None
            iat = _numeric_date(claims["iat"], "iat") if "iat" in claims else None
        except ValueError:
            raise PresentationRejected("malformed", "The credential's exp/nbf/iat are missing or not NumericDates") from None
        if now >= exp + self._skew:
            raise PresentationRejected("expired", "The credential has expired")
        if (nbf is not None and nbf > now + self._skew) or (iat is not None and iat > now + self._skew):
            raise PresentationRejected("not_yet_valid", "The credential is not yet valid")

    # -- key binding --

    def _verify_kb(self, token: str, holder_jwk: dict[str, Any], holder_key: ec.EllipticCurvePublicKey, now: float,
                   audience: str, nonce: str, presented: str, sd_alg: str) -> dict[str, Any]:
        """RFC 9901 §7.3 and OpenID4VP B.3.6 (openid4vp-sdjwt.md §9)."""
        jws = self._parse(token, "KB")
        self._check_header(jws, KB_JWT_TYP, "KB")
        alg = jws.header["alg"]
        if "alg" in holder_jwk and holder_jwk["alg"] != alg:
            raise PresentationRejected("bad_kb_signature", "The KB-JWT algorithm does not match the holder key")
        if not _es_verify(holder_key, alg, jws):
            raise PresentationRejected("bad_kb_signature", "The KB-JWT signature does not verify with cnf.jwk")
        kb = self._claims(jws, "KB")
        try:
            iat = _numeric_date(kb.get("iat"), "iat")
            exp = _numeric_date(kb["exp"], "exp") if "exp" in kb else None
        except ValueError:
            raise PresentationRejected("malformed", "The KB-JWT iat/exp are missing or not NumericDates") from None
        if not now - self._kb_max_age - self._skew <= iat <= now + self._skew:
            raise PresentationRejected("kb_iat_out_of_window", "The KB-JWT iat is outside the acceptance window")
        if exp is not None and now >= exp + self._skew:
            raise PresentationRejected("kb_expired", "The KB-JWT has expired")
        aud = kb.get("aud")
        if not isinstance(aud, str) or not hmac.compare_digest(aud.encode(), audience.encode()):
            raise PresentationRejected("wrong_aud", "The KB-JWT audience is not this verifier")
        got_nonce = kb.get("nonce")
        if not isinstance(got_nonce, str) or not hmac.compare_digest(got_nonce.encode(), nonce.encode()):
            raise PresentationRejected("wrong_nonce", "The KB-JWT nonce does not match the request")
        got_hash = kb.get("sd_hash")
        want = sd_hash(presented, sd_alg)
        if not isinstance(got_hash, str) or not hmac.compare_digest(got_hash.encode(), want.encode()):
            raise PresentationRejected("bad_sd_hash", "The KB-JWT sd_hash does not match the presentation")
        return kb

    # -- status --

    async def _check_status(self, claims: dict[str, Any], now: float) -> None:
        """draft-ietf-oauth-status-list §8: fetch, verify, index; anything but VALID refuses."""
        if "status" not in claims:
            return
        status = claims["status"]
        if not isinstance(status, dict):
            raise PresentationRejected("malformed", "The credential's status is not an object")
        ref = status.get("status_list")
        if ref is None:
            raise PresentationRejected("status_unavailable", "The credential uses an unsupported status mechanism")
        if not isinstance(ref, dict):
            raise PresentationRejected("malformed", "status.status_list is not an object")
        idx, uri = ref.get("idx"), ref.get("uri")
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0 or not isinstance(uri, str) or not uri:
            raise PresentationRejected("malformed", "status.status_list needs a non-negative idx and a uri")
        if self._status is None:
            raise PresentationRejected("status_unavailable", "Credential status cannot be checked")
        try:
            token = await self._status.fetch(uri)
        except Exception:  # StatusUnavailable, or any adapter failure: status unknown, so refuse
            raise PresentationRejected("status_unavailable", "The status list could not be retrieved") from None
        lst = await self._verify_status_token(token, uri, now)
        try:
            value = lst[idx]
        except IndexError:
            raise PresentationRejected("bad_status_list", "The status index is outside the status list") from None
        if value == 1:
            raise PresentationRejected("revoked", "The credential has been revoked")
        if value == 2:
            raise PresentationRejected("suspended", "The credential is suspended")
        if value != 0:
            raise PresentationRejected("unknown_status", "The credential status is not VALID")

    async def _verify_status_token(self, token: Any, uri: str, now: float) -> StatusList:
        if not isinstance(token, str) or len(token) > MAX_STATUS_TOKEN_CHARS or not token.isascii():
            raise PresentationRejected("bad_status_list", "The status list token is malformed")
        try:
            jws = _split_jws(token)
        except (ValueError, TypeError, RecursionError, UnicodeError):
            raise PresentationRejected("bad_status_list", "The status list token is malformed") from None
        h = jws.header
        alg = h.get("alg")
        if h.get("typ") != STATUS_LIST_TYP or not isinstance(alg, str) or alg not in self._algs or "crit" in h:
            raise PresentationRejected("bad_status_list", "The status list token header is not acceptable")
        chain, key = self._chain(jws, "bad_status_list")
        if not _es_verify(key, alg, jws):
            raise PresentationRejected("bad_status_list", "The status list token signature does not verify")
        await self._validate_chain(chain, "bad_status_list", "The status list signer is not trusted")
        try:
            p = _payload(jws)
            iat = _numeric_date(p.get("iat"), "iat")
            exp = _numeric_date(p["exp"], "exp") if "exp" in p else None
            sl = p["status_list"]
            lst = decode_status_list(sl["lst"], sl["bits"])
        except (ValueError, KeyError, TypeError, RecursionError, UnicodeError):
            raise PresentationRejected("bad_status_list", "The status list token claims are malformed") from None
        if p.get("sub") != uri:
            raise PresentationRejected("bad_status_list", "The status list token is for another URI")
        if iat > now + self._skew:
            raise PresentationRejected("bad_status_list", "The status list token is issued in the future")
        if exp is not None and now >= exp + self._skew:
            raise PresentationRejected("status_unavailable", "The status list token has expired")
        return lst


__all__ = [
    "KB_JWT_TYP", "NEVER_DISCLOSED", "PresentationRejected", "SD_JWT_TYP", "STATUS_LIST_TYP", "SdJwtVcVerifier",
    "StatusList", "StatusListFetcher", "StatusUnavailable", "VerifiedPresentation", "b64url", "b64url_decode",
    "check_transaction_data", "decode_status_list", "disclosure_digest", "qes_approval_hash", "sd_hash",
    "strict_json", "transaction_data_hash",
]
