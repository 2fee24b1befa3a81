"""HTTP endpoints of the authorization server: PAR, authorize (wallet page), token, revoke."""

from __future__ import annotations

import hmac
import html
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Redirect

from ..errors import ProtocolError, invalid_request
from ..routes import NO_STORE, _form, audit_refusal
from .authorization import AuthorizationServer, RedirectError

SESSION_COOKIE = "rqes_txn"
COOKIE_PATH = "/oauth2/authorize"


def _as(state: State) -> AuthorizationServer:
    return state.authorization


def _verifier(state: State) -> Any:
    if state.verifier is None:
        raise ProtocolError("temporarily_unavailable",
                            "Wallet flows are off: no trusted PID issuer (set RQES_TRUSTED_PID_ISSUERS or RQES_DEMO)", 503)
    return state.verifier


@post("/oauth2/pushed_authorize", status_code=201, tags=["OAuth2"], summary="Pushed authorization request (RFC 9126)")
async def pushed_authorize(request: Request, state: State) -> Response[dict[str, Any]]:
    form = _form(request, await request.body())
    try:
        return Response(await _as(state).pushed_authorize(form, request.headers), status_code=201, headers=NO_STORE)
    except ProtocolError as e:
        await audit_refusal(state, "authorization.refused", form, e)
        raise


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rqes: approve with your EUDI wallet</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}#qr svg{{width:16rem;height:16rem}}
.state{{font-weight:600}} li{{word-break:break-all}}</style></head>
<body><h1>{title}</h1>
<p>{intro}</p>
{documents}
<div id="request" data-openid4vp-uri="{uri}" data-status-url="{status}" data-transaction-id="{tid}">
<div id="qr">{svg}</div>
<p><a id="same-device" href="{uri}">Open in a wallet on this device</a></p></div>
<p>Status: <span id="state" class="state" data-state="pending">waiting for your wallet…</span></p>
<script>
(function(){{
  var el=document.getElementById('request'), st=document.getElementById('state');
  function poll(){{
    fetch(el.dataset.statusUrl,{{cache:'no-store'}}).then(function(r){{return r.json()}}).then(function(j){{
      st.dataset.state=j.status;
      if(j.redirect_to){{st.textContent=j.status==='done'?'approved: returning to the application':'not approved';window.location.assign(j.redirect_to);return}}
      if(j.status==='expired'){{st.textContent='expired';return}}
      if(j.status==='done'||j.status==='collected'){{st.textContent='approved';return}}
      if(j.status==='failed'){{st.textContent='not approved';return}}
      setTimeout(poll,1000);
    }}).catch(function(){{setTimeout(poll,2000)}});
  }}
  poll();
}})();
</script></body></html>"""


@get("/oauth2/authorize", tags=["OAuth2"], summary="Authorization endpoint: wallet authentication and approval")
async def authorize(request: Request, state: State) -> Response[Any]:
    query = {k: v for k, v in request.query_params.items()}
    if len(list(request.query_params.multi_items())) != len(query):
        raise invalid_request("A parameter is repeated")
    srv = _as(state)
    try:
        req = await srv.authorize(query)
        v = _verifier(state)
        # The page (or API client) that started the transaction polls for the outcome, bound to its
        # session cookie; the wallet gets no redirect to follow, so the code surfaces only there.
        t = await srv.start(req, v, flow="cross-device")
    except RedirectError as e:
        await audit_refusal(state, "authorization.refused", query, ProtocolError("invalid_request", str(e)))
        return Redirect(e.location, status_code=302)
    except ProtocolError as e:
        await audit_refusal(state, "authorization.refused", query, e)
        raise
    uri = v.invocation_uri(t)
    status_url = f"{v.base}/oauth2/authorize/status/{t.id}"
    if "application/json" in request.headers.get("accept", ""):
        resp: Response[Any] = Response({"transaction_id": t.id, "uri": uri, "status_url": status_url,
                                        "expires_at": t.expires_at.isoformat()}, headers=NO_STORE)
    else:
        import segno

        docs = ""
        if req.credential is not None:
            items = "".join(f"<li>{html.escape(label or 'Document')}: <code>{html.escape(h)}</code></li>"
                            for label, h in zip(req.credential.labels or [""] * len(req.credential.hashes),
                                                t.context["credential"]["hashes"]))
            docs = f"<p>Documents to sign with credential <code>{html.escape(req.credential.credential_id)}</code>:</p><ul>{items}</ul>"
        title = "Approve the signature" if req.scope == "credential" else "Sign in with your EUDI wallet"
        intro = ("Scan the code with your wallet and check that it shows exactly these documents."
                 if req.scope == "credential" else "Scan the code with your wallet to present your PID.")
        page = PAGE.format(title=title, intro=intro, documents=docs, uri=html.escape(uri, quote=True),
                           status=html.escape(status_url), tid=html.escape(t.id),
                           svg=segno.make(uri, error="m").svg_inline(scale=4, title="openid4vp request"))
        resp = Response(page, media_type="text/html", headers=NO_STORE)
    resp.set_cookie(SESSION_COOKIE, t.id, httponly=True, samesite="lax", path=COOKIE_PATH, max_age=600)
    return resp


@get("/oauth2/authorize/status/{tid:str}", tags=["OAuth2"], summary="Poll a wallet approval (initiating session only)")
async def authorize_status(tid: str, request: Request, state: State) -> Response[dict[str, Any]]:
    v = _verifier(state)
    t = await v.txns.by_id(tid)
    if t is None or t.purpose not in ("authorize", "login") or t.context.get("mode") == "async":
        raise ProtocolError("invalid_request", "Unknown transaction", 404)
    if not hmac.compare_digest(request.cookies.get(SESSION_COOKIE, "").encode(), t.id.encode()):
        raise ProtocolError("access_denied", "This transaction was started in another session", 403)
    st = await v.status(tid)
    if st["status"] == "done":
        result = await v.txns.take_result(t.request_id)  # the code is handed out once
        if not result or "redirect_to" not in result:
            raise ProtocolError("invalid_request", "The outcome was already collected")
        return Response({"status": "done", "redirect_to": result["redirect_to"]}, headers=NO_STORE)
    if st["status"] == "collected":
        raise ProtocolError("invalid_request", "The outcome was already collected")
    if st["status"] in ("failed", "expired"):
        desc = (st.get("result") or {}).get("error_description", "The request expired")
        return Response({"status": st["status"], "result": st.get("result"),
                         "redirect_to": _as(state).error_redirect(t.context, "access_denied", desc)}, headers=NO_STORE)
    return Response(st, headers=NO_STORE)


@get("/oauth2/authorize/done", tags=["OAuth2"], summary="Same-device return from the wallet (response_code)")
async def authorize_done(request: Request, state: State, response_code: str = "") -> Any:
    v = _verifier(state)
    t = await v.txns.redeem_response_code(response_code, state.runtime.clock.now()) if response_code else None
    if t is None:
        raise ProtocolError("invalid_request", "Unknown or already used response_code")
    if t.purpose not in ("authorize", "login") or t.context.get("mode") == "async":
        raise ProtocolError("invalid_request", "Unknown or already used response_code")
    if not hmac.compare_digest(request.cookies.get(SESSION_COOKIE, "").encode(), t.id.encode()):
        raise ProtocolError("access_denied", "The response_code came back in another session than the one that started")
    if t.status == "done" and t.result and t.result.get("redirect_to"):
        return Redirect(t.result["redirect_to"], status_code=302)
    desc = (t.result or {}).get("error_description", "The wallet approval failed")
    return Redirect(_as(state).error_redirect(t.context, "access_denied", desc), status_code=302)


@post("/oauth2/revoke", status_code=200, tags=["OAuth2"], summary="Token revocation (RFC 7009)")
async def revoke(request: Request, state: State) -> Response[dict[str, Any]]:
    form = _form(request, await request.body())
    client = await _client_for_token_endpoint(form, request, state)
    await _as(state).revoke(client, form)
    return Response({}, headers=NO_STORE)


async def _client_for_token_endpoint(form: dict[str, str], request: Request, state: State) -> Any:
    return await state.authenticator.authenticate_or_public(form, request.headers)


@get("/csc/approve/{tid:str}", tags=["CSC"], summary="Approval page for an asynchronous credentials/authorize (QR code)",
     media_type="text/html")
async def async_approval_page(tid: str, state: State) -> Response[str]:
    """The page an operator's UI shows for a pending credentials/authorize handle."""
    import segno

    v = _verifier(state)
    t = await v.txns.by_id(tid)
    if t is None or t.context.get("mode") != "async" or t.status not in ("created", "fetched"):
        raise ProtocolError("invalid_request", "Unknown or finished approval", 404)
    uri = v.invocation_uri(t)
    c = t.context["credential"]
    items = "".join(f"<li>{html.escape(label)}: <code>{html.escape(h)}</code></li>" for label, h in zip(c["labels"], c["hashes"]))
    page = PAGE.format(
        title="Approve the signature", intro="Scan the code with your wallet and check that it shows exactly these documents.",
        documents=f"<ul>{items}</ul>", uri=html.escape(uri, quote=True),
        status=html.escape(f"{v.base}/csc/approve/{t.id}/status"), tid=html.escape(t.id),
        svg=segno.make(uri, error="m").svg_inline(scale=4, title="openid4vp request"))
    return Response(page, media_type="text/html", headers=NO_STORE)


@get("/csc/approve/{tid:str}/status", tags=["CSC"], summary="Status of an asynchronous approval (never the SAD)")
async def async_approval_status(tid: str, state: State) -> Response[dict[str, Any]]:
    v = _verifier(state)
    t = await v.txns.by_id(tid)
    if t is None or t.context.get("mode") != "async":
        raise ProtocolError("invalid_request", "Unknown approval", 404)
    st = await v.status(tid)
    return Response({"status": st["status"]}, headers=NO_STORE)


ROUTES = [pushed_authorize, authorize, authorize_status, authorize_done, revoke, async_approval_page, async_approval_status]
