"""Pure parsers for CSC request bodies: exact CSC error strings, tolerant of v1 names and of
base64/base64url, padded or not (csc-api-v2.md §2, §9, §11)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..errors import ProtocolError, invalid_request

_B64 = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


def decode_body(raw: bytes) -> dict[str, Any]:
    import msgspec

    if not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise invalid_request("Malformed JSON body") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object")
    return body


def req_str(body: dict[str, Any], name: str, *aliases: str) -> str:
    for key in (name, *aliases):
        v = body.get(key)
        if isinstance(v, str) and v:
            return v
    raise invalid_request(f"Missing (or invalid type) string parameter {name}")


def opt_str(body: dict[str, Any], name: str, *aliases: str) -> str | None:
    for key in (name, *aliases):
        if key in body and body[key] is not None:
            v = body[key]
            if not isinstance(v, str):
                raise invalid_request(f"Invalid parameter {name}")
            return v
    return None


def opt_bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    v = body.get(name, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise invalid_request(f"Invalid parameter {name}")
    return v


def req_int(body: dict[str, Any], name: str) -> int:
    v = body.get(name)
    if isinstance(v, str) and v.isdigit():  # some v1 clients send numbers as strings
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise invalid_request(f"Missing (or invalid type) integer parameter {name}")
    return v


def decode_b64(value: str) -> bytes:
    """Standard base64 or base64url, padded or not; anything else is refused."""
    if not isinstance(value, str) or not value or not _B64.match(value) or len(value) > 1024:
        raise ValueError("bad base64")
    s = value.rstrip("=")
    if "-" in s or "_" in s:
        if "+" in s or "/" in s:
            raise ValueError("mixed alphabets")
        s = s.replace("-", "+").replace("_", "/")
    if len(s) % 4 == 1:
        raise ValueError("bad length")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("bad base64") from e


def hashes_param(body: dict[str, Any], max_hashes: int) -> list[bytes]:
    """``hashes`` (v2) or ``hash`` (v1, pyHanko): a non-empty array of base64 digests."""
    raw = body.get("hashes", body.get("hash"))
    if not isinstance(raw, list) or not all(isinstance(h, str) for h in raw):
        raise invalid_request("Missing (or invalid type) array parameter hash")
    if not raw:
        raise invalid_request("Empty hash array")
    if len(raw) > max_hashes:
        raise invalid_request(f"Too many hashes: at most {max_hashes} per request")
    out = []
    for h in raw:
        try:
            out.append(decode_b64(h))
        except ValueError:
            raise invalid_request("Invalid Base64 hash string parameter") from None
    return out


def b64_param(body: dict[str, Any], name: str) -> bytes | None:
    v = body.get(name)
    if v is None:
        return None
    try:
        return decode_b64(v)
    except ValueError:
        raise invalid_request(f"Invalid parameter {name}") from None


def certificates_param(body: dict[str, Any]) -> str:
    v = body.get("certificates", "single")
    if v not in ("none", "single", "chain"):
        raise invalid_request("Invalid parameter certificates")
    return v


def not_implemented(method: str) -> ProtocolError:
    return ProtocolError("invalid_request", f"Method {method} is not implemented", 501)


_SHA2_BY_LENGTH = {32: "2.16.840.1.101.3.4.2.1", 48: "2.16.840.1.101.3.4.2.2", 64: "2.16.840.1.101.3.4.2.3"}


def hash_oid_for_length(hashes: list[bytes]) -> str | None:
    """v1 compatibility: the SHA-2 OID implied by the digest length, if all digests agree."""
    lengths = {len(h) for h in hashes}
    return _SHA2_BY_LENGTH.get(lengths.pop()) if len(lengths) == 1 else None
