"""Tables (SQLAlchemy 2 Core). The shape at each version is fixed by :mod:`.migrations`."""

from __future__ import annotations

from sqlalchemy import (
    JSON, BigInteger, Boolean, Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Text,
)

metadata = MetaData()

schema_version = Table(
    "rqes_schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

clients = Table(
    "oauth_clients", metadata,
    Column("client_id", String(128), primary_key=True),
    Column("secret_hash", String(256), nullable=True),
    Column("jwks", JSON, nullable=True),
    Column("grants", JSON, nullable=False),
    Column("redirect_uris", JSON, nullable=False),
    Column("public", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

credentials = Table(
    "credentials", metadata,
    Column("credential_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # seal | signature
    Column("owner", String(200), nullable=False, index=True),
    Column("description", String(255), nullable=True),
    Column("key_label", String(200), nullable=False, unique=True),
    Column("key_type", String(16), nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # enabled | disabled | deleted
    Column("multisign", Integer, nullable=False),
    Column("signature_qualifier", String(32), nullable=False),
    Column("certificate", LargeBinary, nullable=True),
    Column("cert_serial", String(64), nullable=True),
    Column("not_before", DateTime(timezone=True), nullable=True),
    Column("not_after", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

ca_certificates = Table(
    "ca_certificates", metadata,
    Column("name", String(32), primary_key=True),  # root | issuing
    Column("key_label", String(200), nullable=False),
    Column("certificate", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

spent_sads = Table(
    "spent_sads", metadata,
    Column("jti", String(64), primary_key=True),  # the primary key *is* the single-use guarantee
    Column("credential_id", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("spent_at", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("data", Text, nullable=False),  # canonical JSON, hashed as stored
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("ts", String(32), nullable=False),
    Column("key_label", String(200), nullable=False),
    Column("signature", Text, nullable=False),  # compact JWS over {seq, hash, ts}
)

used_nonces = Table(
    "used_nonces", metadata,
    Column("key", String(300), primary_key=True),  # "<namespace>:<value>", e.g. client assertion jti
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# -- version 2: wallet identity (OpenID4VP transactions, signers, evidence) --------------------------
oid4vp_transactions = Table(
    "oid4vp_transactions", metadata,
    Column("id", String(64), primary_key=True),          # held by the front end (status page)
    Column("request_id", String(64), nullable=False, unique=True),  # in request_uri / response_uri
    Column("purpose", String(16), nullable=False),       # enroll | authorize
    Column("flow", String(16), nullable=False),          # same-device | cross-device
    Column("nonce", String(64), nullable=False, unique=True),
    Column("state", String(64), nullable=False),
    Column("client_id", String(200), nullable=False),
    Column("response_mode", String(32), nullable=False),
    Column("enc_jwk", Text, nullable=True),              # ephemeral ECDH private key, erased when done
    Column("dcql", JSON, nullable=False),
    Column("transaction_data", JSON, nullable=False),    # the exact base64url strings sent
    Column("context", JSON, nullable=False),             # purpose-specific data (e.g. the authorization request)
    Column("status", String(16), nullable=False),        # created | fetched | responding | done | failed
    Column("response_code", String(64), nullable=True, unique=True),
    Column("result", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

signers = Table(
    "signers", metadata,
    Column("signer_id", String(64), primary_key=True),
    Column("identity_basis", String(32), nullable=False),  # pan | document_number
    Column("serial_number", String(128), nullable=False),  # EN 319 412-1 natural-person identifier
    Column("given_name", String(128), nullable=False),
    Column("family_name", String(128), nullable=False),
    Column("birthdate", String(16), nullable=False),
    Column("country", String(2), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

evidence = Table(
    "evidence", metadata,
    Column("evidence_id", String(64), primary_key=True),  # b64url SHA-256 of the canonical content
    Column("kind", String(32), nullable=False),
    Column("content", Text, nullable=False),  # presentation, transaction data, nonce, client_id: re-verifiable offline
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# -- version 3: OAuth2 authorization server (PAR, codes, refresh tokens, revocation) -----------------
par_requests = Table(
    "oauth_par_requests", metadata,
    Column("request_uri", String(128), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("params", JSON, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used", Boolean, nullable=False),
)

authorization_codes = Table(
    "oauth_authorization_codes", metadata,
    Column("code_hash", String(64), primary_key=True),  # SHA-256 of the code: the code itself is never stored
    Column("client_id", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("grant", JSON, nullable=False),  # the SAD (credential scope) or nothing (service scope); cleared on use
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used", Boolean, nullable=False),
)

refresh_tokens = Table(
    "oauth_refresh_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False),
)

revoked_tokens = Table(
    "oauth_revoked_tokens", metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
