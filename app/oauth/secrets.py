"""Client secrets, stored only as hashes and compared in constant time.

Secrets that rqes generates carry 256 bits of entropy, so a salted SHA-256 is enough and costs
microseconds. A secret an operator chose (``--secret``) may be weak, so it is stretched with
scrypt, which runs in a worker thread to keep the event loop free.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1


def new_secret() -> str:
    """256 bits, never starting with '-' (it would read as an option on a command line)."""
    while True:
        value = secrets.token_urlsafe(32)
        if value[0].isalnum():
            return value


def hash_secret(secret: str, *, generated: bool = False) -> str:
    salt = secrets.token_bytes(16)
    if generated:
        dk = hashlib.sha256(salt + secret.encode()).digest()
        return "sha256$%s$%s" % (base64.b64encode(salt).decode(), base64.b64encode(dk).decode())
    dk = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (_N, _R, _P, base64.b64encode(salt).decode(), base64.b64encode(dk).decode())


def check_secret(secret: str, stored: str | None) -> bool:
    if not stored:
        hashlib.sha256(b"\0" * 16 + secret.encode()).digest()  # comparable work for an unknown client
        return False
    try:
        kind, rest = stored.split("$", 1)
        if kind == "sha256":
            salt, dk = rest.split("$")
            got = hashlib.sha256(base64.b64decode(salt) + secret.encode()).digest()
        elif kind == "scrypt":
            n, r, p, salt, dk = rest.split("$")
            got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(dk))


async def check_secret_async(secret: str, stored: str | None) -> bool:
    if stored and stored.startswith("scrypt$"):
        return await asyncio.to_thread(check_secret, secret, stored)
    return check_secret(secret, stored)
