"""The signature creation application in wallet/client.py: the pure parts (PKCE, authorization
details, the authorization response), the exact requests it sends (over httpx.MockTransport, with
the wallet's approval stubbed) and the signHash body and Bearer header it hands pyHanko."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pyhanko.sign.signers import csc_signer

from wallet import client as sca
from wallet.client import (ClientError, OAuthError, RqesClient, choose_credential, credential_authorization_details,
                           parse_redirect, pkce_pair)
from wallet.holder import Outcome

SHA256 = "2.16.840.1.101.3.4.2.1"
SHA384 = "2.16.840.1.101.3.4.2.2"
DIGEST = hashlib.sha256(b"contract").digest()
DIGEST_B64 = base64.b64encode(DIGEST).decode()
CALLBACK = "http://127.0.0.1/callback"


# -- PKCE ---------------------------------------------------------------------------------------

def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    verifier, challenge = pkce_pair("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    assert verifier == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_fresh_pkce_pairs_are_43_char_verifiers_with_their_s256_challenge() -> None:
    (v1, c1), (v2, _) = pkce_pair(), pkce_pair()
    assert len(v1) == 43 and v1 != v2
    assert c1 == base64.urlsafe_b64encode(hashlib.sha256(v1.encode()).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize("verifier", ["short", "x" * 129, "a" * 42 + "+", "a" * 42 + "="], ids=[
    "too-short", "too-long", "plus", "padding"])
def test_pkce_rejects_verifiers_outside_rfc7636(verifier: str) -> None:
    with pytest.raises(ClientError, match="code_verifier"):
        pkce_pair(verifier)


# -- authorization_details ----------------------------------------------------------------------

def test_authorization_details_for_one_digest() -> None:
    assert credential_authorization_details("cred-1", [DIGEST_B64], labels=["contract.pdf"]) == [{
        "type": "credential", "credentialID": "cred-1",
        "documentDigests": [{"hash": DIGEST_B64, "label": "contract.pdf"}],
        "hashAlgorithmOID": SHA256, "numSignatures": 1}]


def test_authorization_details_normalise_digests_to_standard_base64() -> None:
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(40)]
    urlsafe = [base64.urlsafe_b64encode(d).rstrip(b"=").decode() for d in digests]
    assert any(c in "".join(urlsafe) for c in "-_"), "the vector must exercise the base64url alphabet"
    (details,) = credential_authorization_details("c", urlsafe)
    assert [d["hash"] for d in details["documentDigests"]] == [base64.b64encode(d).decode() for d in digests]
    assert details["numSignatures"] == 40
    assert [d["label"] for d in details["documentDigests"]][:2] == ["Document 1", "Document 2"]


def test_authorization_details_2025_type_and_sha384() -> None:
    d384 = base64.b64encode(hashlib.sha384(b"x").digest()).decode()
    (details,) = credential_authorization_details("c", [d384], hash_algorithm_oid=SHA384, type_=sca.CREDENTIAL_TYPE_2025)
    assert details["type"] == "https://cloudsignatureconsortium.org/2025/credential"
    assert details["hashAlgorithmOID"] == SHA384 and details["documentDigests"][0]["hash"] == d384


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"hashes": []}, "at least one"),
    ({"hashes": ["not base64!"]}, "not base64"),
    ({"hashes": [base64.b64encode(b"short").decode()]}, "5 bytes"),
    ({"hashes": [DIGEST_B64], "hash_algorithm_oid": SHA384}, "32 bytes, the hash algorithm gives 48"),
    ({"hashes": [DIGEST_B64], "hash_algorithm_oid": "1.3.14.3.2.26"}, "unsupported hashAlgorithmOID"),
    ({"hashes": [DIGEST_B64], "labels": ["a", "b"]}, "2 labels for 1 hashes"),
    ({"hashes": [DIGEST_B64], "credential_id": ""}, "credentialID is required"),
], ids=["no-digest", "not-base64", "wrong-length", "algorithm-mismatch", "sha1", "labels", "no-credential"])
def test_authorization_details_refuse_bad_input(kwargs: dict[str, Any], match: str) -> None:
    credential_id = kwargs.pop("credential_id", "c")
    with pytest.raises(ClientError, match=match):
        credential_authorization_details(credential_id, kwargs.pop("hashes"), **kwargs)


# -- the authorization response -------------------------------------------------------------------

def test_code_and_state_from_redirect_to() -> None:
    assert parse_redirect(f"{CALLBACK}?code=abc%2Bdef&state=s1", state="s1", redirect_uri=CALLBACK) == "abc+def"


@pytest.mark.parametrize(("redirect_to", "match"), [
    (f"{CALLBACK}?code=c&state=other", "another state"),
    (f"{CALLBACK}?code=c", "another state"),
    (f"{CALLBACK}?code=c&state=s1&state=s1", "repeats state"),
    ("http://127.0.0.1/evil?code=c&state=s1", "not to our redirect_uri"),
    (f"{CALLBACK}?state=s1", "no code"),
    (f"{CALLBACK}?code=c&state=s1&iss=http%3A%2F%2Fother", "RFC 9207"),
], ids=["state-mismatch", "state-missing", "state-repeated", "wrong-redirect-uri", "no-code", "iss-mismatch"])
def test_bad_authorization_responses_are_refused(redirect_to: str, match: str) -> None:
    with pytest.raises(ClientError, match=match):
        parse_redirect(redirect_to, state="s1", redirect_uri=CALLBACK, issuer="http://rqes")


def test_error_response_is_raised_with_its_code() -> None:
    with pytest.raises(OAuthError, match="the user said no") as e:
        parse_redirect(f"{CALLBACK}?error=access_denied&error_description=the+user+said+no&state=s1", state="s1")
    assert e.value.error == "access_denied"


def test_error_response_with_another_state_is_a_state_error() -> None:
    with pytest.raises(ClientError, match="another state"):
        parse_redirect(f"{CALLBACK}?error=access_denied&state=forged", state="s1")


# -- credential choice --------------------------------------------------------------------------

LISTING = {"credentialIDs": ["old", "new"], "credentialInfos": [
    {"credentialID": "old", "key": {"status": "disabled"}, "cert": {"status": "valid"}},
    {"credentialID": "new", "key": {"status": "enabled"}, "cert": {"status": "valid"}}]}


def test_choose_credential() -> None:
    assert choose_credential(LISTING) == "new"
    assert choose_credential(LISTING, "old") == "old"
    assert choose_credential({"credentialIDs": ["only"]}) == "only"
    with pytest.raises(ClientError, match="not one of this signer's"):
        choose_credential(LISTING, "someone-elses")
    with pytest.raises(ClientError, match="no credential"):
        choose_credential({"credentialIDs": []})


# -- the requests on the wire -------------------------------------------------------------------

SERVER = "http://rqes.test"


class FakeRqes:
    """Just enough of the server contract to record what the client sends."""

    def __init__(self, *, status_sequence: list[dict[str, Any]] | None = None, echo_state: bool = True) -> None:
        self.requests: list[httpx.Request] = []
        self.par_form: dict[str, str] = {}
        self.status_sequence = status_sequence
        self.echo_state = echo_state

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json={
                "issuer": SERVER, "authorization_endpoint": f"{SERVER}/oauth2/authorize",
                "token_endpoint": f"{SERVER}/oauth2/token",
                "pushed_authorization_request_endpoint": f"{SERVER}/oauth2/pushed_authorize",
                "revocation_endpoint": f"{SERVER}/oauth2/revoke"})
        if path == "/oauth2/pushed_authorize":
            self.par_form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            return httpx.Response(201, json={"request_uri": "urn:ietf:params:oauth:request_uri:r1", "expires_in": 90})
        if path == "/oauth2/authorize":
            if request.headers.get("accept") != "application/json":
                return httpx.Response(200, text="<html>QR</html>")
            return httpx.Response(200, json={"transaction_id": "t1", "uri": "openid4vp://?client_id=x&request_uri=y",
                                             "status_url": "/oauth2/authorize/status/t1"})
        if path == "/oauth2/authorize/status/t1":
            if self.status_sequence:
                return httpx.Response(200, json=self.status_sequence.pop(0))
            state = self.par_form["state"] if self.echo_state else "forged"
            return httpx.Response(200, json={"status": "done", "redirect_to": f"{CALLBACK}?code=C1&state={state}"})
        if path == "/oauth2/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if form.get("code") != "C1":
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "Invalid code"})
            scope = self.par_form["scope"]
            body: dict[str, Any] = {"access_token": f"{scope}-token", "token_type": "Bearer", "expires_in": 300,
                                    "scope": scope}
            if scope == "credential":
                body["authorization_details"] = json.loads(self.par_form["authorization_details"])
                body["credentialID"] = body["authorization_details"][0]["credentialID"]
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={"error": "not_found"})


@pytest.fixture
def approvals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def fake_approve(uri: str, wallet: Any, **kw: Any) -> Outcome:
        seen.append(uri)
        return Outcome(200, {})

    monkeypatch.setattr(sca, "wallet_approve", fake_approve)
    monkeypatch.setattr(sca, "POLL_INTERVAL", 0.0)
    return seen


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


async def test_confidential_client_credential_authorization_on_the_wire(approvals: list[str]) -> None:
    fake = FakeRqes(status_sequence=[{"status": "pending"}])
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        rqes = RqesClient(SERVER, "demo app", http=http, client_secret="s3cr:t", redirect_uri=CALLBACK)
        tokens = await rqes.authorize_credential(object(), "cred-1", [DIGEST_B64], labels=["contract.pdf"])  # type: ignore[arg-type]

    assert tokens.access_token == "credential-token" and tokens.credential_id == "cred-1"
    assert approvals == ["openid4vp://?client_id=x&request_uri=y"]
    by_path = {r.url.path: r for r in fake.requests}
    par, token = by_path["/oauth2/pushed_authorize"], by_path["/oauth2/token"]
    # RFC 6749 §2.3.1: id and secret are form-urlencoded inside HTTP Basic.
    basic = "Basic " + base64.b64encode(b"demo%20app:s3cr%3At").decode()
    assert par.headers["authorization"] == basic and token.headers["authorization"] == basic
    p = form_of(par)
    assert {k: p[k] for k in ("response_type", "client_id", "redirect_uri", "code_challenge_method", "scope")} == {
        "response_type": "code", "client_id": "demo app", "redirect_uri": CALLBACK, "code_challenge_method": "S256",
        "scope": "credential"}
    assert json.loads(p["authorization_details"]) == credential_authorization_details(
        "cred-1", [DIGEST_B64], labels=["contract.pdf"])
    authorize = by_path["/oauth2/authorize"]
    assert dict(authorize.url.params) == {"client_id": "demo app", "request_uri": "urn:ietf:params:oauth:request_uri:r1"}
    t = form_of(token)
    assert t["grant_type"] == "authorization_code" and t["code"] == "C1" and t["redirect_uri"] == CALLBACK
    assert pkce_pair(t["code_verifier"])[1] == p["code_challenge"]
    assert [r.url.path for r in fake.requests].count("/oauth2/authorize/status/t1") == 2


async def test_public_client_sends_no_basic_auth(approvals: list[str]) -> None:
    fake = FakeRqes()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        tokens = await RqesClient(SERVER, "pub", http=http).service_login(object())  # type: ignore[arg-type]
    assert tokens.access_token == "service-token"
    for r in fake.requests:
        assert "authorization" not in r.headers
    assert fake.par_form["scope"] == "service" and "authorization_details" not in fake.par_form


async def test_forged_state_in_redirect_to_stops_before_the_token_request(approvals: list[str]) -> None:
    fake = FakeRqes(echo_state=False)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        with pytest.raises(ClientError, match="another state"):
            await RqesClient(SERVER, "pub", http=http).service_login(object())  # type: ignore[arg-type]
    assert "/oauth2/token" not in [r.url.path for r in fake.requests]


async def test_failed_approval_reports_the_server_error(approvals: list[str]) -> None:
    fake = FakeRqes(status_sequence=[{"status": "failed", "result": {
        "error": "access_denied", "error_description": "The PID is revoked"}}])
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        with pytest.raises(OAuthError, match="The PID is revoked") as e:
            await RqesClient(SERVER, "pub", http=http).service_login(object())  # type: ignore[arg-type]
    assert e.value.error == "access_denied"


async def test_approval_wait_is_bounded(approvals: list[str]) -> None:
    fake = FakeRqes(status_sequence=[{"status": "pending"}] * 1000)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        rqes = RqesClient(SERVER, "pub", http=http, approval_timeout=0.05)
        with pytest.raises(ClientError, match="did not complete within"):
            await rqes.service_login(object())  # type: ignore[arg-type]


async def test_metadata_naming_another_issuer_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": "http://elsewhere", "authorization_endpoint": "a",
                                         "token_endpoint": "t", "pushed_authorization_request_endpoint": "p"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(ClientError, match="RFC 8414"):
            await RqesClient(SERVER, "pub", http=http).discover()


# -- pyHanko glue -------------------------------------------------------------------------------

def credential_info() -> csc_signer.CSCCredentialInfo:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Signer")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return csc_signer.CSCCredentialInfo(
        signing_cert=asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER)), chain=[],
        supported_mechanisms=frozenset({"sha256_ecdsa"}), max_batch_size=1, hash_pinning_required=True,
        response_data={})


async def test_signhash_body_has_v2_names_and_the_credential_token_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    session_info = csc_signer.CSCServiceSessionInfo(SERVER, "cred-1", oauth_token="service-token", api_ver="v2")
    seen: list[list[str]] = []

    async def authorize_credential(wallet: Any, credential_id: str, hashes_: list[str], **kw: Any) -> sca.Tokens:
        seen.append(hashes_)
        assert credential_id == "cred-1" and kw["hash_algorithm_oid"] == SHA256 and kw["labels"] == ["doc.pdf"]
        return sca.Tokens("sad-1", "Bearer", datetime.now(timezone.utc), "credential", "cred-1", None, None, {})

    async with httpx.AsyncClient() as http:
        rqes = RqesClient(SERVER, "pub", http=http)
        monkeypatch.setattr(rqes, "authorize_credential", authorize_credential)
        auth = sca.WalletAuthorizationManager(session_info, credential_info(), rqes=rqes, wallet=object(),  # type: ignore[arg-type]
                                              label="doc.pdf")
        assert auth.auth_headers == {"Authorization": "Bearer service-token"}
        signer = sca.RqesCSCSigner(None, auth)  # type: ignore[arg-type]
        req = await signer.format_csc_signing_req([DIGEST_B64], "sha256")

    assert seen == [[DIGEST_B64]]
    assert req == {"credentialID": "cred-1", "hashes": [DIGEST_B64], "hashAlgorithmOID": SHA256,
                   "signAlgo": "1.2.840.10045.4.3.2"}
    assert auth.auth_headers == {"Authorization": "Bearer sad-1"}
