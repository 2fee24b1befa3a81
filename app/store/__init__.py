"""Storage adapters (SQLAlchemy 2 Core, async): SQLite by default, PostgreSQL for several nodes."""

from .audit import AuditLog, VerifyReport, verify_chain
from .engine import make_engine
from .migrations import migrate
from .repos import CaRepo, Client, ClientRepo, CredentialRepo, NonceRepo, SadLedgerRepo, StoredCredential

__all__ = [
    "AuditLog", "CaRepo", "Client", "ClientRepo", "CredentialRepo", "NonceRepo", "SadLedgerRepo", "StoredCredential",
    "VerifyReport", "make_engine", "migrate", "verify_chain",
]
