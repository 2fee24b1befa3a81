"""Wallet evidence: stored content-addressed (the id is the SHA-256 of the content), so a
changed record no longer matches its id and fails the re-check (sam.ports.EvidenceStore)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sam.approval import WalletEvidence

from . import schema


def evidence_id(content: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()


class EvidenceRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def store(self, data: dict[str, Any]) -> str:
        content = json.dumps(data, sort_keys=True, separators=(",", ":"))
        eid = evidence_id(content)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(schema.evidence).values(
                    evidence_id=eid, kind=str(data.get("kind", "openid4vp")), content=content,
                    created_at=datetime.now(timezone.utc)))
        except IntegrityError:
            pass  # the same evidence twice is the same evidence
        return eid

    async def raw(self, eid: str) -> str | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(schema.evidence.c.content).where(schema.evidence.c.evidence_id == eid))).first()
        return None if r is None else r.content

    async def load(self, eid: str) -> WalletEvidence | None:
        content = await self.raw(eid)
        if content is None or evidence_id(content) != eid:
            return None
        d = json.loads(content)
        return WalletEvidence(
            evidence_id=eid, presentation=d["presentation"], transaction_data=tuple(d["transaction_data"]),
            nonce=d["nonce"], audience=d["client_id"], dcql_ids=tuple(d.get("dcql_ids", ["pid"])),
            received_at=datetime.fromisoformat(d["received_at"]),
        )
