"""The SAM's rejections. Each carries the public description (CSC wording where the spec has
one), the protocol error code and status, and a short machine ``reason`` for the audit log."""

from __future__ import annotations


class SamError(Exception):
    error = "invalid_request"
    status = 400
    reason = "refused"

    def __init__(self, description: str, *, reason: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        if reason is not None:
            self.reason = reason


class InvalidRequest(SamError):
    reason = "invalid_request"


class SadInvalid(SamError):
    """Forged, malformed, foreign or otherwise unusable SAD: "Invalid parameter SAD"."""

    reason = "sad_invalid"

    def __init__(self, why: str) -> None:
        super().__init__("Invalid parameter SAD", reason=why)


class SadExpired(SamError):
    reason = "sad_expired"

    def __init__(self) -> None:
        super().__init__("SAD expired")


class SadReplayed(SamError):
    reason = "sad_replayed"

    def __init__(self) -> None:
        super().__init__("Invalid parameter SAD", reason="sad_replayed")


class HashNotAuthorized(SamError):
    reason = "hash_not_authorized"

    def __init__(self, why: str = "hash_not_authorized") -> None:
        super().__init__("Hash is not authorized by the SAD", reason=why)


class CredentialUnusable(SamError):
    """Unknown, foreign, disabled or deleted credential."""

    reason = "credential_unusable"

    def __init__(self, description: str = "Invalid parameter credentialID", *, reason: str = "credential_unusable") -> None:
        super().__init__(description, reason=reason)


class AccessDenied(SamError):
    error = "access_denied"
    status = 403
    reason = "access_denied"


class SigningFailed(SamError):
    error = "server_error"
    status = 500
    reason = "hsm_failure"
