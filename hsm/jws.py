"""Compact JWS signed with an HSM key (sam-hsm.md §13).

jwcrypto cannot wrap a key it cannot read, so the signing input is hashed here and signed with
``CKM_ECDSA``; the raw ``r‖s`` the token returns is exactly the JWS ES256/ES384 signature.
Verification happens elsewhere with jwcrypto and the public JWK, under an allow-list.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .api import KeyStore
from .mechanisms import Hash, KeyType, Padding, SignScheme

_ALG = {KeyType.EC_P256: ("ES256", Hash.SHA256, hashlib.sha256), KeyType.EC_P384: ("ES384", Hash.SHA384, hashlib.sha384)}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jws_alg(key_type: KeyType) -> str:
    return _ALG[key_type][0]


def _signing_input(header: dict[str, Any], payload: dict[str, Any]) -> bytes:
    enc = lambda o: b64url(json.dumps(o, separators=(",", ":"), sort_keys=True).encode())  # noqa: E731
    return f"{enc(header)}.{enc(payload)}".encode("ascii")


async def sign_compact(
    store: KeyStore, label: str, key_type: KeyType, header: dict[str, Any], payload: dict[str, Any]
) -> str:
    alg, hash_, fn = _ALG[key_type]
    signing_input = _signing_input({**header, "alg": alg}, payload)
    sig = (await store.sign_digests(label, SignScheme(Padding.ECDSA, hash_), [fn(signing_input).digest()], raw_ecdsa=True))[0]
    return f"{signing_input.decode()}.{b64url(sig)}"


def sign_compact_sync(
    store: KeyStore, label: str, key_type: KeyType, header: dict[str, Any], payload: dict[str, Any]
) -> str:
    alg, hash_, fn = _ALG[key_type]
    signing_input = _signing_input({**header, "alg": alg}, payload)
    sig = store.sign_digests_sync(label, SignScheme(Padding.ECDSA, hash_), [fn(signing_input).digest()], raw_ecdsa=True)[0]
    return f"{signing_input.decode()}.{b64url(sig)}"
