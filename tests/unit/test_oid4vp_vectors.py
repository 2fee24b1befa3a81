"""Published OpenID4VP vectors as literal files, run through rqes's own code paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.errors import ProtocolError
from app.oid4vp.service import decrypt_response

VECTORS = Path(__file__).resolve().parents[1] / "data" / "vectors"


def test_encrypted_response_example_decrypts() -> None:
    v = json.loads((VECTORS / "oid4vp-encrypted-response.json").read_text())
    assert decrypt_response(v["jwe"], json.dumps(v["private_jwk"])) == v["expected_payload"]


def test_encrypted_response_example_with_a_flipped_tag_is_refused() -> None:
    v = json.loads((VECTORS / "oid4vp-encrypted-response.json").read_text())
    jwe = v["jwe"][:-2] + ("AA" if not v["jwe"].endswith("AA") else "BB")
    with pytest.raises(ProtocolError, match="could not be decrypted"):
        decrypt_response(jwe, json.dumps(v["private_jwk"]))


def test_encrypted_response_example_with_another_key_is_refused() -> None:
    from jwcrypto import jwk

    v = json.loads((VECTORS / "oid4vp-encrypted-response.json").read_text())
    other = jwk.JWK.generate(kty="EC", crv="P-256").export_private()
    with pytest.raises(ProtocolError):
        decrypt_response(v["jwe"], other)
