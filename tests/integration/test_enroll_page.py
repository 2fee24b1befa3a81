"""The cross-device enrollment page in a real browser (Debian Chromium driven by Playwright):
it shows a QR code of the openid4vp:// request, exposes the URI in a data- attribute, and polls
until the wallet has answered."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.conftest import Server
from tests.integration.test_wallet_identity import new_wallet
from wallet import PidIssuer, approve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium is installed by 'make test'"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_enroll_page_qr_and_polling(sqlite_server: Server, issuer: PidIssuer, tmp_path: Path, browser) -> None:  # noqa: ANN001, F811
    srv = sqlite_server
    page = browser.new_page()
    page.goto(f"{srv.base_url}/enroll")
    assert page.title().startswith("rqes")
    qr = page.locator("#qr svg")
    assert qr.count() == 1 and qr.bounding_box()["width"] > 100
    uri = page.locator("#request").get_attribute("data-openid4vp-uri")
    assert uri.startswith("openid4vp://?") and "request_uri=" in uri
    assert page.locator("#state").get_attribute("data-state") == "pending"
    page.screenshot(path=str(tmp_path / "enroll-pending.png"))

    wallet, _ = new_wallet(issuer, tmp_path, given="Brow", family="Ser")
    root = x509.load_pem_x509_certificate((srv.data_dir / "ca" / "root.pem").read_bytes())
    outcome = approve(uri, wallet, trust_anchors=[root], confirm=lambda *_: True)
    assert outcome.status_code == 200, outcome.to_json()

    page.wait_for_function("document.getElementById('state').dataset.state === 'done'", timeout=15000)
    assert page.locator("#state").inner_text() == "enrolled"
    assert "Credential" in page.locator("#outcome").inner_text()
    page.screenshot(path=str(tmp_path / "enroll-done.png"))


def test_enroll_page_shows_a_rejected_response(sqlite_server: Server, issuer: PidIssuer, tmp_path: Path, browser) -> None:  # noqa: ANN001, F811
    from wallet import Tamper, build_presentation, resolve, respond

    srv = sqlite_server
    page = browser.new_page()
    page.goto(f"{srv.base_url}/enroll")
    uri = page.locator("#request").get_attribute("data-openid4vp-uri")
    wallet, _ = new_wallet(issuer, tmp_path)
    http = httpx.Client()
    req = resolve(uri, http=http)
    out = respond(build_presentation(wallet, req, tamper=Tamper(nonce="wrong")), http=http)
    assert out.status_code == 400
    page.wait_for_function("document.getElementById('state').dataset.state === 'failed'", timeout=15000)
    assert "nonce" in page.locator("#outcome").inner_text().lower()


def test_authorize_page_returns_the_browser_to_the_client(sqlite_server: Server, issuer: PidIssuer, tmp_path: Path, browser) -> None:  # noqa: ANN001, F811
    """The authorization page of /oauth2/authorize: QR code, data- attribute, and once the wallet
    has approved, the browser lands on the client's redirect_uri with code and state."""
    import secrets
    from urllib.parse import parse_qs, urlsplit

    from tests.integration.signer_flow import s256

    srv = sqlite_server
    redirect = f"{srv.base_url}/healthz"  # any page of ours will do as the client's landing page
    out = srv.cli_json("clients", "add", "--client-id", "browser-app", "--grant", "authorization_code",
                       "--redirect-uri", redirect, "--public")
    assert out["client_secret"] is None
    verifier = secrets.token_urlsafe(32)
    par = httpx.post(f"{srv.base_url}/oauth2/pushed_authorize", data={
        "response_type": "code", "client_id": "browser-app", "redirect_uri": redirect, "scope": "service",
        "code_challenge": s256(verifier), "code_challenge_method": "S256", "state": "xyz"})
    assert par.status_code == 201, par.text
    page = browser.new_page()
    page.goto(f"{srv.base_url}/oauth2/authorize?client_id=browser-app&request_uri={par.json()['request_uri']}")
    assert page.locator("#qr svg").count() == 1
    uri = page.locator("#request").get_attribute("data-openid4vp-uri")
    wallet, _ = new_wallet(issuer, tmp_path)
    root = x509.load_pem_x509_certificate((srv.data_dir / "ca" / "root.pem").read_bytes())
    from wallet import build_presentation, resolve, respond

    http = httpx.Client()  # the wallet is another device: its own HTTP session
    assert respond(build_presentation(wallet, resolve(uri, http=http, trust_anchors=[root])), http=http,
                   follow_redirect=False).status_code == 200
    page.wait_for_url(f"{redirect}?*", timeout=15000)
    q = parse_qs(urlsplit(page.url).query)
    assert q["state"] == ["xyz"] and q["code"]
    tok = httpx.post(f"{srv.base_url}/oauth2/token", data={"grant_type": "authorization_code", "client_id": "browser-app",
                                                          "code": q["code"][0], "redirect_uri": redirect, "code_verifier": verifier})
    assert tok.status_code == 200 and tok.json()["scope"] == "service"
