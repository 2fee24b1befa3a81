"""The append-only, hash-chained audit log (DESIGN.md §3, sam-hsm.md §5).

Each record holds the hash of the previous one. Appends are serialised by one atomic
``UPDATE audit_head … RETURNING`` that takes the row lock (PostgreSQL) or the write lock
(SQLite), so every node appends to the same chain. Every ``interval`` records a checkpoint
signed by an HSM key is written in the same transaction: edits, deletions and truncation up to
the last checkpoint are detectable by ``rqes audit verify``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Awaitable, Callable

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sam.clock import Clock
from sam.ports import AuditEvent

from . import schema
from .migrations import GENESIS

CheckpointSigner = Callable[[dict[str, Any]], Awaitable[str]]
CheckpointVerifier = Callable[[str], dict[str, Any] | None]


def canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(seq: int, ts: str, kind: str, actor: str, data: str, prev: str) -> str:
    material = canonical({"seq": seq, "ts": ts, "kind": kind, "actor": actor, "data": data, "prev": prev})
    return hashlib.sha256(material.encode()).hexdigest()


class AuditLog:
    def __init__(self, engine: AsyncEngine, clock: Clock, *, interval: int, signer: CheckpointSigner | None, key_label: str = "") -> None:
        self._engine = engine
        self._clock = clock
        self._interval = interval
        self._signer = signer
        self._key_label = key_label

    async def append(self, event: AuditEvent) -> int:
        async with self._engine.begin() as conn:
            return await self.append_in(conn, event)

    async def append_in(self, conn: AsyncConnection, event: AuditEvent) -> int:
        """Append within the caller's transaction, so the record commits with the change it records."""
        head = schema.audit_head
        row = (await conn.execute(
            update(head).where(head.c.id == 1).values(seq=head.c.seq + 1).returning(head.c.seq, head.c.hash)
        )).one()
        seq, prev = int(row.seq), row.hash
        ts = self._clock.now().astimezone(timezone.utc).isoformat(timespec="microseconds")
        data = canonical(event.data)
        h = record_hash(seq, ts, event.kind, event.actor, data, prev)
        await conn.execute(insert(schema.audit_log).values(
            seq=seq, ts=ts, kind=event.kind, actor=event.actor, data=data, prev_hash=prev, hash=h))
        await conn.execute(update(head).where(head.c.id == 1).values(hash=h))
        if self._signer is not None and seq % self._interval == 0:
            await self._checkpoint_in(conn, seq, h, ts)
        return seq

    async def checkpoint(self) -> int | None:
        """Sign the current head now (CLI and shutdown); returns its seq, or None for an empty log."""
        if self._signer is None:
            return None
        async with self._engine.begin() as conn:
            head = schema.audit_head
            row = (await conn.execute(
                update(head).where(head.c.id == 1).values(seq=head.c.seq).returning(head.c.seq, head.c.hash)
            )).one()
            if row.seq == 0:
                return None
            exists = (await conn.execute(select(schema.audit_checkpoints.c.seq).where(schema.audit_checkpoints.c.seq == row.seq))).first()
            if not exists:
                ts = self._clock.now().astimezone(timezone.utc).isoformat(timespec="microseconds")
                await self._checkpoint_in(conn, int(row.seq), row.hash, ts)
            return int(row.seq)

    async def _checkpoint_in(self, conn: AsyncConnection, seq: int, h: str, ts: str) -> None:
        assert self._signer is not None
        jws = await self._signer({"seq": seq, "hash": h, "ts": ts})
        await conn.execute(insert(schema.audit_checkpoints).values(
            seq=seq, hash=h, ts=ts, key_label=self._key_label, signature=jws))


@dataclass
class VerifyReport:
    ok: bool = True
    records: int = 0
    checkpoints: int = 0
    first_bad: int | None = None
    reason: str = ""
    problems: list[str] = field(default_factory=list)

    def fail(self, seq: int | None, reason: str) -> None:
        if self.ok:
            self.ok, self.first_bad, self.reason = False, seq, reason
        self.problems.append(f"record {seq}: {reason}" if seq is not None else reason)


async def verify_chain(engine: AsyncEngine, verify_checkpoint: CheckpointVerifier) -> VerifyReport:
    """Re-check every link and every checkpoint; name the first bad record."""
    rep = VerifyReport()
    hashes: dict[int, str] = {}
    expected_seq, prev = 1, GENESIS
    async with engine.connect() as conn:
        result = await conn.stream(select(schema.audit_log).order_by(schema.audit_log.c.seq))
        async for r in result:
            rep.records += 1
            if r.seq != expected_seq:
                rep.fail(expected_seq, f"missing (next record is {r.seq})")
            if r.prev_hash != prev:
                rep.fail(r.seq, "previous-hash link broken")
            if record_hash(r.seq, r.ts, r.kind, r.actor, r.data, r.prev_hash) != r.hash:
                rep.fail(r.seq, "content does not match its hash (edited)")
            hashes[r.seq] = r.hash
            expected_seq, prev = r.seq + 1, r.hash
        head = (await conn.execute(select(schema.audit_head).where(schema.audit_head.c.id == 1))).one()
        cps = (await conn.execute(select(schema.audit_checkpoints).order_by(schema.audit_checkpoints.c.seq))).all()
    for cp in cps:
        rep.checkpoints += 1
        claims = verify_checkpoint(cp.signature)
        if claims is None or claims.get("seq") != cp.seq or claims.get("hash") != cp.hash:
            rep.fail(cp.seq, "checkpoint signature invalid")
            continue
        if cp.seq not in hashes:
            last = expected_seq - 1
            if cp.seq > last:
                rep.fail(last + 1, f"records {last + 1}..{cp.seq} covered by a signed checkpoint are missing (truncated)")
            else:
                rep.fail(cp.seq, "record covered by a signed checkpoint is missing")
        elif hashes[cp.seq] != cp.hash:
            rep.fail(cp.seq, "record differs from the signed checkpoint")
    last = expected_seq - 1
    if head.seq != last or head.hash != prev:
        rep.fail(last + 1 if head.seq > last else head.seq, f"chain head says {head.seq} records, log has {last} (truncated)")
    return rep


async def tail(engine: AsyncEngine, n: int, kind: str | None = None) -> list[dict[str, Any]]:
    """The last ``n`` records (optionally of one kind), oldest first, for operators and tests."""
    q = select(schema.audit_log).order_by(schema.audit_log.c.seq.desc()).limit(n)
    if kind:
        q = q.where(schema.audit_log.c.kind == kind)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [{"seq": r.seq, "ts": r.ts, "kind": r.kind, "actor": r.actor, "data": json.loads(r.data), "hash": r.hash}
            for r in reversed(rows)]
