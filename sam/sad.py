"""The Signature Activation Data: a JWS minted and verified by the SAM (DESIGN.md §3).

Minting signs with the SAM key inside the HSM. Verification trusts nothing the token says about
how to verify it: the algorithm comes from an allow-list, the key is pinned at start-up, any
header member beyond ``alg``/``typ``/``kid`` (``jwk``, ``jku``, ``x5u``, ``x5c``, ``crit`` …) is
refused, and duplicate JSON members are refused. Only then are the claims read.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hsm import KeyStore, KeyType
from hsm.jws import b64url, sign_compact

from .clock import Clock
from .errors import SadExpired, SadInvalid
from .sdjwt import b64url_decode
from .sdjwt import strict_json as _strict_json

SAD_TYP = "rqes-sad+jwt"
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_ALG = {KeyType.EC_P256: ("ES256", hashes.SHA256(), 32), KeyType.EC_P384: ("ES384", hashes.SHA384(), 48)}
MAX_SAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class SadClaims:
    iss: str
    aud: str
    sub: str
    jti: str
    iat: int
    nbf: int
    exp: int
    credential_id: str
    key_version: int
    hashes: tuple[str, ...]  # base64url, no padding, in authorized order
    hash_algorithm: str
    num_signatures: int
    azp: str  # the client that obtained the authorization
    authn: dict[str, Any]
    evidence: str

    def to_payload(self) -> dict[str, Any]:
        return {
            "iss": self.iss, "aud": self.aud, "sub": self.sub, "jti": self.jti,
            "iat": self.iat, "nbf": self.nbf, "exp": self.exp,
            "credentialID": self.credential_id, "kver": self.key_version,
            "hashes": list(self.hashes), "hashAlgorithmOID": self.hash_algorithm,
            "numSignatures": self.num_signatures, "azp": self.azp, "authn": self.authn, "evd": self.evidence,
        }

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.exp, timezone.utc)

    def digests(self) -> list[bytes]:
        return [b64url_decode(h) for h in self.hashes]


def strict_json(raw: bytes) -> dict[str, Any]:
    """Strict JSON (duplicate members, NaN and deep nesting refused) that must be an object."""
    obj = _strict_json(raw)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def new_jti() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


class SadSigner:
    """Mints SADs with the SAM key in the HSM."""

    def __init__(self, store: KeyStore, label: str, key_type: KeyType, kid: str) -> None:
        self._store, self._label, self._key_type, self._kid = store, label, key_type, kid

    async def mint(self, claims: SadClaims) -> str:
        header = {"typ": SAD_TYP, "kid": self._kid}
        return await sign_compact(self._store, self._label, self._key_type, header, claims.to_payload())


class JwsVerifier:
    """Strict compact-JWS verification against one pinned EC key (STYLE.md habit 4).

    The algorithm comes from the key, never from the token; the header may hold only ``alg``,
    ``typ`` and ``kid``; duplicate JSON members fail. Returns the payload only after the
    signature verified. Raises ``ValueError(reason)``.
    """

    def __init__(self, public_key_der: bytes, key_type: KeyType, kid: str, typ: str) -> None:
        self._public = serialization.load_der_public_key(public_key_der)
        self._alg, self._hash, self._half = _ALG[key_type]
        self._kid = kid
        self._typ = typ

    def verify(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token or len(token) > MAX_SAD_BYTES:
            raise ValueError("malformed")
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("malformed")
        try:
            header = strict_json(b64url_decode(parts[0]))
            sig = b64url_decode(parts[2])
        except (ValueError, RecursionError):
            raise ValueError("malformed") from None
        if header.get("alg") != self._alg:
            raise ValueError("alg_not_allowed")
        if set(header) - _ALLOWED_HEADER:
            raise ValueError("header_not_allowed")
        if header.get("typ") != self._typ:
            raise ValueError("wrong_typ")
        if header.get("kid") != self._kid:
            raise ValueError("unknown_key")
        if len(sig) != 2 * self._half:
            raise ValueError("bad_signature")
        der = encode_dss_signature(int.from_bytes(sig[: self._half], "big"), int.from_bytes(sig[self._half :], "big"))
        try:
            self._public.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(self._hash))  # type: ignore[union-attr]
        except (InvalidSignature, UnicodeEncodeError):
            raise ValueError("bad_signature") from None
        try:
            return strict_json(b64url_decode(parts[1]))
        except (ValueError, RecursionError):
            raise ValueError("bad_claims") from None


class SadVerifier:
    def __init__(
        self,
        public_key_der: bytes,
        key_type: KeyType,
        kid: str,
        *,
        issuer: str,
        audience: str,
        clock: Clock,
        max_lifetime: int,
        skew: int,
    ) -> None:
        self._jws = JwsVerifier(public_key_der, key_type, kid, SAD_TYP)
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._max_lifetime = max_lifetime
        self._skew = skew

    def verify(self, token: str) -> SadClaims:
        """Verify signature, header, then claims; raise :class:`SadInvalid`/:class:`SadExpired`."""
        try:
            payload = self._jws.verify(token)
        except ValueError as e:
            raise SadInvalid(str(e)) from None
        try:
            claims = _claims(payload)
        except (ValueError, KeyError, TypeError):
            raise SadInvalid("bad_claims") from None
        self._check_claims(claims)
        return claims

    def _check_claims(self, c: SadClaims) -> None:
        if c.iss != self._issuer:
            raise SadInvalid("foreign_issuer")
        if c.aud != self._audience:
            raise SadInvalid("foreign_audience")
        now = int(self._clock.now().timestamp())
        if c.exp - c.iat > self._max_lifetime or c.exp <= c.iat or c.nbf < c.iat:
            raise SadInvalid("lifetime_over_policy")
        if c.iat > now + self._skew or c.nbf > now + self._skew:
            raise SadInvalid("not_yet_valid")
        if now >= c.exp:  # no grace after expiry: the 300 s policy is the whole lifetime
            raise SadExpired()


def _claims(p: dict[str, Any]) -> SadClaims:
    def s(name: str) -> str:
        v = p[name]
        if not isinstance(v, str) or not v:
            raise TypeError(name)
        return v

    def i(name: str) -> int:
        v = p[name]
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(name)
        return v

    hashes_ = p["hashes"]
    if not isinstance(hashes_, list) or not hashes_ or not all(isinstance(h, str) for h in hashes_):
        raise TypeError("hashes")
    authn = p["authn"]
    if not isinstance(authn, dict):
        raise TypeError("authn")
    return SadClaims(
        iss=s("iss"), aud=s("aud"), sub=s("sub"), jti=s("jti"), iat=i("iat"), nbf=i("nbf"), exp=i("exp"),
        credential_id=s("credentialID"), key_version=i("kver"), hashes=tuple(hashes_),
        hash_algorithm=s("hashAlgorithmOID"), num_signatures=i("numSignatures"), azp=s("azp"),
        authn=authn, evidence=s("evd"),
    )


__all__ = ["JwsVerifier", "SAD_TYP", "SadClaims", "SadSigner", "SadVerifier", "b64url", "b64url_decode", "new_jti", "strict_json"]
