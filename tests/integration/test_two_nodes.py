"""Acceptance test of the multi-node issue: two ``rqes serve`` processes share one database
(PostgreSQL in CI, SQLite always). 200 concurrent signHash calls replaying one SAD with
numSignatures=1 and one hash, split across both nodes, produce exactly one signature.

Two SADs are replayed: a signer's credential token, approved with the reference wallet over
OpenID4VP (PAR, authorize, wallet response, code + PKCE) and used as the Bearer token of
signHash; and a seal's SAD from credentials/authorize, sent in the signHash body.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from tests.conftest import Server, engines, make_server
from tests.integration.test_multinode import start_node
from wallet import PidAttributes, PidIssuer, Wallet, approve

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
REDIRECT = "http://127.0.0.1/cb"
CALLS = 200
THREADS = 32
DEADLINE = 240  # seconds for the whole burst of 200 calls
REPLAY_ERROR = {"error": "invalid_request", "error_description": "Invalid parameter SAD"}


@dataclass
class Nodes:
    a: Server
    b_url: str

    @property
    def urls(self) -> list[str]:
        return [self.a.base_url, self.b_url]


@pytest.fixture(scope="module", params=engines())
def nodes(request: pytest.FixtureRequest) -> Iterator[Nodes]:
    for srv in make_server(request.param):
        proc, url = start_node(srv)
        try:
            yield Nodes(srv, url)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except Exception:  # noqa: BLE001
                proc.kill()
                proc.wait()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def one_hash() -> bytes:
    return hashlib.sha256(b"two nodes " + os.urandom(16)).digest()


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Signer:
    """A signer's client application: OAuth2 code flow with PKCE, approved by the reference wallet."""

    def __init__(self, srv: Server, wallet: Wallet) -> None:
        self.srv = srv
        self.wallet = wallet
        self.client_id = f"two-nodes-{secrets.token_hex(3)}"
        out = srv.cli_json("clients", "add", "--client-id", self.client_id, "--grant", "authorization_code",
                           "--grant", "refresh_token", "--redirect-uri", REDIRECT)
        self.secret = out["client_secret"]
        self.root = x509.load_pem_x509_certificate((srv.data_dir / "ca" / "root.pem").read_bytes())
        self.http = httpx.Client(timeout=30)

    def token(self, scope: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(8)
        form = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT,
                "code_challenge": challenge, "code_challenge_method": "S256", "state": state, "scope": scope}
        if details is not None:
            form["authorization_details"] = json.dumps(details)
        base = self.srv.base_url
        r = self.http.post(f"{base}/oauth2/pushed_authorize", data=form, auth=(self.client_id, self.secret))
        assert r.status_code == 201, r.text
        r = self.http.get(f"{base}/oauth2/authorize", params={"client_id": self.client_id, "request_uri": r.json()["request_uri"]},
                          headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
        tx = r.json()
        out = approve(tx["uri"], self.wallet, http=self.http, trust_anchors=[self.root], confirm=lambda *_: True)
        assert out.ok, out.to_json()
        st = self.http.get(tx["status_url"]).json()
        assert st["status"] == "done", st
        q = dict(httpx.URL(st["redirect_to"]).params)
        assert q["state"] == state, st
        r = self.http.post(f"{base}/oauth2/token", data={"grant_type": "authorization_code", "code": q["code"],
                                                         "redirect_uri": REDIRECT, "code_verifier": verifier},
                           auth=(self.client_id, self.secret))
        assert r.status_code == 200, r.text
        return r.json()


def burst(urls: list[str], body: dict[str, Any], token: str) -> list[tuple[int, Any]]:
    """CALLS identical signHash calls, call i on urls[i % len(urls)], THREADS in flight. Every
    thread opens its connections first and all start together, so the first calls race."""
    results: list[tuple[int, Any] | None] = [None] * CALLS
    barrier = threading.Barrier(THREADS)
    headers = {"Authorization": f"Bearer {token}"}

    def worker(k: int) -> None:
        clients = [httpx.Client(base_url=u, headers=headers, timeout=60) for u in urls]
        try:
            for c in clients:
                c.get("/healthz")  # keep-alive connection up before the race
            barrier.wait(timeout=60)
            for i in range(k, CALLS, THREADS):
                r = clients[i % len(urls)].post("/csc/v2/signatures/signHash", json=body)
                try:
                    results[i] = (r.status_code, r.json())
                except ValueError:
                    results[i] = (r.status_code, r.text)
        finally:
            for c in clients:
                c.close()

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker, k) for k in range(THREADS)]
        done, pending = concurrent.futures.wait(futures, timeout=DEADLINE)
        assert not pending, f"{len(pending)} of {THREADS} client threads still running after {DEADLINE} s"
        for f in done:
            f.result()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def assert_exactly_one_signature(nodes: Nodes, results: list[tuple[int, Any]], jti: str) -> bytes:
    codes = [c for c, _ in results]
    server_errors = [(i, c, b) for i, (c, b) in enumerate(results) if c >= 500]
    assert not server_errors, f"5xx responses: {server_errors[:5]}"
    ok = [b for c, b in results if c == 200]
    refused = [b for c, b in results if c == 400]
    assert len(ok) == 1, f"{len(ok)} signatures; status codes {sorted(set(codes))}"
    assert len(refused) == CALLS - 1, f"status codes: { {c: codes.count(c) for c in set(codes)} }"
    assert all(b == REPLAY_ERROR for b in refused), [b for b in refused if b != REPLAY_ERROR][:5]
    # both nodes answered (calls alternate), and the one signature is recorded exactly once
    for node in (0, 1):
        assert any(results[i][0] in (200, 400) for i in range(node, CALLS, 2))
    activated = [r for r in nodes.a.cli_json("audit", "tail", "-n", "300", "--kind", "signature.activated")
                 if r["data"].get("jti") == jti]
    assert len(activated) == 1, activated
    sigs = ok[0]["signatures"]
    assert len(sigs) == 1
    return base64.b64decode(sigs[0])


def verify(cert_b64: str, signature: bytes, digest: bytes) -> None:
    cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
    cert.public_key().verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # type: ignore[call-arg, union-attr]


def test_wallet_approved_sad_replayed_200_times_across_two_nodes_signs_once(nodes: Nodes, issuer: PidIssuer,
                                                                             tmp_path: Path) -> None:
    w = Wallet.create(tmp_path / "wallet.json")
    pid = issuer.issue(w.holder_jwk, PidAttributes(given_name="Erika", family_name="Zweiknoten", birthdate="1964-08-12",
                                                   personal_administrative_number=f"PAN{secrets.token_hex(5)}"))
    w.add_credential(pid.sd_jwt)
    w.save()
    signer = Signer(nodes.a, w)
    service = signer.token("service")["access_token"]  # the service login enrolls the signer
    r = signer.http.post(f"{nodes.a.base_url}/csc/v2/credentials/list", json={"credentialInfo": True, "certificates": "single"},
                         headers={"Authorization": f"Bearer {service}"})
    assert r.status_code == 200, r.text
    info = r.json()["credentialInfos"][0]
    cid = info["credentialID"]
    h = one_hash()
    cred_token = signer.token("credential", [{
        "type": "credential", "credentialID": cid, "numSignatures": 1, "hashAlgorithmOID": SHA256,
        "documentDigests": [{"hash": b64(h), "label": "Two nodes contract"}]}])["access_token"]
    claims = jwt_claims(cred_token)
    assert claims["jti"] and claims["credentialID"] == cid and claims["numSignatures"] == 1
    assert claims["authn"]["method"] == "openid4vp"

    body = {"credentialID": cid, "hashes": [b64(h)], "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256}
    results = burst(nodes.urls, body, cred_token)
    sig = assert_exactly_one_signature(nodes, results, claims["jti"])
    verify(info["cert"]["certificates"][0], sig, h)


def test_seal_sad_replayed_200_times_across_two_nodes_signs_once(nodes: Nodes) -> None:
    seal = nodes.a.new_seal("ec-p256")
    h = one_hash()
    r = nodes.a.post("/csc/v2/credentials/authorize", {
        "credentialID": seal.credential_id, "numSignatures": 1, "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
        "authData": []}, token=seal.token)
    assert r.status_code == 200, r.text
    sad = r.json()["SAD"]
    claims = jwt_claims(sad)
    assert claims["credentialID"] == seal.credential_id and claims["numSignatures"] == 1
    jti = claims["jti"]

    body = {"credentialID": seal.credential_id, "SAD": sad, "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
            "signAlgo": ECDSA_SHA256}
    results = burst(nodes.urls, body, seal.token)
    sig = assert_exactly_one_signature(nodes, results, jti)
    r = nodes.a.post("/csc/v2/credentials/info", {"credentialID": seal.credential_id, "certificates": "single"},
                     token=seal.token)
    assert r.status_code == 200, r.text
    verify(r.json()["cert"]["certificates"][0], sig, h)
