"""Versioned migrations. Each version is applied once, in order, inside one transaction.

Version 1 is the foundation schema. Later versions append to ``MIGRATIONS``; a version that has
shipped is never edited.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Awaitable, Callable

from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import schema

GENESIS = "0" * 64


async def _v1(conn: AsyncConnection) -> None:
    tables = [
        schema.clients, schema.credentials, schema.ca_certificates, schema.spent_sads,
        schema.audit_log, schema.audit_head, schema.audit_checkpoints, schema.used_nonces,
    ]
    await conn.run_sync(lambda c: schema.metadata.create_all(c, tables=tables))
    await conn.execute(insert(schema.audit_head).values(id=1, seq=0, hash=GENESIS))


async def _v2(conn: AsyncConnection) -> None:
    tables = [schema.oid4vp_transactions, schema.signers, schema.evidence]
    await conn.run_sync(lambda c: schema.metadata.create_all(c, tables=tables))


async def _v3(conn: AsyncConnection) -> None:
    tables = [schema.par_requests, schema.authorization_codes, schema.refresh_tokens, schema.revoked_tokens]
    await conn.run_sync(lambda c: schema.metadata.create_all(c, tables=tables))


MIGRATIONS: list[tuple[int, Callable[[AsyncConnection], Awaitable[None]]]] = [(1, _v1), (2, _v2), (3, _v3)]
LATEST = MIGRATIONS[-1][0]


async def current_version(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        has = await conn.run_sync(lambda c: inspect(c).has_table(schema.schema_version.name))
        if not has:
            return 0
        rows = (await conn.execute(select(schema.schema_version.c.version))).scalars().all()
        return max(rows, default=0)


async def migrate(engine: AsyncEngine) -> list[int]:
    """Apply every pending version; return the versions applied."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: schema.schema_version.create(c, checkfirst=True))
    applied = []
    for version, step in MIGRATIONS:
        async with engine.begin() as conn:
            done = (await conn.execute(
                select(schema.schema_version.c.version).where(schema.schema_version.c.version == version)
            )).first()
            if done:
                continue
            await step(conn)
            await conn.execute(insert(schema.schema_version).values(version=version, applied_at=datetime.now(timezone.utc)))
            applied.append(version)
    return applied
