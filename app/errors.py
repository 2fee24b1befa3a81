"""One error vocabulary per protocol, one table mapping it to responses (STYLE.md habit 6).

Every error leaves as ``{"error", "error_description"}`` with the spec's status code; a 401
also carries ``WWW-Authenticate`` (RFC 6750 §3). Nothing else ever reaches the client: no
traceback, no exception text from a library.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, MethodNotAllowedException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from hsm import HsmError
from sam import SamError

log = logging.getLogger("rqes.http")


class ProtocolError(Exception):
    """An OAuth2 (RFC 6749 §5.2) or CSC (§6) error with its status code."""

    def __init__(self, error: str, description: str, status: int = 400, *, www_authenticate: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.www_authenticate = www_authenticate


def invalid_request(description: str) -> ProtocolError:
    return ProtocolError("invalid_request", description, 400)


def invalid_token(description: str = "The access token is invalid or expired", *, sent: bool = True) -> ProtocolError:
    # RFC 6750 §3.1: no error code in the challenge when the request carried no credentials.
    challenge = 'Bearer realm="rqes", error="invalid_token"' if sent else 'Bearer realm="rqes"'
    return ProtocolError("invalid_token", description, 401, www_authenticate=challenge)


def _body(error: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": description}


def _response(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response[Any]:
    h = {"Cache-Control": "no-store"}
    h.update(headers or {})
    return Response(_body(error, description), status_code=status, headers=h, media_type="application/json")


def protocol_error_handler(_: Request, exc: ProtocolError) -> Response[Any]:
    headers = {"WWW-Authenticate": exc.www_authenticate} if exc.www_authenticate else None
    return _response(exc.status, exc.error, exc.description, headers)


def sam_error_handler(_: Request, exc: SamError) -> Response[Any]:
    return _response(exc.status, exc.error, exc.description)


def http_exception_handler(_: Request, exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, NotFoundException):
        return _response(404, "invalid_request", "Not found")
    if isinstance(exc, MethodNotAllowedException):
        return _response(405, "invalid_request", "Method not allowed")
    if status == 413:
        return _response(413, "invalid_request", "Request body too large")
    if status >= 500:
        return _response(status, "server_error", "Internal error")
    return _response(status, "invalid_request", "Malformed request")


def hsm_error_handler(_: Request, exc: HsmError) -> Response[Any]:
    log.error("HSM error: %s", type(exc).__name__)
    return _response(503, "temporarily_unavailable", "The signing device is unavailable")


def internal_error_handler(_: Request, exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return _response(HTTP_500_INTERNAL_SERVER_ERROR, "server_error", "Internal error")


EXCEPTION_HANDLERS = {
    ProtocolError: protocol_error_handler,
    SamError: sam_error_handler,
    HsmError: hsm_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
