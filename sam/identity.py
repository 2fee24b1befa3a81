"""The signer's stable identity, derived from a verified PID (openid4vp-sdjwt.md §11).

The PID carries no persistent identifier, so the signer is keyed on the issuing country plus
``personal_administrative_number`` or, failing that, ``document_number``. Namesakes born on the
same day have different numbers and never collide; a re-issued PID of the same person maps to
the same signer. The EN 319 412-1 §5.1.3 ``serialNumber`` is built from the same number.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .errors import SamError


class IdentityError(SamError):
    reason = "no_identity"


@dataclass(frozen=True, slots=True)
class SignerIdentity:
    signer_id: str
    basis: str
    serial_number: str
    country: str

    @property
    def owner(self) -> str:
        return f"signer:{self.signer_id}"


def signer_identity(claims: dict[str, Any]) -> SignerIdentity:
    country = claims.get("issuing_country")
    if not isinstance(country, str) or not re.fullmatch(r"[A-Z]{2}", country):
        raise IdentityError("The PID presentation lacks a valid issuing_country")
    for basis, name, prefix in (("pan", "personal_administrative_number", "PNO"), ("document_number", "document_number", "IDC")):
        v = claims.get(name)
        if isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9./-]{1,50}", v):
            digest = hashlib.sha256(f"{basis}|{country}|{v}".encode()).digest()
            signer_id = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            return SignerIdentity(signer_id, basis, f"{prefix}{country}-{v}", country)
    raise IdentityError("The PID carries neither personal_administrative_number nor document_number")
