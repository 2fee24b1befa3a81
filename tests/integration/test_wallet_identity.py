"""Wallet identity over real HTTP: the reference wallet presents a PID over OpenID4VP 1.0 to a
running rqes (SoftHSM, SQLite/PostgreSQL), which verifies it and enrolls the signer.

The OpenID Foundation verifier test modules (openid4vp-sdjwt.md §13) are mirrored here with the
reference wallet playing the conformance suite's mock wallet: positive modules must enroll,
negative ones must be rejected with a clear error and leave no signer and no key behind.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from cryptography import x509

from tests.conftest import ROOT, Server, free_port, make_server
from wallet import PidAttributes, PidIssuer, Tamper, Wallet, build_presentation, resolve, respond, serve_in_thread
from wallet.holder import fetch_request_object, parse_invocation, verify_request_object

WALLET = [sys.executable, "-m", "wallet"]


def root_ca(srv: Server) -> x509.Certificate:
    return x509.load_pem_x509_certificate((srv.data_dir / "ca" / "root.pem").read_bytes())


def new_wallet(issuer: PidIssuer, tmp: Path, *, pan: str | None = None, given: str = "Erika", family: str = "Mustermann",
               birthdate: str = "1964-08-12", lifetime: timedelta | None = None, holder_jwk: dict | None = None) -> tuple[Wallet, Any]:
    w = Wallet.create(tmp / f"wallet-{secrets.token_hex(4)}.json")
    kw = {"lifetime": lifetime} if lifetime is not None else {}
    pid = issuer.issue(holder_jwk or w.holder_jwk, PidAttributes(
        given_name=given, family_name=family, birthdate=birthdate,
        personal_administrative_number=pan or f"PAN{secrets.token_hex(5)}"), **kw)
    w.add_credential(pid.sd_jwt)
    w.save()
    return w, pid


class Flow:
    """One enrollment from the wallet's side, step by step, in one HTTP session."""

    def __init__(self, srv: Server, **params: str) -> None:
        self.srv = srv
        self.http = httpx.Client(timeout=30)
        q = {"flow": "same-device", **params}
        r = self.http.get(f"{srv.base_url}/enroll/start", params=q)
        assert r.status_code == 200, r.text
        self.start = r.json()
        self.request = resolve(self.start["uri"], http=self.http, trust_anchors=[root_ca(srv)])

    def present(self, wallet: Wallet, tamper: Tamper | None = None) -> Any:
        return build_presentation(wallet, self.request, tamper=tamper)

    def status(self) -> dict:
        return self.http.get(self.start["status_url"]).json()


def enrolled_credentials(srv: Server) -> set[str]:
    return {c["credentialID"] for c in srv.cli_json("credentials", "list") if c["kind"] == "signature"}


def assert_rejected(flow: Flow, outcome: Any, fragment: str) -> None:
    assert outcome.status_code == 400, (outcome.status_code, outcome.body)
    assert outcome.body["error"] in ("invalid_request", "access_denied"), outcome.body
    assert fragment.lower() in outcome.body["error_description"].lower(), outcome.body
    st = flow.status()
    assert st["status"] == "failed" and st["result"]["error"] == outcome.body["error"]


# -- positive modules ----------------------------------------------------------------------------------
def test_happy_flow_enrolls_and_issues_a_qualified_certificate(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    before = enrolled_credentials(server)
    w, _ = new_wallet(issuer, tmp_path, given="Erika", family="Mustermann", pan="PAN1000001")
    flow = Flow(server)
    assert flow.request.client_id.startswith("x509_hash:") and flow.request.response_mode == "direct_post.jwt"
    out = respond(flow.present(w), http=flow.http)
    assert out.ok, out.to_json()
    assert out.final_body["status"] == "done" and out.final_body["result"]["enrolled"] is True
    cid = out.final_body["result"]["credentialID"]
    assert enrolled_credentials(server) - before == {cid}
    listed = {c["credentialID"]: c for c in server.cli_json("credentials", "list", "--certificates")}[cid]
    leaf, issuing, root = (x509.load_pem_x509_certificate(p.encode()) for p in listed["certificates"])
    leaf.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(root)
    assert root == root_ca(server)
    names = {a.oid.dotted_string: a.value for a in leaf.subject}
    assert names["2.5.4.42"] == "Erika" and names["2.5.4.4"] == "Mustermann"
    assert names["2.5.4.5"] == "PNODE-PAN1000001" and names["2.5.4.6"] == "DE"
    qc = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3")).value.value
    from asn1crypto.core import ObjectIdentifier

    assert ObjectIdentifier("0.4.0.1862.1.6.1").dump() in qc  # QcType esign
    kinds = [r["kind"] for r in server.cli_json("audit", "tail", "-n", "8")]
    assert {"signer.enrolled", "key.generated", "certificate.issued", "credential.created"} <= set(kinds)


def test_second_enrollment_finds_the_existing_signer(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path, pan="PAN2000002")
    flow = Flow(server)
    first = respond(flow.present(w), http=flow.http).final_body
    w2, _ = new_wallet(issuer, tmp_path, pan="PAN2000002")  # re-issued PID, new wallet key, same person
    flow = Flow(server)
    second = respond(flow.present(w2), http=flow.http).final_body
    assert second["result"]["enrolled"] is False
    assert second["result"]["credentialID"] == first["result"]["credentialID"]


def test_namesakes_born_the_same_day_do_not_collide(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    ids = []
    for pan in ("PAN3000003", "PAN3000004"):
        w, _ = new_wallet(issuer, tmp_path, given="Max", family="Muster", birthdate="1990-01-01", pan=pan)
        flow = Flow(server)
        ids.append(respond(flow.present(w), http=flow.http).final_body["result"]["credentialID"])
    assert ids[0] != ids[1]


def test_minimal_cnf_jwk(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w = Wallet.create(tmp_path / "minimal.json")
    minimal = {k: w.holder_jwk[k] for k in ("kty", "crv", "x", "y")}
    pid = issuer.issue(minimal, PidAttributes(given_name="Min", family_name="Imal", birthdate="1980-02-02",
                                              personal_administrative_number=f"PAN{secrets.token_hex(4)}"))
    w.add_credential(pid.sd_jwt)
    flow = Flow(server)
    assert respond(flow.present(w), http=flow.http).ok


@pytest.mark.parametrize("method", ["get", "post"])
def test_request_uri_method(server: Server, issuer: PidIssuer, tmp_path: Path, method: str) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server, request_uri_method=method)
    assert ("request_uri_method=post" in flow.start["uri"]) == (method == "post")
    assert respond(flow.present(w), http=flow.http).ok


def test_request_uri_fetched_twice(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    """The conformance module expects acceptance: both fetches give a valid object for the same
    transaction (same nonce); the response is still accepted once."""
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    inv = parse_invocation(flow.start["uri"])
    jws, nonce = fetch_request_object(inv, flow.http)
    again = verify_request_object(jws, client_id=inv.client_id, trust_anchors=[root_ca(server)], wallet_nonce=nonce)
    assert again.nonce == flow.request.nonce
    assert respond(flow.present(w), http=flow.http).ok
    r = flow.http.get(inv.request_uri)
    assert r.status_code == 404  # answered: the request object is gone


def test_plain_direct_post_and_legacy_qcert_type(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server, response_mode="direct_post", td="legacy")
    assert flow.request.transaction_data[0].type == "qcert_creation_acceptance"
    assert respond(flow.present(w), http=flow.http).ok


def test_enroll_cli_same_device(server: Server, tmp_path: Path) -> None:
    state = tmp_path / "issuer-state"
    port = free_port()
    srv = subprocess.Popen([*WALLET, "pid-issuer", "serve", "--port", str(port), "--state-dir", str(state)],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        for _ in range(50):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        wf = tmp_path / "cli-wallet.json"
        r = subprocess.run([*WALLET, "issue-pid", "--wallet", str(wf), "--given-name", "Cli", "--family-name", "User",
                            "--birthdate", "1970-07-07", "--nationality", "BE", "--issuing-country", "BE",
                            "--state-dir", str(state)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert (wf.stat().st_mode & 0o777) == 0o600
        r = subprocess.run([*WALLET, "enroll", "--wallet", str(wf), "--server", server.base_url, "--yes",
                            "--verifier-ca", str(server.data_dir / "ca" / "root.pem")], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["status"] == "done" and out["result"]["enrolled"] is True
        assert "qc-request" in r.stderr or "terms" in r.stderr.lower()  # the wallet showed what it approved
    finally:
        srv.terminate()
        srv.wait(10)


# -- negative modules: each rejected, nothing enrolled -----------------------------------------------
NEGATIVE = {
    "invalid_credential_signature": (Tamper(corrupt_issuer_signature=True), "signature"),
    "invalid_kb_jwt_signature": (Tamper(corrupt_kb_signature=True), "signature"),
    "invalid_sd_hash": (Tamper(kb_claims={"sd_hash": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}), "sd_hash"),
    "invalid_kb_jwt_nonce": (Tamper(nonce="not-the-nonce"), "nonce"),
    "invalid_kb_jwt_aud": (Tamper(aud="x509_san_dns:evil.example"), "aud"),
    "kb_jwt_iat_in_past": (Tamper(iat_offset=-365 * 86400), "iat"),
    "kb_jwt_iat_in_future": (Tamper(iat_offset=365 * 86400), "iat"),
    "kb_jwt_alg_none": (Tamper(kb_header={"alg": "none"}), "alg"),
    "missing_kb_jwt": (Tamper(omit_kb_jwt=True), "key binding"),
    "transaction_data_hash_over_decoded_json": (None, "transaction"),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_rejects(server: Server, issuer: PidIssuer, tmp_path: Path, case: str) -> None:
    before = enrolled_credentials(server)
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    tamper, fragment = NEGATIVE[case]
    if case == "transaction_data_hash_over_decoded_json":
        import base64
        import hashlib

        decoded = base64.urlsafe_b64decode(flow.request.transaction_data_raw[0] + "==")
        wrong = base64.urlsafe_b64encode(hashlib.sha256(decoded).digest()).rstrip(b"=").decode()
        tamper = Tamper(kb_claims={"transaction_data_hashes": [wrong]})
    out = respond(flow.present(w, tamper), http=flow.http)
    assert_rejected(flow, out, fragment)
    assert enrolled_credentials(server) == before


def _with_disclosures(p: Any, fn: Any) -> Any:
    token = p.vp_token["pid"][0]
    parts = token.split("~")
    parts = [parts[0], *fn(parts[1:-1]), parts[-1]]
    return dataclasses.replace(p, vp_token={"pid": ["~".join(parts)]})


def test_rejects_unreferenced_disclosure(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    import base64

    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    extra = base64.urlsafe_b64encode(json.dumps(["c2FsdHNhbHQ", "is_admin", True]).encode()).rstrip(b"=").decode()
    out = respond(_with_disclosures(flow.present(w), lambda ds: [*ds, extra]), http=flow.http)
    assert_rejected(flow, out, "disclosure")


def test_rejects_duplicate_disclosure(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    out = respond(_with_disclosures(flow.present(w), lambda ds: [*ds, ds[0]]), http=flow.http)
    assert_rejected(flow, out, "disclosure")


def test_rejects_expired_pid(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path, lifetime=timedelta(seconds=-3600))
    flow = Flow(server)
    assert_rejected(flow, respond(flow.present(w), http=flow.http), "expired")


@pytest.mark.parametrize("action,fragment", [("revoke", "revoked"), ("suspend", "suspended")])
def test_rejects_revoked_and_suspended_pid(server: Server, tmp_path: Path, action: str, fragment: str) -> None:
    iss = PidIssuer(tmp_path / f"issuer-{action}")  # its own status list, so no cached copy hides the change
    srv, url = serve_in_thread(iss)
    iss.set_public_url(url)
    try:
        w, pid = new_wallet(iss, tmp_path)
        getattr(iss, action)(pid.status_index)
        flow = Flow(server)
        assert_rejected(flow, respond(flow.present(w), http=flow.http), fragment)
    finally:
        srv.shutdown()


def test_rejects_replayed_response(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    p = flow.present(w)
    assert respond(p, http=flow.http).ok
    again = respond(p, http=flow.http)
    assert again.status_code == 400 and "already answered" in again.body["error_description"]


def test_rejects_replayed_response_code(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    out = respond(flow.present(w), http=flow.http, follow_redirect=False)
    assert out.status_code == 200 and "response_code=" in out.body["redirect_uri"]
    first = flow.http.get(out.body["redirect_uri"])
    assert first.status_code == 200 and first.json()["status"] == "done"
    second = flow.http.get(out.body["redirect_uri"])
    assert second.status_code == 400 and second.json()["error"] == "invalid_request"


def test_rejects_response_code_redeemed_in_another_session(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    out = respond(flow.present(w), http=flow.http, follow_redirect=False)
    r = httpx.get(out.body["redirect_uri"])  # no session cookie: an attacker who caught the redirect
    assert r.status_code == 400 and r.json()["error"] == "access_denied"


def test_rejects_unencrypted_response_when_encryption_was_asked(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    out = respond(flow.present(w), http=flow.http, encrypt=False)
    assert_rejected(flow, out, "encrypted")


def test_rejects_tampered_encrypted_response(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    from wallet.holder import encrypt_response

    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    p = flow.present(w)
    jwe = encrypt_response({"vp_token": p.vp_token, "state": flow.request.state}, flow.request.client_metadata)
    parts = jwe.split(".")
    parts[3] = ("B" if parts[3][0] != "B" else "C") + parts[3][1:]  # flip ciphertext
    r = flow.http.post(flow.request.response_uri, data={"response": ".".join(parts)})
    assert r.status_code == 400 and "decrypted" in r.json()["error_description"]


def test_rejects_wrong_state(server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(server)
    assert_rejected(flow, respond(flow.present(w), http=flow.http, state="other"), "state")


def test_request_object_tampered_before_the_wallet_reads_it_is_refused_by_the_wallet(server: Server) -> None:
    from wallet.errors import WalletError

    flow_http = httpx.Client()
    start = flow_http.get(f"{server.base_url}/enroll/start").json()
    inv = parse_invocation(start["uri"])
    jws, nonce = fetch_request_object(inv, flow_http)
    h, p, s = jws.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["response_uri"] = "https://attacker.example/collect"
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(WalletError):
        verify_request_object(f"{h}.{p2}.{s}", client_id=inv.client_id, trust_anchors=[root_ca(server)], wallet_nonce=nonce)


def test_request_object_is_haip_shaped(server: Server) -> None:
    flow_http = httpx.Client()
    start = flow_http.get(f"{server.base_url}/enroll/start").json()
    inv = parse_invocation(start["uri"])
    jws, _ = fetch_request_object(inv, flow_http)
    import base64

    header = json.loads(base64.urlsafe_b64decode(jws.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(jws.split(".")[1] + "=="))
    assert header["typ"] == "oauth-authz-req+jwt" and header["alg"] == "ES256" and len(header["x5c"]) == 2
    assert claims["client_id"] == inv.client_id and claims["response_type"] == "vp_token"
    assert "redirect_uri" not in claims and "scope" not in claims and "client_id_scheme" not in claims
    keys = claims["client_metadata"]["jwks"]["keys"]
    assert keys[0]["kid"] and keys[0]["alg"] == "ECDH-ES" and "d" not in keys[0]
    assert claims["client_metadata"]["encrypted_response_enc_values_supported"] == ["A128GCM", "A256GCM"]
    td = json.loads(base64.urlsafe_b64decode(claims["transaction_data"][0] + "=="))
    assert td["type"] == "https://cloudsignatureconsortium.org/2025/qc-request" and td["credential_ids"] == ["pid"]
    other = flow_http.get(f"{server.base_url}/enroll/start").json()
    jws2, _ = fetch_request_object(parse_invocation(other["uri"]), flow_http)
    claims2 = json.loads(base64.urlsafe_b64decode(jws2.split(".")[1] + "=="))
    assert claims2["nonce"] != claims["nonce"]
    assert claims2["client_metadata"]["jwks"]["keys"][0]["x"] != keys[0]["x"]  # an ephemeral key per request


@pytest.fixture(scope="module")
def untrusting_server() -> Iterator[Server]:
    """rqes trusting another PID CA only: the test PID issuer is unknown to it."""
    yield from make_server("sqlite", {"RQES_DEMO": "0", "RQES_TRUSTED_PID_ISSUERS": str(ROOT / "tests" / "data" / "other-pid-ca.pem")})


def test_rejects_untrusted_issuer(untrusting_server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(untrusting_server)
    assert_rejected(flow, respond(flow.present(w), http=flow.http), "trust")


@pytest.fixture(scope="module")
def san_dns_server() -> Iterator[Server]:
    yield from make_server("sqlite", {"RQES_OID4VP_CLIENT_ID_PREFIX": "x509_san_dns"})


def test_x509_san_dns_client_id(san_dns_server: Server, issuer: PidIssuer, tmp_path: Path) -> None:
    w, _ = new_wallet(issuer, tmp_path)
    flow = Flow(san_dns_server)
    assert flow.request.client_id == "x509_san_dns:127.0.0.1"
    out = respond(flow.present(w), http=flow.http)
    assert out.ok, out.to_json()


@pytest.mark.parametrize("form,content_type,status,fragment", [
    ({"state": "x"}, "application/x-www-form-urlencoded", 400, "encrypted response"),
    ({"response": "not-a-jwe"}, "application/x-www-form-urlencoded", 400, "could not be decrypted"),
    ({"response": "a.b.c.d.e", "vp_token": "{}"}, "application/x-www-form-urlencoded", 400, "unexpected parameters"),
    (None, "application/json", 400, "x-www-form-urlencoded"),
])
def test_rejects_malformed_wallet_responses(server: Server, form: dict | None, content_type: str, status: int,
                                           fragment: str) -> None:
    flow_http = httpx.Client()
    start = flow_http.get(f"{server.base_url}/enroll/start").json()
    rid = parse_invocation(start["uri"]).request_uri.rsplit("/", 1)[1]
    url = f"{server.base_url}/oid4vp/response/{rid}"
    if form is None:
        r = flow_http.post(url, content=b'{"vp_token": {}}', headers={"Content-Type": content_type})
    else:
        r = flow_http.post(url, data=form)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "error_description"} and fragment in r.json()["error_description"].lower()


def test_unknown_request_and_response_ids_get_404_json(server: Server) -> None:
    for method, path in (("GET", "/oid4vp/request/nope"), ("POST", "/oid4vp/response/nope")):
        r = httpx.request(method, f"{server.base_url}{path}", data={"vp_token": "{}"} if method == "POST" else None)
        assert r.status_code == 404 and r.json()["error"] == "invalid_request"
    r = httpx.get(f"{server.base_url}/enroll/status/nope")
    assert r.status_code == 404 and r.json()["error"] == "invalid_request"
    r = httpx.get(f"{server.base_url}/enroll/start", params={"response_mode": "fragment"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
