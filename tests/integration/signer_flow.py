"""The client + wallet side of the signer flows, for the integration tests (real HTTP)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography import x509

from tests.conftest import Server
from wallet import PidAttributes, PidIssuer, Tamper, Wallet, build_presentation, resolve, respond

REDIRECT = "http://127.0.0.1/cb"
SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def digest(tag: str = "") -> bytes:
    return hashlib.sha256(f"doc {tag} {secrets.token_hex(8)}".encode()).digest()


@dataclass
class App:
    """A registered OAuth2 client (the signature creation application)."""

    srv: Server
    client_id: str
    secret: str | None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))

    @classmethod
    def register(cls, srv: Server, *, public: bool = False) -> "App":
        cid = f"app-{secrets.token_hex(4)}"
        argv = ["clients", "add", "--client-id", cid, "--grant", "authorization_code", "--grant", "refresh_token",
                "--redirect-uri", REDIRECT]
        if public:
            argv.append("--public")
        out = srv.cli_json(*argv)
        return cls(srv, cid, out["client_secret"])

    @property
    def auth(self) -> Any:
        return (self.client_id, self.secret) if self.secret else None

    def form(self, extra: dict[str, str]) -> dict[str, str]:
        return extra if self.secret else {**extra, "client_id": self.client_id}

    def par(self, scope: str, *, verifier: str, state: str = "st", **params: str) -> httpx.Response:
        form = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT, "scope": scope,
                "code_challenge": s256(verifier), "code_challenge_method": "S256", "state": state, **params}
        return self.http.post(f"{self.srv.base_url}/oauth2/pushed_authorize", data=form, auth=self.auth)

    def authorize(self, request_uri: str) -> httpx.Response:
        return self.http.get(f"{self.srv.base_url}/oauth2/authorize", params={"client_id": self.client_id, "request_uri": request_uri},
                             headers={"Accept": "application/json"})

    def token(self, code: str, verifier: str, redirect_uri: str = REDIRECT) -> httpx.Response:
        return self.http.post(f"{self.srv.base_url}/oauth2/token", auth=self.auth, data=self.form({
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}))


@dataclass
class Signer:
    wallet: Wallet
    pid: Any


def new_signer(issuer: PidIssuer, tmp: Path, pan: str | None = None) -> Signer:
    w = Wallet.create(tmp / f"wallet-{secrets.token_hex(4)}.json")
    pid = issuer.issue(w.holder_jwk, PidAttributes(given_name="Sig", family_name="Ner", birthdate="1985-05-05",
                                                   personal_administrative_number=pan or f"PAN{secrets.token_hex(5)}"))
    w.add_credential(pid.sd_jwt)
    w.save()
    return Signer(w, pid)


def root_ca(srv: Server) -> x509.Certificate:
    return x509.load_pem_x509_certificate((srv.data_dir / "ca" / "root.pem").read_bytes())


def wallet_answers(app: App, start: dict[str, Any], signer: Signer, tamper: Tamper | None = None) -> Any:
    req = resolve(start["uri"], http=app.http, trust_anchors=[root_ca(app.srv)])
    return respond(build_presentation(signer.wallet, req, tamper=tamper), http=app.http, follow_redirect=False)


def poll(app: App, status_url: str) -> dict[str, Any]:
    return app.http.get(status_url).json()


def code_from(redirect_to: str, state: str = "st") -> str:
    q = parse_qs(urlsplit(redirect_to).query)
    assert q.get("state") == [state], redirect_to
    assert "code" in q, redirect_to
    return q["code"][0]


def login(app: App, signer: Signer) -> dict[str, Any]:
    """scope=service through the wallet: returns the token response (enrolls on first contact)."""
    v = secrets.token_urlsafe(32)
    par = app.par("service", verifier=v)
    assert par.status_code == 201, par.text
    start = app.authorize(par.json()["request_uri"]).json()
    out = wallet_answers(app, start, signer)
    assert out.status_code == 200, out.body
    r = app.token(code_from(poll(app, start["status_url"])["redirect_to"]), v)
    assert r.status_code == 200, r.text
    return r.json()


def credential_id_of(app: App, service_token: str) -> str:
    r = app.http.post(f"{app.srv.base_url}/csc/v2/credentials/list", json={}, headers={"Authorization": f"Bearer {service_token}"})
    assert r.status_code == 200, r.text
    return r.json()["credentialIDs"][0]


def details(cid: str, hashes: list[bytes], *, kind: str = "credential", labels: list[str] | None = None) -> str:
    return json.dumps([{"type": kind, "credentialID": cid, "hashAlgorithmOID": SHA256,
                        "documentDigests": [{"hash": b64(h), "label": (labels or ["Contract"] * len(hashes))[i]}
                                            for i, h in enumerate(hashes)]}])


def start_credential(app: App, cid: str, hs: list[bytes], verifier: str, **extra: str) -> dict[str, Any]:
    params = {"authorization_details": details(cid, hs)} if not extra else extra
    par = app.par("credential", verifier=verifier, **params)
    assert par.status_code == 201, par.text
    r = app.authorize(par.json()["request_uri"])
    assert r.status_code == 200, r.text
    return r.json()


def credential_token(app: App, signer: Signer, cid: str, hs: list[bytes], **extra: str) -> dict[str, Any]:
    v = secrets.token_urlsafe(32)
    start = start_credential(app, cid, hs, v, **extra)
    out = wallet_answers(app, start, signer)
    assert out.status_code == 200, out.body
    r = app.token(code_from(poll(app, start["status_url"])["redirect_to"]), v)
    assert r.status_code == 200, r.text
    return r.json()


def sign_hash(app: App, token: str, cid: str, hs: list[bytes], *, sad_in_body: bool = False, **over: Any) -> httpx.Response:
    body: dict[str, Any] = {"credentialID": cid, "hashes": [b64(h) for h in hs], "hashAlgorithmOID": SHA256,
                            "signAlgo": ECDSA_SHA256, **over}
    headers = {"Authorization": f"Bearer {token}"}
    if sad_in_body:
        body["SAD"] = token
    return app.http.post(f"{app.srv.base_url}/csc/v2/signatures/signHash", json=body, headers=headers)
