"""Key custody over PKCS#11: generate in the token, sign prehashed digests, destroy."""

from .api import KeyInfo, KeyStore
from .errors import (
    HsmConfigError,
    HsmError,
    HsmUnavailable,
    InvalidDigest,
    KeyExists,
    KeyNotFound,
    UnsupportedAlgorithm,
)
from .mechanisms import Hash, KeyType, Padding, SignScheme, algorithms_for, all_algorithms, resolve_scheme

__all__ = [
    "Hash", "HsmConfigError", "HsmError", "HsmUnavailable", "InvalidDigest", "KeyExists", "KeyInfo",
    "KeyNotFound", "KeyStore", "KeyType", "Padding", "SignScheme", "UnsupportedAlgorithm",
    "algorithms_for", "all_algorithms", "resolve_scheme",
]
