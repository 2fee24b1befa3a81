"""HTTP endpoints of the OpenID4VP verifier and the enrollment entry points."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
from pathlib import Path
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State

from ..errors import ProtocolError, invalid_request
from ..routes import _form
from .service import VerifierService

TERMS = (Path(__file__).resolve().parent.parent / "web" / "terms.txt").read_bytes()
QC_REQUEST = "https://cloudsignatureconsortium.org/2025/qc-request"
QC_LEGACY = "qcert_creation_acceptance"
SHA256_OID = "2.16.840.1.101.3.4.2.1"
JWT_TYPE = "application/oauth-authz-req+jwt"
SESSION_COOKIE = "rqes_txn"


def qc_request_entry(base: str, legacy: bool = False) -> dict[str, Any]:
    common = {"credential_ids": ["pid"], "QC_terms_conditions_uri": f"{base}/terms",
              "QC_hash": base64.b64encode(hashlib.sha256(TERMS).digest()).decode(), "QC_hashAlgorithmOID": SHA256_OID}
    if legacy:
        return {"type": QC_LEGACY, **common}
    return {"type": QC_REQUEST, **common, "transaction_data_hashes_alg": ["sha-256"]}


def _verifier(state: State) -> VerifierService:
    if state.verifier is None:
        raise ProtocolError("temporarily_unavailable",
                            "Wallet flows are off: no trusted PID issuer (set RQES_TRUSTED_PID_ISSUERS or RQES_DEMO)", 503)
    return state.verifier


async def start_enrollment(state: State, *, flow: str, response_mode: str, td: str) -> Any:
    if td not in ("qc-request", "legacy"):
        raise invalid_request("td must be qc-request or legacy")
    v = _verifier(state)
    return await v.start(purpose="enroll", flow=flow, response_mode=response_mode,
                         transaction_data=[qc_request_entry(v.base, legacy=td == "legacy")], context={})


@get("/enroll/start", tags=["Enrollment"], summary="Start an enrollment; returns the openid4vp:// URI")
async def enroll_start(state: State, flow: str = "same-device", response_mode: str = "direct_post.jwt",
                       request_uri_method: str = "post", td: str = "qc-request") -> Response[dict[str, Any]]:
    if request_uri_method not in ("get", "post"):
        raise invalid_request("request_uri_method must be get or post")
    t = await start_enrollment(state, flow=flow, response_mode=response_mode, td=td)
    v = _verifier(state)
    resp = Response({"transaction_id": t.id, "uri": v.invocation_uri(t, request_uri_method=request_uri_method),
                     "status_url": f"{v.base}/enroll/status/{t.id}", "expires_at": t.expires_at.isoformat()},
                    headers={"Cache-Control": "no-store"})
    # HAIP same-device: the redirect must come back in the session that started the transaction.
    resp.set_cookie(SESSION_COOKIE, t.id, httponly=True, samesite="lax", path="/enroll", max_age=600)
    return resp


@get("/enroll/status/{tid:str}", tags=["Enrollment"], summary="Poll an enrollment")
async def enroll_status(tid: str, state: State) -> Response[dict[str, Any]]:
    v = _verifier(state)
    t = await v.txns.by_id(tid)
    if t is None or t.purpose != "enroll":  # other purposes' results (codes, SADs) never leave here
        raise ProtocolError("invalid_request", "Unknown transaction", 404)
    return Response(await v.status(tid), headers={"Cache-Control": "no-store"})


@get("/enroll/done", tags=["Enrollment"], summary="Same-device completion: redeem the response_code once")
async def enroll_done(request: Request, state: State, response_code: str = "") -> Response[dict[str, Any]]:
    v = _verifier(state)
    t = await v.txns.redeem_response_code(response_code, state.runtime.clock.now()) if response_code else None
    if t is None:
        raise ProtocolError("invalid_request", "Unknown or already used response_code")
    session = request.cookies.get(SESSION_COOKIE, "")
    if not hmac.compare_digest(session.encode(), t.id.encode()):
        raise ProtocolError("access_denied", "The response_code came back in another session than the one that started")
    return Response({"status": t.status, "result": t.result}, headers={"Cache-Control": "no-store"})


@get("/terms", tags=["Enrollment"], summary="Certificate terms and conditions (hashed into the qc-request)", media_type="text/plain")
async def terms() -> bytes:
    return TERMS


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rqes: enroll with your EUDI wallet</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}
#qr svg{{width:16rem;height:16rem}} .state{{font-weight:600}} code{{word-break:break-all;font-size:.8rem}}</style></head>
<body><h1>Enroll for qualified signatures</h1>
<p>Scan this code with your EUDI wallet. The wallet shows what you are asked to approve: the creation of a
qualified certificate under <a href="{terms}">these terms</a>.</p>
<div id="request" data-openid4vp-uri="{uri_attr}" data-status-url="{status}" data-transaction-id="{tid}">
<div id="qr">{svg}</div>
<p><a id="same-device" href="{uri_attr}">Open in a wallet on this device</a></p>
</div>
<p>Status: <span id="state" class="state" data-state="pending">waiting for your wallet…</span></p>
<p id="outcome"></p>
<script>
(function(){{
  var el=document.getElementById('request'), st=document.getElementById('state'), out=document.getElementById('outcome');
  function poll(){{
    fetch(el.dataset.statusUrl,{{cache:'no-store'}}).then(function(r){{return r.json()}}).then(function(j){{
      st.dataset.state=j.status;
      if(j.status==='done'){{st.textContent='enrolled';out.textContent='Credential '+j.result.credentialID+(j.result.enrolled?' created.':' already existed.');return}}
      if(j.status==='failed'){{st.textContent='failed';out.textContent=(j.result&&j.result.error_description)||'The wallet response was rejected.';return}}
      if(j.status==='expired'){{st.textContent='expired';out.textContent='The request expired; reload the page.';return}}
      setTimeout(poll,1000);
    }}).catch(function(){{setTimeout(poll,2000)}});
  }}
  poll();
}})();
</script></body></html>"""


@get("/enroll", tags=["Enrollment"], summary="Cross-device enrollment page (QR code)", media_type="text/html")
async def enroll_page(state: State) -> Response[str]:
    import segno

    t = await start_enrollment(state, flow="cross-device", response_mode="direct_post.jwt", td="qc-request")
    v = _verifier(state)
    uri = v.invocation_uri(t)
    svg = segno.make(uri, error="m").svg_inline(scale=4, title="openid4vp request")
    page = PAGE.format(uri_attr=html.escape(uri, quote=True), status=html.escape(f"{v.base}/enroll/status/{t.id}"),
                       tid=html.escape(t.id), svg=svg, terms=html.escape(f"{v.base}/terms"))
    return Response(page, media_type="text/html", headers={"Cache-Control": "no-store"})


@get("/oid4vp/request/{rid:str}", tags=["OpenID4VP"], summary="Request object (request_uri, GET)")
async def request_object_get(rid: str, state: State) -> Response[bytes]:
    token = await _verifier(state).request_object(rid)
    return Response(token.encode(), media_type=JWT_TYPE, headers={"Cache-Control": "no-store"})


@post("/oid4vp/request/{rid:str}", status_code=200, tags=["OpenID4VP"], summary="Request object (request_uri_method=post)")
async def request_object_post(rid: str, request: Request, state: State) -> Response[bytes]:
    form = _form(request, await request.body())
    if "wallet_metadata" in form:
        try:
            json.loads(form["wallet_metadata"])
        except ValueError:
            raise invalid_request("wallet_metadata is not JSON") from None
    token = await _verifier(state).request_object(rid, wallet_nonce=form.get("wallet_nonce"))
    return Response(token.encode(), media_type=JWT_TYPE, headers={"Cache-Control": "no-store"})


@post("/oid4vp/response/{rid:str}", status_code=200, tags=["OpenID4VP"], summary="Response endpoint (direct_post, direct_post.jwt)")
async def response_endpoint(rid: str, request: Request, state: State) -> Response[dict[str, Any]]:
    form = _form(request, await request.body())
    body = await _verifier(state).receive(rid, form)
    return Response(body, headers={"Cache-Control": "no-store"})


ROUTES = [enroll_start, enroll_status, enroll_done, terms, enroll_page, request_object_get, request_object_post,
          response_endpoint]
