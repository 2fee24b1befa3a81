"""The SAM's wallet path with in-memory ports: authorize_signer and the evidence re-check at
activation. The SD-JWT VC verifier is replaced by a stub that returns a fixed verified
presentation, so these tests isolate the SAM's own decisions (binding, ownership, single use)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime

import pytest

from hsm import KeyType
from hsm.software import SoftwareKeyStore
from sam import (
    CredentialRecord, CredentialUnusable, FixedClock, SadSigner, SadVerifier, SignatureActivationModule, SignRequest,
)
from sam.approval import ApprovalRejected, CredentialAuthorization, WalletEvidence, approval_entry
from sam.identity import signer_identity
from sam.memory import MemoryAudit, MemoryCredentials, MemoryLedger
from sam.sdjwt import VerifiedPresentation

H1 = hashlib.sha256(b"contract").digest()
PID = {"given_name": "Erika", "family_name": "M", "issuing_country": "DE", "personal_administrative_number": "PAN1"}
OWNER = signer_identity(PID).owner


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class StubVerifier:
    def __init__(self, kb: dict, claims: dict = PID) -> None:
        self.kb, self.claims, self.calls = kb, claims, 0

    async def verify(self, presentation: str, *, audience: str, nonce: str, check_status: bool = True) -> VerifiedPresentation:
        self.calls += 1
        return VerifiedPresentation(claims=self.claims, vct="urn:eudi:pid:1", issuer_chain=(), holder_jwk={}, kb=self.kb,
                                    presentation=presentation, disclosed=())


class Evidence:
    def __init__(self) -> None:
        self.items: dict[str, WalletEvidence] = {}

    async def load(self, evidence_id: str) -> WalletEvidence | None:
        return self.items.get(evidence_id)


@dataclass
class World:
    sam: SignatureActivationModule
    audit: MemoryAudit
    evidence: Evidence
    stub: StubVerifier
    auth: CredentialAuthorization
    ev: WalletEvidence
    creds: MemoryCredentials


def world(*, owner: str = OWNER, kb_override: dict | None = None, claims: dict = PID) -> World:
    keys = SoftwareKeyStore()
    info = keys.generate_key_sync("sam", KeyType.EC_P256)
    keys.generate_key_sync("signer-key", KeyType.EC_P256)
    clock = FixedClock()
    audit = MemoryAudit()
    creds = MemoryCredentials(CredentialRecord("cred", owner, "signer-key", KeyType.EC_P256, 1, "enabled", 10))
    auth = CredentialAuthorization("app", "cred", (H1,), "2.16.840.1.101.3.4.2.1", 1, ("Contract",))
    entry = base64.urlsafe_b64encode(json.dumps(approval_entry(auth)).encode()).rstrip(b"=").decode()
    kb = {"transaction_data_hashes": [b64u(hashlib.sha256(entry.encode()).digest())], "transaction_data_hashes_alg": "sha-256",
          **(kb_override or {})}
    stub = StubVerifier(kb, claims)
    evidence = Evidence()
    ev = WalletEvidence("evd-1", "presentation", (entry,), "nonce", "x509_hash:abc", ("pid",), datetime(2026, 12, 3, 12))
    evidence.items[ev.evidence_id] = ev
    sam = SignatureActivationModule(
        keys=keys, credentials=creds, ledger=MemoryLedger(audit), audit=audit,
        sad_signer=SadSigner(keys, "sam", KeyType.EC_P256, kid="k"),
        sad_verifier=SadVerifier(info.public_key_der, KeyType.EC_P256, "k", issuer="iss", audience="aud", clock=clock,
                                 max_lifetime=300, skew=30),
        clock=clock, issuer="iss", audience="aud", sad_lifetime=120, max_hashes=10,
        wallet_verifier=lambda at: stub, evidence=evidence)
    return World(sam, audit, evidence, stub, auth, ev, creds)


async def test_wallet_approval_mints_a_sad_that_signs() -> None:
    w = world()
    grant = await w.sam.authorize_signer(w.ev, w.auth)
    assert grant.claims.sub == OWNER and grant.claims.evidence == "evd-1" and grant.claims.authn["method"] == "openid4vp"
    sigs = await w.sam.activate(grant.sad, "app", SignRequest("cred", [H1], None, "1.2.840.10045.4.3.2"))
    assert len(sigs) == 1 and w.stub.calls == 2  # verified at approval and re-checked at signing


async def test_rejects_second_sad_from_one_approval() -> None:
    w = world()
    await w.sam.authorize_signer(w.ev, w.auth)
    with pytest.raises(ApprovalRejected) as e:
        await w.sam.authorize_signer(w.ev, w.auth)
    assert e.value.reason == "approval_replayed"


async def test_rejects_approval_for_other_digests() -> None:
    w = world()
    other = replace(w.auth, hashes=(hashlib.sha256(b"other").digest(),))
    with pytest.raises(ApprovalRejected) as e:
        await w.sam.authorize_signer(w.ev, other)
    assert e.value.reason == "hash_not_approved"


async def test_rejects_approval_by_someone_who_does_not_own_the_credential() -> None:
    w = world(owner="signer:somebody-else")
    with pytest.raises(CredentialUnusable):
        await w.sam.authorize_signer(w.ev, w.auth)
    assert w.audit.kinds()[-1] == "authorization.refused"


async def test_rejects_kb_jwt_not_covering_the_entry() -> None:
    w = world(kb_override={"transaction_data_hashes": [b64u(hashlib.sha256(b"x").digest())]})
    with pytest.raises(Exception) as e:
        await w.sam.authorize_signer(w.ev, w.auth)
    assert getattr(e.value, "reason", "") == "bad_transaction_data_hash"


async def test_rejects_signing_when_the_evidence_disappeared() -> None:
    from sam import SadInvalid

    w = world()
    grant = await w.sam.authorize_signer(w.ev, w.auth)
    w.evidence.items.clear()
    with pytest.raises(SadInvalid) as e:
        await w.sam.activate(grant.sad, "app", SignRequest("cred", [H1], None, "1.2.840.10045.4.3.2"))
    assert e.value.reason == "evidence_missing"


async def test_rejects_rssp_managed_authorization_of_a_signer_key() -> None:
    """SCAL1 downgrade: the seal path never activates a natural person's key."""
    from sam import AuthorizationRequest

    w = world(owner="client:app")
    w.creds.records["cred"] = replace(w.creds.records["cred"], owner=OWNER)
    with pytest.raises(CredentialUnusable) as e:
        await w.sam.authorize_seal("app", AuthorizationRequest("cred", [H1], "2.16.840.1.101.3.4.2.1", 1), owner=OWNER)
    assert e.value.reason == "requires_wallet_approval"
