"""In-memory adapters of the SAM's ports, for unit tests only."""

from __future__ import annotations

from datetime import datetime

from .ports import AuditEvent, CredentialRecord


class MemoryCredentials:
    def __init__(self, *records: CredentialRecord) -> None:
        self.records = {r.credential_id: r for r in records}

    async def get(self, credential_id: str) -> CredentialRecord | None:
        return self.records.get(credential_id)


class MemoryAudit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def append(self, event: AuditEvent) -> int:
        self.events.append(event)
        return len(self.events)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


class MemoryLedger:
    def __init__(self, audit: MemoryAudit) -> None:
        self.spent: dict[str, datetime] = {}
        self.audit = audit

    async def spend(self, jti: str, credential_id: str, expires_at: datetime, event: AuditEvent) -> bool:
        if jti in self.spent:
            return False
        self.spent[jti] = expires_at
        await self.audit.append(event)
        return True
