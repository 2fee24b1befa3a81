"""OpenID4VP transactions: created → fetched → responding → done | failed.

Single use is a state transition done by one conditional UPDATE (EUDI verifier
``GetRequestObject``): a response is processed at most once, a ``response_code`` is redeemed
at most once, and everything expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..store import schema

T = schema.oid4vp_transactions


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str
    request_id: str
    purpose: str
    flow: str
    nonce: str
    state: str
    client_id: str
    response_mode: str
    enc_jwk: str | None
    dcql: dict[str, Any]
    transaction_data: list[str]
    context: dict[str, Any]
    status: str
    response_code: str | None
    result: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _row(r: Any) -> Transaction:
    return Transaction(
        r.id, r.request_id, r.purpose, r.flow, r.nonce, r.state, r.client_id, r.response_mode, r.enc_jwk,
        r.dcql, list(r.transaction_data), dict(r.context), r.status, r.response_code, r.result,
        _aware(r.created_at), _aware(r.expires_at))


class TransactionRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, t: Transaction) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(T).values(
                id=t.id, request_id=t.request_id, purpose=t.purpose, flow=t.flow, nonce=t.nonce, state=t.state,
                client_id=t.client_id, response_mode=t.response_mode, enc_jwk=t.enc_jwk, dcql=t.dcql,
                transaction_data=t.transaction_data, context=t.context, status=t.status, response_code=None,
                result=None, created_at=t.created_at, expires_at=t.expires_at))

    async def by_id(self, tid: str) -> Transaction | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(T).where(T.c.id == tid))).first()
        return None if r is None else _row(r)

    async def by_request_id(self, rid: str) -> Transaction | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(T).where(T.c.request_id == rid))).first()
        return None if r is None else _row(r)

    async def mark_fetched(self, rid: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(T).where(T.c.request_id == rid, T.c.status == "created").values(status="fetched"))

    async def claim_for_response(self, rid: str, now: datetime) -> bool:
        """The one transition that lets a wallet response through: at most once, before expiry."""
        async with self._engine.begin() as conn:
            res = await conn.execute(update(T).where(
                T.c.request_id == rid, T.c.status.in_(("created", "fetched")), T.c.expires_at > now,
            ).values(status="responding"))
        return res.rowcount == 1

    async def finish(self, rid: str, status: str, result: dict[str, Any], response_code: str | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(T).where(T.c.request_id == rid, T.c.status == "responding").values(
                status=status, result=result, response_code=response_code, enc_jwk=None))

    async def redeem_response_code(self, code: str, now: datetime) -> Transaction | None:
        """Same-device: release the result once for the response_code; the code is then spent."""
        async with self._engine.begin() as conn:
            r = (await conn.execute(select(T).where(T.c.response_code == code))).first()
            if r is None:
                return None
            res = await conn.execute(update(T).where(T.c.id == r.id, T.c.response_code == code).values(
                response_code=None))
            if res.rowcount != 1 or _aware(r.expires_at) <= now:
                return None
        return _row(r)

    async def take_result(self, rid: str) -> dict[str, Any] | None:
        """Hand a result (e.g. an asynchronous SAD) out once: read and erase in one transaction."""
        async with self._engine.begin() as conn:
            res = await conn.execute(update(T).where(T.c.request_id == rid, T.c.status == "done").values(status="collected"))
            if res.rowcount != 1:
                return None
            r = (await conn.execute(select(T.c.result).where(T.c.request_id == rid))).first()
            await conn.execute(update(T).where(T.c.request_id == rid).values(result={"collected": True}))
        return None if r is None else r.result
