"""In-memory :class:`hsm.api.KeyStore` for unit tests only.

Integration tests, the demo and the benchmarks always use :mod:`hsm.pkcs11` with SoftHSM.
"""

from __future__ import annotations

from typing import Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .api import KeyInfo
from .errors import KeyExists, KeyNotFound, UnsupportedAlgorithm
from .mechanisms import KeyType, Padding, SignScheme

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class SoftwareKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, tuple[object, KeyType]] = {}
        self.sign_calls = 0

    def _generate(self, label: str, key_type: KeyType) -> KeyInfo:
        if label in self._keys:
            raise KeyExists(f"a key labelled {label!r} already exists")
        if key_type.is_ec:
            curve = ec.SECP256R1() if key_type is KeyType.EC_P256 else ec.SECP384R1()
            key: object = ec.generate_private_key(curve)
        else:
            key = rsa.generate_private_key(65537, key_type.bits)
        self._keys[label] = (key, key_type)
        return self._info(label)

    def _info(self, label: str) -> KeyInfo:
        try:
            key, key_type = self._keys[label]
        except KeyError:
            raise KeyNotFound(f"no key labelled {label!r}") from None
        der = key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return KeyInfo(label, key_type, der)

    def _sign(self, label: str, scheme: SignScheme, digests: Sequence[bytes], raw_ecdsa: bool) -> list[bytes]:
        try:
            key, key_type = self._keys[label]
        except KeyError:
            raise KeyNotFound(f"no key labelled {label!r}") from None
        if key_type.is_ec != (scheme.padding is Padding.ECDSA):
            raise UnsupportedAlgorithm("Invalid parameter signAlgo")
        for d in digests:  # every length checked before anything is signed, as in hsm.pkcs11
            scheme.check_digest(d)
        h = utils.Prehashed(_HASHES[scheme.hash.pyca_name]())
        out = []
        for d in digests:
            self.sign_calls += 1
            if scheme.padding is Padding.ECDSA:
                der = key.sign(d, ec.ECDSA(h))  # type: ignore[attr-defined]
                if raw_ecdsa:
                    r, s = utils.decode_dss_signature(der)
                    n = (key_type.bits + 7) // 8
                    der = r.to_bytes(n, "big") + s.to_bytes(n, "big")
                out.append(der)
            elif scheme.padding is Padding.PKCS1V15:
                out.append(key.sign(d, padding.PKCS1v15(), h))  # type: ignore[attr-defined]
            else:
                mgf = padding.MGF1(_HASHES[scheme.hash.pyca_name]())
                out.append(key.sign(d, padding.PSS(mgf, scheme.salt_length), h))  # type: ignore[attr-defined]
        return out

    async def generate_key(self, label: str, key_type: KeyType) -> KeyInfo:
        return self._generate(label, key_type)

    def generate_key_sync(self, label: str, key_type: KeyType) -> KeyInfo:
        return self._generate(label, key_type)

    async def key_info(self, label: str) -> KeyInfo:
        return self._info(label)

    def key_info_sync(self, label: str) -> KeyInfo:
        return self._info(label)

    async def has_key(self, label: str) -> bool:
        return label in self._keys

    def has_key_sync(self, label: str) -> bool:
        return label in self._keys

    async def sign_digests(self, label, scheme, digests, *, raw_ecdsa=False):  # noqa: ANN001
        return self._sign(label, scheme, list(digests), raw_ecdsa)

    def sign_digests_sync(self, label, scheme, digests, *, raw_ecdsa=False):  # noqa: ANN001
        return self._sign(label, scheme, list(digests), raw_ecdsa)

    async def destroy_key(self, label: str) -> None:
        if self._keys.pop(label, None) is None:
            raise KeyNotFound(f"no key labelled {label!r}")

    def destroy_key_sync(self, label: str) -> None:
        if self._keys.pop(label, None) is None:
            raise KeyNotFound(f"no key labelled {label!r}")

    def open(self) -> "SoftwareKeyStore":
        return self

    def close(self) -> None:
        pass
