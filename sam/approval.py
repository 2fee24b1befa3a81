"""The wallet's approval of exact document digests: the QES transaction-data entry that rqes
sends, and the check that the wallet signed exactly that (openid4vp-sdjwt.md §5–§7).

Types: ``https://cloudsignatureconsortium.org/2025/qes-approval`` (CSC-DMB) and the legacy
``qes_authorization`` (D3.1). The entry is hashed as the exact base64url string sent; the
optional ``org.cloudsignatureconsortium.dm.1.qesApproval`` KB-JWT claim is checked too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import SamError

QES_APPROVAL = "https://cloudsignatureconsortium.org/2025/qes-approval"
QES_LEGACY = "qes_authorization"
QES_TYPES = (QES_APPROVAL, QES_LEGACY)
QES_APPROVAL_CLAIM = "org.cloudsignatureconsortium.dm.1.qesApproval"
_HASH_BY_OID = {"2.16.840.1.101.3.4.2.1": hashlib.sha256, "2.16.840.1.101.3.4.2.2": hashlib.sha384,
                "2.16.840.1.101.3.4.2.3": hashlib.sha512}


class ApprovalRejected(SamError):
    reason = "approval_mismatch"

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description, reason=reason)


@dataclass(frozen=True, slots=True)
class CredentialAuthorization:
    """What a client asks the signer to approve (CSC credential authorization, SCAL2)."""

    client_id: str
    credential_id: str
    hashes: tuple[bytes, ...]
    hash_algorithm: str
    num_signatures: int
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WalletEvidence:
    """Everything needed to re-verify a wallet approval offline."""

    evidence_id: str
    presentation: str
    transaction_data: tuple[str, ...]  # the exact base64url strings sent
    nonce: str
    audience: str  # the verifier's client_id, as bound by the KB-JWT
    dcql_ids: tuple[str, ...]
    received_at: datetime


def approval_entry(auth: CredentialAuthorization, *, legacy: bool = False, dcql_id: str = "pid") -> dict[str, Any]:
    digests = [{"hash": base64.b64encode(h).decode(), "label": (auth.labels[i] if i < len(auth.labels) else f"Document {i + 1}")}
               for i, h in enumerate(auth.hashes)]
    if legacy:
        return {"type": QES_LEGACY, "credential_ids": [dcql_id], "credentialID": auth.credential_id,
                "documentDigests": [{**d, "hashAlgorithmOID": auth.hash_algorithm} for d in digests]}
    return {"type": QES_APPROVAL, "credential_ids": [dcql_id], "credentialID": auth.credential_id,
            "signatureQualifier": "eu_eidas_qes", "numSignatures": auth.num_signatures,
            "documentDigests": digests, "hashAlgorithmOID": auth.hash_algorithm,
            "transaction_data_hashes_alg": ["sha-256"]}


def _b64_any(v: Any) -> bytes:
    if not isinstance(v, str) or not v or len(v) > 200:
        raise ValueError("hash")
    s = v.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("hash") from e


def _decode_entry(entry: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(entry + "=" * (-len(entry) % 4))
        obj = json.loads(raw)
    except (ValueError, binascii.Error):
        raise ApprovalRejected("malformed_transaction_data", "A transaction_data entry is not base64url JSON") from None
    if not isinstance(obj, dict):
        raise ApprovalRejected("malformed_transaction_data", "A transaction_data entry is not a JSON object")
    return obj


def find_approval(transaction_data: tuple[str, ...], dcql_ids: tuple[str, ...]) -> str:
    """The one QES approval entry; every entry must be of a known type and reference the query."""
    found = []
    for entry in transaction_data:
        obj = _decode_entry(entry)
        if obj.get("type") not in QES_TYPES:
            raise ApprovalRejected("unknown_transaction_data_type", "Unknown transaction_data type")
        ids = obj.get("credential_ids")
        if not isinstance(ids, list) or not ids or any(i not in dcql_ids for i in ids):
            raise ApprovalRejected("credential_ids_not_in_query", "transaction_data credential_ids are not in the DCQL query")
        found.append(entry)
    if len(found) != 1:
        raise ApprovalRejected("approval_missing", "Exactly one QES approval entry is required")
    return found[0]


def check_approval(entry: str, kb: dict[str, Any], auth: CredentialAuthorization) -> None:
    """The approved entry must state exactly what is being authorized: credential, digests in
    order, hash algorithm and count. The CSC-DMB ``qesApproval`` claim, when present, must be the
    hash of the exact entry string."""
    obj = _decode_entry(entry)
    try:
        if obj["type"] == QES_APPROVAL:
            alg = obj["hashAlgorithmOID"]
            digests = [_b64_any(d["hash"]) for d in obj["documentDigests"]]
            count = obj.get("numSignatures", len(digests))
        else:
            digests = [_b64_any(d["hash"]) for d in obj["documentDigests"]]
            algs = {d.get("hashAlgorithmOID") for d in obj["documentDigests"]}
            if len(algs) != 1:
                raise ValueError("algorithms")
            alg = algs.pop()
            count = len(digests)
        cred = obj.get("credentialID")
    except (KeyError, TypeError, ValueError):
        raise ApprovalRejected("malformed_transaction_data", "The QES approval entry is malformed") from None
    if cred != auth.credential_id:
        raise ApprovalRejected("other_credential", "The approval names another credential")
    if alg != auth.hash_algorithm:
        raise ApprovalRejected("other_hash_algorithm", "The approval names another hash algorithm")
    if count != auth.num_signatures or len(digests) != len(auth.hashes):
        raise ApprovalRejected("count_mismatch", "The approval names another number of signatures")
    ok = True
    for a, b in zip(digests, auth.hashes):
        ok &= hmac.compare_digest(a, b)
    if not ok:
        raise ApprovalRejected("hash_not_approved", "The approval names other document digests")
    claim = kb.get(QES_APPROVAL_CLAIM)
    if claim is not None:
        fn = _HASH_BY_OID.get(alg, hashlib.sha256)
        want = base64.b64encode(fn(entry.encode("ascii")).digest()).decode()
        if not isinstance(claim, str) or not hmac.compare_digest(claim.encode(), want.encode()):
            raise ApprovalRejected("bad_qes_approval_claim", "The qesApproval claim does not match the approved entry")
