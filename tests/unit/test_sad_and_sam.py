"""The Signature Activation Module against in-memory ports (sam-hsm.md §4: every rejection fails closed).

Each refusal test checks the public description, that the refusal was audited, and, where the
SAD itself is sound, that the refused attempt did not spend it: the legitimate request still
succeeds afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from hsm import Hash, KeyType, Padding, SignScheme
from hsm.mechanisms import EC_PUBLIC_KEY, RSA_ENCRYPTION, RSASSA_PSS, pss_params_der
from hsm.software import SoftwareKeyStore
from sam import (
    AuthorizationRequest,
    CredentialRecord,
    CredentialUnusable,
    FixedClock,
    Grant,
    HashNotAuthorized,
    InvalidRequest,
    SAD_TYP,
    SadClaims,
    SadExpired,
    SadInvalid,
    SadReplayed,
    SadSigner,
    SadVerifier,
    SamError,
    SignatureActivationModule,
    SigningFailed,
    SignRequest,
    seal_owner,
)
from sam.memory import MemoryAudit, MemoryCredentials, MemoryLedger

ISSUER = "https://rqes.test"
AUDIENCE = "https://rqes.test/sam"
KID = "k1"
CLIENT = "acme"
CRED = "seal-acme-1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
ECDSA_SHA384 = "1.2.840.10045.4.3.3"
SHA256_RSA = "1.2.840.113549.1.1.11"
SHA256 = Hash.SHA256.value
SHA384 = Hash.SHA384.value

H1 = hashlib.sha256(b"document one").digest()
H2 = hashlib.sha256(b"document two").digest()
H3 = hashlib.sha256(b"document three").digest()

SAD_INVALID = "Invalid parameter SAD"
NOT_AUTHORIZED = "Hash is not authorized by the SAD"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_dec(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class CountingKeyStore(SoftwareKeyStore):
    """Counts the digests signed per key label (the SAM key mints SADs in the same store)."""

    def __init__(self) -> None:
        super().__init__()
        self.signed: dict[str, int] = {}

    def _sign(self, label, scheme, digests, raw_ecdsa):  # noqa: ANN001
        out = super()._sign(label, scheme, digests, raw_ecdsa)
        self.signed[label] = self.signed.get(label, 0) + len(out)
        return out


class YieldingCredentials(MemoryCredentials):
    """Yields to the event loop on every read, so that concurrent activations interleave."""

    async def get(self, credential_id: str) -> CredentialRecord | None:
        await asyncio.sleep(0)
        return await super().get(credential_id)


@dataclass
class Env:
    keys: CountingKeyStore
    clock: FixedClock
    audit: MemoryAudit
    ledger: MemoryLedger
    creds: MemoryCredentials
    signer: SadSigner
    verifier: SadVerifier
    sam: SignatureActivationModule
    cred: CredentialRecord
    sam_public_der: bytes

    @property
    def seal_signatures(self) -> int:
        return self.keys.signed.get(self.cred.key_label, 0)

    # -- helpers --------------------------------------------------------------------------
    async def authorize(self, hashes_: list[bytes] | None = None, *, client: str = CLIENT, alg: str = SHA256) -> Grant:
        hashes_ = [H1] if hashes_ is None else hashes_
        return await self.sam.authorize_seal(client, AuthorizationRequest(self.cred.credential_id, hashes_, alg, len(hashes_)))

    def request(self, hashes_: list[bytes] | None = None, **kw: Any) -> SignRequest:
        fields: dict[str, Any] = dict(
            credential_id=self.cred.credential_id,
            hashes=[H1] if hashes_ is None else hashes_,
            hash_algorithm=None,
            sign_algo=ECDSA_SHA256 if self.cred.key_type.is_ec else SHA256_RSA,
        )
        fields.update(kw)
        return SignRequest(**fields)

    async def activate(self, sad: str, hashes_: list[bytes] | None = None, *, client: str = CLIENT, **kw: Any) -> list[bytes]:
        return await self.sam.activate(sad, client, self.request(hashes_, **kw))

    def set_credential(self, **changes: Any) -> None:
        self.creds.records[self.cred.credential_id] = dataclasses.replace(self.cred, **changes)

    def claims(self, **changes: Any) -> SadClaims:
        """Claims as the SAM would mint them for [H1] now, with ``changes`` applied."""
        now = int(self.clock.now().timestamp())
        base = SadClaims(
            iss=ISSUER, aud=AUDIENCE, sub=self.cred.owner, jti="jti-" + b64u(hashlib.sha256(repr(changes).encode()).digest()[:16]),
            iat=now, nbf=now, exp=now + 120, credential_id=self.cred.credential_id, key_version=self.cred.key_version,
            hashes=(b64u(H1),), hash_algorithm=SHA256, num_signatures=1, azp=CLIENT,
            authn={"method": "oauth2client", "client_id": CLIENT}, evidence=f"oauth2client:{CLIENT}",
        )
        return dataclasses.replace(base, **changes)

    def sign_raw(self, header: bytes, payload: bytes, *, label: str = "sam") -> str:
        """A compact JWS over exactly these header/payload bytes, ES256 with the key ``label``."""
        signing_input = f"{b64u(header)}.{b64u(payload)}".encode()
        (sig,) = self.keys.sign_digests_sync(
            label, SignScheme(Padding.ECDSA, Hash.SHA256), [hashlib.sha256(signing_input).digest()], raw_ecdsa=True
        )
        return f"{signing_input.decode()}.{b64u(sig)}"

    def forge(self, header: dict[str, Any] | None = None, claims: SadClaims | None = None, **kw: Any) -> str:
        h = {"alg": "ES256", "typ": SAD_TYP, "kid": KID} if header is None else header
        payload = (claims or self.claims()).to_payload()
        return self.sign_raw(json.dumps(h).encode(), json.dumps(payload).encode(), **kw)

    # -- assertions ---------------------------------------------------------------------------
    def last_refusal(self, kind: str = "signature.refused") -> dict[str, Any]:
        assert self.audit.events, "nothing was audited"
        ev = self.audit.events[-1]
        assert ev.kind == kind, self.audit.kinds()
        assert ev.actor.startswith("client:")
        return ev.data


def make_env(
    key_type: KeyType = KeyType.EC_P256,
    *,
    multisign: int = 4,
    max_hashes: int = 4,
    credentials_cls: type[MemoryCredentials] = MemoryCredentials,
) -> Env:
    keys = CountingKeyStore()
    info = keys.generate_key_sync("sam", KeyType.EC_P256)
    clock = FixedClock()
    audit = MemoryAudit()
    ledger = MemoryLedger(audit)
    keys.generate_key_sync("seal-key-1", key_type)
    cred = CredentialRecord(
        credential_id=CRED, owner=seal_owner(CLIENT), key_label="seal-key-1", key_type=key_type,
        key_version=1, status="enabled", multisign=multisign,
    )
    creds = credentials_cls(cred)
    signer = SadSigner(keys, "sam", KeyType.EC_P256, kid=KID)
    verifier = SadVerifier(
        info.public_key_der, KeyType.EC_P256, KID, issuer=ISSUER, audience=AUDIENCE, clock=clock, max_lifetime=300, skew=30
    )
    sam = SignatureActivationModule(
        keys=keys, credentials=creds, ledger=ledger, audit=audit, sad_signer=signer, sad_verifier=verifier,
        clock=clock, issuer=ISSUER, audience=AUDIENCE, sad_lifetime=120, max_hashes=max_hashes,
    )
    return Env(keys, clock, audit, ledger, creds, signer, verifier, sam, cred, info.public_key_der)


@pytest.fixture
def env() -> Env:
    return make_env()


def seal_public_key(env: Env):
    return serialization.load_der_public_key(env.keys.key_info_sync(env.cred.key_label).public_key_der)


async def assert_refused(
    env: Env, exc: type[SamError], description: str, sad: str, hashes_: list[bytes] | None = None, *, reason: str | None = None, **kw: Any
) -> SamError:
    before = len(env.audit.events)
    calls = env.seal_signatures
    with pytest.raises(exc) as info:
        await env.activate(sad, hashes_, **kw)
    assert info.value.description == description
    if reason is not None:
        assert info.value.reason == reason
    data = env.last_refusal()
    assert len(env.audit.events) == before + 1
    assert data["reason"] == info.value.reason and data["error"] == description
    assert env.seal_signatures == calls, "a refused activation reached the key store"
    return info.value


async def assert_still_usable(env: Env, sad: str, hashes_: list[bytes] | None = None) -> None:
    """The refused attempt did not spend the SAD: the legitimate request succeeds now."""
    sigs = await env.activate(sad, hashes_)
    assert len(sigs) == len(hashes_ or [H1])
    assert env.audit.kinds()[-1] == "signature.activated"


# ==================================================================================================
# Happy paths
# ==================================================================================================
@pytest.mark.parametrize("sign_algo,hash_algorithm", [(ECDSA_SHA256, None), (ECDSA_SHA256, SHA256), (EC_PUBLIC_KEY, SHA256)])
async def test_ec_seal_signatures_verify(env, sign_algo, hash_algorithm):
    grant = await env.authorize([H1, H2])
    assert grant.expires_in == 120 and grant.claims.hashes == (b64u(H1), b64u(H2))
    sigs = await env.activate(grant.sad, [H1, H2], sign_algo=sign_algo, hash_algorithm=hash_algorithm)
    pub = seal_public_key(env)
    for sig, digest, doc in zip(sigs, [H1, H2], [b"document one", b"document two"]):
        pub.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        pub.verify(sig, doc, ec.ECDSA(hashes.SHA256()))
    assert env.audit.kinds() == ["authorization.granted", "signature.activated"]
    activated = env.audit.events[-1].data
    assert activated["jti"] == grant.claims.jti and activated["hashes"] == [b64u(H1), b64u(H2)]
    assert activated["credentialID"] == CRED and activated["kver"] == 1


async def test_ec_p384_seal_with_sha384():
    env = make_env(KeyType.EC_P384)
    h = hashlib.sha384(b"x").digest()
    grant = await env.authorize([h], alg=SHA384)
    (sig,) = await env.activate(grant.sad, [h], sign_algo=ECDSA_SHA384)
    seal_public_key(env).verify(sig, h, ec.ECDSA(utils.Prehashed(hashes.SHA384())))


@pytest.mark.parametrize("sign_algo,hash_algorithm", [(SHA256_RSA, None), (RSA_ENCRYPTION, SHA256)])
async def test_rsa_pkcs1v15_seal_signatures_verify(sign_algo, hash_algorithm):
    env = make_env(KeyType.RSA_2048)
    grant = await env.authorize([H1, H2])
    sigs = await env.activate(grant.sad, [H1, H2], sign_algo=sign_algo, hash_algorithm=hash_algorithm)
    pub = seal_public_key(env)
    for sig, digest in zip(sigs, [H1, H2]):
        pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


@pytest.mark.parametrize("salt", [32, 222])
async def test_rsa_pss_seal_signature_verifies(salt):
    env = make_env(KeyType.RSA_2048)
    grant = await env.authorize([H1])
    (sig,) = await env.activate(grant.sad, [H1], sign_algo=RSASSA_PSS, sign_algo_params=pss_params_der(Hash.SHA256, salt))
    seal_public_key(env).verify(sig, H1, padding.PSS(padding.MGF1(hashes.SHA256()), salt), utils.Prehashed(hashes.SHA256()))


async def test_sad_is_a_strict_es256_jws_over_the_claims(env):
    grant = await env.authorize([H1, H2])
    header = json.loads(b64u_dec(grant.sad.split(".")[0]))
    payload = json.loads(b64u_dec(grant.sad.split(".")[1]))
    assert header == {"alg": "ES256", "typ": SAD_TYP, "kid": KID}
    assert payload["credentialID"] == CRED and payload["kver"] == 1 and payload["azp"] == CLIENT
    assert payload["hashes"] == [b64u(H1), b64u(H2)] and payload["numSignatures"] == 2
    assert payload["exp"] - payload["iat"] == 120 and payload["sub"] == "client:acme"
    assert len(b64u_dec(payload["jti"])) >= 16  # >= 128 bits
    assert env.verifier.verify(grant.sad) == grant.claims


def test_sam_lifetime_above_policy_cannot_be_configured(env):
    for lifetime in (0, 301, 3600):
        with pytest.raises(ValueError):
            SignatureActivationModule(
                keys=env.keys, credentials=env.creds, ledger=env.ledger, audit=env.audit, sad_signer=env.signer,
                sad_verifier=env.verifier, clock=env.clock, issuer=ISSUER, audience=AUDIENCE, sad_lifetime=lifetime, max_hashes=4,
            )


async def test_forge_helper_control(env):
    """Control for the forging tests below: the helper's well-formed tokens are accepted, so
    each rejection there is caused by the one defect that test introduces."""
    sad = env.forge()
    assert env.verifier.verify(sad) == env.claims()
    await assert_still_usable(env, sad)
    raw = env.sign_raw(
        json.dumps({"alg": "ES256", "typ": SAD_TYP, "kid": KID}).encode(),
        json.dumps(env.claims(jti="raw-control").to_payload()).encode(),
    )
    assert env.verifier.verify(raw).jti == "raw-control"


# ==================================================================================================
# Single use
# ==================================================================================================
async def test_rejects_replayed_sad(env):
    grant = await env.authorize()
    await env.activate(grant.sad)
    await assert_refused(env, SadReplayed, SAD_INVALID, grant.sad, reason="sad_replayed")
    await assert_refused(env, SadReplayed, SAD_INVALID, grant.sad, reason="sad_replayed")
    assert env.seal_signatures == 1
    assert env.audit.kinds() == ["authorization.granted", "signature.activated", "signature.refused", "signature.refused"]


async def test_rejects_concurrent_replay():
    env = make_env(credentials_cls=YieldingCredentials)
    grant = await env.authorize([H1, H2])
    results = await asyncio.gather(*(env.activate(grant.sad, [H1, H2]) for _ in range(2)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, SadReplayed)]
    assert len(ok) == 1 and len(refused) == 1, results
    assert env.seal_signatures == 2  # two digests, once
    assert sorted(env.audit.kinds()) == sorted(["authorization.granted", "signature.activated", "signature.refused"])


async def test_concurrent_burst_yields_exactly_one_signature():
    env = make_env(credentials_cls=YieldingCredentials)
    grant = await env.authorize()
    results = await asyncio.gather(*(env.activate(grant.sad) for _ in range(10)), return_exceptions=True)
    assert sum(isinstance(r, list) for r in results) == 1
    assert sum(isinstance(r, SadReplayed) for r in results) == 9
    assert env.seal_signatures == 1


async def test_sad_spent_even_when_hsm_fails(env):
    grant = await env.authorize()
    env.keys.destroy_key_sync(env.cred.key_label)
    with pytest.raises(SigningFailed) as info:
        await env.activate(grant.sad)
    assert info.value.status == 500 and "key" not in info.value.description.lower()
    assert env.audit.kinds()[-2:] == ["signature.activated", "signature.failed"]
    env.keys.generate_key_sync(env.cred.key_label, KeyType.EC_P256)  # even if the key came back
    await assert_refused(env, SadReplayed, SAD_INVALID, grant.sad)


# ==================================================================================================
# Binding: credential, client, hashes, algorithms
# ==================================================================================================
async def test_rejects_sad_for_other_credential(env):
    other = dataclasses.replace(env.cred, credential_id="seal-acme-2", key_label="seal-key-2")
    env.keys.generate_key_sync("seal-key-2", KeyType.EC_P256)
    env.creds.records[other.credential_id] = other
    grant = await env.authorize()
    await assert_refused(env, SadInvalid, SAD_INVALID, grant.sad, credential_id="seal-acme-2", reason="other_credential")
    # the credential id is compared as bytes: a non-ASCII id is refused, not a crash
    await assert_refused(env, SadInvalid, SAD_INVALID, grant.sad, credential_id="seal-acme-1\u00e9", reason="other_credential")
    await assert_still_usable(env, grant.sad)


async def test_rejects_sad_from_other_client(env):
    grant = await env.authorize()
    await assert_refused(env, SadInvalid, SAD_INVALID, grant.sad, client="mallory", reason="other_client")
    await assert_refused(env, SadInvalid, SAD_INVALID, grant.sad, client="acm\u00e9", reason="other_client")
    await assert_refused(env, SadInvalid, SAD_INVALID, grant.sad, client="acme ", reason="other_client")
    await assert_still_usable(env, grant.sad)


async def test_rejects_other_hash(env):
    grant = await env.authorize([H1])
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, grant.sad, [H2], reason="hash_not_authorized")
    flipped = bytes([H1[0] ^ 1]) + H1[1:]
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, grant.sad, [flipped])
    await assert_still_usable(env, grant.sad, [H1])


async def test_rejects_subset_of_hashes(env):
    grant = await env.authorize([H1, H2])
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, grant.sad, [H1])
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, grant.sad, [H2])
    await assert_still_usable(env, grant.sad, [H1, H2])


async def test_rejects_reordered_hashes(env):
    grant = await env.authorize([H1, H2])
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, grant.sad, [H2, H1], reason="hash_not_authorized")
    await assert_still_usable(env, grant.sad, [H1, H2])


async def test_rejects_extended_hashes(env):
    grant = await env.authorize([H1, H2])
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, grant.sad, [H1, H2, H3])
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, grant.sad, [H1, H1, H2])
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, grant.sad, [H1, H2, H2])
    await assert_still_usable(env, grant.sad, [H1, H2])


async def test_rejects_swapped_hash_algorithm(env):
    grant = await env.authorize([H1])
    # hashAlgorithmOID differs from the SAD's
    await assert_refused(env, InvalidRequest, "Invalid parameter hashAlgorithmOID", grant.sad, [H1],
                         sign_algo=EC_PUBLIC_KEY, hash_algorithm=SHA384, reason="other_hash_algorithm")
    # signAlgo implies another hash than the SAD's
    await assert_refused(env, InvalidRequest, "hashAlgorithmOID contradicts with signAlgo", grant.sad, [H1],
                         sign_algo=ECDSA_SHA384, reason="bad_sign_algo")
    # even with digests of the other algorithm's length
    h384 = hashlib.sha384(b"document one").digest()
    await assert_refused(env, InvalidRequest, "Invalid parameter hashAlgorithmOID", grant.sad, [h384],
                         sign_algo=ECDSA_SHA384, hash_algorithm=SHA384)
    await assert_still_usable(env, grant.sad, [H1])


async def test_rejects_wrong_digest_length(env):
    for bad in (H1[:-1], H1 + b"\x00", hashlib.sha384(b"x").digest(), b""):
        with pytest.raises(InvalidRequest) as info:
            await env.authorize([bad])
        assert info.value.description == "Invalid digest value length"
        assert env.last_refusal("authorization.refused")["reason"] == "bad_digest_length"
    grant = await env.authorize([H1])
    await assert_refused(env, InvalidRequest, "Invalid digest value length", grant.sad, [H1 + b"\x00"], reason="bad_digest_length")
    await assert_refused(env, InvalidRequest, "Invalid digest value length", grant.sad, [H1[:20]])
    await assert_still_usable(env, grant.sad)


@pytest.mark.parametrize("sign_algo", ["1.2.3.4", "", "1.2.840.113549.1.1.5", "1.2.840.10045.4.1", "2.16.840.1.101.3.4.2.1"])
async def test_rejects_unknown_sign_algo(env, sign_algo):
    grant = await env.authorize()
    await assert_refused(env, InvalidRequest, "Invalid parameter signAlgo", grant.sad, sign_algo=sign_algo, reason="bad_sign_algo")
    await assert_still_usable(env, grant.sad)


async def test_rejects_rsa_algo_on_ec_key(env):
    grant = await env.authorize()
    for algo, params in ((SHA256_RSA, None), (RSA_ENCRYPTION, None), (RSASSA_PSS, pss_params_der(Hash.SHA256))):
        await assert_refused(env, InvalidRequest, "Invalid parameter signAlgo", grant.sad, sign_algo=algo,
                             hash_algorithm=SHA256, sign_algo_params=params, reason="bad_sign_algo")
    await assert_still_usable(env, grant.sad)


async def test_rejects_ec_algo_on_rsa_key():
    env = make_env(KeyType.RSA_2048)
    grant = await env.authorize()
    for algo in (ECDSA_SHA256, EC_PUBLIC_KEY):
        await assert_refused(env, InvalidRequest, "Invalid parameter signAlgo", grant.sad, sign_algo=algo, hash_algorithm=SHA256)
    await assert_still_usable(env, grant.sad)


async def test_rejects_pss_params_with_other_hash():
    env = make_env(KeyType.RSA_2048)
    grant = await env.authorize()
    await assert_refused(env, InvalidRequest, "hashAlgorithmOID contradicts with signAlgo", grant.sad,
                         sign_algo=RSASSA_PSS, sign_algo_params=pss_params_der(Hash.SHA384))
    await assert_refused(env, InvalidRequest, "Invalid parameter signAlgoParams", grant.sad,
                         sign_algo=RSASSA_PSS, sign_algo_params=b"\x30\x00")
    await assert_still_usable(env, grant.sad)


async def test_rejects_empty_hash_list(env):
    with pytest.raises(InvalidRequest) as info:
        await env.sam.authorize_seal(CLIENT, AuthorizationRequest(CRED, [], SHA256, 0))
    assert info.value.description == "Empty hash array"
    assert env.last_refusal("authorization.refused")
    grant = await env.authorize()
    await assert_refused(env, InvalidRequest, "Empty hash array", grant.sad, [])
    await assert_still_usable(env, grant.sad)


async def test_rejects_oversized_hash_list():
    env = make_env(multisign=100, max_hashes=3)
    many = [hashlib.sha256(b"%d" % i).digest() for i in range(4)]
    with pytest.raises(InvalidRequest) as info:
        await env.sam.authorize_seal(CLIENT, AuthorizationRequest(CRED, many, SHA256, 4))
    assert info.value.description.startswith("Too many hashes") and info.value.reason == "too_many_hashes"
    assert env.last_refusal("authorization.refused")["reason"] == "too_many_hashes"
    grant = await env.authorize(many[:3])
    await assert_refused(env, InvalidRequest, info.value.description, grant.sad, many + [H1] * 1000, reason="too_many_hashes")
    await assert_still_usable(env, grant.sad, many[:3])


async def test_rejects_num_signatures_above_multisign():
    env = make_env(multisign=2)
    three = [H1, H2, H3]
    with pytest.raises(InvalidRequest) as info:
        await env.sam.authorize_seal(CLIENT, AuthorizationRequest(CRED, three, SHA256, 3))
    assert info.value.description == "Numbers of signatures is too high"
    assert env.last_refusal("authorization.refused")["reason"] == "over_multisign"
    assert "authorization.granted" not in env.audit.kinds()


@pytest.mark.parametrize("hashes_,num,description", [
    ([H1, H2], 1, "numSignatures does not match the number of hashes"),
    ([H1], 2, "numSignatures does not match the number of hashes"),
    ([H1], 0, "Invalid parameter numSignatures"),
    ([H1], -1, "Invalid parameter numSignatures"),
])
async def test_rejects_num_signatures_mismatch(env, hashes_, num, description):
    with pytest.raises(InvalidRequest) as info:
        await env.sam.authorize_seal(CLIENT, AuthorizationRequest(CRED, hashes_, SHA256, num))
    assert info.value.description == description
    assert env.last_refusal("authorization.refused")["error"] == description
    assert env.audit.kinds() == ["authorization.refused"]


async def test_rejects_num_signatures_mismatch_at_activation(env):
    """A SAD whose numSignatures disagrees with its hash list (only a forger could mint one)."""
    sad = await env.signer.mint(env.claims(hashes=(b64u(H1), b64u(H2)), num_signatures=1))
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, sad, [H1, H2], reason="count_mismatch")
    await assert_refused(env, HashNotAuthorized, NOT_AUTHORIZED, sad, [H1], reason="hash_not_authorized")


async def test_rejects_unsupported_hash_algorithm_at_authorization(env):
    with pytest.raises(InvalidRequest) as info:
        await env.sam.authorize_seal(CLIENT, AuthorizationRequest(CRED, [hashlib.sha1(b"x").digest()], "1.3.14.3.2.26", 1))
    assert info.value.description == "Invalid parameter hashAlgorithmOID"


# ==================================================================================================
# Credential state, at authorization and at use
# ==================================================================================================
async def test_rejects_foreign_credential_at_authorization(env):
    env.creds.records["signer-alice"] = dataclasses.replace(env.cred, credential_id="signer-alice", owner="signer:alice")
    for client, cred_id in (("mallory", CRED), (CLIENT, "signer-alice"), ("alice", "signer-alice"), (CLIENT, "no-such"),
                            ("acme\u00e9", CRED)):
        with pytest.raises(CredentialUnusable) as info:
            await env.sam.authorize_seal(client, AuthorizationRequest(cred_id, [H1], SHA256, 1))
        # same answer whether the credential exists or belongs to someone else
        assert info.value.description == "Invalid parameter credentialID"
        assert env.last_refusal("authorization.refused")["reason"] == "unknown_credential"
    assert "authorization.granted" not in env.audit.kinds()


async def test_rejects_disabled_credential_at_authorization(env):
    env.set_credential(status="disabled")
    with pytest.raises(CredentialUnusable) as info:
        await env.authorize()
    assert info.value.description == "Credential is disabled"


async def test_rejects_disabled_credential_after_authorization(env):
    grant = await env.authorize()
    env.set_credential(status="disabled")
    await assert_refused(env, CredentialUnusable, "Credential is disabled", grant.sad, reason="credential_disabled")
    env.set_credential(status="enabled")
    await assert_still_usable(env, grant.sad)


async def test_rejects_deleted_credential_after_authorization(env):
    grant = await env.authorize()
    env.set_credential(status="deleted")
    await assert_refused(env, CredentialUnusable, "Invalid parameter credentialID", grant.sad, reason="unknown_credential")
    del env.creds.records[CRED]
    await assert_refused(env, CredentialUnusable, "Invalid parameter credentialID", grant.sad)


async def test_rejects_key_version_change(env):
    grant = await env.authorize()
    env.set_credential(key_version=2)
    await assert_refused(env, SadInvalid, SAD_INVALID, grant.sad, reason="key_version_changed")


async def test_rejects_owner_change_after_authorization(env):
    grant = await env.authorize()
    env.set_credential(owner=seal_owner("someone-else"))
    await assert_refused(env, CredentialUnusable, "Invalid parameter credentialID", grant.sad)


async def test_rejects_expired_certificate(env):
    from datetime import timedelta

    grant = await env.authorize()
    env.set_credential(not_after=env.clock.now() - timedelta(seconds=1))
    await assert_refused(env, CredentialUnusable, "Signing certificate is expired", grant.sad, reason="certificate_expired")
    env.set_credential(not_after=None, not_before=env.clock.now() + timedelta(days=1))
    await assert_refused(env, CredentialUnusable, "Signing certificate is not yet valid", grant.sad)


# ==================================================================================================
# Lifetime
# ==================================================================================================
async def test_rejects_expired_sad(env):
    grant = await env.authorize()
    env.clock.advance(120 + 30)  # exp + skew
    await assert_refused(env, SadExpired, "SAD expired", grant.sad, reason="sad_expired")
    env.clock.advance(3600)
    await assert_refused(env, SadExpired, "SAD expired", grant.sad)


async def test_sad_usable_until_exp_and_not_one_second_after(env):
    grant = await env.authorize()
    env.clock.advance(119)
    await assert_still_usable(env, grant.sad)
    late = await env.authorize()
    env.clock.advance(120)  # exactly exp: the skew never extends a SAD beyond its lifetime
    with pytest.raises(SadExpired):
        await env.activate(late.sad)


async def test_rejects_not_yet_valid_sad(env):
    now = int(env.clock.now().timestamp())
    future = await env.signer.mint(env.claims(iat=now + 31, nbf=now + 31, exp=now + 151))
    await assert_refused(env, SadInvalid, SAD_INVALID, future, reason="not_yet_valid")
    nbf_future = await env.signer.mint(env.claims(jti="nbf", iat=now, nbf=now + 60, exp=now + 120))
    await assert_refused(env, SadInvalid, SAD_INVALID, nbf_future, reason="not_yet_valid")
    env.clock.advance(31)
    await assert_still_usable(env, future)


async def test_rejects_lifetime_over_policy(env):
    now = int(env.clock.now().timestamp())
    for i, (iat, nbf, exp) in enumerate([(now, now, now + 3600), (now, now, now + 301), (now, now, now), (now, now, now - 1),
                                         (now, now - 1, now + 60)]):
        sad = await env.signer.mint(env.claims(jti=f"long-{i}", iat=iat, nbf=nbf, exp=exp))
        await assert_refused(env, SadInvalid, SAD_INVALID, sad, reason="lifetime_over_policy")
    ok = await env.signer.mint(env.claims(jti="ok", exp=now + 300))
    await assert_still_usable(env, ok)


# ==================================================================================================
# Cryptography and parsing
# ==================================================================================================
def _flip(segment: str, bit: int) -> str:
    raw = bytearray(b64u_dec(segment))
    raw[bit // 8] ^= 1 << (bit % 8)
    return b64u(bytes(raw))


async def test_rejects_forged_signature(env):
    grant = await env.authorize()
    h, p, s = grant.sad.split(".")
    for bit in (0, 7, 255, 256, 511):
        await assert_refused(env, SadInvalid, SAD_INVALID, f"{h}.{p}.{_flip(s, bit)}", reason="bad_signature")
    # one flipped bit in the payload (its JSON stays valid: flip within the jti's letters)
    payload = b64u_dec(p)
    i = payload.index(grant.claims.jti.encode())
    tampered = payload[:i] + bytes([payload[i] ^ 0x20]) + payload[i + 1 :]
    await assert_refused(env, SadInvalid, SAD_INVALID, f"{h}.{b64u(tampered)}.{s}", reason="bad_signature")
    # truncated, extended, empty, DER instead of raw r||s
    sig = b64u_dec(s)
    for bad in (sig[:-1], sig + b"\x00", b"", utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))):
        await assert_refused(env, SadInvalid, SAD_INVALID, f"{h}.{p}.{b64u(bad)}", reason="bad_signature")
    # r or s out of range
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    for bad in (b"\x00" * 64, n.to_bytes(32, "big") + sig[32:], sig[:32] + n.to_bytes(32, "big")):
        await assert_refused(env, SadInvalid, SAD_INVALID, f"{h}.{p}.{b64u(bad)}", reason="bad_signature")
    # a SAD signed by a different key with the same kid
    env.keys.generate_key_sync("attacker", KeyType.EC_P256)
    forged = env.forge(claims=dataclasses.replace(grant.claims), label="attacker")
    await assert_refused(env, SadInvalid, SAD_INVALID, forged, reason="bad_signature")
    await assert_still_usable(env, grant.sad)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "", None, "ES384", "ES512", "RS256", "PS256", "EdDSA", "ES256K"])
async def test_rejects_alg_none(env, alg):
    grant = await env.authorize()
    h, p, s = grant.sad.split(".")
    header = {"typ": SAD_TYP, "kid": KID}
    if alg is not None:
        header["alg"] = alg
    hb = b64u(json.dumps(header).encode())
    for sig in ("", s):
        await assert_refused(env, SadInvalid, SAD_INVALID, f"{hb}.{p}.{sig}", reason="alg_not_allowed")
    # and the same, signed validly by the SAM key over the altered header
    await assert_refused(env, SadInvalid, SAD_INVALID, env.forge(header=header, claims=grant.claims), reason="alg_not_allowed")
    await assert_still_usable(env, grant.sad)


async def test_rejects_hs256_with_public_key(env):
    grant = await env.authorize()
    p = grant.sad.split(".")[1]
    pub = serialization.load_der_public_key(env.sam_public_der)
    secrets_ = [
        env.sam_public_der,
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
    ]
    for alg, fn in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
        hb = b64u(json.dumps({"alg": alg, "typ": SAD_TYP, "kid": KID}).encode())
        for secret in secrets_:
            mac = hmac.new(secret, f"{hb}.{p}".encode(), fn).digest()
            await assert_refused(env, SadInvalid, SAD_INVALID, f"{hb}.{p}.{b64u(mac)}", reason="alg_not_allowed")
    await assert_still_usable(env, grant.sad)


async def test_rejects_header_jwk_injection(env):
    grant = await env.authorize()
    env.keys.generate_key_sync("attacker", KeyType.EC_P256)
    attacker_pub = serialization.load_der_public_key(env.keys.key_info_sync("attacker").public_key_der)
    nums = attacker_pub.public_numbers()
    attacker_jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}
    extras = {
        "jwk": attacker_jwk,
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": [base64.b64encode(env.sam_public_der).decode()],
        "x5t#S256": b64u(hashlib.sha256(b"x").digest()),
        "crit": ["exp"],
        "b64": False,
        "zip": "DEF",
    }
    base = {"alg": "ES256", "typ": SAD_TYP, "kid": KID}
    for name, value in extras.items():
        # signed by the attacker's key that the header carries: refused
        await assert_refused(env, SadInvalid, SAD_INVALID, env.forge({**base, name: value}, grant.claims, label="attacker"))
        # even signed by the genuine SAM key: the header member alone is refused
        await assert_refused(env, SadInvalid, SAD_INVALID, env.forge({**base, name: value}, grant.claims), reason="header_not_allowed")
    # a kid pointing elsewhere, or a wrong typ, even validly signed
    await assert_refused(env, SadInvalid, SAD_INVALID, env.forge({**base, "kid": "attacker"}, grant.claims), reason="unknown_key")
    await assert_refused(env, SadInvalid, SAD_INVALID, env.forge({"alg": "ES256", "typ": SAD_TYP}, grant.claims), reason="unknown_key")
    await assert_refused(env, SadInvalid, SAD_INVALID, env.forge({**base, "typ": "JWT"}, grant.claims), reason="wrong_typ")
    await assert_still_usable(env, grant.sad)


async def test_rejects_duplicate_json_members(env):
    grant = await env.authorize()
    good_header = json.dumps({"alg": "ES256", "typ": SAD_TYP, "kid": KID})
    payload = json.dumps(grant.claims.to_payload())
    # a second credentialID/hashes/aud member after the genuine one, signed by the SAM key
    for name, value in (("credentialID", "seal-other"), ("hashes", [b64u(H2)]), ("aud", "x"), ("exp", 9_999_999_999)):
        dup = payload[:-1] + f", {json.dumps(name)}: {json.dumps(value)}}}"
        await assert_refused(env, SadInvalid, SAD_INVALID, env.sign_raw(good_header.encode(), dup.encode()), reason="bad_claims")
    # duplicate members in the header, signed by the SAM key
    for dup_header in (
        '{"alg":"ES256","typ":"%s","kid":"%s","alg":"ES256"}' % (SAD_TYP, KID),
        '{"alg":"none","alg":"ES256","typ":"%s","kid":"%s"}' % (SAD_TYP, KID),
        '{"alg":"ES256","typ":"%s","kid":"other","kid":"%s"}' % (SAD_TYP, KID),
    ):
        await assert_refused(env, SadInvalid, SAD_INVALID, env.sign_raw(dup_header.encode(), payload.encode()), reason="malformed")
    # duplicates nested inside authn too
    nested = payload.replace('"authn": {', '"authn": {"method": "x", ')
    await assert_refused(env, SadInvalid, SAD_INVALID, env.sign_raw(good_header.encode(), nested.encode()), reason="bad_claims")
    await assert_still_usable(env, grant.sad)


async def test_rejects_foreign_audience_and_issuer(env):
    for field, value, reason in (("aud", "https://other.test/sam", "foreign_audience"), ("iss", "https://other.test", "foreign_issuer")):
        sad = await env.signer.mint(env.claims(**{field: value}))
        await assert_refused(env, SadInvalid, SAD_INVALID, sad, reason=reason)
    # a SAD minted by another SAM instance sharing the same key but configured with other names
    other = SignatureActivationModule(
        keys=env.keys, credentials=env.creds, ledger=env.ledger, audit=env.audit, sad_signer=env.signer,
        sad_verifier=env.verifier, clock=env.clock, issuer="https://other.test", audience="https://other.test/sam",
        sad_lifetime=120, max_hashes=4,
    )
    grant = await other.authorize_seal(CLIENT, AuthorizationRequest(CRED, [H1], SHA256, 1))
    await assert_refused(env, SadInvalid, SAD_INVALID, grant.sad, reason="foreign_issuer")


@pytest.mark.parametrize("missing", ["iss", "aud", "sub", "jti", "iat", "nbf", "exp", "credentialID", "kver", "hashes",
                                     "hashAlgorithmOID", "numSignatures", "azp", "authn", "evd"])
async def test_rejects_missing_claim(env, missing):
    payload = env.claims().to_payload()
    del payload[missing]
    sad = env.sign_raw(json.dumps({"alg": "ES256", "typ": SAD_TYP, "kid": KID}).encode(), json.dumps(payload).encode())
    await assert_refused(env, SadInvalid, SAD_INVALID, sad, reason="bad_claims")


@pytest.mark.parametrize("name,value", [("exp", "9999999999"), ("exp", 1.5e12), ("kver", True), ("hashes", b64u(H1)),
                                        ("hashes", []), ("hashes", [1]), ("authn", "x"), ("credentialID", ""), ("sub", None)])
async def test_rejects_ill_typed_claim(env, name, value):
    payload = env.claims().to_payload()
    payload[name] = value
    sad = env.sign_raw(json.dumps({"alg": "ES256", "typ": SAD_TYP, "kid": KID}).encode(), json.dumps(payload).encode())
    await assert_refused(env, SadInvalid, SAD_INVALID, sad, reason="bad_claims")


async def test_rejects_malformed_sad(env):
    grant = await env.authorize()
    h, p, s = grant.sad.split(".")
    for bad in ("", "x", f"{h}.{p}", f"{h}.{p}.{s}.{s}", f"{h}=.{p}.{s}", f"{h}.{p}.{s}=", f"{h}.{p}.{s.replace('-', '+')}" if "-" in s else f"{h}+.{p}.{s}",
                f" {h}.{p}.{s}", f"{h}.{p}.{s}\n", "a" * (64 * 1024 + 1), f"{b64u(b'[1]')}.{p}.{s}", f"{b64u(b'not json')}.{p}.{s}"):
        await assert_refused(env, SadInvalid, SAD_INVALID, bad)
    await assert_still_usable(env, grant.sad)


async def test_audit_holds_no_sad_or_key_material(env):
    grant = await env.authorize()
    await env.activate(grant.sad)
    with pytest.raises(SadReplayed):
        await env.activate(grant.sad)
    blob = json.dumps([dataclasses.asdict(e) for e in env.audit.events])
    assert grant.sad.split(".")[2] not in blob and grant.sad not in blob
    assert b64u(H1) in blob  # the digests are kept as evidence


@pytest.mark.parametrize("salt", [0, 20, 64, 221])
async def test_rejects_pss_salt_other_than_hash_length_or_maximum(salt):
    env = make_env(KeyType.RSA_2048)
    grant = await env.authorize([H1])
    await assert_refused(env, InvalidRequest, "Invalid parameter signAlgoParams", grant.sad, [H1], sign_algo=RSASSA_PSS,
                         sign_algo_params=pss_params_der(Hash.SHA256, salt), reason="bad_sign_algo")
    await assert_still_usable(env, grant.sad, [H1])


async def test_rejects_extend_transaction_for_another_subject(env):
    grant = await env.authorize([H1])
    h2 = hashlib.sha256(b"document two").digest()
    with pytest.raises(SadInvalid) as e:
        await env.sam.extend(grant.sad, CLIENT, AuthorizationRequest(CRED, [h2], SHA256, 1), owner="signer:someone")
    assert e.value.reason == "other_subject"
    new = await env.sam.extend(grant.sad, CLIENT, AuthorizationRequest(CRED, [h2], SHA256, 1))
    assert new is not None and new.claims.hashes != grant.claims.hashes


async def test_rejects_extend_transaction_by_another_client(env):
    grant = await env.authorize([H1])
    with pytest.raises(SadInvalid) as e:
        await env.sam.extend(grant.sad, "intruder", AuthorizationRequest(CRED, [H1], SHA256, 1))
    assert e.value.reason == "other_client"
