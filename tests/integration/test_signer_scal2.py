"""Signer SCAL2 over real HTTP: OAuth2 (PAR, authorize, token) + wallet approval of the exact
digests + wallet-backed SAD + signHash, and the SAM rejection checklist for that path
(sam-hsm.md §4): each rejection is a test named after what it rejects."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import secrets
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from tests.conftest import Server
from tests.integration.signer_flow import (
    REDIRECT, SHA256, App, Signer, b64, code_from, credential_id_of, credential_token, details, digest, login,
    new_signer, poll, s256, sign_hash, start_credential, wallet_answers,
)
from wallet import PidIssuer, Tamper


@pytest.fixture(scope="module")
def app(server: Server) -> App:
    return App.register(server)


@pytest.fixture(scope="module")
def alice(server: Server, app: App, issuer: PidIssuer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, str, str]:  # noqa: F811
    s = new_signer(issuer, tmp_path_factory.mktemp("alice"))
    tok = login(app, s)
    return s, tok["access_token"], credential_id_of(app, tok["access_token"])


def assert_sad_error(r: httpx.Response, description: str = "Invalid parameter SAD") -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "invalid_request", "error_description": description}


def cert_key(app: App, service_token: str, cid: str):  # noqa: ANN201
    from cryptography import x509

    r = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/info", json={"credentialID": cid, "certificates": "single"},
                      headers={"Authorization": f"Bearer {service_token}"})
    return x509.load_der_x509_certificate(base64.b64decode(r.json()["cert"]["certificates"][0])).public_key()


# -- the happy path ----------------------------------------------------------------------------------
def test_wallet_approved_signature_verifies(app: App, alice) -> None:  # noqa: ANN001
    signer, service, cid = alice
    hs = [digest("a"), digest("b")]
    tok = credential_token(app, signer, cid, hs)
    assert tok["token_type"] == "Bearer" and 0 < tok["expires_in"] <= 300 and tok["credentialID"] == cid
    ad = tok["authorization_details"][0]
    assert ad["type"] == "credential" and ad["credentialID"] == cid and ad["documentDigests"][0]["hash"] == b64(hs[0])
    r = sign_hash(app, tok["access_token"], cid, hs)
    assert r.status_code == 200, r.text
    pub = cert_key(app, service, cid)
    for h, s in zip(hs, r.json()["signatures"]):
        pub.verify(base64.b64decode(s), h, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    kinds = [x["kind"] for x in app.srv.cli_json("audit", "tail", "-n", "6")]
    assert "authorization.granted" in kinds and "signature.activated" in kinds


@pytest.mark.parametrize("form", ["2025", "query", "python-literal"])
def test_credential_authorization_forms(app: App, alice, form: str) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h = digest(form)
    if form == "2025":
        extra = {"authorization_details": json.dumps([{"type": "https://cloudsignatureconsortium.org/2025/credential",
                                                       "credentialID": cid, "numSignatures": 1, "hashAlgorithmOID": SHA256,
                                                       "documentDigests": [{"hash": b64(h), "label": "X", "hashType": "DTBSR"}]}])}
    elif form == "query":
        extra = {"credentialID": cid, "numSignatures": "1", "hashAlgorithmOID": SHA256,
                 "hashes": base64.urlsafe_b64encode(h).rstrip(b"=").decode()}
    else:
        extra = {"authorization_details": str([{"type": "credential", "credentialID": cid, "hashAlgorithmOID": SHA256,
                                               "documentDigests": [{"hash": b64(h), "label": "X"}]}])}
    tok = credential_token(app, signer, cid, [h], **extra)
    if form == "2025":
        assert tok["authorization_details"][0]["documentDigests"][0]["hashType"] == "DTBSR"
    r = sign_hash(app, tok["access_token"], cid, [h], sad_in_body=True)
    assert r.status_code == 200, r.text


def test_service_login_refresh_and_revoke(app: App, alice, issuer: PidIssuer, tmp_path: Path) -> None:  # noqa: ANN001, F811
    signer, _, cid = alice
    tok = login(app, signer)
    r = app.http.post(f"{app.srv.base_url}/oauth2/token", auth=app.auth,
                      data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["refresh_token"] != tok["refresh_token"]
    again = app.http.post(f"{app.srv.base_url}/oauth2/token", auth=app.auth,
                          data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # rotated
    assert app.http.post(f"{app.srv.base_url}/oauth2/revoke", auth=app.auth, data={"token": new["access_token"]}).status_code == 200
    r = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/list", json={}, headers={"Authorization": f"Bearer {new['access_token']}"})
    assert r.status_code == 401
    assert app.http.post(f"{app.srv.base_url}/oauth2/revoke", auth=app.auth, data={"token": new["refresh_token"]}).status_code == 200
    r = app.http.post(f"{app.srv.base_url}/oauth2/token", auth=app.auth,
                      data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
    assert r.status_code == 400


def test_public_client_with_pkce(server: Server, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    pub = App.register(server, public=True)
    assert pub.secret is None
    h = digest()
    tok = credential_token(pub, signer, cid, [h])
    assert sign_hash(pub, tok["access_token"], cid, [h]).status_code == 200


def test_info_advertises_oauth2code(app: App, alice) -> None:  # noqa: ANN001
    _, service, cid = alice
    info = app.http.post(f"{app.srv.base_url}/csc/v2/info", json={}).json()
    assert "oauth2code" in info["authType"] and "credentials/authorizeCheck" in info["methods"]
    ci = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/info", json={"credentialID": cid},
                       headers={"Authorization": f"Bearer {service}"}).json()
    assert ci["auth"]["mode"] == "oauth2code" and ci["SCAL"] == "2"
    meta = app.http.get(f"{app.srv.base_url}/.well-known/oauth-authorization-server").json()
    assert meta["pushed_authorization_request_endpoint"] and meta["code_challenge_methods_supported"] == ["S256"]


# -- the asynchronous explicit mode ---------------------------------------------------------------------
def test_async_authorize_and_check(app: App, alice) -> None:  # noqa: ANN001
    from wallet import approve

    from tests.integration.signer_flow import root_ca

    signer, service, cid = alice
    h = digest("async")
    hdr = {"Authorization": f"Bearer {service}"}
    r = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/authorize", headers=hdr, json={
        "credentialID": cid, "numSignatures": 1, "hashes": [b64(h)], "hashAlgorithmOID": SHA256, "description": "Invoice"})
    assert r.status_code == 202, r.text
    handle = r.json()["handle"]
    page = app.http.get(r.json()["approvalPage"])
    assert page.status_code == 200 and "data-openid4vp-uri" in page.text
    chk = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/authorizeCheck", headers=hdr, json={"handle": handle})
    assert chk.status_code == 202 and chk.json() == {"handle": handle}
    out = approve(r.json()["approvalURI"], signer.wallet, trust_anchors=[root_ca(app.srv)], confirm=lambda *_: True, http=app.http)
    assert out.status_code == 200, out.to_json()
    chk = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/authorizeCheck", headers=hdr, json={"handle": handle})
    assert chk.status_code == 200, chk.text
    sad = chk.json()["SAD"]
    again = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/authorizeCheck", headers=hdr, json={"handle": handle})
    assert again.status_code == 400  # handed out once
    r = app.http.post(f"{app.srv.base_url}/csc/v2/signatures/signHash", headers=hdr, json={
        "credentialID": cid, "SAD": sad, "hashes": [b64(h)], "signAlgo": "1.2.840.10045.4.3.2"})
    assert r.status_code == 200, r.text


def test_rejects_authorize_check_by_another_client(server: Server, app: App, alice) -> None:  # noqa: ANN001
    signer, service, cid = alice
    r = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/authorize", headers={"Authorization": f"Bearer {service}"},
                      json={"credentialID": cid, "numSignatures": 1, "hashes": [b64(digest())], "hashAlgorithmOID": SHA256})
    other = server.new_seal()
    chk = server.post("/csc/v2/credentials/authorizeCheck", {"handle": r.json()["handle"]}, token=other.token)
    assert chk.status_code == 400 and chk.json()["error_description"] == "Invalid parameter handle"


def test_signer_credential_cannot_be_authorized_without_the_wallet(app: App, alice) -> None:  # noqa: ANN001
    """SCAL1 downgrade: a service token alone never yields a SAD for a natural person's key."""
    _, service, cid = alice
    r = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/authorize", headers={"Authorization": f"Bearer {service}"},
                      json={"credentialID": cid, "numSignatures": 1, "hashes": [b64(digest())], "hashAlgorithmOID": SHA256})
    assert r.status_code == 202 and "SAD" not in r.json()


# -- SAM rejection checklist on the wallet path ----------------------------------------------------------
def test_rejects_replayed_signer_sad(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    assert sign_hash(app, tok, cid, h).status_code == 200
    assert_sad_error(sign_hash(app, tok, cid, h, sad_in_body=True))


def test_rejects_concurrent_replay_of_signer_sad(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: sign_hash(app, tok, cid, h, sad_in_body=True).status_code, range(8)))
    assert codes == [200] + [400] * 7


def test_rejects_replay_after_restart(server: Server, app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    assert sign_hash(app, tok, cid, h).status_code == 200
    server.restart()
    assert_sad_error(sign_hash(app, tok, cid, h, sad_in_body=True))


def test_rejects_other_hash_subset_reordered_extended_and_wrong_count(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h1, h2 = digest("1"), digest("2")
    tok = credential_token(app, signer, cid, [h1, h2])["access_token"]
    for bad in ([digest("3"), h2], [h1], [h2, h1], [h1, h2, h2], [h1, h1]):
        assert_sad_error(sign_hash(app, tok, cid, bad, sad_in_body=True), "Hash is not authorized by the SAD")
    assert sign_hash(app, tok, cid, [h1, h2]).status_code == 200


def test_rejects_swapped_hash_or_signature_algorithm(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    r = sign_hash(app, tok, cid, h, sad_in_body=True, hashAlgorithmOID="2.16.840.1.101.3.4.2.3")
    assert_sad_error(r, "Invalid parameter hashAlgorithmOID")
    r = sign_hash(app, tok, cid, h, sad_in_body=True, signAlgo="1.2.840.113549.1.1.11")
    assert_sad_error(r, "Invalid parameter signAlgo")
    assert sign_hash(app, tok, cid, h).status_code == 200


def test_rejects_sad_for_another_credential_or_signer(server: Server, app: App, alice, issuer: PidIssuer, tmp_path: Path) -> None:  # noqa: ANN001, F811
    signer, _, cid = alice
    bob = new_signer(issuer, tmp_path)
    bob_cid = credential_id_of(app, login(app, bob)["access_token"])
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    r = sign_hash(app, tok, bob_cid, h, sad_in_body=True)
    assert r.status_code == 400  # Alice's token names Alice's credential only
    seal = server.new_seal()
    r = server.post("/csc/v2/signatures/signHash", {"credentialID": seal.credential_id, "SAD": tok, "hashes": [b64(h[0])],
                                                   "signAlgo": "1.2.840.10045.4.3.2"}, token=seal.token)
    assert_sad_error(r)
    assert sign_hash(app, tok, cid, h).status_code == 200


def test_rejects_approval_by_another_signers_wallet(app: App, alice, issuer: PidIssuer, tmp_path: Path) -> None:  # noqa: ANN001, F811
    _, _, cid = alice
    mallory = new_signer(issuer, tmp_path)
    login(app, mallory)
    v = secrets.token_urlsafe(32)
    start = start_credential(app, cid, [digest()], v)
    out = wallet_answers(app, start, mallory)
    assert out.status_code == 400 and out.body["error_description"] == "Invalid parameter credentialID"
    st = poll(app, start["status_url"])
    assert st["status"] == "failed" and "error=access_denied" in st["redirect_to"]


def test_rejects_disabled_or_deleted_credential_after_authorization(server: Server, app: App, issuer: PidIssuer, tmp_path: Path) -> None:  # noqa: F811
    carol = new_signer(issuer, tmp_path)
    cid = credential_id_of(app, login(app, carol)["access_token"])
    h = [digest()]
    tok = credential_token(app, carol, cid, h)["access_token"]
    server.cli("credentials", "disable", cid)
    assert_sad_error(sign_hash(app, tok, cid, h, sad_in_body=True), "Credential is disabled")
    server.cli("credentials", "enable", cid)
    server.cli("credentials", "delete", cid)
    assert_sad_error(sign_hash(app, tok, cid, h, sad_in_body=True), "Invalid parameter credentialID")


WALLET_TAMPERS = {
    "transaction_data_hash_over_decoded_json": None,
    "transaction_data_hashes_alg_other_algorithm": Tamper(kb_claims={"transaction_data_hashes_alg": "sha-384"}),
    "qes_approval_claim_over_other_entry": Tamper(kb_claims={
        "org.cloudsignatureconsortium.dm.1.qesApproval": base64.b64encode(hashlib.sha256(b"other").digest()).decode()}),
    "missing_transaction_data_hashes": Tamper(kb_claims={"transaction_data_hashes": None}),
}


@pytest.mark.parametrize("case", sorted(WALLET_TAMPERS))
def test_rejects_wallet_binding(app: App, alice, case: str) -> None:  # noqa: ANN001
    signer, _, cid = alice
    v = secrets.token_urlsafe(32)
    start = start_credential(app, cid, [digest()], v)
    tamper = WALLET_TAMPERS[case]
    if tamper is None:
        from wallet import resolve

        from tests.integration.signer_flow import root_ca

        req = resolve(start["uri"], http=app.http, trust_anchors=[root_ca(app.srv)])
        decoded = base64.urlsafe_b64decode(req.transaction_data_raw[0] + "==")
        wrong = base64.urlsafe_b64encode(hashlib.sha256(decoded).digest()).rstrip(b"=").decode()
        tamper = Tamper(kb_claims={"transaction_data_hashes": [wrong]})
    out = wallet_answers(app, start, signer, tamper)
    assert out.status_code == 400, out.body
    st = poll(app, start["status_url"])
    assert st["status"] == "failed" and "error=access_denied" in st["redirect_to"]


def test_single_element_array_alg_is_accepted(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    v = secrets.token_urlsafe(32)
    h = [digest()]
    start = start_credential(app, cid, h, v)
    out = wallet_answers(app, start, signer, Tamper(kb_claims={"transaction_data_hashes_alg": ["sha-256"]}))
    assert out.status_code == 200, out.body
    tok = app.token(code_from(poll(app, start["status_url"])["redirect_to"]), v).json()["access_token"]
    assert sign_hash(app, tok, cid, h).status_code == 200


def test_rejects_pkce_mismatch_and_burns_the_code(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    v = secrets.token_urlsafe(32)
    start = start_credential(app, cid, [digest()], v)
    assert wallet_answers(app, start, signer).status_code == 200
    code = code_from(poll(app, start["status_url"])["redirect_to"])
    r = app.token(code, secrets.token_urlsafe(32))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = app.token(code, v)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"  # no usable partial authorization


def test_rejects_code_used_twice(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    v = secrets.token_urlsafe(32)
    start = start_credential(app, cid, [digest()], v)
    assert wallet_answers(app, start, signer).status_code == 200
    code = code_from(poll(app, start["status_url"])["redirect_to"])
    assert app.token(code, v).status_code == 200
    r = app.token(code, v)
    assert r.status_code == 400 and r.json() == {"error": "invalid_grant", "error_description": "Authorization code is invalid or expired"}


def test_rejects_par_request_uri_used_twice(app: App, alice) -> None:  # noqa: ANN001
    _, _, cid = alice
    par = app.par("credential", verifier=secrets.token_urlsafe(32), authorization_details=details(cid, [digest()]))
    uri = par.json()["request_uri"]
    assert app.authorize(uri).status_code == 200
    r = app.authorize(uri)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_rejects_redirect_uri_mismatch(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    r = app.http.post(f"{app.srv.base_url}/oauth2/pushed_authorize", auth=app.auth, data={
        "response_type": "code", "client_id": app.client_id, "redirect_uri": "https://evil.example/cb", "scope": "service",
        "code_challenge": s256("x" * 43), "code_challenge_method": "S256"})
    assert r.status_code == 400 and "redirect_uri" in r.json()["error_description"]
    r = app.http.get(f"{app.srv.base_url}/oauth2/authorize", params={
        "response_type": "code", "client_id": app.client_id, "redirect_uri": "https://evil.example/cb",
        "code_challenge": s256("x" * 43), "code_challenge_method": "S256"}, follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers  # never redirected to an unregistered URI
    v = secrets.token_urlsafe(32)
    start = start_credential(app, cid, [digest()], v)
    assert wallet_answers(app, start, signer).status_code == 200
    code = code_from(poll(app, start["status_url"])["redirect_to"])
    r = app.token(code, v, redirect_uri=REDIRECT + "/other")
    assert r.status_code == 400 and r.json()["error_description"] == "redirect_uri parameter does not match"


def test_errors_after_redirect_validation_are_redirected(app: App) -> None:
    r = app.http.get(f"{app.srv.base_url}/oauth2/authorize", params={
        "response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT, "state": "s1"}, follow_redirects=False)
    assert r.status_code == 302
    loc = r.headers["location"]
    assert loc.startswith(REDIRECT + "?") and "error=invalid_request" in loc and "state=s1" in loc and "PKCE" in loc


def test_rejects_tampered_evidence_at_signing(server: Server, app: App, alice) -> None:  # noqa: ANN001
    """The SAM re-checks the wallet evidence behind the SAD at signHash, not only the SAD."""
    import asyncio

    from sqlalchemy import text

    from app.store.engine import make_engine

    signer, _, cid = alice
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    payload = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
    url = server.env.get("RQES_DATABASE_URL") or f"sqlite:///{server.data_dir / 'rqes.db'}"

    async def tamper() -> None:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE evidence SET content = replace(content, '\"nonce\"', '\"nonce\" ') WHERE evidence_id = :e"),
                               {"e": payload["evd"]})
        await engine.dispose()

    asyncio.run(tamper())
    assert_sad_error(sign_hash(app, tok, cid, h, sad_in_body=True))
    assert server.cli_json("audit", "tail", "-n", "1", "--kind", "signature.refused")[0]["data"]["reason"] == "evidence_missing"


def test_rejects_forged_credential_token_as_bearer(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    parts = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
    claims["hashes"] = [base64.urlsafe_b64encode(digest()).rstrip(b"=").decode()]
    forged = ".".join([parts[0], base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode(), parts[2]])
    r = sign_hash(app, forged, cid, h)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert sign_hash(app, tok, cid, h).status_code == 200


def test_revoked_credential_token_cannot_sign(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    assert app.http.post(f"{app.srv.base_url}/oauth2/revoke", auth=app.auth, data={"token": tok}).status_code == 200
    assert_sad_error(sign_hash(app, tok, cid, h, sad_in_body=True))


def test_audit_verify_evidence_traces_every_signature(server: Server, app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    h = [digest()]
    tok = credential_token(app, signer, cid, h)["access_token"]
    assert sign_hash(app, tok, cid, h).status_code == 200
    r = server.cli("audit", "verify", "--evidence", check=False)
    assert r.returncode == 0, r.stderr
    assert "wallet-approved signatures traced to their evidence" in r.stdout


# -- regressions from the security review --------------------------------------------------------------
def test_rejects_reading_another_purposes_result_through_enroll_status(app: App, alice) -> None:  # noqa: ANN001
    from wallet import approve

    from tests.integration.signer_flow import root_ca

    signer, service, cid = alice
    r = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/authorize", headers={"Authorization": f"Bearer {service}"},
                      json={"credentialID": cid, "numSignatures": 1, "hashes": [b64(digest())], "hashAlgorithmOID": SHA256})
    handle = r.json()["handle"]
    assert approve(r.json()["approvalURI"], signer.wallet, trust_anchors=[root_ca(app.srv)], confirm=lambda *_: True).status_code == 200
    leak = httpx.get(f"{app.srv.base_url}/enroll/status/{handle}")
    assert leak.status_code == 404 and "SAD" not in leak.text
    st = httpx.get(f"{app.srv.base_url}/csc/approve/{handle}/status")
    assert st.json() == {"status": "done"}


def test_rejects_authorize_status_polled_from_another_session(app: App, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    v = secrets.token_urlsafe(32)
    start = start_credential(app, cid, [digest()], v)
    assert wallet_answers(app, start, signer).status_code == 200
    other = httpx.get(start["status_url"])  # an attacker who phished the QR code polls without the session cookie
    assert other.status_code == 403 and "code=" not in other.text
    mine = poll(app, start["status_url"])
    assert mine["status"] == "done" and "code=" in mine["redirect_to"]
    again = app.http.get(start["status_url"])  # handed out once
    assert again.status_code == 400 and "code=" not in again.text


def test_rejects_credential_token_of_a_removed_client(server: Server, alice) -> None:  # noqa: ANN001
    signer, _, cid = alice
    temp = App.register(server)
    h = [digest()]
    tok = credential_token(temp, signer, cid, h)["access_token"]
    server.cli("clients", "remove", "--client-id", temp.client_id)
    r = sign_hash(temp, tok, cid, h)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_signer_enrolls_again_after_the_credential_was_deleted(server: Server, app: App, issuer: PidIssuer, tmp_path: Path) -> None:  # noqa: F811
    dave = new_signer(issuer, tmp_path)
    first = credential_id_of(app, login(app, dave)["access_token"])
    server.cli("credentials", "delete", first)
    second = credential_id_of(app, login(app, dave)["access_token"])
    assert second != first


@pytest.mark.parametrize("how", ["path", "query", "form", "json"])
def test_rejects_nul_characters(app: App, alice, how: str) -> None:  # noqa: ANN001
    _, service, _ = alice
    base = app.srv.base_url
    if how == "path":
        r = app.http.get(f"{base}/enroll/status/a%00b")
    elif how == "query":
        r = app.http.get(f"{base}/oauth2/authorize", params={"client_id": "a\x00b"})
    elif how == "form":
        r = app.http.post(f"{base}/oauth2/token", data={"grant_type": "client_credentials", "client_id": "x\x00"})
    else:
        r = app.http.post(f"{base}/csc/v2/credentials/info", content=b'{"credentialID":"a\\u0000"}',
                          headers={"Authorization": f"Bearer {service}", "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_rejects_python_literal_details_that_are_not_json(app: App, alice) -> None:  # noqa: ANN001
    _, _, cid = alice
    bad = "[{'type': 'credential', 'credentialID': '%s', 'hashAlgorithmOID': '%s', 'x': b'1', " \
          "'documentDigests': [{'hash': '%s'}]}]" % (cid, SHA256, b64(digest()))
    r = app.par("credential", verifier=secrets.token_urlsafe(32), authorization_details=bad)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_rejects_enrollment_response_code_at_authorize_done(app: App, alice, issuer: PidIssuer, tmp_path: Path) -> None:  # noqa: ANN001, F811
    from wallet import build_presentation, resolve, respond

    from tests.integration.signer_flow import root_ca

    w = new_signer(issuer, tmp_path)
    http = httpx.Client()
    start = http.get(f"{app.srv.base_url}/enroll/start").json()
    out = respond(build_presentation(w.wallet, resolve(start["uri"], http=http, trust_anchors=[root_ca(app.srv)])),
                  http=http, follow_redirect=False)
    code = out.body["redirect_uri"].split("response_code=")[1]
    r = http.get(f"{app.srv.base_url}/oauth2/authorize/done", params={"response_code": code})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_par_error_with_a_query_in_the_registered_redirect_uri(server: Server) -> None:
    out = server.cli_json("clients", "add", "--client-id", f"q-{secrets.token_hex(3)}", "--grant", "authorization_code",
                          "--redirect-uri", "http://127.0.0.1/cb?flag")
    r = httpx.post(f"{server.base_url}/oauth2/pushed_authorize", auth=(out["client_id"], out["client_secret"]), data={
        "response_type": "token", "client_id": out["client_id"], "redirect_uri": "http://127.0.0.1/cb?flag",
        "code_challenge": s256("y" * 43), "code_challenge_method": "S256"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_response_type"
