"""The one small interface behind which key custody happens.

``KeyStore`` is "generate, sign these digests, destroy" and nothing more. The PKCS#11 adapter
(:mod:`hsm.pkcs11`) and the in-memory adapter for unit tests (:mod:`hsm.software`) implement it;
the SAM, the embedded CA and the token signer call only this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from .mechanisms import KeyType, SignScheme


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the token says about one key: its label, type and DER SubjectPublicKeyInfo."""

    label: str
    key_type: KeyType
    public_key_der: bytes


class KeyStore(Protocol):
    async def generate_key(self, label: str, key_type: KeyType) -> KeyInfo: ...

    async def key_info(self, label: str) -> KeyInfo: ...

    async def sign_digests(
        self, label: str, scheme: SignScheme, digests: Sequence[bytes], *, raw_ecdsa: bool = False
    ) -> list[bytes]:
        """Sign each digest in order. ECDSA comes back DER-encoded unless ``raw_ecdsa`` (JWS)."""
        ...

    async def destroy_key(self, label: str) -> None: ...

    async def has_key(self, label: str) -> bool: ...

    def sign_digests_sync(
        self, label: str, scheme: SignScheme, digests: Sequence[bytes], *, raw_ecdsa: bool = False
    ) -> list[bytes]:
        """The same, for callers off the event loop (the CLI, ``cryptography``'s builders)."""
        ...

    def key_info_sync(self, label: str) -> KeyInfo: ...

    def generate_key_sync(self, label: str, key_type: KeyType) -> KeyInfo: ...
