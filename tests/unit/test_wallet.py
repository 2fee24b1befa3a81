"""The reference wallet and test PID issuer, without an rqes server.

The verifier side here is a throwaway: its own CA and request-signing leaf, its own JWS signing,
and JWE decryption with joserfc (a different library from the wallet's jwcrypto), so that a
mistake shared by both sides does not go unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID
from joserfc import jwe as rfc_jwe
from joserfc.jwk import ECKey

import wallet
from wallet import _statuslist
from wallet._txdata import qes_approval_digest, transaction_data_hash
from wallet.holder import Tamper, Wallet, build_presentation, parse_invocation, resolve, respond

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "wallet" / "testdata"
QES_APPROVAL = "https://cloudsignatureconsortium.org/2025/qes-approval"
QC_REQUEST = "https://cloudsignatureconsortium.org/2025/qc-request"
SHA256_OID = "2.16.840.1.101.3.4.2.1"


# -- independent helpers ------------------------------------------------------------------------

def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha_b64u(text: str) -> str:
    return b64u(hashlib.sha256(text.encode("ascii")).digest())


def jws_parts(token: str) -> tuple[dict, dict]:
    h, p, _ = token.split(".")
    return json.loads(unb64u(h)), json.loads(unb64u(p))


def es256_sign(key: ec.EllipticCurvePrivateKey, header: dict, payload: dict) -> str:
    si = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(payload).encode())
    r, s = decode_dss_signature(key.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
    return si + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def es256_valid(pub: ec.EllipticCurvePublicKey, token: str) -> bool:
    si, _, sig = token.rpartition(".")
    raw = unb64u(sig)
    try:
        pub.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                   si.encode(), ec.ECDSA(hashes.SHA256()))
        return True
    except Exception:
        return False


def pub_from_jwk(jwk: dict) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicNumbers(int.from_bytes(unb64u(jwk["x"]), "big"), int.from_bytes(unb64u(jwk["y"]), "big"),
                                         ec.SECP256R1()).public_key()


def td_entry(obj: dict, *, pretty: bool = True) -> str:
    """Encode like a verifier that pretty-prints: the hash must cover this exact string."""
    return b64u(json.dumps(obj, indent=2 if pretty else None).encode())


def make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, dns: str
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Verifier")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


PID_QUERY = {"credentials": [{"id": "pid", "format": "dc+sd-jwt", "meta": {"vct_values": ["urn:eudi:pid:1"]},
                              "claims": [{"path": ["family_name"]}, {"path": ["given_name"]}]}]}


class FakeVerifier:
    """request_uri + response_uri endpoints behind an httpx.MockTransport (or a real socket)."""

    def __init__(self, base: str = "https://verifier.example") -> None:
        self.base = base
        self.ca, self.ca_key = make_ca("Throwaway Verifier CA")
        self.leaf, self.key = make_leaf(self.ca, self.ca_key, "verifier.example")
        self.enc_key = ECKey.generate_key("P-256", parameters={"kid": "enc-1", "alg": "ECDH-ES", "use": "enc"})
        self.objects: dict[str, Any] = {}
        self.fetches: list[httpx.Request] = []
        self.responses: list[dict[str, str]] = []
        self.echo_wallet_nonce = True
        self.enroll_link = ""
        self.client = httpx.Client(transport=httpx.MockTransport(self.handle))

    @property
    def x509_hash(self) -> str:
        return "x509_hash:" + b64u(hashlib.sha256(self.leaf.public_bytes(serialization.Encoding.DER)).digest())

    def claims(self, *, mode: str = "direct_post", dcql: dict | None = None, transaction_data: list[str] | None = None,
               enc_values: list[str] | None = None, client_id: str | None = None, **extra: Any) -> dict:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": "https://self-issued.me/v2", "client_id": client_id or self.x509_hash, "response_type": "vp_token",
            "response_mode": mode, "response_uri": f"{self.base}/response", "nonce": b64u(os.urandom(16)),
            "state": b64u(os.urandom(16)), "dcql_query": dcql or PID_QUERY, "iat": now, "exp": now + 300,
            "client_metadata": {
                "jwks": {"keys": [self.enc_key.as_dict(private=False)]},
                "encrypted_response_enc_values_supported": enc_values or ["A128GCM", "A256GCM"],
                "vp_formats_supported": {"dc+sd-jwt": {"sd-jwt_alg_values": ["ES256"], "kb-jwt_alg_values": ["ES256"]}},
            },
        }
        if transaction_data is not None:
            claims["transaction_data"] = transaction_data
        claims.update(extra)
        return claims

    def sign(self, claims: dict, *, header: dict | None = None, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        h = {"alg": "ES256", "typ": "oauth-authz-req+jwt",
             "x5c": [base64.b64encode(self.leaf.public_bytes(serialization.Encoding.DER)).decode()]}
        h.update(header or {})
        return es256_sign(key or self.key, h, claims)

    def publish(self, obj: dict | str, *, method: str = "get", client_id: str | None = None,
                scheme: str = "openid4vp://") -> str:
        rid = b64u(os.urandom(8))
        self.objects[rid] = obj
        cid = client_id or (obj["client_id"] if isinstance(obj, dict) else self.x509_hash)
        return (f"{scheme}?client_id={quote(cid, safe='')}&request_uri={quote(f'{self.base}/request/{rid}', safe='')}"
                f"&request_uri_method={method}")

    def handle(self, req: httpx.Request) -> httpx.Response:
        path = req.url.path
        if path.startswith("/request/"):
            self.fetches.append(req)
            obj = self.objects[path.rsplit("/", 1)[1]]
            if isinstance(obj, dict):
                claims = dict(obj)
                if req.method == "POST" and self.echo_wallet_nonce:
                    claims["wallet_nonce"] = parse_qs(req.content.decode())["wallet_nonce"][0]
                obj = self.sign(claims)
            return httpx.Response(200, text=obj, headers={"content-type": "application/oauth-authz-req+jwt"})
        if path == "/response" and req.method == "POST":
            self.responses.append({k: v[0] for k, v in parse_qs(req.content.decode()).items()})
            if "error" in self.responses[-1]:
                return httpx.Response(200, json={})
            return httpx.Response(200, json={"redirect_uri": f"{self.base}/done#response_code=abc"})
        if path == "/enroll/start":
            return httpx.Response(200, json={"uri": self.enroll_link}, headers={"set-cookie": "sid=s1; Path=/"})
        if path == "/done":
            return httpx.Response(200, json={"result": "enrolled", "session": req.headers.get("cookie")})
        return httpx.Response(404)

    def decrypt(self, token: str) -> tuple[dict, dict]:
        obj = rfc_jwe.decrypt_compact(token, self.enc_key, algorithms=["ECDH-ES", "A128GCM", "A256GCM"])
        return obj.protected, json.loads(obj.plaintext)


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def issuer(tmp_path: Path) -> wallet.PidIssuer:
    return wallet.PidIssuer(tmp_path / "issuer")


@pytest.fixture
def holder(tmp_path: Path, issuer: wallet.PidIssuer) -> Wallet:
    w = Wallet.create(tmp_path / "wallet.json")
    issued = issuer.issue(w.holder_jwk, wallet.PidAttributes(
        given_name="Erika", family_name="Mustermann", birthdate="1964-08-12", document_number="T22000129"))
    w.add_credential(issued.sd_jwt)
    w.save()
    return w


@pytest.fixture
def verifier() -> FakeVerifier:
    return FakeVerifier()


def disclosures_of(presentation: str) -> dict[str, list]:
    """name (or path of the parent for nested ones) -> decoded disclosure, from a presented SD-JWT."""
    parts = presentation.split("~")[1:-1]
    return {json.loads(unb64u(d))[1]: json.loads(unb64u(d)) for d in parts}


# -- issuer -------------------------------------------------------------------------------------

def test_pid_header_payload_and_x5c_chain_to_the_test_ca(holder: Wallet, issuer: wallet.PidIssuer) -> None:
    sd = holder.pid.credential
    header, payload = jws_parts(sd.split("~")[0])
    assert header["typ"] == "dc+sd-jwt" and header["alg"] == "ES256"
    assert len(header["x5c"]) == 1, "the trust anchor must not be in x5c"
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    ca = x509.load_pem_x509_certificate((TESTDATA / "test-pid-ca.pem").read_bytes())
    leaf.verify_directly_issued_by(ca)
    assert leaf.subject != leaf.issuer
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "rqes Test PID Issuer"
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert es256_valid(leaf.public_key(), sd.split("~")[0])
    assert payload["iss"] == "https://pid-issuer.rqes.test" and payload["vct"] == "urn:eudi:pid:1"
    assert payload["_sd_alg"] == "sha-256"
    assert payload["cnf"] == {"jwk": holder.holder_jwk}
    assert 364 * 86400 < payload["exp"] - payload["iat"] <= 366 * 86400
    sl = payload["status"]["status_list"]
    assert isinstance(sl["idx"], int) and sl["uri"].endswith("/status/1")
    assert not ({"given_name", "family_name", "birthdate", "address"} & set(payload)), "PID claims must be SD"


def test_one_disclosure_per_claim_each_digest_referenced_and_address_nested(holder: Wallet) -> None:
    parts = holder.pid.credential.split("~")
    _, payload = jws_parts(parts[0])
    disclosures = [json.loads(unb64u(d)) for d in parts[1:-1]]
    digests = {sha_b64u(d): json.loads(unb64u(d)) for d in parts[1:-1]}
    address = next(d for d in disclosures if d[1] == "address")
    top = set(payload["_sd"])
    nested = set(address[2]["_sd"])
    assert set(digests) <= top | nested and not (top & nested)
    assert {digests[h][1] for h in top if h in digests} == {
        "given_name", "family_name", "birthdate", "nationalities", "personal_administrative_number",
        "issuing_country", "issuing_authority", "place_of_birth", "document_number", "address"}
    assert {digests[h][1] for h in nested if h in digests} == {"street_address", "locality", "postal_code", "country"}
    assert len(top) > 10 and len(nested) > 4, "decoy digests expected"
    assert payload["_sd"] == sorted(payload["_sd"])
    for d in disclosures:
        assert len(d) == 3 and len(unb64u(d[0])) == 16, "128-bit salt"
    assert len({d[0] for d in disclosures}) == len(disclosures)
    assert isinstance(next(d for d in disclosures if d[1] == "place_of_birth")[2], dict)


def test_issuer_key_and_certificate_are_created_once(tmp_path: Path) -> None:
    a = wallet.PidIssuer(tmp_path / "iss")
    b = wallet.PidIssuer(tmp_path / "iss")
    assert a.certificate == b.certificate
    assert stat.S_IMODE(os.stat(tmp_path / "iss" / "issuer-key.pem").st_mode) == 0o600


@pytest.mark.parametrize(("values", "bits", "zlib_hex"), [
    ([1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1], 1, "78dadbb918000217015d"),
    ([1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3], 2, "78da3be9f2130003df0207"),
], ids=["1-bit", "2-bit"])
def test_status_list_packing_matches_the_draft_examples(values: list[int], bits: int, zlib_hex: str) -> None:
    packed = _statuslist.pack(values, len(values), bits)
    assert zlib.compress(packed, 9).hex() == zlib_hex
    assert _statuslist.unpack(packed, bits)[: len(values)] == values


def _status_in_token(token: str, idx: int) -> int:
    header, payload = jws_parts(token)
    assert header["typ"] == "statuslist+jwt" and header["alg"] == "ES256" and header["x5c"]
    raw = zlib.decompress(unb64u(payload["status_list"]["lst"]))
    assert payload["status_list"]["bits"] == 2
    return (raw[idx // 4] >> (2 * (idx % 4))) & 0b11


def test_revoke_suspend_reinstate_show_in_the_status_list_token(issuer: wallet.PidIssuer, holder: Wallet) -> None:
    idx = holder.pid.status["status_list"]["idx"]
    token = issuer.status_list_token("1")
    _, payload = jws_parts(token)
    assert payload["sub"] == holder.pid.status["status_list"]["uri"]
    assert payload["ttl"] > 0 and payload["exp"] > payload["iat"]
    leaf = x509.load_der_x509_certificate(base64.b64decode(jws_parts(token)[0]["x5c"][0]))
    assert es256_valid(leaf.public_key(), token)
    assert _status_in_token(token, idx) == 0
    issuer.suspend(idx)
    assert _status_in_token(issuer.status_list_token("1"), idx) == 2
    issuer.reinstate(idx)
    assert _status_in_token(issuer.status_list_token("1"), idx) == 0
    issuer.revoke(idx)
    assert _status_in_token(issuer.status_list_token("1"), idx) == 1
    with pytest.raises(wallet.IssuerError, match="cannot be undone"):
        issuer.reinstate(idx)
    with pytest.raises(wallet.IssuerError, match="no PID"):
        issuer.revoke((idx + 1) % 16384)


def test_status_list_served_at_the_uri_embedded_in_the_pid(tmp_path: Path) -> None:
    issuer = wallet.PidIssuer(tmp_path / "iss")
    server, base = wallet.serve_in_thread(issuer)
    try:
        issuer.set_public_url(base)
        w = Wallet.create()
        pid = issuer.issue(w.holder_jwk, wallet.PidAttributes(given_name="A", family_name="B", birthdate="2000-01-01"))
        assert pid.status_uri.startswith(base + "/status/")
        issuer.revoke(pid.status_index)
        r = httpx.get(pid.status_uri, headers={"Accept": "application/statuslist+jwt"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/statuslist+jwt"
        assert jws_parts(r.text)[1]["sub"] == pid.status_uri
        assert _status_in_token(r.text, pid.status_index) == 1
        assert httpx.get(base + "/status/nope").status_code == 404
    finally:
        server.shutdown()
        server.server_close()


# -- wallet file --------------------------------------------------------------------------------

def test_wallet_file_is_written_0600_and_a_readable_file_is_refused(holder: Wallet) -> None:
    path = holder.path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)
    holder.save()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "save must restore 0600"
    os.chmod(path, 0o640)
    with pytest.raises(wallet.WalletFileError, match="chmod 600"):
        Wallet.load(path)
    os.chmod(path, 0o600)
    assert Wallet.load(path).pid.credential == holder.pid.credential


def test_wallet_refuses_a_credential_bound_to_another_key(holder: Wallet) -> None:
    with pytest.raises(wallet.WalletError, match="another holder key"):
        Wallet.create().add_credential(holder.pid.credential)


# -- DCQL and selective disclosure --------------------------------------------------------------

def _query(claims: list[dict] | None, **extra: Any) -> dict:
    cq: dict[str, Any] = {"id": "pid", "format": "dc+sd-jwt", "meta": {"vct_values": ["urn:eudi:pid:1"]}, **extra}
    if claims is not None:
        cq["claims"] = claims
    return {"credentials": [cq]}


@pytest.mark.parametrize(("claims", "extra", "disclosed"), [
    ([{"path": ["given_name"]}, {"path": ["family_name"]}], {}, {"given_name", "family_name"}),
    ([{"path": ["address", "locality"]}], {}, {"address", "locality"}),
    ([{"path": ["address"]}], {}, {"address", "street_address", "locality", "postal_code", "country"}),
    ([{"path": ["nationalities", None]}], {}, {"nationalities"}),
    ([{"id": "a", "path": ["no_such_claim"]}, {"id": "b", "path": ["birthdate"]}],
     {"claim_sets": [["a"], ["b"]]}, {"birthdate"}),
    ([{"path": ["issuing_country"], "values": ["DE", "AT"]}], {}, {"issuing_country"}),
    (None, {}, set()),
], ids=["names", "nested-locality", "whole-address", "array-wildcard", "claim-sets", "values", "no-claims"])
def test_only_requested_claims_are_disclosed(holder: Wallet, verifier: FakeVerifier, claims: list | None,
                                             extra: dict, disclosed: set[str]) -> None:
    request = resolve(verifier.publish(verifier.claims(dcql=_query(claims, **extra))), http=verifier.client)
    pres = build_presentation(holder, request)
    assert set(disclosures_of(pres.vp_token["pid"][0])) == disclosed
    if claims and claims[0]["path"] == ["address", "locality"]:
        assert pres.matches["pid"][0].claims["address"] == {"locality": "Berlin"}


@pytest.mark.parametrize("query", [
    _query([{"path": ["issuing_country"], "values": ["FR"]}]),
    _query([{"path": ["no_such_claim"]}]),
    {"credentials": [{"id": "pid", "format": "dc+sd-jwt", "meta": {"vct_values": ["urn:other:1"]}}]},
    {"credentials": [{"id": "pid", "format": "mso_mdoc", "meta": {"doctype_value": "eu.europa.ec.eudi.pid.1"}}]},
], ids=["value-mismatch", "missing-claim", "other-vct", "mdoc"])
def test_unsatisfiable_query_is_access_denied_and_reported(holder: Wallet, verifier: FakeVerifier,
                                                           query: dict) -> None:
    link = verifier.publish(verifier.claims(dcql=query))
    with pytest.raises(wallet.AccessDenied):
        wallet.approve(link, holder, http=verifier.client)
    assert verifier.responses[-1]["error"] == "access_denied"
    assert "vp_token" not in verifier.responses[-1]


# -- KB-JWT and transaction data ----------------------------------------------------------------

def qes_entry(**over: Any) -> dict:
    entry = {"type": QES_APPROVAL, "credential_ids": ["pid"], "signatureQualifier": "eu_eidas_qes",
             "credentialID": "cred-1", "numSignatures": 1, "hashAlgorithmOID": SHA256_OID,
             "documentDigests": [{"label": "Contract.pdf", "hash": "sTOgwOm+474gFj0q0x1iSNspKqbcse4IeiqlDg/HWuI="}]}
    entry.update(over)
    return entry


def test_kb_jwt_binds_nonce_audience_and_sd_hash(holder: Wallet, verifier: FakeVerifier) -> None:
    claims = verifier.claims()
    request = resolve(verifier.publish(claims), http=verifier.client)
    presented = build_presentation(holder, request).vp_token["pid"][0]
    without_kb, _, kb = presented.rpartition("~")
    header, payload = jws_parts(kb)
    assert header == {"typ": "kb+jwt", "alg": "ES256"}
    cnf = jws_parts(presented.split("~")[0])[1]["cnf"]["jwk"]
    assert es256_valid(pub_from_jwk(cnf), kb)
    assert payload["aud"] == verifier.x509_hash and payload["aud"].startswith("x509_hash:")
    assert payload["nonce"] == claims["nonce"]
    assert abs(payload["iat"] - time.time()) < 60
    assert payload["sd_hash"] == sha_b64u(without_kb + "~")
    assert "transaction_data_hashes" not in payload


def test_transaction_data_hashes_cover_the_exact_strings_received(holder: Wallet, verifier: FakeVerifier) -> None:
    qes = td_entry(qes_entry(), pretty=True)
    qc = td_entry({"type": QC_REQUEST, "credential_ids": ["pid"], "QC_terms_conditions_uri": "https://qtsp.test/tc",
                   "QC_hash": "kXAgwDcdAe3obxpo8UoDkC+D+b7OCrDo8IOGZjSX8/M=", "QC_hashAlgorithmOID": SHA256_OID})
    request = resolve(verifier.publish(verifier.claims(transaction_data=[qes, qc])), http=verifier.client)
    kb = build_presentation(holder, request).vp_token["pid"][0].rpartition("~")[2]
    payload = jws_parts(kb)[1]
    assert payload["transaction_data_hashes"] == [sha_b64u(qes), sha_b64u(qc)]
    reencoded = b64u(json.dumps(json.loads(unb64u(qes)), separators=(",", ":")).encode())
    assert sha_b64u(reencoded) not in payload["transaction_data_hashes"]
    assert payload["transaction_data_hashes_alg"] == "sha-256"
    assert payload["org.cloudsignatureconsortium.dm.1.qesApproval"] == base64.b64encode(
        hashlib.sha256(qes.encode()).digest()).decode()


def test_no_qes_approval_claim_for_certificate_acceptance_only(holder: Wallet, verifier: FakeVerifier) -> None:
    qc = td_entry({"type": "qcert_creation_acceptance", "credential_ids": ["pid"],
                   "QC_terms_conditions_uri": "https://qtsp.test/tc", "QC_hash": "abc=",
                   "QC_hashAlgorithmOID": SHA256_OID})
    request = resolve(verifier.publish(verifier.claims(transaction_data=[qc])), http=verifier.client)
    payload = build_presentation(holder, request).kb_payloads["pid"][0]
    assert payload["transaction_data_hashes"] == [sha_b64u(qc)]
    assert "org.cloudsignatureconsortium.dm.1.qesApproval" not in payload
    assert wallet.describe(request, wallet.match_credentials(holder, request))["transaction_data"][0][
        "terms_uri"] == "https://qtsp.test/tc"


QES_AUTHORIZATION_VECTOR = (
    "ewogICJ0eXBlIjogInFlc19hdXRob3JpemF0aW9uIiwKICAiY3JlZGVudGlhbF9pZHMiOiBbXSwKICAic2lnbmF0dXJlUXVhbGlmaWVyIjogImV1X2Vp"
    "ZGFzX3FlcyIsCiAgImNyZWRlbnRpYWxJRCI6ICJvRW92QzJFSEZpRUZyRHBVeDhtUjBvN3llR0hrMmg3NGIzWHl3a05nQkdvPSIsCiAgImRvY3VtZW50"
    "RGlnZXN0cyI6IFsKICAgIHsKICAgICAgImxhYmVsIjogIkV4YW1wbGUgQ29udHJhY3QiLAogICAgICAiaGFzaCI6ICJzVE9nd09tKzQ3NGdGajBxMHgx"
    "aVNOc3BLcWJjc2U0SWVpcWxEZy9IV3VJPSIsCiAgICAgICJoYXNoQWxnb3JpdGhtT0lEIjogIjIuMTYuODQwLjEuMTAxLjMuNC4yLjEiLAogICAgICAi"
    "ZG9jdW1lbnRMb2NhdGlvbl91cmkiOiAiaHR0cHM6Ly9wcm90ZWN0ZWQucnAuZXhhbXBsZS9jb250cmFjdC0wMS5wZGY_dG9rZW49SFM5bmFKS1d3cDkw"
    "MWhCY0szNDhJVUhpdUg4Mzc0IiwKICAgICAgImRvY3VtZW50TG9jYXRpb25fbWV0aG9kIjogewogICAgICAgICJkb2N1bWVudF9hY2Nlc3NfbW9kZSI6"
    "ICJPVFAiLAogICAgICAgICJvbmVUaW1lUGFzc3dvcmQiOiAibXlGaXJzdFBhc3N3b3JkIgogICAgICB9LAogICAgICAiRFRCUy9SIjogIlZZRGw0b1Rl"
    "SjVUbUlQQ1hLZFRYMU1TV1JMSTlDS1ljeU1SejZ4bGFHZyIsCiAgICAgICJEVEJTL1JIYXNoQWxnb3JpdGhtT0lEIjogIjIuMTYuODQwLjEuMTAxLjMu"
    "NC4yLjEiCiAgICB9CiAgXSwKICAicHJvY2Vzc0lEIjogImVPWjZVd1h5ZUZMSzk4RG81MXgzM2ZtdXY0T3FBejVaYzRsc2hLTnRFZ1E9Igp9")


def test_hash_helpers_match_the_d31_vector_and_the_vector_itself_is_rejected() -> None:
    assert transaction_data_hash(QES_AUTHORIZATION_VECTOR) == "g4ImM4EBQmwLeorYbI7F6SwO3uoRaa-DCCIM2LgGmkA"
    assert qes_approval_digest(QES_AUTHORIZATION_VECTOR) == "g4ImM4EBQmwLeorYbI7F6SwO3uoRaa+DCCIM2LgGmkA="
    with pytest.raises(wallet.InvalidTransactionData, match="credential_ids"):
        from wallet._txdata import parse_transaction_data
        parse_transaction_data([QES_AUTHORIZATION_VECTOR], ["pid"])


@pytest.mark.parametrize(("entry", "match"), [
    (td_entry({"type": "https://example.com/payment", "credential_ids": ["pid"]}), "unsupported type"),
    (td_entry(qes_entry(credential_ids=["other"])), "not in the DCQL query"),
    (td_entry(qes_entry(credential_ids=[])), "credential_ids"),
    (td_entry(qes_entry(documentDigests=[])), "documentDigests"),
    (td_entry(qes_entry(documentDigests=[{"label": "x"}])), "no hash"),
    (td_entry(qes_entry(transaction_data_hashes_alg=["sha-384"])), "transaction_data_hashes_alg"),
    ("not*base64url", "base64url"),
    (b64u(b'["an", "array"]'), "JSON object"),
], ids=["unknown-type", "foreign-credential-id", "empty-credential-ids", "no-documents", "digest-without-hash",
        "unsupported-hash-alg", "not-base64url", "not-an-object"])
def test_bad_transaction_data_is_rejected_and_reported(holder: Wallet, verifier: FakeVerifier, entry: str,
                                                       match: str) -> None:
    link = verifier.publish(verifier.claims(transaction_data=[entry]))
    with pytest.raises(wallet.InvalidTransactionData, match=match):
        wallet.approve(link, holder, http=verifier.client)
    assert verifier.responses[-1]["error"] == "invalid_transaction_data"


def test_transaction_data_needs_holder_binding(holder: Wallet, verifier: FakeVerifier) -> None:
    dcql = _query([{"path": ["given_name"]}], require_cryptographic_holder_binding=False)
    link = verifier.publish(verifier.claims(dcql=dcql, transaction_data=[td_entry(qes_entry())]))
    with pytest.raises(wallet.InvalidTransactionData, match="holder binding"):
        resolve(link, http=verifier.client)


def test_review_shows_documents_and_hashes(holder: Wallet, verifier: FakeVerifier) -> None:
    request = resolve(verifier.publish(verifier.claims(transaction_data=[td_entry(qes_entry())])),
                      http=verifier.client)
    text = "\n".join(wallet.holder.describe_text(request, wallet.match_credentials(holder, request)))
    assert "Contract.pdf" in text and "sTOgwOm+474gFj0q0x1iSNspKqbcse4IeiqlDg/HWuI=" in text
    assert "family_name=Mustermann" in text and "birthdate" not in text


# -- responses ----------------------------------------------------------------------------------

def test_direct_post_sends_vp_token_and_state_and_follows_the_redirect(holder: Wallet, verifier: FakeVerifier) -> None:
    claims = verifier.claims()
    outcome = wallet.approve(verifier.publish(claims), holder, http=verifier.client)
    form = verifier.responses[-1]
    assert form["state"] == claims["state"]
    vp_token = json.loads(form["vp_token"])
    assert list(vp_token) == ["pid"] and len(vp_token["pid"]) == 1
    assert outcome.ok and outcome.redirect_uri.endswith("#response_code=abc")
    assert outcome.final_body == {"result": "enrolled", "session": None}


@pytest.mark.parametrize(("offered", "expected"), [
    (["A128GCM", "A256GCM"], "A128GCM"), (["A256GCM", "A128GCM"], "A128GCM"), (["A256GCM"], "A256GCM"),
])
def test_direct_post_jwt_decrypts_with_the_verifier_key(holder: Wallet, verifier: FakeVerifier, offered: list[str],
                                                        expected: str) -> None:
    claims = verifier.claims(mode="direct_post.jwt", enc_values=offered)
    assert wallet.approve(verifier.publish(claims), holder, http=verifier.client).ok
    form = verifier.responses[-1]
    assert set(form) == {"response"}
    header, payload = verifier.decrypt(form["response"])
    assert header["alg"] == "ECDH-ES" and header["enc"] == expected and header["kid"] == "enc-1"
    assert header["epk"]["crv"] == "P-256"
    assert payload["state"] == claims["state"]
    assert list(payload["vp_token"]) == ["pid"] and payload["vp_token"]["pid"][0].count("~") >= 3


def test_tampering_options_reach_the_wire(holder: Wallet, verifier: FakeVerifier) -> None:
    request = resolve(verifier.publish(verifier.claims(mode="direct_post.jwt")), http=verifier.client)
    other = ec.generate_private_key(ec.SECP256R1())
    pres = build_presentation(holder, request, tamper=Tamper(
        nonce="replayed", aud="verifier.example", iat_offset=-366 * 86400, kb_key=other,
        kb_claims={"sd_hash": None}, disclose_all=True))
    respond(pres, http=verifier.client, encrypt=False, state=None)
    form = verifier.responses[-1]
    assert "response" not in form and "state" not in form
    presented = json.loads(form["vp_token"])["pid"][0]
    kb = jws_parts(presented.rpartition("~")[2])[1]
    assert kb["nonce"] == "replayed" and kb["aud"] == "verifier.example" and "sd_hash" not in kb
    assert kb["iat"] < time.time() - 365 * 86400
    assert not es256_valid(pub_from_jwk(holder.holder_jwk), presented.rpartition("~")[2])
    assert len(disclosures_of(presented)) == len(holder.pid.sd_jwt.disclosures)
    corrupt = build_presentation(holder, request, tamper=Tamper(corrupt_kb_signature=True)).vp_token["pid"][0]
    assert not es256_valid(pub_from_jwk(holder.holder_jwk), corrupt.rpartition("~")[2])


def test_user_decline_sends_access_denied(holder: Wallet, verifier: FakeVerifier) -> None:
    with pytest.raises(wallet.AccessDenied, match="declined"):
        wallet.approve(verifier.publish(verifier.claims()), holder, http=verifier.client, confirm=lambda r, m: False)
    assert verifier.responses[-1]["error"] == "access_denied"


# -- request retrieval and verification ---------------------------------------------------------

def test_request_uri_method_post_sends_metadata_and_checks_the_nonce_echo(holder: Wallet,
                                                                          verifier: FakeVerifier) -> None:
    link = verifier.publish(verifier.claims(), method="post")
    request = resolve(link, http=verifier.client)
    fetch = verifier.fetches[-1]
    assert fetch.method == "POST" and fetch.headers["accept"] == "application/oauth-authz-req+jwt"
    form = parse_qs(fetch.content.decode())
    assert "ECDH-ES" in json.loads(form["wallet_metadata"][0])["authorization_encryption_alg_values_supported"]
    assert request.claims["wallet_nonce"] == form["wallet_nonce"][0]
    verifier.echo_wallet_nonce = False
    with pytest.raises(wallet.InvalidRequest, match="wallet_nonce"):
        resolve(verifier.publish(verifier.claims(), method="post"), http=verifier.client)


@pytest.mark.parametrize("scheme", ["openid4vp://", "haip-vp://", "https://wallet.example/authorize"])
def test_link_schemes(holder: Wallet, verifier: FakeVerifier, scheme: str) -> None:
    assert resolve(verifier.publish(verifier.claims(), scheme=scheme), http=verifier.client).nonce


def test_bad_request_uri_method() -> None:
    with pytest.raises(wallet.InvalidRequestUriMethod):
        parse_invocation("openid4vp://?client_id=x509_hash:a&request_uri=https://v.example/r&request_uri_method=put")


def _tampered_signature(v: FakeVerifier) -> str:
    token = v.sign(v.claims())
    head, _, sig = token.rpartition(".")
    raw = bytearray(unb64u(sig))
    raw[5] ^= 1
    return head + "." + b64u(bytes(raw))


@pytest.mark.parametrize(("make", "link_client_id", "error", "match"), [
    (_tampered_signature, None, wallet.InvalidRequest, "signature"),
    (lambda v: v.sign(v.claims(), key=ec.generate_private_key(ec.SECP256R1())), None, wallet.InvalidRequest,
     "signature"),
    (lambda v: v.sign(v.claims()), "x509_hash:" + "A" * 43, wallet.InvalidRequest, "client_id in the link"),
    (lambda v: v.sign(v.claims(client_id="x509_hash:" + "A" * 43)), None, wallet.InvalidClient, "x509_hash"),
    (lambda v: v.sign(v.claims(client_id="x509_san_dns:evil.example")), None, wallet.InvalidClient, "dNSName"),
    (lambda v: v.sign(v.claims(client_id="redirect_uri:https://verifier.example/cb")), None, wallet.InvalidClient,
     "prefix"),
    (lambda v: v.sign(v.claims(), header={"typ": "JWT"}), None, wallet.InvalidRequest, "typ"),
    (lambda v: v.sign(v.claims(), header={"alg": "ES384"}), None, wallet.InvalidRequest, "alg"),
    (lambda v: v.sign(v.claims(), header={"x5c": None}), None, wallet.InvalidClient, "x5c"),
    (lambda v: v.sign(v.claims(response_type="code")), None, wallet.InvalidRequest, "response_type"),
    (lambda v: v.sign(v.claims(mode="fragment")), None, wallet.InvalidRequest, "response_mode"),
    (lambda v: v.sign(v.claims(nonce=None)), None, wallet.InvalidRequest, "nonce"),
    (lambda v: v.sign(v.claims(response_uri=None)), None, wallet.InvalidRequest, "response_uri"),
    (lambda v: v.sign(v.claims(redirect_uri="https://verifier.example/cb")), None, wallet.InvalidRequest,
     "redirect_uri"),
    (lambda v: v.sign(v.claims(exp=int(time.time()) - 3600)), None, wallet.InvalidRequest, "expired"),
    (lambda v: v.sign(v.claims(mode="direct_post.jwt", client_metadata={})), None, wallet.InvalidRequest, "jwks"),
    (lambda v: v.sign(v.claims(dcql={"credentials": []})), None, wallet.InvalidRequest, "dcql_query"),
], ids=["tampered-signature", "wrong-key", "client-id-mismatch", "wrong-x509-hash", "san-dns-not-in-cert",
        "unsupported-prefix", "wrong-typ", "alg-not-allowed", "no-x5c", "response-type", "response-mode",
        "no-nonce", "no-response-uri", "redirect-uri-present", "expired", "jwt-mode-without-jwks", "empty-dcql"])
def test_request_object_rejections(holder: Wallet, verifier: FakeVerifier, make: Any, link_client_id: str | None,
                                   error: type, match: str) -> None:
    jws = make(verifier)
    cid = link_client_id or jws_parts(jws)[1]["client_id"]
    with pytest.raises(error, match=match):
        wallet.approve(verifier.publish(jws, client_id=cid), holder, http=verifier.client)
    assert verifier.responses == [], "an unauthenticated request must never get a response"


def test_x509_san_dns_is_accepted_when_the_response_uri_host_matches(verifier: FakeVerifier) -> None:
    request = resolve(verifier.publish(verifier.claims(client_id="x509_san_dns:verifier.example")),
                      http=verifier.client)
    assert request.client_id == "x509_san_dns:verifier.example" and request.verifier_name == "verifier.example"
    other = FakeVerifier(base="https://elsewhere.example")
    other.leaf, other.key = verifier.leaf, verifier.key
    with pytest.raises(wallet.InvalidClient, match="response_uri host"):
        resolve(other.publish(other.claims(client_id="x509_san_dns:verifier.example")), http=other.client)


def test_verifier_chain_is_checked_against_the_given_anchor(verifier: FakeVerifier) -> None:
    link = verifier.publish(verifier.claims())
    assert resolve(link, http=verifier.client, trust_anchors=[verifier.ca]).verifier_trusted
    assert not resolve(link, http=verifier.client).verifier_trusted
    stranger, _ = make_ca("Someone Else")
    with pytest.raises(wallet.InvalidClient, match="trusted anchor"):
        resolve(link, http=verifier.client, trust_anchors=[stranger])


# -- CLI ----------------------------------------------------------------------------------------

def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wallet", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, timeout=60)


def test_cli_issue_pid_and_revoke(tmp_path: Path) -> None:
    w, state = tmp_path / "w.json", tmp_path / "issuer"
    r = run_cli("issue-pid", "--wallet", str(w), "--given-name", "Erika", "--family-name", "Mustermann",
                "--birthdate", "1964-08-12", "--nationality", "AT", "--state-dir", str(state),
                "--status-url", "http://127.0.0.1:9/status/7")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["wallet_created"] and out["status"]["status_list"]["uri"] == "http://127.0.0.1:9/status/7"
    assert stat.S_IMODE(os.stat(w).st_mode) == 0o600
    r = run_cli("pid-issuer", "revoke", "--state-dir", str(state), "--index", str(out["status_index"]))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "INVALID"
    token = wallet.PidIssuer(state).status_list_token("7")
    assert _status_in_token(token, out["status_index"]) == 1


@pytest.mark.parametrize("args", [
    ["issue-pid", "--wallet", "{tmp}/w.json", "--given-name", "E", "--family-name", "M", "--birthdate", "12.08.1964",
     "--state-dir", "{tmp}/i"],
    ["pid-issuer", "suspend", "--state-dir", "{tmp}/i", "--index", "5"],
    ["approve", "--wallet", "{tmp}/missing.json", "openid4vp://?client_id=a&request_uri=https://x.example/r"],
], ids=["bad-birthdate", "unknown-index", "missing-wallet"])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str]) -> None:
    r = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode != 0
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr


@pytest.fixture
def live_verifier() -> Any:
    """FakeVerifier on a real loopback socket, for the CLI."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    v = FakeVerifier(base=f"http://127.0.0.1:{srv.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            resp = v.handle(httpx.Request(self.command, v.base + self.path, headers=dict(self.headers), content=body))
            self.send_response(resp.status_code)
            for name in ("content-type", "set-cookie", "location"):
                if name in resp.headers:
                    self.send_header(name, resp.headers[name])
            self.send_header("Content-Length", str(len(resp.content)))
            self.end_headers()
            self.wfile.write(resp.content)

        do_GET = do_POST = _any

        def log_message(self, *a: Any) -> None:
            pass

    srv.RequestHandlerClass = Handler
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield v
    srv.shutdown()
    srv.server_close()


def test_cli_approve_prints_the_review_then_the_outcome(holder: Wallet, live_verifier: FakeVerifier,
                                                         tmp_path: Path) -> None:
    link = live_verifier.publish(live_verifier.claims(mode="direct_post.jwt", transaction_data=[td_entry(qes_entry())]))
    ca = tmp_path / "verifier-ca.pem"
    ca.write_bytes(live_verifier.ca.public_bytes(serialization.Encoding.PEM))
    r = run_cli("approve", "--wallet", str(holder.path), "--verifier-ca", str(ca), link, stdin="y\n")
    assert r.returncode == 0, r.stderr
    assert "Contract.pdf" in r.stderr and "trusted chain" in r.stderr
    assert json.loads(r.stdout)["final_body"]["result"] == "enrolled"
    _, payload = live_verifier.decrypt(live_verifier.responses[-1]["response"])
    assert "pid" in payload["vp_token"]


def test_cli_approve_declined_without_yes(holder: Wallet, live_verifier: FakeVerifier) -> None:
    r = run_cli("approve", "--wallet", str(holder.path), live_verifier.publish(live_verifier.claims()), stdin="")
    assert r.returncode == 1 and "error: access_denied" in r.stderr
    assert live_verifier.responses[-1]["error"] == "access_denied"


def test_cli_enroll_same_device_keeps_the_session_and_prints_the_final_json(holder: Wallet,
                                                                          live_verifier: FakeVerifier) -> None:
    live_verifier.enroll_link = live_verifier.publish(live_verifier.claims(mode="direct_post.jwt"), method="post")
    r = run_cli("enroll", "--wallet", str(holder.path), "--server", live_verifier.base, "--yes")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"result": "enrolled", "session": "sid=s1"}
    assert "family_name=Mustermann" in r.stderr


def test_cli_enroll_against_a_dead_server_fails_cleanly(holder: Wallet) -> None:
    r = run_cli("enroll", "--wallet", str(holder.path), "--server", "http://127.0.0.1:9", "--yes")
    assert r.returncode == 1 and r.stderr.startswith("error: verifier_unreachable") and r.stderr.count("\n") == 1


def test_wallet_never_imports_the_server_side() -> None:
    code = "import sys, wallet, wallet.__main__; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('app', 'sam', 'hsm')))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr
