"""What the SAM needs from the outside world: one operation per port (DESIGN.md §3).

Adapters live in ``app/store`` (SQLite, PostgreSQL) and in :mod:`sam.memory` for unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from hsm import KeyType


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """What the SAM must know about a credential to decide, read fresh on every use."""

    credential_id: str
    owner: str  # "client:<client_id>" for seals, "signer:<id>" for natural persons
    key_label: str
    key_type: KeyType
    key_version: int
    status: str  # enabled | disabled | deleted
    multisign: int
    not_before: datetime | None = None
    not_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record's content. Never a PIN, a key or a whole token: only ids and digests."""

    kind: str
    actor: str
    data: dict[str, Any] = field(default_factory=dict)


class CredentialDirectory(Protocol):
    async def get(self, credential_id: str) -> CredentialRecord | None: ...


class SadLedger(Protocol):
    async def spend(self, jti: str, credential_id: str, expires_at: datetime, event: AuditEvent) -> bool:
        """Mark the SAD spent and append ``event`` in one atomic step.

        Returns False, having written nothing, when ``jti`` was already spent (on any node).
        """
        ...


class AuditSink(Protocol):
    async def append(self, event: AuditEvent) -> int:
        """Append to the hash-chained log; returns the record's sequence number."""
        ...


class EvidenceStore(Protocol):
    async def load(self, evidence_id: str) -> "WalletEvidence | None":
        """The stored wallet evidence; adapters check that its content still hashes to its id."""
        ...


from .approval import WalletEvidence  # noqa: E402  (type used in the port above)
