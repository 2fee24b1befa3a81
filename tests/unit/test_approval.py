"""sam.approval: the QES approval entry the wallet signs, and the checks on it."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from sam.approval import (
    QES_APPROVAL_CLAIM, ApprovalRejected, CredentialAuthorization, approval_entry, check_approval, find_approval,
)

H1, H2 = hashlib.sha256(b"one").digest(), hashlib.sha256(b"two").digest()
AUTH = CredentialAuthorization("app", "cred-1", (H1, H2), "2.16.840.1.101.3.4.2.1", 2, ("A", "B"))


def enc(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("legacy", [False, True])
def test_entry_round_trip(legacy: bool) -> None:
    entry = enc(approval_entry(AUTH, legacy=legacy))
    assert find_approval((entry,), ("pid",)) == entry
    check_approval(entry, {}, AUTH)


def test_rejects_unknown_transaction_data_type() -> None:
    with pytest.raises(ApprovalRejected) as e:
        find_approval((enc({"type": "payment", "credential_ids": ["pid"]}),), ("pid",))
    assert e.value.reason == "unknown_transaction_data_type"


def test_rejects_credential_ids_not_in_the_query() -> None:
    entry = {**approval_entry(AUTH), "credential_ids": ["other"]}
    with pytest.raises(ApprovalRejected) as e:
        find_approval((enc(entry),), ("pid",))
    assert e.value.reason == "credential_ids_not_in_query"


@pytest.mark.parametrize("change,reason", [
    ({"credentialID": "cred-2"}, "other_credential"),
    ({"hashAlgorithmOID": "2.16.840.1.101.3.4.2.3"}, "other_hash_algorithm"),
    ({"numSignatures": 1}, "count_mismatch"),
    ({"documentDigests": [{"hash": base64.b64encode(H2).decode()}, {"hash": base64.b64encode(H1).decode()}]}, "hash_not_approved"),
    ({"documentDigests": [{"hash": base64.b64encode(H1).decode()}]}, "count_mismatch"),
])
def test_rejects_approval_of_something_else(change: dict, reason: str) -> None:
    entry = enc({**approval_entry(AUTH), **change})
    with pytest.raises(ApprovalRejected) as e:
        check_approval(entry, {}, AUTH)
    assert e.value.reason == reason


def test_qes_approval_claim_must_hash_the_exact_entry() -> None:
    entry = enc(approval_entry(AUTH))
    good = base64.b64encode(hashlib.sha256(entry.encode()).digest()).decode()
    check_approval(entry, {QES_APPROVAL_CLAIM: good}, AUTH)
    decoded = base64.b64encode(hashlib.sha256(base64.urlsafe_b64decode(entry + "==")).digest()).decode()
    with pytest.raises(ApprovalRejected) as e:
        check_approval(entry, {QES_APPROVAL_CLAIM: decoded}, AUTH)
    assert e.value.reason == "bad_qes_approval_claim"


def test_rejects_two_approval_entries() -> None:
    entry = enc(approval_entry(AUTH))
    with pytest.raises(ApprovalRejected) as e:
        find_approval((entry, entry), ("pid",))
    assert e.value.reason == "approval_missing"
