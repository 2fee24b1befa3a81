"""The few JOSE pieces the wallet needs, on ``cryptography`` directly.

Compact JWS with ES256 only (RFC 7515, RFC 7518 §3.4: raw ``r || s``), so that tests can corrupt
any byte they like; JWE (ECDH-ES) goes through jwcrypto in ``holder.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

ES256 = "ES256"


class JoseError(ValueError):
    """Malformed base64url, JSON or JWS."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strict base64url (RFC 7515 §2): URL-safe alphabet, padding tolerated but not required."""
    if not isinstance(text, str):
        raise JoseError("expected a base64url string")
    stripped = text.rstrip("=")
    if any(c not in _B64U_ALPHABET for c in stripped) or len(stripped) % 4 == 1:
        raise JoseError("not base64url")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


_B64U_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64(data: bytes) -> str:
    """Standard base64 with padding (x5c, CSC-DMB ``qesApproval``)."""
    return base64.b64encode(data).decode("ascii")


def sha256_b64u(text: str) -> str:
    """base64url(SHA-256(ASCII bytes)): SD-JWT digests, sd_hash, transaction_data_hashes."""
    return b64u(hashlib.sha256(text.encode("ascii")).digest())


def compact_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def public_jwk(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    if not isinstance(pub.curve, ec.SECP256R1):
        raise JoseError("only P-256 keys are supported")
    nums = pub.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}


def private_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    jwk = public_jwk(key)
    jwk["d"] = b64u(key.private_numbers().private_value.to_bytes(32, "big"))
    return jwk


def key_from_jwk(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    try:
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise JoseError("JWK is not an EC P-256 key")
        x = int.from_bytes(b64u_decode(jwk["x"]), "big")
        y = int.from_bytes(b64u_decode(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (KeyError, TypeError, ValueError) as e:
        raise JoseError(f"bad JWK: {e}") from e


def private_key_from_jwk(jwk: dict[str, Any]) -> ec.EllipticCurvePrivateKey:
    pub = key_from_jwk(jwk)
    try:
        d = int.from_bytes(b64u_decode(jwk["d"]), "big")
        return ec.EllipticCurvePrivateNumbers(d, pub.public_numbers()).private_key()
    except (KeyError, TypeError, ValueError) as e:
        raise JoseError(f"bad private JWK: {e}") from e


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of an EC JWK."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    return b64u(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())


def sign_es256(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], payload: dict[str, Any]) -> str:
    signing_input = f"{b64u(compact_json(header))}.{b64u(compact_json(payload))}"
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def corrupt_signature(jws: str) -> str:
    """Flip one bit of the signature: still well-formed, no longer valid."""
    head, _, sig = jws.rpartition(".")
    raw = bytearray(b64u_decode(sig))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{b64u(bytes(raw))}"


def decode_jws(jws: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split a compact JWS without verifying it: ``(header, payload, signing_input, signature)``.
    Callers must verify before trusting any claim."""
    parts = jws.split(".") if isinstance(jws, str) else []
    if len(parts) != 3:
        raise JoseError("not a compact JWS")
    try:
        header = json.loads(b64u_decode(parts[0]))
        payload = json.loads(b64u_decode(parts[1]))
        signature = b64u_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as e:
        raise JoseError(f"malformed JWS: {e}") from e
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise JoseError("JWS header and payload must be JSON objects")
    return header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def verify_es256(key: ec.EllipticCurvePublicKey, signing_input: bytes, signature: bytes) -> bool:
    if len(signature) != 64 or not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return False
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def x5c_encode(certs: list[x509.Certificate]) -> list[str]:
    return [b64(c.public_bytes(Encoding.DER)) for c in certs]


def x5c_decode(values: Any) -> list[x509.Certificate]:
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise JoseError("x5c must be a non-empty array of base64 certificates")
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(v, validate=True)) for v in values]
    except ValueError as e:
        raise JoseError(f"x5c holds an unreadable certificate: {e}") from e
