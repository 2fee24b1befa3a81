"""Cross-check :mod:`sam.sdjwt` against the independent ``sd-jwt`` package (0.10.4, openid4vp-sdjwt.md §15).

(a) A credential issued and presented with ``sd_jwt`` (SDJWTIssuer + SDJWTHolder with key binding)
    is accepted by our verifier, with the same claims.
(b) A presentation from our in-test issuer and holder (test_sdjwt.py) verifies with
    ``sd_jwt.SDJWTVerifier``, which unpacks the same claims.

``sd_jwt`` 0.10.4 checks neither exp/nbf/iat, nor x5c chains, nor unreferenced disclosures, so it
only confirms the encoding (disclosure digests, recursive unpacking, sd_hash, KB-JWT); the policy
checks are pinned in test_sdjwt.py. Its holder stamps the KB-JWT ``iat`` with the real time, so
direction (a) runs on a PKI and a clock at the real time.
"""

from __future__ import annotations

import base64
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto.jwk import JWK
from sd_jwt.common import SDObj
from sd_jwt.holder import SDJWTHolder
from sd_jwt.issuer import SDJWTIssuer
from sd_jwt.verifier import SDJWTVerifier

from sam.clock import FixedClock
from sam.sdjwt import PresentationRejected, SdJwtVcVerifier
from test_sdjwt import (  # the in-test PID provider; tests/unit is on sys.path under pytest's default import mode
    AT,
    AUD,
    NONCE,
    PID_CLAIMS,
    STATUS_URI,
    STATUS_VALUES,
    Fetcher,
    make_pki,
    pack_status,
    present,
    issue,
    public_jwk,
    sign_jws,
    status_token,
)


def _sd_jwt_credential(pki: Any, holder: JWK, now: int) -> str:
    user_claims = {
        "iss": "https://pid-provider.test", "iat": now - 60, "exp": now + 86400, "vct": "urn:eudi:pid:1",
        "status": {"status_list": {"idx": 0, "uri": STATUS_URI}},
        SDObj("given_name"): "Erika",
        SDObj("family_name"): "Mustermann",
        SDObj("birthdate"): "1964-08-12",
        SDObj("nationalities"): [SDObj("DE"), SDObj("FR")],
        SDObj("address"): {SDObj("street_address"): "Heidestraße 17", SDObj("locality"): "Köln", "country": "DE"},
    }
    issuer = SDJWTIssuer(
        user_claims, JWK.from_pyca(pki.key), holder_key=holder, sign_alg="ES256", add_decoy_claims=True,
        extra_header_parameters={"typ": "dc+sd-jwt", "x5c": pki.x5c},
    )
    return issuer.sd_jwt_issuance


async def test_sd_jwt_package_presentation_accepted_by_our_verifier() -> None:
    real_now = datetime.now(timezone.utc)
    now = int(real_now.timestamp())
    pki = make_pki("PID", at=real_now)
    holder_key = ec.generate_private_key(ec.SECP256R1())
    holder = JWK.from_pyca(holder_key)

    issuance = _sd_jwt_credential(pki, holder, now)
    h = SDJWTHolder(issuance)
    h.create_presentation(
        {"given_name": True, "birthdate": True, "nationalities": [True, False], "address": {"locality": True}},
        nonce=NONCE, aud=AUD, holder_key=holder, sign_alg="ES256",
    )
    presentation = h.sd_jwt_presentation

    status = sign_jws(pki.key, {"alg": "ES256", "typ": "statuslist+jwt", "x5c": pki.x5c},
                      {"sub": STATUS_URI, "iat": now - 60, "exp": now + 3600,
                       "status_list": {"bits": 2, "lst": pack_status(STATUS_VALUES, 2)}})
    verifier = SdJwtVcVerifier(trust_anchors=[pki.ca], clock=FixedClock(real_now), status=Fetcher({STATUS_URI: status}))
    v = await verifier.verify(presentation, audience=AUD, nonce=NONCE)

    assert v.vct == "urn:eudi:pid:1"
    assert v.claims["given_name"] == "Erika" and v.claims["birthdate"] == "1964-08-12"
    assert v.claims["nationalities"] == ["DE"]
    assert v.claims["address"] == {"locality": "Köln", "country": "DE"}
    assert "family_name" not in v.claims
    assert v.holder_jwk == holder.export_public(as_dict=True)
    assert abs(v.kb["iat"] - time.time()) < 60

    with pytest.raises(PresentationRejected) as ei:
        await verifier.verify(presentation, audience=AUD, nonce=NONCE + "x")
    assert ei.value.reason == "wrong_nonce"


async def test_our_presentation_verifies_with_sd_jwt_package() -> None:
    pki = make_pki("PID")
    holder_key = ec.generate_private_key(ec.SECP256R1())
    cred = issue(pki, public_jwk(holder_key))
    chosen = [cred.by_name[n] for n in ("given_name", "family_name", "address", "locality", "postal_code")]
    for disclosures in (None, chosen):
        p = present(cred, holder_key, disclosures=disclosures, iat=int(AT.timestamp()) - 5)

        ours = await SdJwtVcVerifier(trust_anchors=[pki.ca], clock=FixedClock(AT),
                                     status=Fetcher({STATUS_URI: status_token(pki, STATUS_VALUES)})
                                     ).verify(p, audience=AUD, nonce=NONCE)

        theirs = SDJWTVerifier(p, lambda iss, header: JWK.from_pyca(pki.key.public_key()),
                               expected_aud=AUD, expected_nonce=NONCE)
        assert theirs.get_verified_payload() == ours.claims
    assert {k: ours.claims[k] for k in ("given_name", "family_name", "address")} == {
        "given_name": PID_CLAIMS["given_name"], "family_name": PID_CLAIMS["family_name"],
        "address": {"locality": "Köln", "postal_code": "51147"}}


def test_sd_jwt_package_rejects_our_tampered_sd_hash() -> None:
    pki = make_pki("PID")
    holder_key = ec.generate_private_key(ec.SECP256R1())
    cred = issue(pki, public_jwk(holder_key))
    p = present(cred, holder_key, sd_hash=base64.urlsafe_b64encode(b"\0" * 32).rstrip(b"=").decode())
    with pytest.raises(ValueError, match="digest"):
        SDJWTVerifier(p, lambda iss, header: JWK.from_pyca(pki.key.public_key()), expected_aud=AUD, expected_nonce=NONCE)
