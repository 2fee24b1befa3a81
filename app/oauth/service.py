"""OAuth2 authorization server, client-credentials part (RFC 6749 §4.4) for seals.

Client authentication (RFC 6749 §2.3, RFC 7523 §2.2): ``client_secret_basic``,
``client_secret_post`` and ``private_key_jwt``. Access tokens are JWTs (RFC 9068 ``at+jwt``)
signed by an HSM key. Authlib's server side is synchronous, so only its parsing helpers are used.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from jwcrypto import jwk, jws, jwt
from jwcrypto.common import JWException

from hsm import KeyStore, KeyType
from hsm.jws import sign_compact
from sam.clock import Clock
from sam.ports import AuditEvent
from sam.sad import JwsVerifier, new_jti

from ..errors import ProtocolError, invalid_token
from ..store import Client, ClientRepo, NonceRepo
from ..store.audit import AuditLog
from .secrets import check_secret_async

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ["ES256", "ES384", "PS256", "RS256"]
ACCESS_TOKEN_TYP = "at+jwt"
SUPPORTED_SCOPES = ("service",)


def invalid_client(description: str, *, basic: bool) -> ProtocolError:
    return ProtocolError("invalid_client", description, 401,
                         www_authenticate='Basic realm="rqes"' if basic else None)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the CSC API, as proved by a verified token.

    ``subject`` owns credentials: ``client:<id>`` (seals, client credentials) or ``signer:<id>``.
    A credential token (the SAD as bearer) sets ``sad`` and ``credential_id``."""

    client_id: str
    scope: tuple[str, ...]
    jti: str
    subject: str = ""
    sad: str | None = None
    credential_id: str | None = None

    @property
    def is_credential_token(self) -> bool:
        return self.sad is not None


class ClientAuthenticator:
    def __init__(self, clients: ClientRepo, nonces: NonceRepo, clock: Clock, token_endpoint: str, issuer: str) -> None:
        self._clients, self._nonces, self._clock = clients, nonces, clock
        self._audiences = {token_endpoint, issuer}

    async def authenticate(self, form: Mapping[str, str], headers: Mapping[str, str]) -> tuple[Client, str]:
        """Return the client and the method it used, or raise ``invalid_client``."""
        auth = headers.get("authorization") or headers.get("Authorization")
        if auth:
            if not auth.lower().startswith("basic "):
                raise invalid_client("Unsupported client authentication scheme", basic=True)
            client_id, secret = extract_basic_authorization({"Authorization": auth})
            if not client_id or secret is None:
                raise invalid_client("Malformed HTTP Basic client authentication", basic=True)
            if form.get("client_id") and form["client_id"] != client_id:
                raise ProtocolError("invalid_request", "client_id does not match the authenticated client")
            return await self._by_secret(client_id, secret, basic=True), "client_secret_basic"
        if form.get("client_assertion_type") or form.get("client_assertion"):
            return await self._by_assertion(form), "private_key_jwt"
        if form.get("client_secret"):
            return await self._by_secret(form.get("client_id", ""), form["client_secret"], basic=False), "client_secret_post"
        raise invalid_client("Client authentication required", basic=True)

    async def authenticate_or_public(self, form: Mapping[str, str], headers: Mapping[str, str]) -> Client:
        """Confidential clients authenticate; a public client only names itself (PKCE protects
        its codes). Used by PAR, the code and refresh grants, and revocation."""
        if "authorization" in {k.lower() for k in headers} or form.get("client_secret") or form.get("client_assertion"):
            client, _ = await self.authenticate(form, headers)
            return client
        client = await self._clients.get(form.get("client_id", "")) if form.get("client_id") else None
        if client is None or not client.public or client.status != "active":
            raise invalid_client("Client authentication required", basic=True)
        return client

    async def _by_secret(self, client_id: str, secret: str, *, basic: bool) -> Client:
        client = await self._clients.get(client_id) if client_id else None
        ok = await check_secret_async(secret, client.secret_hash if client else None)
        if client is None or not ok or client.status != "active":
            raise invalid_client("Client authentication failed", basic=basic)
        return client

    async def _by_assertion(self, form: Mapping[str, str]) -> Client:
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise invalid_client("Unsupported client_assertion_type", basic=False)
        token = form["client_assertion"]
        try:
            unverified = jws.JWS()
            unverified.deserialize(token)
            claims_raw = jwt.json_decode(unverified.objects["payload"])
            client_id = claims_raw.get("iss") if isinstance(claims_raw, dict) else None
        except (JWException, ValueError, KeyError, TypeError):
            raise invalid_client("Malformed client_assertion", basic=False) from None
        if not isinstance(client_id, str) or (form.get("client_id") and form["client_id"] != client_id):
            raise invalid_client("Client authentication failed", basic=False)
        client = await self._clients.get(client_id)
        if client is None or not client.jwks or client.status != "active":
            raise invalid_client("Client authentication failed", basic=False)
        try:
            keyset = jwk.JWKSet.from_json(json.dumps(client.jwks))
            verified = jwt.JWT(jwt=token, key=keyset, algs=ASSERTION_ALGS, expected_type="JWS", check_claims=False)
            claims = jwt.json_decode(verified.claims)
        except (JWException, ValueError, TypeError):
            raise invalid_client("Client authentication failed", basic=False) from None
        now = self._clock.now().timestamp()
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        exp, jti = claims.get("exp"), claims.get("jti")
        if (claims.get("sub") != client_id or not any(a in self._audiences for a in auds)
                or not isinstance(exp, (int, float)) or exp <= now or exp > now + 600
                or not isinstance(jti, str) or not jti):
            raise invalid_client("Client authentication failed", basic=False)
        if not await self._nonces.use_once(f"assertion:{client_id}:{jti}", datetime.fromtimestamp(exp, timezone.utc)):
            raise invalid_client("client_assertion was already used", basic=False)
        return client


class TokenService:
    """Issues and verifies access tokens; the signing key never leaves the HSM."""

    def __init__(self, *, keys: KeyStore, label: str, key_type: KeyType, kid: str, public_key_der: bytes,
                 issuer: str, lifetime: int, clock: Clock, clients: ClientRepo, audit: AuditLog, skew: int,
                 engine: Any = None) -> None:
        self._keys, self._label, self._key_type, self._kid = keys, label, key_type, kid
        self._verifier = JwsVerifier(public_key_der, key_type, kid, ACCESS_TOKEN_TYP)
        self._issuer, self._lifetime, self._clock = issuer, lifetime, clock
        self._clients, self._audit, self._skew = clients, audit, skew
        self._engine = engine

    async def client_credentials(self, client: Client, method: str, form: Mapping[str, str]) -> dict[str, Any]:
        """RFC 6749 §4.4.2–4.4.3."""
        if "client_credentials" not in client.grants:
            raise ProtocolError("unauthorized_client", "The client is not allowed to use client_credentials")
        scope = form.get("scope") or "service"
        scopes = scope_to_list(scope) or []
        if any(s not in SUPPORTED_SCOPES for s in scopes):
            raise ProtocolError("invalid_scope", "Only scope=service is granted with client_credentials")
        return await self.issue(client, f"client:{client.client_id}", " ".join(scopes), grant_type="client_credentials", auth=method)

    async def issue(self, client: Client, subject: str, scope: str, *, grant_type: str, auth: str | None = None) -> dict[str, Any]:
        """A service access token (RFC 9068 at+jwt) for ``subject``, signed in the HSM."""
        now = int(self._clock.now().timestamp())
        jti = new_jti()
        payload = {
            "iss": self._issuer, "sub": subject, "aud": self._issuer, "client_id": client.client_id,
            "scope": scope, "iat": now, "exp": now + self._lifetime, "jti": jti,
        }
        token = await sign_compact(self._keys, self._label, self._key_type, {"typ": ACCESS_TOKEN_TYP, "kid": self._kid}, payload)
        data = {"grant_type": grant_type, "scope": scope, "jti": jti, "exp": payload["exp"], "client_id": client.client_id}
        if auth:
            data["auth"] = auth
        await self._audit.append(AuditEvent("token.issued", subject, data))
        return {"access_token": token, "token_type": "Bearer", "expires_in": self._lifetime, "scope": scope}

    async def revoke(self, token: str, client: Client) -> None:
        """RFC 7009 for access tokens: remember the jti until the token would have expired."""
        try:
            claims = self._verifier.verify(token)
        except ValueError:
            return
        if claims.get("client_id") != client.client_id or not isinstance(claims.get("jti"), str):
            return
        from sqlalchemy import insert
        from sqlalchemy.exc import IntegrityError

        from ..store import schema

        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(schema.revoked_tokens).values(
                    jti=claims["jti"], expires_at=datetime.fromtimestamp(int(claims.get("exp", 0)), timezone.utc)))
                await self._audit.append_in(conn, AuditEvent("token.revoked", str(claims.get("sub")), {
                    "type": "access_token", "jti": claims["jti"]}))
        except IntegrityError:
            pass

    async def _revoked(self, jti: str) -> bool:
        from sqlalchemy import select

        from ..store import schema

        async with self._engine.connect() as conn:
            return (await conn.execute(select(schema.revoked_tokens.c.jti).where(schema.revoked_tokens.c.jti == jti))).first() is not None

    async def verify(self, token: str) -> Principal:
        """RFC 6750: verify signature, issuer, lifetime, then that the client is still active."""
        try:
            claims = self._verifier.verify(token)
        except ValueError:
            raise invalid_token() from None
        now = self._clock.now().timestamp()
        exp, iat, client_id = claims.get("exp"), claims.get("iat"), claims.get("client_id")
        if (claims.get("iss") != self._issuer or not isinstance(exp, int) or not isinstance(iat, int)
                or now >= exp + self._skew or iat > now + self._skew or not isinstance(client_id, str)):
            raise invalid_token()
        client = await self._clients.get(client_id)
        sub = claims.get("sub")
        if client is None or client.status != "active" or not isinstance(sub, str):
            raise invalid_token()
        if sub.startswith("client:") and not hmac.compare_digest(sub.encode(), f"client:{client_id}".encode()):
            raise invalid_token()
        if not sub.startswith(("client:", "signer:")):
            raise invalid_token()
        jti = str(claims.get("jti", ""))
        if await self._revoked(jti):
            raise invalid_token()
        scope = claims.get("scope", "")
        return Principal(client_id, tuple(scope.split()) if isinstance(scope, str) else (), jti, subject=sub)
