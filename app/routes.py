"""Thin litestar handlers: decode, call one service method, return JSON (STYLE.md layout)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, Response, get, post
from litestar.datastructures import State

from sam import SamError

from .csc import wire
from .errors import ProtocolError, invalid_request, invalid_token
from .oauth.service import Principal
from .runtime import Runtime
from .web.metrics import Metrics

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _rt(state: State) -> Runtime:
    return state.runtime


async def _principal(request: Request, state: State, *, credential_token: bool = False) -> Principal:
    """A service access token, or (where the CSC API allows it) a credential token: the SAD used
    as bearer token (csc-api-v2.md §3.2, oauth2code)."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise invalid_token("Missing bearer access token", sent=False)
    from .oauth.authorization import _peek_typ
    from sam import SAD_TYP, SamError

    if _peek_typ(token) == SAD_TYP:
        if not credential_token:
            raise invalid_token("A credential token cannot be used for this method")
        try:
            claims = state.runtime.sam.verify_sad(token)
        except SamError:
            raise invalid_token() from None
        client = await state.runtime.clients.get(claims.azp)
        if client is None or client.status != "active":  # a removed client's credential tokens die with it
            raise invalid_token()
        return Principal(claims.azp, ("credential",), claims.jti, subject=claims.sub, sad=token,
                         credential_id=claims.credential_id)
    who = await state.tokens.verify(token)
    if "service" not in who.scope:
        raise ProtocolError("insufficient_scope", "The access token lacks the service scope", 403,
                            www_authenticate='Bearer error="insufficient_scope"')
    return who


async def _json(request: Request) -> dict[str, Any]:
    return wire.decode_body(await request.body())


def reject_nul_middleware(max_body: int) -> Any:
    def factory(app: Any) -> Any:
        return _reject_nul(app, max_body)

    return factory


def _reject_nul(app: Any, max_body: int) -> Any:
    """NUL never belongs in identifiers or tokens, and PostgreSQL refuses it in text: answer 400
    before any handler sees it (path, query string, form or JSON body)."""
    import json as _json_mod

    def error(description: str) -> bytes:
        return _json_mod.dumps({"error": "invalid_request", "error_description": description}).encode()

    async def send_error(send: Any, status: int, description: str) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": error(description)})

    async def send_400(send: Any) -> None:
        await send_error(send, 400, "NUL characters are not allowed")

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            await send_400(send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
            if sum(map(len, chunks)) > max_body:
                await send_error(send, 413, "Request body too large")
                return
        raw = b"".join(chunks)
        if b"\x00" in raw or b"\\u0000" in raw or b"%00" in raw:
            await send_400(send)
            return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await app(scope, replay, send)

    return middleware


def _metrics_for(state: State, e: SamError) -> None:
    state.metrics.event("refusal", e.reason)


# -- CSC API v2 --------------------------------------------------------------------------------------
@post("/csc/v2/info", status_code=200, tags=["CSC"], summary="CSC v2 info")
async def csc_info(request: Request, state: State) -> dict[str, Any]:
    return state.csc.info(await _json(request))


@get("/csc/v2/info", tags=["CSC"], summary="CSC v2 info (GET convenience)")
async def csc_info_get(state: State) -> dict[str, Any]:
    return state.csc.info({})


@post("/csc/v2/credentials/list", status_code=200, tags=["CSC"], summary="CSC v2 credentials/list")
async def csc_credentials_list(request: Request, state: State) -> dict[str, Any]:
    who = await _principal(request, state)
    return await state.csc.credentials_list(who, await _json(request))


@post("/csc/v2/credentials/info", status_code=200, tags=["CSC"], summary="CSC v2 credentials/info")
async def csc_credentials_info(request: Request, state: State) -> dict[str, Any]:
    who = await _principal(request, state, credential_token=True)
    return await state.csc.credentials_info(who, await _json(request))


@post("/csc/v2/credentials/authorize", status_code=200, tags=["CSC"],
      summary="CSC v2 credentials/authorize (explicit: seals at once, signers asynchronously with the wallet)")
async def csc_credentials_authorize(request: Request, state: State) -> Response[dict[str, Any]]:
    who = await _principal(request, state)
    try:
        out, status = await state.csc.credentials_authorize(who, await _json(request))
    except SamError as e:
        _metrics_for(state, e)
        raise
    state.metrics.event("authorization", "granted" if status == 200 else "pending")
    return Response(out, status_code=status, headers=NO_STORE)


@post("/csc/v2/credentials/authorizeCheck", status_code=200, tags=["CSC"], summary="CSC v2 credentials/authorizeCheck")
async def csc_credentials_authorize_check(request: Request, state: State) -> Response[dict[str, Any]]:
    who = await _principal(request, state)
    out, status = await state.csc.authorize_check(who, await _json(request))
    return Response(out, status_code=status, headers=NO_STORE)


@post("/csc/v2/credentials/extendTransaction", status_code=200, tags=["CSC"], summary="CSC v2 credentials/extendTransaction")
async def csc_credentials_extend(request: Request, state: State) -> Response[dict[str, Any]]:
    who = await _principal(request, state)
    out, status = await state.csc.extend_transaction(who, await _json(request))
    return Response(out, status_code=status, headers=NO_STORE)


@post("/csc/v2/signatures/signHash", status_code=200, tags=["CSC"], summary="CSC v2 signatures/signHash")
async def csc_sign_hash(request: Request, state: State) -> dict[str, Any]:
    who = await _principal(request, state, credential_token=True)
    try:
        out = await state.csc.sign_hash(who, await _json(request))
    except SamError as e:
        _metrics_for(state, e)
        raise
    state.metrics.event("signatures", "created")
    return out


@post("/csc/v2/{method:path}", status_code=501, tags=["CSC"], summary="CSC methods not offered (501)", include_in_schema=False)
async def csc_not_implemented(method: str) -> None:
    raise wire.not_implemented(method.strip("/"))


# -- OAuth2 ---------------------------------------------------------------------------------------
def _form(request: Request, raw: bytes) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise invalid_request("The request body must be application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise invalid_request("The request body is not UTF-8") from None
    form: dict[str, str] = {}
    for k, v in pairs:
        if k in form:
            raise invalid_request(f"Parameter {k} is repeated")  # RFC 6749 §3.2
        form[k] = v
    return form


@post("/oauth2/token", status_code=200, tags=["OAuth2"], summary="Token endpoint (RFC 6749 §3.2)")
async def oauth_token(request: Request, state: State) -> Response[dict[str, Any]]:
    form = _form(request, await request.body())
    try:
        return await _token(request, state, form)
    except ProtocolError as e:
        await audit_refusal(state, "token.refused", form, e)
        raise


async def audit_refusal(state: State, kind: str, params: dict[str, str], e: ProtocolError) -> None:
    """Refusals on the OAuth2 endpoints are audited (never the secrets or the codes themselves)."""
    from sam.ports import AuditEvent

    await state.runtime.audit.append(AuditEvent(kind, f"client:{str(params.get('client_id', ''))[:128]}", {
        "grant_type": str(params.get("grant_type", ""))[:64], "error": e.error, "reason": e.description[:200]}))


async def _token(request: Request, state: State, form: dict[str, str]) -> Response[dict[str, Any]]:
    grant = form.get("grant_type")
    if not grant:
        raise invalid_request("Missing parameter grant_type")
    if grant == "client_credentials":
        client, method = await state.authenticator.authenticate(form, request.headers)
        body = await state.tokens.client_credentials(client, method, form)
    elif grant in ("authorization_code", "refresh_token"):
        from .oauth.routes import _client_for_token_endpoint

        client = await _client_for_token_endpoint(form, request, state)
        if grant not in client.grants:
            raise ProtocolError("unauthorized_client", f"The client may not use the {grant} grant")
        if grant == "authorization_code":
            body = await state.authorization.token_authorization_code(client, form)
        else:
            body = await state.authorization.token_refresh(client, form)
    else:
        raise ProtocolError("unsupported_grant_type", f"Unsupported grant_type {grant[:64]}")
    return Response(body, headers=NO_STORE)


@get("/.well-known/oauth-authorization-server", tags=["OAuth2"], summary="RFC 8414 metadata")
async def oauth_metadata(state: State) -> dict[str, Any]:
    iss = _rt(state).settings.issuer
    return {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/oauth2/authorize",
        "token_endpoint": f"{iss}/oauth2/token",
        "pushed_authorization_request_endpoint": f"{iss}/oauth2/pushed_authorize",
        "revocation_endpoint": f"{iss}/oauth2/revoke",
        "jwks_uri": f"{iss}/oauth2/jwks",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_details_types_supported": ["credential", "https://cloudsignatureconsortium.org/2025/credential"],
        "scopes_supported": ["service", "credential"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "PS256", "RS256"],
        "service_documentation": f"{iss}/schema",
    }


@get("/oauth2/jwks", tags=["OAuth2"], summary="Public keys that sign access tokens")
async def oauth_jwks(state: State) -> dict[str, Any]:
    from jwcrypto import jwk
    from cryptography.hazmat.primitives import serialization

    label, _, kid, spki = _rt(state).as_key
    key = jwk.JWK.from_pem(serialization.load_der_public_key(spki).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"keys": [{**key.export_public(as_dict=True), "kid": kid, "use": "sig", "alg": "ES256"}]}


# -- operations ---------------------------------------------------------------------------------------
@get("/healthz", tags=["Operations"], summary="Liveness and readiness")
async def healthz(state: State) -> Response[dict[str, Any]]:
    rt = _rt(state)
    checks = {"database": "ok", "hsm": "ok"}
    try:
        from sqlalchemy import text

        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - health reports, never raises
        checks["database"] = "unavailable"
    try:
        from .runtime import SAM_LABEL

        await rt.keys.key_info(SAM_LABEL)
    except Exception:  # noqa: BLE001
        checks["hsm"] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    return Response({"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503)


@get("/metrics", tags=["Operations"], summary="Prometheus metrics (this worker)", media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> str:
    m: Metrics = state.metrics
    return m.render()


@get("/pki/{name:str}", tags=["PKI"], summary="CA certificates (root.cer, issuing.cer, root.pem, issuing.pem)")
async def pki_cert(name: str, state: State) -> Response[bytes]:
    from cryptography.hazmat.primitives import serialization

    rt = _rt(state)
    base, _, ext = name.partition(".")
    cert = {"root": rt.root_cert, "issuing": rt.issuing_cert}.get(base)
    if cert is None or ext not in ("cer", "pem"):
        raise ProtocolError("invalid_request", "Not found", 404)
    if ext == "pem":
        return Response(cert.public_bytes(serialization.Encoding.PEM), media_type="application/x-pem-file")
    return Response(cert.public_bytes(serialization.Encoding.DER), media_type="application/pkix-cert")


LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">'
    '<rect width="64" height="64" rx="12" fill="#123a6b"/>'
    '<text x="32" y="41" font-family="sans-serif" font-size="22" font-weight="700" fill="#fff" text-anchor="middle">rqes</text>'
    "</svg>"
)


@get("/static/logo.svg", tags=["Operations"], summary="Service logo (CSC info.logo)", media_type="image/svg+xml")
async def logo() -> str:
    return LOGO


ROUTES = [logo,
    csc_info, csc_info_get, csc_credentials_list, csc_credentials_info, csc_credentials_authorize, csc_sign_hash,
    csc_credentials_authorize_check, csc_credentials_extend,
    csc_not_implemented, oauth_token, oauth_metadata, oauth_jwks, healthz, metrics, pki_cert,
]
