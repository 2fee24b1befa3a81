"""Errors raised by the key custody layer.

Each carries a public description; none ever carries a PIN, key material or a digest.
"""

from __future__ import annotations


class HsmError(Exception):
    """Base class: something about key custody failed."""


class HsmConfigError(HsmError):
    """The PKCS#11 module, token or PIN could not be used as configured."""


class KeyNotFound(HsmError):
    """No key with that label is on the token."""


class KeyExists(HsmError):
    """A key with that label is already on the token; labels are never reused."""


class UnsupportedAlgorithm(HsmError):
    """The key cannot produce this signature algorithm."""


class InvalidDigest(HsmError):
    """The digest length does not match the hash algorithm; the HSM never sees it."""


class HsmUnavailable(HsmError):
    """The token could not be reached, even after re-opening the session."""
