"""Load driver: complete wallet-approved signing transactions against a running rqes over real HTTP.

One transaction is what a signer's application and the signer's wallet do to sign one hash
(same-device OpenID4VP, the reference wallet in-process):

1. ``par``       POST /oauth2/pushed_authorize (``scope=credential``, ``authorization_details`` for one hash, PKCE S256)
2. ``authorize`` GET /oauth2/authorize?request_uri=... (``Accept: application/json``; sets the session cookie)
3. ``request``   GET of the OpenID4VP ``request_uri`` (the signed request object)
4. ``verify``    wallet: request object signature and x5c chain to the rqes root CA (client CPU only)
5. ``present``   wallet: DCQL match, SD-JWT presentation with KB-JWT over the transaction data (client CPU only)
6. ``encrypt``   wallet: ``direct_post.jwt`` response JWE, ECDH-ES (client CPU only)
7. ``response``  POST to ``response_uri`` (rqes stores the wallet's evidence; for a signature the SAM
                 verifies it at signHash)
8. ``code``      the application learns the authorization code: GET ``status_url`` (authorize answered
                 JSON, so rqes runs the cross-device flow), or, if rqes returned a ``redirect_uri``
                 (same-device), GET of it in the same session: 302 to the client with ``code``
9. ``token``     POST /oauth2/token (authorization_code + code_verifier): the credential token (the SAD)
10. ``sign``     POST /csc/v2/signatures/signHash, the credential token as Bearer: one signature

One process, one keep-alive ``httpx.Client``, one transaction in flight. :mod:`bench.run` starts
one or several with a JSON job on argv (see :func:`run`) and reads one JSON object from stdout.
Transactions before ``start_at`` are warm-up (counted for server CPU, not for rates).

``python -m bench.wallet_tx serve-profiled OUT -- <rqes cli args>`` runs ``rqes serve`` with
cProfile switched on by SIGUSR1 and off (stats written to OUT) by SIGUSR2, so that only the
measured window is profiled, not start-up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
REDIRECT = "http://127.0.0.1/cb"
STEPS = ("par", "authorize", "request", "verify", "present", "encrypt", "response", "code", "token", "sign")
CLIENT_CPU_STEPS = ("verify", "present", "encrypt")


class BenchError(RuntimeError):
    pass


def _check(r: httpx.Response, step: str, status: int = 200) -> None:
    if r.status_code != status:
        raise BenchError(f"{step}: {r.request.method} {r.request.url.path} -> {r.status_code}: {r.text[:400]}")


class Signer:
    """A signer's application plus the signer's wallet, sharing one HTTP session (same device)."""

    def __init__(self, job: dict[str, Any], http: httpx.Client) -> None:
        from cryptography import x509

        from wallet import Wallet

        self.job = job
        self.base = job["base_url"]
        self.http = http
        self.wallet = Wallet.load(job["wallet"])
        self.root = x509.load_pem_x509_certificate(Path(job["root_ca"]).read_bytes())
        self.auth = (job["client_id"], job["client_secret"])

    def code(self, scope: str, details: list[dict[str, Any]] | None, t: dict[str, float]) -> tuple[str, str]:
        """Steps 1-8: returns (authorization code, PKCE verifier)."""
        from wallet import build_presentation, encrypt_response, fetch_request_object, match_credentials, \
            parse_invocation, verify_request_object

        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(8)
        form = {"response_type": "code", "client_id": self.auth[0], "redirect_uri": REDIRECT, "scope": scope,
                "code_challenge": challenge, "code_challenge_method": "S256", "state": state}
        if details is not None:
            form["authorization_details"] = json.dumps(details)
        c = time.perf_counter
        t0 = c()
        r = self.http.post(f"{self.base}/oauth2/pushed_authorize", data=form, auth=self.auth)
        _check(r, "par", 201)
        t1 = c()
        r = self.http.get(f"{self.base}/oauth2/authorize", params={"client_id": self.auth[0], "request_uri": r.json()["request_uri"]},
                          headers={"Accept": "application/json"})
        _check(r, "authorize")
        inv = parse_invocation(r.json()["uri"])
        status_url = r.json()["status_url"]
        t2 = c()
        jws, nonce = fetch_request_object(inv, self.http)
        t3 = c()
        request = verify_request_object(jws, client_id=inv.client_id, trust_anchors=[self.root], wallet_nonce=nonce)
        t4 = c()
        presentation = build_presentation(self.wallet, request, matches=match_credentials(self.wallet, request))
        t5 = c()
        jwe = encrypt_response({"vp_token": presentation.vp_token, "state": request.state}, request.client_metadata)
        t6 = c()
        r = self.http.post(request.response_uri, data={"response": jwe}, headers={"Accept": "application/json"})
        _check(r, "response")
        t7 = c()
        redirect = r.json().get("redirect_uri") if isinstance(r.json(), dict) else None
        if redirect:  # same-device: the wallet's redirect, in this session, answers 302 to the client
            r = self.http.get(redirect, headers={"Accept": "application/json, text/html;q=0.9"})
            _check(r, "code", 302)
            location = r.headers["location"]
        else:  # cross-device (authorize asked for JSON): the application polls the status URL once
            r = self.http.get(status_url)
            _check(r, "code")
            if r.json().get("status") != "done":
                raise BenchError(f"code: status {r.text[:300]}")
            location = r.json()["redirect_to"]
        t8 = c()
        back = httpx.URL(location)
        q = dict(back.params)
        if not str(back).startswith(REDIRECT) or q.get("state") != state or "code" not in q:
            raise BenchError(f"code: unexpected location {location[:200]}")
        for k, a, b in (("par", t0, t1), ("authorize", t1, t2), ("request", t2, t3), ("verify", t3, t4),
                        ("present", t4, t5), ("encrypt", t5, t6), ("response", t6, t7), ("code", t7, t8)):
            t[k] = t.get(k, 0.0) + (b - a)
        return q["code"], verifier

    def token(self, scope: str, details: list[dict[str, Any]] | None = None,
              t: dict[str, float] | None = None) -> dict[str, Any]:
        t = {} if t is None else t
        code, verifier = self.code(scope, details, t)
        t0 = time.perf_counter()
        r = self.http.post(f"{self.base}/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                                             "redirect_uri": REDIRECT, "code_verifier": verifier},
                           auth=self.auth)
        _check(r, "token")
        t["token"] = t.get("token", 0.0) + time.perf_counter() - t0
        return r.json()

    def transaction(self) -> tuple[dict[str, float], bytes, bytes]:
        """One complete transaction for one fresh hash. Returns (step seconds, hash, signature)."""
        cid = self.job["credential_id"]
        h = os.urandom(32)
        hb64 = base64.b64encode(h).decode()
        t: dict[str, float] = {}
        tok = self.token("credential", [{"type": "credential", "credentialID": cid, "numSignatures": 1,
                                         "hashAlgorithmOID": SHA256,
                                         "documentDigests": [{"hash": hb64, "label": "Bench document"}]}], t)
        t0 = time.perf_counter()
        r = self.http.post(f"{self.base}/csc/v2/signatures/signHash", json={
            "credentialID": cid, "hashes": [hb64], "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256},
            headers={"Authorization": f"Bearer {tok['access_token']}"})
        _check(r, "sign")
        t["sign"] = time.perf_counter() - t0
        sigs = r.json()["signatures"]
        if len(sigs) != 1:
            raise BenchError(f"sign: {len(sigs)} signatures for one hash")
        return t, h, base64.b64decode(sigs[0])


# -- set-up (in the bench.run process) -------------------------------------------------------------
def enroll(base_url: str, wallet_path: Path, root_ca: Path, client_id: str, secret: str) -> dict[str, Any]:
    """Service login with the wallet (enrolls the signer on first use); returns the signer's
    credential ID and leaf certificate (base64 DER)."""
    job = {"base_url": base_url, "wallet": str(wallet_path), "root_ca": str(root_ca), "client_id": client_id,
           "client_secret": secret}
    with httpx.Client(timeout=60) as http:
        s = Signer(job, http)
        tok = s.token("service")["access_token"]
        r = http.post(f"{base_url}/csc/v2/credentials/list", json={"credentialInfo": True, "certificates": "single"},
                      headers={"Authorization": f"Bearer {tok}"})
        _check(r, "credentials/list")
        infos = r.json()["credentialInfos"]
        if len(infos) != 1:
            raise BenchError(f"credentials/list: {len(infos)} credentials for a fresh signer")
        return {"credential_id": infos[0]["credentialID"], "cert": infos[0]["cert"]["certificates"][0]}


def verify_signature(cert_b64: str, digest: bytes, signature: bytes) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
    cert.public_key().verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # type: ignore[call-arg, union-attr]


# -- the driver --------------------------------------------------------------------------------------
def run(job: dict[str, Any]) -> dict[str, Any]:
    """job: base_url, client_id, client_secret, wallet (path), root_ca (path), credential_id, cert,
    start_at / end_at (epoch s), max_tx; optional check (default true: the first transaction's
    signature is verified against ``cert``, as warm-up) and profile (path: cProfile of the
    measured window)."""
    warm = 0
    lat: list[float] = []
    steps = dict.fromkeys(STEPS, 0.0)
    prof = None
    with httpx.Client(timeout=60) as http:
        s = Signer(job, http)
        if job.get("check", True):  # one transaction whose signature is verified (counted as warm-up)
            _, h, sig = s.transaction()
            verify_signature(job["cert"], h, sig)
            warm += 1
        while warm < job["max_tx"] and time.time() < job["start_at"]:
            s.transaction()
            warm += 1
        if job.get("profile"):
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        cpu0 = time.process_time()
        w0 = time.perf_counter()
        while len(lat) < job["max_tx"] and time.time() < job["end_at"]:
            a = time.perf_counter()
            t, _, _ = s.transaction()
            lat.append(time.perf_counter() - a)
            for k, v in t.items():
                steps[k] += v
        wall = time.perf_counter() - w0
        cpu = time.process_time() - cpu0
        if prof is not None:
            prof.disable()
            prof.dump_stats(job["profile"])
    return {"warmup_tx": warm, "tx": len(lat), "wall_seconds": wall, "client_cpu_seconds": cpu, "latencies": lat,
            "steps": steps}


def serve_profiled(out: str, argv: list[str]) -> int:
    """``rqes <argv>`` (``serve --workers 1``) with cProfile on the event-loop thread between
    SIGUSR1 and SIGUSR2. PKCS#11 calls run on an executor thread and are not in the profile."""
    import cProfile
    import signal

    prof = cProfile.Profile()

    def on(signum: int, frame: Any) -> None:
        prof.enable()

    def off(signum: int, frame: Any) -> None:
        prof.disable()
        prof.dump_stats(out + ".tmp")
        os.replace(out + ".tmp", out)

    signal.signal(signal.SIGUSR1, on)
    signal.signal(signal.SIGUSR2, off)
    from app.cli import main as rqes_main

    return rqes_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve-profiled":
        if len(argv) < 3 or argv[2] != "--":
            print("usage: python -m bench.wallet_tx serve-profiled OUT -- <rqes args>", file=sys.stderr)
            return 2
        return serve_profiled(argv[1], argv[3:])
    job = json.loads(argv[0])
    try:
        out = run(job)
    except (BenchError, httpx.HTTPError) as e:
        print(f"bench.wallet_tx: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
