"""OpenID4VP 1.0 §5.1 / B.3.3 ``transaction_data`` on the wallet side: decode each base64url entry,
accept only the QES types rqes uses, and describe what the user approves.

Hashes are always taken over the entry string exactly as received, never over re-encoded JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

from ._jose import JoseError, b64, b64u_decode, sha256_b64u
from .errors import InvalidTransactionData

QES_APPROVAL = "https://cloudsignatureconsortium.org/2025/qes-approval"
QC_REQUEST = "https://cloudsignatureconsortium.org/2025/qc-request"
LEGACY_QES_AUTHORIZATION = "qes_authorization"
LEGACY_QCERT_CREATION = "qcert_creation_acceptance"
SUPPORTED_TYPES = (QES_APPROVAL, LEGACY_QES_AUTHORIZATION, QC_REQUEST, LEGACY_QCERT_CREATION)

HASH_ALG = "sha-256"
QES_APPROVAL_CLAIM = "org.cloudsignatureconsortium.dm.1.qesApproval"

HASH_OIDS = {
    "2.16.840.1.101.3.4.2.1": ("SHA-256", hashlib.sha256),
    "2.16.840.1.101.3.4.2.2": ("SHA-384", hashlib.sha384),
    "2.16.840.1.101.3.4.2.3": ("SHA-512", hashlib.sha512),
}


def transaction_data_hash(raw: str) -> str:
    """OpenID4VP B.3.3.1: base64url(SHA-256(the base64url string as received))."""
    return sha256_b64u(raw)


def qes_approval_digest(raw: str, hash_oid: str | None = None) -> str:
    """CSC-DMB §7.2.1.2: standard base64 of H(UTF-8 bytes of the qes-approval entry string),
    H given by the entry's ``hashAlgorithmOID`` (SHA-256 when absent)."""
    _, fn = HASH_OIDS.get(hash_oid or "2.16.840.1.101.3.4.2.1", HASH_OIDS["2.16.840.1.101.3.4.2.1"])
    return b64(fn(raw.encode("utf-8")).digest())


@dataclass(frozen=True)
class TransactionData:
    raw: str
    type: str
    credential_ids: tuple[str, ...]
    content: dict[str, Any]
    summary: dict[str, Any]

    @property
    def hash(self) -> str:
        return transaction_data_hash(self.raw)

    def describe(self) -> list[str]:
        s = self.summary
        if s["kind"] == "signature":
            lines = [f"approve {s['num_signatures'] or 'the'} qualified signature(s) ({self.type})"]
            who = ", ".join(f"{k} {v}" for k, v in (("credential", s["credential_id"]),
                                                   ("qualifier", s["signature_qualifier"])) if v)
            if who:
                lines.append(f"  with {who}")
            alg = s["hash_algorithm_oid"]
            for doc in s["documents"]:
                lines.append(f"  - {doc['label'] or '(unlabelled document)'}: {doc['hash']}"
                             + (f" [{HASH_OIDS.get(alg, (alg,))[0]}]" if alg else ""))
            return lines
        return [f"accept creation of a qualified certificate ({self.type})",
                f"  terms and conditions: {s['terms_uri']}",
                f"  terms hash: {s['terms_hash']} [{HASH_OIDS.get(s['terms_hash_alg'], (s['terms_hash_alg'],))[0]}]"]


def _fail(i: int, why: str) -> InvalidTransactionData:
    return InvalidTransactionData(f"transaction_data[{i}]: {why}")


def _str(content: dict[str, Any], name: str, i: int, *, required: bool = True) -> str | None:
    value = content.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(i, f"{name} must be a non-empty string")
    return value


def _documents(content: dict[str, Any], i: int, *, legacy: bool) -> list[dict[str, Any]]:
    docs = content.get("documentDigests", content.get("documentInfos"))
    if not isinstance(docs, list) or not docs:
        raise _fail(i, "documentDigests must be a non-empty array")
    out = []
    for j, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise _fail(i, f"documentDigests[{j}] must be an object")
        value = doc.get("hash")
        if legacy and value is None:
            value = doc.get("DTBS/R", doc.get("dtbsr"))
        if not isinstance(value, str) or not value:
            raise _fail(i, f"documentDigests[{j}] has no hash")
        label = doc.get("label")
        if legacy and not isinstance(label, str):
            raise _fail(i, f"documentDigests[{j}].label is required")
        out.append({"label": label if isinstance(label, str) else None, "hash": value,
                    "hash_type": doc.get("hashType"), "href": doc.get("href", doc.get("documentLocation_uri"))})
    return out


def _summarise(ttype: str, content: dict[str, Any], i: int) -> dict[str, Any]:
    if ttype in (QES_APPROVAL, LEGACY_QES_AUTHORIZATION):
        legacy = ttype == LEGACY_QES_AUTHORIZATION
        cred = _str(content, "credentialID", i, required=False)
        qual = _str(content, "signatureQualifier", i, required=False)
        if not cred and not qual:
            raise _fail(i, "credentialID or signatureQualifier is required")
        docs = _documents(content, i, legacy=legacy)
        if legacy:
            alg = next((d.get("hashAlgorithmOID") for d in content["documentDigests"]
                        if isinstance(d, dict) and d.get("hashAlgorithmOID")), None)
        else:
            alg = _str(content, "hashAlgorithmOID", i)
        num = content.get("numSignatures")
        if num is not None and (not isinstance(num, int) or isinstance(num, bool) or num < 1):
            raise _fail(i, "numSignatures must be a positive integer")
        return {"kind": "signature", "credential_id": cred, "signature_qualifier": qual, "num_signatures": num,
                "hash_algorithm_oid": alg, "documents": docs, "process_id": content.get("processID")}
    return {"kind": "certificate", "terms_uri": _str(content, "QC_terms_conditions_uri", i),
            "terms_hash": _str(content, "QC_hash", i), "terms_hash_alg": _str(content, "QC_hashAlgorithmOID", i)}


def parse_transaction_data(entries: Any, dcql_ids: Iterable[str],
                           holder_bound_ids: Iterable[str] | None = None) -> list[TransactionData]:
    """OpenID4VP §5.1: a non-empty array of base64url JSON objects with ``type`` and a non-empty
    ``credential_ids`` naming DCQL credential queries. Unknown types and malformed entries are
    rejected with ``invalid_transaction_data`` (the wallet MUST NOT ignore them)."""
    if not isinstance(entries, list) or not entries:
        raise InvalidTransactionData("transaction_data must be a non-empty array")
    known_ids = set(dcql_ids)
    bound = set(known_ids if holder_bound_ids is None else holder_bound_ids)
    out = []
    for i, raw in enumerate(entries):
        if not isinstance(raw, str):
            raise _fail(i, "entries must be base64url strings")
        try:
            content = json.loads(b64u_decode(raw))
        except (JoseError, ValueError, UnicodeDecodeError) as e:
            raise _fail(i, f"not base64url-encoded JSON ({e})") from e
        if not isinstance(content, dict):
            raise _fail(i, "must decode to a JSON object")
        ttype = content.get("type")
        if not isinstance(ttype, str):
            raise _fail(i, "type is required")
        if ttype not in SUPPORTED_TYPES:
            raise _fail(i, f"unsupported type {ttype!r}")
        ids = content.get("credential_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(c, str) for c in ids):
            raise _fail(i, "credential_ids must be a non-empty array of DCQL credential query ids")
        unknown = [c for c in ids if c not in known_ids]
        if unknown:
            raise _fail(i, f"credential_ids {unknown} are not in the DCQL query")
        if any(c not in bound for c in ids):
            raise _fail(i, "transaction data needs a credential with cryptographic holder binding")
        algs = content.get("transaction_data_hashes_alg")
        if algs is not None and (not isinstance(algs, list) or HASH_ALG not in algs):
            raise _fail(i, f"transaction_data_hashes_alg must be an array including {HASH_ALG!r}")
        out.append(TransactionData(raw, ttype, tuple(ids), content, _summarise(ttype, content, i)))
    return out
