"""Token Status List (draft-ietf-oauth-status-list §4): pack statuses LSB-first into bytes,
compress with zlib (DEFLATE, RFC 1950) and base64url the result."""

from __future__ import annotations

import zlib
from typing import Iterable, Mapping

from ._jose import b64u, b64u_decode

VALID, INVALID, SUSPENDED = 0, 1, 2
STATUS_NAMES = {VALID: "VALID", INVALID: "INVALID", SUSPENDED: "SUSPENDED"}


def pack(statuses: Mapping[int, int] | Iterable[int], size: int, bits: int) -> bytes:
    """Entry ``i`` lives in byte ``i * bits // 8`` at bit offset ``(i * bits) % 8`` (LSB first)."""
    if bits not in (1, 2, 4, 8):
        raise ValueError("bits must be 1, 2, 4 or 8")
    items = statuses.items() if isinstance(statuses, Mapping) else enumerate(statuses)
    out = bytearray((size * bits + 7) // 8)
    for idx, value in items:
        idx, value = int(idx), int(value)
        if not 0 <= idx < size or not 0 <= value < (1 << bits):
            raise ValueError(f"status {value} at index {idx} does not fit")
        pos = idx * bits
        out[pos // 8] |= value << (pos % 8)
    return bytes(out)


def unpack(data: bytes, bits: int) -> list[int]:
    mask = (1 << bits) - 1
    per_byte = 8 // bits
    return [(byte >> (k * bits)) & mask for byte in data for k in range(per_byte)]


def encode_lst(statuses: Mapping[int, int] | Iterable[int], size: int, bits: int) -> str:
    return b64u(zlib.compress(pack(statuses, size, bits), 9))


def decode_lst(lst: str, bits: int) -> list[int]:
    return unpack(zlib.decompress(b64u_decode(lst)), bits)


def status_at(lst: str, bits: int, idx: int) -> int:
    values = decode_lst(lst, bits)
    if not 0 <= idx < len(values):
        raise IndexError("status index out of range")
    return values[idx]
