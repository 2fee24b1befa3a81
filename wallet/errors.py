"""Wallet-side error vocabulary.

Each error carries the OpenID4VP §8.5 error code (``error``) that the wallet would put in an
error response, and a one-line public description. The CLI prints ``error: description``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .holder import AuthorizationRequest


class WalletError(Exception):
    """Base class. ``request`` is set once the request object has been authenticated, so that
    the caller may send the error to the verifier's ``response_uri``."""

    error = "wallet_error"

    def __init__(self, description: str, *, request: AuthorizationRequest | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.request = request

    def __str__(self) -> str:
        return f"{self.error}: {self.description}"


class InvalidRequest(WalletError):
    """OpenID4VP §8.5 ``invalid_request``: malformed or unauthenticated request object."""

    error = "invalid_request"


class InvalidClient(WalletError):
    """OpenID4VP §8.5 ``invalid_client``: client_id prefix unsupported or not matching the key."""

    error = "invalid_client"


class InvalidRequestUriMethod(WalletError):
    """OpenID4VP §8.5 ``invalid_request_uri_method``."""

    error = "invalid_request_uri_method"


class InvalidTransactionData(WalletError):
    """OpenID4VP §8.5 ``invalid_transaction_data``: unknown type, malformed entry, or
    ``credential_ids`` not in the DCQL query."""

    error = "invalid_transaction_data"


class AccessDenied(WalletError):
    """OpenID4VP §8.5 ``access_denied``: no matching credential, or the user declined."""

    error = "access_denied"


class VerifierUnreachable(WalletError):
    """The request_uri or response_uri could not be reached or answered with an HTTP error."""

    error = "verifier_unreachable"

    def __init__(self, description: str, *, status_code: int | None = None, body: Any = None,
                 request: AuthorizationRequest | None = None) -> None:
        super().__init__(description, request=request)
        self.status_code = status_code
        self.body = body


class WalletFileError(WalletError):
    """The wallet file is missing, unreadable, too permissive or malformed."""

    error = "wallet_file"


class IssuerError(WalletError):
    """The test PID issuer refused (bad state directory, unknown status index, ...)."""

    error = "issuer_error"
