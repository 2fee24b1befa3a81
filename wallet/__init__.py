"""Reference EUDI wallet (holder) and test PID issuer: an HTTP client of rqes (wallet identity issue).

It never imports ``app``, ``sam`` or ``hsm``: it is an independent implementation of the other
side of OpenID4VP, so that a misreading of the specification on one side is not hidden by a
shared model.
"""

from .errors import (AccessDenied, InvalidClient, InvalidRequest, InvalidRequestUriMethod, InvalidTransactionData,
                     IssuerError, VerifierUnreachable, WalletError, WalletFileError)
from .holder import (AuthorizationRequest, Invocation, Outcome, Presentation, StoredCredential, Tamper, Wallet,
                     approve, build_presentation, describe, encrypt_response, fetch_request_object,
                     kb_jwt_payload, match_credentials, parse_invocation, post_response, resolve, respond,
                     respond_error, verify_request_object, wallet_metadata)
from .issuer import PID_VCT, IssuedPid, PidAttributes, PidIssuer, make_status_server, serve_in_thread

__all__ = [
    "AccessDenied", "AuthorizationRequest", "InvalidClient", "InvalidRequest", "InvalidRequestUriMethod",
    "InvalidTransactionData", "Invocation", "IssuedPid", "IssuerError", "Outcome", "PID_VCT", "PidAttributes",
    "PidIssuer", "Presentation", "StoredCredential", "Tamper", "VerifierUnreachable", "Wallet", "WalletError",
    "WalletFileError", "approve", "build_presentation", "describe", "encrypt_response", "fetch_request_object",
    "kb_jwt_payload", "make_status_server", "match_credentials", "parse_invocation", "post_response", "resolve",
    "respond", "respond_error", "serve_in_thread", "verify_request_object", "wallet_metadata",
]
