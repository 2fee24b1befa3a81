"""Remote seals end to end over real HTTP: a real ``rqes serve`` with SoftHSM and SQLite or
PostgreSQL. Every *Bad input* case of the foundation issue has a test named after it: it gets
the CSC error JSON with the spec's status code, is audited as a refusal, and changes no state
(the legitimate request still succeeds afterwards)."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from tests.conftest import Seal, Server

SHA256 = "2.16.840.1.101.3.4.2.1"
SHA384 = "2.16.840.1.101.3.4.2.2"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
RSA_SHA256 = "1.2.840.113549.1.1.11"
PSS = "1.2.840.113549.1.1.10"


def digest(n: int = 0, size: int = 32) -> bytes:
    return hashlib.sha256(f"document {n} {os.urandom(8).hex()}".encode()).digest()[:size] if size <= 32 else os.urandom(size)


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def authorize(srv: Server, seal: Seal, hs: list[bytes], **over) -> httpx.Response:
    body = {"credentialID": seal.credential_id, "numSignatures": len(hs), "hashes": [b64(h) for h in hs],
            "hashAlgorithmOID": SHA256, "authData": []}
    body.update(over)
    return srv.post("/csc/v2/credentials/authorize", body, token=seal.token)


def sad_for(srv: Server, seal: Seal, hs: list[bytes]) -> str:
    r = authorize(srv, seal, hs)
    assert r.status_code == 200, r.text
    assert r.json()["expiresIn"] <= 300
    return r.json()["SAD"]


def sign(srv: Server, seal: Seal, sad: str, hs: list[bytes], algo: str = ECDSA_SHA256, **over) -> httpx.Response:
    body = {"credentialID": seal.credential_id, "SAD": sad, "hashes": [b64(h) for h in hs], "hashAlgorithmOID": SHA256,
            "signAlgo": algo}
    body.update(over)
    return srv.post("/csc/v2/signatures/signHash", body, token=seal.token)


def assert_error(r: httpx.Response, status: int, error: str, description: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    if description is not None:
        assert body["error_description"] == description


def last_refusal(srv: Server, kind: str = "signature.refused") -> dict:
    recs = srv.cli_json("audit", "tail", "-n", "1", "--kind", kind)
    assert recs, f"no {kind} record"
    return recs[-1]


def leaf_cert(srv: Server, seal: Seal) -> x509.Certificate:
    r = srv.post("/csc/v2/credentials/info", {"credentialID": seal.credential_id, "certificates": "chain"}, token=seal.token)
    assert r.status_code == 200, r.text
    return x509.load_der_x509_certificate(base64.b64decode(r.json()["cert"]["certificates"][0]))


@pytest.fixture(scope="module")
def ec_seal(server: Server) -> Seal:
    return server.new_seal("ec-p256")


# -- happy paths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key_type,algo", [("ec-p256", ECDSA_SHA256), ("ec-p384", "1.2.840.10045.2.1"),
                                           ("rsa-2048", RSA_SHA256), ("rsa-3072", PSS)])
def test_seal_signatures_verify_with_the_certificate(server: Server, key_type: str, algo: str) -> None:
    seal = server.new_seal(key_type)
    hs = [digest(i) for i in range(3)]
    sad = sad_for(server, seal, hs)
    extra = {}
    if algo == PSS:
        from hsm.mechanisms import Hash, pss_params_der

        extra["signAlgoParams"] = b64(pss_params_der(Hash.SHA256))
    r = sign(server, seal, sad, hs, algo, **extra)
    assert r.status_code == 200, r.text
    sigs = [base64.b64decode(s) for s in r.json()["signatures"]]
    assert len(sigs) == 3
    pub = leaf_cert(server, seal).public_key()
    for h, s in zip(hs, sigs):
        if key_type.startswith("ec"):
            pub.verify(s, h, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # DER ECDSA-Sig-Value
        elif algo == PSS:
            pub.verify(s, h, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))
        else:
            pub.verify(s, h, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def test_v1_field_names_are_accepted(server: Server, ec_seal: Seal) -> None:
    h = [digest()]
    body = {"credentialID": ec_seal.credential_id, "numSignatures": 1, "hash": [b64(h[0])], "hashAlgo": SHA256}
    r = server.post("/csc/v2/credentials/authorize", body, token=ec_seal.token)
    assert r.status_code == 200, r.text
    r = server.post("/csc/v2/signatures/signHash", {"credentialID": ec_seal.credential_id, "SAD": r.json()["SAD"],
                                                   "hash": [b64(h[0])], "hashAlgo": SHA256, "signAlgo": ECDSA_SHA256},
                    token=ec_seal.token)
    assert r.status_code == 200, r.text


def test_base64url_unpadded_hashes_match_standard_base64(server: Server, ec_seal: Seal) -> None:
    h = digest()
    sad = sad_for(server, ec_seal, [h])
    url = base64.urlsafe_b64encode(h).rstrip(b"=").decode()
    r = server.post("/csc/v2/signatures/signHash", {"credentialID": ec_seal.credential_id, "SAD": sad, "hashes": [url],
                                                   "signAlgo": ECDSA_SHA256}, token=ec_seal.token)
    assert r.status_code == 200, r.text


def test_info_and_credentials_shape(server: Server, ec_seal: Seal) -> None:
    info = server.post("/csc/v2/info").json()
    for field in ("specs", "name", "logo", "region", "lang", "description", "authType", "methods",
                  "signAlgorithms", "signature_formats", "conformance_levels", "oauth2"):
        assert field in info
    assert "oauth2client" in info["authType"]
    assert "implicit" not in json.dumps(info)
    r = server.post("/csc/v2/credentials/list", {"credentialInfo": True, "certificates": "chain", "certInfo": True,
                                                 "authInfo": True, "onlyValid": True}, token=ec_seal.token)
    assert r.status_code == 200
    body = r.json()
    assert body["credentialIDs"] == [ec_seal.credential_id]
    ci = body["credentialInfos"][0]
    assert ci["SCAL"] == "2" and ci["multisign"] == 100 and ci["key"]["algo"][0] == ECDSA_SHA256
    assert ci["auth"]["mode"] == "explicit" and ci["auth"]["objects"] == []
    assert len(ci["cert"]["certificates"]) == 3
    assert len(ci["cert"]["validFrom"]) == 15 and ci["cert"]["validFrom"].endswith("Z")
    none = server.post("/csc/v2/credentials/info", {"credentialID": ec_seal.credential_id, "certificates": "none"},
                       token=ec_seal.token).json()
    assert "certificates" not in none["cert"]


def test_seal_certificate_is_qualified_and_chains_to_root(server: Server, ec_seal: Seal) -> None:
    r = server.post("/csc/v2/credentials/info", {"credentialID": ec_seal.credential_id, "certificates": "chain"},
                    token=ec_seal.token).json()
    leaf, issuing, root = (x509.load_der_x509_certificate(base64.b64decode(c)) for c in r["cert"]["certificates"])
    names = {a.oid.dotted_string: a.value for a in leaf.subject}
    assert names["2.5.4.10"] == "ACME Test SA" and names["2.5.4.97"].startswith("NTR")
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.content_commitment  # nonRepudiation
    qc = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3")).value.value
    from asn1crypto.core import Sequence
    for oid in ("0.4.0.1862.1.1", "0.4.0.1862.1.4", "0.4.0.1862.1.6.2"):  # QcCompliance, QcSSCD, QcType eseal
        from asn1crypto.core import ObjectIdentifier
        assert ObjectIdentifier(oid).dump()[2:] in qc
    pols = [p.policy_identifier.dotted_string for p in leaf.extensions.get_extension_for_class(x509.CertificatePolicies).value]
    assert "0.4.0.194112.1.3" in pols
    crl = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert crl[0].full_name[0].value.startswith(server.base_url)
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert any(d.access_location.value.startswith(server.base_url) for d in aia)
    leaf.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    assert Sequence  # imported for asn1 checks above


# -- bad input: each named, each audited, none changes state ------------------------------------
def test_rejects_unknown_credential(server: Server, ec_seal: Seal) -> None:
    r = authorize(server, ec_seal, [digest()], credentialID="no-such-credential")
    assert_error(r, 400, "invalid_request", "Invalid parameter credentialID")
    assert last_refusal(server, "authorization.refused")["data"]["reason"] == "unknown_credential"
    sad = sad_for(server, ec_seal, h := [digest()])
    r = sign(server, ec_seal, sad, h, credentialID="no-such-credential")
    assert_error(r, 400, "invalid_request", "Invalid parameter SAD")
    assert sign(server, ec_seal, sad, h).status_code == 200  # the refused attempt did not spend it


def test_rejects_disabled_credential(server: Server) -> None:
    seal = server.new_seal()
    h = [digest()]
    sad = sad_for(server, seal, h)
    server.cli("credentials", "disable", seal.credential_id)
    assert_error(authorize(server, seal, h), 400, "invalid_request", "Credential is disabled")
    assert_error(sign(server, seal, sad, h), 400, "invalid_request", "Credential is disabled")
    assert last_refusal(server)["data"]["reason"] == "credential_disabled"
    info = server.post("/csc/v2/credentials/info", {"credentialID": seal.credential_id}, token=seal.token).json()
    assert info["key"]["status"] == "disabled"
    server.cli("credentials", "enable", seal.credential_id)
    assert sign(server, seal, sad, h).status_code == 200


def test_rejects_deleted_credential_and_destroys_its_key(server: Server) -> None:
    seal = server.new_seal()
    h = [digest()]
    sad = sad_for(server, seal, h)
    server.cli("credentials", "delete", seal.credential_id)
    assert_error(sign(server, seal, sad, h), 400, "invalid_request", "Invalid parameter credentialID")
    listed = server.post("/csc/v2/credentials/list", {}, token=seal.token).json()
    assert seal.credential_id not in listed["credentialIDs"]
    kinds = [r["kind"] for r in server.cli_json("audit", "tail", "-n", "10")]
    assert "credential.deleted" in kinds and "key.destroyed" in kinds


def test_rejects_wrong_client(server: Server, ec_seal: Seal) -> None:
    other = server.new_seal()
    h = [digest()]
    # another client's token cannot authorize, inspect or sign with this credential
    r = server.post("/csc/v2/credentials/authorize", {"credentialID": ec_seal.credential_id, "numSignatures": 1,
                                                      "hashes": [b64(h[0])], "hashAlgorithmOID": SHA256}, token=other.token)
    assert_error(r, 400, "invalid_request", "Invalid parameter credentialID")
    r = server.post("/csc/v2/credentials/info", {"credentialID": ec_seal.credential_id}, token=other.token)
    assert_error(r, 400, "invalid_request", "Invalid parameter credentialID")
    sad = sad_for(server, ec_seal, h)
    r = server.post("/csc/v2/signatures/signHash", {"credentialID": ec_seal.credential_id, "SAD": sad,
                                                   "hashes": [b64(h[0])], "signAlgo": ECDSA_SHA256}, token=other.token)
    assert_error(r, 400, "invalid_request", "Invalid parameter SAD")
    assert last_refusal(server)["data"]["reason"] == "other_client"
    assert sign(server, ec_seal, sad, h).status_code == 200


def test_rejects_malformed_base64(server: Server, ec_seal: Seal) -> None:
    r = authorize(server, ec_seal, [digest()], hashes=["not base64!"])
    assert_error(r, 400, "invalid_request", "Invalid Base64 hash string parameter")
    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    r = sign(server, ec_seal, sad, h, hashes=["@@@"])
    assert_error(r, 400, "invalid_request", "Invalid Base64 hash string parameter")
    assert last_refusal(server)["data"]["reason"] == "malformed_request"
    assert sign(server, ec_seal, sad, h).status_code == 200


def test_rejects_digest_of_wrong_length(server: Server, ec_seal: Seal) -> None:
    r = authorize(server, ec_seal, [os.urandom(20)])
    assert_error(r, 400, "invalid_request", "Invalid digest value length")
    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    r = sign(server, ec_seal, sad, [os.urandom(48)])
    assert_error(r, 400, "invalid_request", "Invalid digest value length")
    assert sign(server, ec_seal, sad, h).status_code == 200


def test_rejects_unknown_sign_algo(server: Server, ec_seal: Seal) -> None:
    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    assert_error(sign(server, ec_seal, sad, h, "1.2.3.4"), 400, "invalid_request", "Invalid parameter signAlgo")
    assert_error(sign(server, ec_seal, sad, h, RSA_SHA256), 400, "invalid_request", "Invalid parameter signAlgo")
    assert last_refusal(server)["data"]["reason"] == "bad_sign_algo"
    assert sign(server, ec_seal, sad, h).status_code == 200


def test_rejects_contradicting_hash_algorithm(server: Server, ec_seal: Seal) -> None:
    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    r = sign(server, ec_seal, sad, h, hashAlgorithmOID=SHA384)
    assert_error(r, 400, "invalid_request", "Invalid parameter hashAlgorithmOID")
    assert sign(server, ec_seal, sad, h).status_code == 200


def test_rejects_empty_hash_list(server: Server, ec_seal: Seal) -> None:
    assert_error(authorize(server, ec_seal, [], numSignatures=1), 400, "invalid_request", "Empty hash array")
    assert last_refusal(server, "authorization.refused")["data"]["error"] == "Empty hash array"


def test_rejects_oversized_hash_list(server: Server, ec_seal: Seal) -> None:
    hs = [digest(i) for i in range(1001)]  # RQES_MAX_HASHES defaults to 1000
    r = authorize(server, ec_seal, hs)
    assert_error(r, 400, "invalid_request", "Too many hashes: at most 1000 per request")


def test_rejects_num_signatures_above_multisign(server: Server, ec_seal: Seal) -> None:
    hs = [digest(i) for i in range(101)]  # multisign is 100
    assert_error(authorize(server, ec_seal, hs), 400, "invalid_request", "Numbers of signatures is too high")
    assert last_refusal(server, "authorization.refused")["data"]["reason"] == "over_multisign"
    assert_error(authorize(server, ec_seal, [digest()], numSignatures="x"), 400, "invalid_request",
                 "Missing (or invalid type) integer parameter numSignatures")


def test_rejects_replayed_sad(server: Server, ec_seal: Seal) -> None:
    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    assert sign(server, ec_seal, sad, h).status_code == 200
    assert_error(sign(server, ec_seal, sad, h), 400, "invalid_request", "Invalid parameter SAD")
    assert last_refusal(server)["data"]["reason"] == "sad_replayed"


def test_rejects_concurrent_replay(server: Server, ec_seal: Seal) -> None:
    import concurrent.futures

    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: sign(server, ec_seal, sad, h).status_code, range(8)))
    assert sorted(codes) == [200] + [400] * 7


def test_rejects_replay_after_restart(server: Server, ec_seal: Seal) -> None:
    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    assert sign(server, ec_seal, sad, h).status_code == 200
    server.restart()
    assert_error(sign(server, ec_seal, sad, h), 400, "invalid_request", "Invalid parameter SAD")


def _tamper(sad: str, part: int, fn) -> str:  # noqa: ANN001
    parts = sad.split(".")
    raw = base64.urlsafe_b64decode(parts[part] + "=" * (-len(parts[part]) % 4))
    parts[part] = base64.urlsafe_b64encode(fn(raw)).rstrip(b"=").decode()
    return ".".join(parts)


def test_rejects_forged_sad(server: Server, ec_seal: Seal) -> None:
    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    flipped = _tamper(sad, 2, lambda b: bytes([b[0] ^ 1]) + b[1:])
    assert_error(sign(server, ec_seal, flipped, h), 400, "invalid_request", "Invalid parameter SAD")
    assert last_refusal(server)["data"]["reason"] == "bad_signature"
    other = [digest()]
    widened = _tamper(sad, 1, lambda b: json.dumps({**json.loads(b), "numSignatures": 5}).encode())
    assert_error(sign(server, ec_seal, widened, other), 400, "invalid_request", "Invalid parameter SAD")
    assert_error(sign(server, ec_seal, "garbage", h), 400, "invalid_request", "Invalid parameter SAD")
    assert sign(server, ec_seal, sad, h).status_code == 200


def test_rejects_alg_none_sad(server: Server, ec_seal: Seal) -> None:
    h = [digest()]
    sad = sad_for(server, ec_seal, h)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "rqes-sad+jwt"}).encode()).rstrip(b"=").decode()
    none_sad = f"{header}.{sad.split('.')[1]}."
    assert_error(sign(server, ec_seal, none_sad, h), 400, "invalid_request", "Invalid parameter SAD")
    assert last_refusal(server)["data"]["reason"] in ("alg_not_allowed", "malformed")
    assert sign(server, ec_seal, sad, h).status_code == 200


def test_rejects_sad_for_other_hashes(server: Server, ec_seal: Seal) -> None:
    h1, h2 = digest(1), digest(2)
    sad = sad_for(server, ec_seal, [h1, h2])
    for bad in ([h2, h1], [h1], [h1, h1], [h1, h2, h2], [digest(3), h2]):
        r = sign(server, ec_seal, sad, bad)
        assert_error(r, 400, "invalid_request", "Hash is not authorized by the SAD")
    assert last_refusal(server)["data"]["reason"] == "hash_not_authorized"
    assert sign(server, ec_seal, sad, [h1, h2]).status_code == 200


def test_rejects_oversized_body(server: Server, ec_seal: Seal) -> None:
    big = {"credentialID": ec_seal.credential_id, "SAD": "x" * (1_100_000), "hashes": [b64(digest())], "signAlgo": ECDSA_SHA256}
    r = server.post("/csc/v2/signatures/signHash", big, token=ec_seal.token)
    assert_error(r, 413, "invalid_request", "Request body too large")


def test_rejects_malformed_json_and_missing_fields(server: Server, ec_seal: Seal) -> None:
    r = httpx.post(f"{server.base_url}/csc/v2/signatures/signHash", content=b"{not json",
                   headers={"Authorization": f"Bearer {ec_seal.token}", "Content-Type": "application/json"})
    assert_error(r, 400, "invalid_request", "Malformed JSON body")
    r = server.post("/csc/v2/signatures/signHash", {"SAD": "x"}, token=ec_seal.token)
    assert_error(r, 400, "invalid_request", "Missing (or invalid type) string parameter credentialID")
    r = server.post("/csc/v2/signatures/signHash", [1, 2], token=ec_seal.token)
    assert_error(r, 400, "invalid_request")
    r = server.post("/csc/v2/credentials/info", {"credentialID": ec_seal.credential_id, "certificates": "all"}, token=ec_seal.token)
    assert_error(r, 400, "invalid_request", "Invalid parameter certificates")


def test_rejects_missing_or_invalid_access_token(server: Server, ec_seal: Seal) -> None:
    for token in (None, "abc", ec_seal.token[:-4] + "AAAA"):
        r = server.post("/csc/v2/credentials/list", {}, token=token)
        assert_error(r, 401, "invalid_token")
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_rejects_unimplemented_method_with_501(server: Server, ec_seal: Seal) -> None:
    r = server.post("/csc/v2/signatures/signDoc", {}, token=ec_seal.token)
    assert_error(r, 501, "invalid_request")


def test_refusals_never_write_a_traceback_or_500(server: Server, ec_seal: Seal) -> None:
    bodies = [{"credentialID": 5}, {"credentialID": ec_seal.credential_id, "numSignatures": -1, "hashes": [b64(digest())],
              "hashAlgorithmOID": SHA256}, {"credentialID": ec_seal.credential_id, "numSignatures": 1,
              "hashes": [b64(digest())], "hashAlgorithmOID": "1.2.3"}, {"credentialID": ec_seal.credential_id,
              "numSignatures": 1, "hashes": [None]}, {"credentialID": "x" * 5000, "numSignatures": 1, "hashes": ["AA=="],
              "hashAlgorithmOID": SHA256}]
    for body in bodies:
        r = server.post("/csc/v2/credentials/authorize", body, token=ec_seal.token)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert "Traceback" not in r.text and set(r.json()) == {"error", "error_description"}


@pytest.fixture(scope="module")
def short_sad_server():  # noqa: ANN201
    from tests.conftest import make_server

    yield from make_server("sqlite", {"RQES_SAD_LIFETIME": "1", "RQES_CLOCK_SKEW": "0"})


def test_rejects_expired_sad(short_sad_server: Server) -> None:
    import time

    seal = short_sad_server.new_seal()
    h = [digest()]
    r = authorize(short_sad_server, seal, h)
    assert r.status_code == 200 and r.json()["expiresIn"] == 1
    time.sleep(2.2)
    assert_error(sign(short_sad_server, seal, r.json()["SAD"], h), 400, "invalid_request", "SAD expired")
    assert last_refusal(short_sad_server)["data"]["reason"] == "sad_expired"


def test_extend_transaction_for_seals(server: Server, ec_seal: Seal) -> None:
    h1, h2 = digest(1), digest(2)
    sad = sad_for(server, ec_seal, [h1])
    r = server.post("/csc/v2/credentials/extendTransaction", {"credentialID": ec_seal.credential_id, "SAD": sad,
                                                             "hashes": [b64(h2)], "hashAlgorithmOID": SHA256}, token=ec_seal.token)
    assert r.status_code == 200, r.text
    new = r.json()["SAD"]
    assert_error(sign(server, ec_seal, sad, [h1]), 400, "invalid_request", "Invalid parameter SAD")  # the old one is spent
    assert sign(server, ec_seal, new, [h2]).status_code == 200
    r = server.post("/csc/v2/credentials/extendTransaction", {"credentialID": ec_seal.credential_id, "SAD": sad,
                                                             "hashes": [b64(h2)], "hashAlgorithmOID": SHA256}, token=ec_seal.token)
    assert_error(r, 400, "invalid_request", "Invalid parameter SAD")
