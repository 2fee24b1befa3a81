"""OAuth2 token endpoint for seals (RFC 6749 §4.4, RFC 7523) over real HTTP."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from jwcrypto import jwk, jwt

from tests.conftest import Server


def token_request(srv: Server, data: dict, **kw) -> httpx.Response:
    return httpx.post(f"{srv.base_url}/oauth2/token", data=data, **kw)


def test_client_secret_basic(server: Server) -> None:
    cid, secret = server.new_client()
    r = token_request(server, {"grant_type": "client_credentials", "scope": "service"}, auth=(cid, secret))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "service"
    assert r.headers["cache-control"] == "no-store"
    keys = jwk.JWKSet.from_json(httpx.get(f"{server.base_url}/oauth2/jwks").text)
    verified = jwt.JWT(jwt=body["access_token"], key=keys, algs=["ES256"])
    claims = json.loads(verified.claims)
    assert claims["client_id"] == cid and claims["iss"] == server.base_url


def test_client_secret_post(server: Server) -> None:
    cid, secret = server.new_client()
    r = token_request(server, {"grant_type": "client_credentials", "client_id": cid, "client_secret": secret})
    assert r.status_code == 200, r.text


def _assertion(key: jwk.JWK, cid: str, aud: str, jti: str | None = None, exp_in: int = 60) -> str:
    now = int(time.time())
    tok = jwt.JWT(header={"alg": "ES256", "kid": key.thumbprint()},
                  claims={"iss": cid, "sub": cid, "aud": aud, "iat": now, "exp": now + exp_in, "jti": jti or str(uuid.uuid4())})
    tok.make_signed_token(key)
    return tok.serialize()


@pytest.fixture(scope="module")
def jwt_client(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, jwk.JWK]:
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    pub = {**key.export_public(as_dict=True), "kid": key.thumbprint()}
    path = tmp_path_factory.mktemp("jwks") / "client.jwks"
    path.write_text(json.dumps({"keys": [pub]}))
    cid = f"jwt-{uuid.uuid4().hex[:6]}"
    out = server.cli_json("clients", "add", "--client-id", cid, "--jwks", str(path))
    assert out["client_secret"] is None and out["token_endpoint_auth_method"] == "private_key_jwt"
    return cid, key


ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_private_key_jwt(server: Server, jwt_client: tuple[str, jwk.JWK]) -> None:
    cid, key = jwt_client
    a = _assertion(key, cid, f"{server.base_url}/oauth2/token")
    r = token_request(server, {"grant_type": "client_credentials", "client_assertion_type": ASSERTION, "client_assertion": a})
    assert r.status_code == 200, r.text


def test_rejects_replayed_client_assertion(server: Server, jwt_client: tuple[str, jwk.JWK]) -> None:
    cid, key = jwt_client
    a = _assertion(key, cid, server.base_url)
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION, "client_assertion": a}
    assert token_request(server, form).status_code == 200
    r = token_request(server, form)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_rejects_client_assertion_signed_by_another_key(server: Server, jwt_client: tuple[str, jwk.JWK]) -> None:
    cid, _ = jwt_client
    a = _assertion(jwk.JWK.generate(kty="EC", crv="P-256"), cid, server.base_url)
    r = token_request(server, {"grant_type": "client_credentials", "client_assertion_type": ASSERTION, "client_assertion": a})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_rejects_client_assertion_for_other_audience_or_expired(server: Server, jwt_client: tuple[str, jwk.JWK]) -> None:
    cid, key = jwt_client
    for a in (_assertion(key, cid, "https://elsewhere.example"), _assertion(key, cid, server.base_url, exp_in=-5)):
        r = token_request(server, {"grant_type": "client_credentials", "client_assertion_type": ASSERTION, "client_assertion": a})
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_rejects_wrong_secret_and_unknown_client_alike(server: Server) -> None:
    cid, _ = server.new_client()
    r1 = token_request(server, {"grant_type": "client_credentials"}, auth=(cid, "wrong"))
    r2 = token_request(server, {"grant_type": "client_credentials"}, auth=("nobody", "wrong"))
    for r in (r1, r2):
        assert r.status_code == 401
        assert r.json() == {"error": "invalid_client", "error_description": "Client authentication failed"}
        assert r.headers["www-authenticate"].startswith("Basic")


def test_rejects_bad_token_requests(server: Server) -> None:
    cid, secret = server.new_client()
    r = token_request(server, {"grant_type": "password"}, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = token_request(server, {"grant_type": "client_credentials", "scope": "credential"}, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = token_request(server, {}, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = httpx.post(f"{server.base_url}/oauth2/token", json={"grant_type": "client_credentials"}, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = httpx.post(f"{server.base_url}/oauth2/token", content="grant_type=client_credentials&grant_type=x",
                   headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error_description"] == "Parameter grant_type is repeated"
    r = token_request(server, {"grant_type": "client_credentials"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_removed_client_token_stops_working(server: Server) -> None:
    seal = server.new_seal()
    assert server.post("/csc/v2/credentials/list", {}, token=seal.token).status_code == 200
    server.cli("clients", "remove", "--client-id", seal.client_id)
    r = server.post("/csc/v2/credentials/list", {}, token=seal.token)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_metadata(server: Server) -> None:
    m = httpx.get(f"{server.base_url}/.well-known/oauth-authorization-server").json()
    assert m["issuer"] == server.base_url
    assert m["token_endpoint"] == f"{server.base_url}/oauth2/token"
    assert set(m["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
    assert m["code_challenge_methods_supported"] == ["S256"] and m["pushed_authorization_request_endpoint"].endswith("/oauth2/pushed_authorize")
    assert "client_credentials" in m["grant_types_supported"]


def test_openapi_schema_lists_the_api(server: Server) -> None:
    doc = httpx.get(f"{server.base_url}/schema/openapi.json").json()
    for path in ("/csc/v2/info", "/csc/v2/signatures/signHash", "/oauth2/token", "/.well-known/oauth-authorization-server"):
        assert path in doc["paths"]
