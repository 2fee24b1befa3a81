"""Repositories over SQLAlchemy Core: clients, credentials, CA certificates and the SAD ledger.

Every write that must be recorded appends its audit record in the same transaction, so there is
never a change without its record, nor a record of a change that did not happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hsm import KeyType
from sam.ports import AuditEvent, CredentialRecord

from . import schema
from .audit import AuditLog


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    grants: list[str]
    redirect_uris: list[str]
    public: bool
    status: str


@dataclass(frozen=True, slots=True)
class StoredCredential:
    credential_id: str
    kind: str
    owner: str
    description: str | None
    key_label: str
    key_type: KeyType
    key_version: int
    status: str
    multisign: int
    signature_qualifier: str
    certificate: bytes | None
    cert_serial: str | None
    not_before: datetime | None
    not_after: datetime | None

    def record(self) -> CredentialRecord:
        return CredentialRecord(
            credential_id=self.credential_id, owner=self.owner, key_label=self.key_label, key_type=self.key_type,
            key_version=self.key_version, status=self.status, multisign=self.multisign,
            not_before=self.not_before, not_after=self.not_after,
        )


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)  # SQLite hands back naive datetimes
    return dt


class ClientRepo:
    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine, self._audit = engine, audit

    async def add(self, client: Client, actor: str) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(schema.clients).values(
                    client_id=client.client_id, secret_hash=client.secret_hash, jwks=client.jwks,
                    grants=client.grants, redirect_uris=client.redirect_uris, public=client.public,
                    status=client.status, created_at=datetime.now(timezone.utc)))
                await self._audit.append_in(conn, AuditEvent("client.added", actor, {
                    "client_id": client.client_id, "grants": client.grants, "public": client.public,
                    "auth": "private_key_jwt" if client.jwks else ("none" if client.public else "client_secret")}))
        except IntegrityError:
            return False
        return True

    async def get(self, client_id: str) -> Client | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(schema.clients).where(schema.clients.c.client_id == client_id))).first()
        if r is None:
            return None
        return Client(r.client_id, r.secret_hash, r.jwks, list(r.grants), list(r.redirect_uris), bool(r.public), r.status)

    async def list(self) -> list[Client]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(schema.clients).order_by(schema.clients.c.client_id))).all()
        return [Client(r.client_id, r.secret_hash, r.jwks, list(r.grants), list(r.redirect_uris), bool(r.public), r.status) for r in rows]

    async def remove(self, client_id: str, actor: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(delete(schema.clients).where(schema.clients.c.client_id == client_id))
            if res.rowcount != 1:
                return False
            await self._audit.append_in(conn, AuditEvent("client.removed", actor, {"client_id": client_id}))
        return True


class CredentialRepo:
    """Also the SAM's :class:`sam.ports.CredentialDirectory`."""

    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine, self._audit = engine, audit

    async def add(self, cred: StoredCredential, events: list[AuditEvent]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(schema.credentials).values(
                credential_id=cred.credential_id, kind=cred.kind, owner=cred.owner, description=cred.description,
                key_label=cred.key_label, key_type=cred.key_type.value, key_version=cred.key_version,
                status=cred.status, multisign=cred.multisign, signature_qualifier=cred.signature_qualifier,
                certificate=cred.certificate, cert_serial=cred.cert_serial, not_before=cred.not_before,
                not_after=cred.not_after, created_at=datetime.now(timezone.utc)))
            for ev in events:
                await self._audit.append_in(conn, ev)

    @staticmethod
    def _row(r: Any) -> StoredCredential:
        return StoredCredential(
            r.credential_id, r.kind, r.owner, r.description, r.key_label, KeyType(r.key_type), r.key_version,
            r.status, r.multisign, r.signature_qualifier, r.certificate, r.cert_serial,
            _aware(r.not_before), _aware(r.not_after))

    async def load(self, credential_id: str) -> StoredCredential | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(schema.credentials).where(schema.credentials.c.credential_id == credential_id))).first()
        return None if r is None else self._row(r)

    async def get(self, credential_id: str) -> CredentialRecord | None:
        c = await self.load(credential_id)
        return None if c is None else c.record()

    async def list(self, owner: str | None = None, *, include_deleted: bool = False) -> list[StoredCredential]:
        q = select(schema.credentials).order_by(schema.credentials.c.created_at, schema.credentials.c.credential_id)
        if owner is not None:
            q = q.where(schema.credentials.c.owner == owner)
        if not include_deleted:
            q = q.where(schema.credentials.c.status != "deleted")
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [self._row(r) for r in rows]

    async def set_status(self, credential_id: str, status: str, event: AuditEvent, *, allowed_from: tuple[str, ...]) -> bool:
        t = schema.credentials
        async with self._engine.begin() as conn:
            res = await conn.execute(update(t).where(t.c.credential_id == credential_id, t.c.status.in_(allowed_from)).values(status=status))
            if res.rowcount != 1:
                return False
            await self._audit.append_in(conn, event)
        return True


class CaRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, name: str) -> tuple[str, bytes] | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(schema.ca_certificates).where(schema.ca_certificates.c.name == name))).first()
        return None if r is None else (r.key_label, r.certificate)

    async def put(self, name: str, key_label: str, der: bytes, audit: AuditLog, event: AuditEvent) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(schema.ca_certificates).values(
                name=name, key_label=key_label, certificate=der, created_at=datetime.now(timezone.utc)))
            await audit.append_in(conn, event)


class SadLedgerRepo:
    """:class:`sam.ports.SadLedger`: the unique primary key on ``jti`` makes spending atomic on
    every node; the audit record commits in the same transaction."""

    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine, self._audit = engine, audit

    async def spend(self, jti: str, credential_id: str, expires_at: datetime, event: AuditEvent) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(schema.spent_sads).values(
                    jti=jti, credential_id=credential_id, expires_at=expires_at, spent_at=datetime.now(timezone.utc)))
                await self._audit.append_in(conn, event)
        except IntegrityError:
            return False
        return True

    async def purge(self, now: datetime, keep: timedelta = timedelta(days=1)) -> int:
        """Forget spent SADs long past their expiry (they can no longer verify anyway)."""
        async with self._engine.begin() as conn:
            res = await conn.execute(delete(schema.spent_sads).where(schema.spent_sads.c.expires_at < now - keep))
        return res.rowcount or 0


class NonceRepo:
    """Single-use values other than SADs (client assertion ``jti``): one unique insert each."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def use_once(self, key: str, expires_at: datetime) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(schema.used_nonces).values(key=key[:300], expires_at=expires_at))
        except IntegrityError:
            return False
        return True
