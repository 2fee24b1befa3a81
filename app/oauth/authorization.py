"""OAuth2 authorization server for signers: PAR (RFC 9126), authorization code with PKCE S256
(RFC 6749 §4.1, RFC 7636), credential authorization in three forms (CSC query parameters,
``authorization_details`` type ``credential`` and the 2025 URI type, RFC 9396), refresh tokens for
the service scope, and revocation (RFC 7009).

The user authenticates and approves with the EUDI wallet (OpenID4VP): scope ``service`` presents
the PID (and enrolls on first contact); scope ``credential`` also approves the exact digests, which
the SAM verifies before it mints the SAD that becomes the credential-scoped access token.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

from sqlalchemy import insert, select, update

from hsm.mechanisms import Hash
from sam import SamError
from sam.approval import CredentialAuthorization, WalletEvidence, approval_entry
from sam.ports import AuditEvent
from sam.sad import SAD_TYP

from ..errors import ProtocolError, invalid_request
from ..store import Client, schema
from .service import ClientAuthenticator, TokenService

PAR_LIFETIME = 90
CODE_LIFETIME = 60
REFRESH_LIFETIME = timedelta(days=1)
CREDENTIAL_TYPES = ("credential", "https://cloudsignatureconsortium.org/2025/credential")
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
AUTHZ_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                "code_challenge_method", "authorization_details", "credentialID", "signatureQualifier",
                "numSignatures", "hashes", "hash", "hashAlgorithmOID", "description", "lang", "prompt",
                "account_token", "clientData")


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    """RFC 7636 §4.2."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


class RedirectError(Exception):
    """An error the client learns about through its (already validated) redirect_uri."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None) -> None:
        super().__init__(description)
        self.error, self.description = error, description
        q = {"error": error, "error_description": description}
        if state is not None:
            q["state"] = state
        self.location = redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(q)


@dataclass(frozen=True)
class AuthzRequest:
    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str
    authorization_details: Any = None  # parsed, echoed in the token response
    credential: CredentialAuthorization | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        c = self.credential
        return {
            "client_id": self.client_id, "redirect_uri": self.redirect_uri, "state": self.state,
            "code_challenge": self.code_challenge, "scope": self.scope,
            "authorization_details": self.authorization_details,
            "credential": None if c is None else {
                "credentialID": c.credential_id, "hashes": [b64url(h) for h in c.hashes],
                "hashAlgorithmOID": c.hash_algorithm, "numSignatures": c.num_signatures, "labels": list(c.labels)},
        }


def credential_from_context(ctx: dict[str, Any]) -> CredentialAuthorization:
    c = ctx["credential"]
    return CredentialAuthorization(
        client_id=ctx["client_id"], credential_id=c["credentialID"],
        hashes=tuple(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)) for h in c["hashes"]),
        hash_algorithm=c["hashAlgorithmOID"], num_signatures=c["numSignatures"], labels=tuple(c.get("labels", [])))


def _decode_digest(value: Any) -> bytes:
    """CSC §2: compare hashes as bytes; accept base64 and base64url, padded or not."""
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError("hash")
    s = value.strip().rstrip("=").replace(" ", "+").replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


def parse_authorization_details(raw: str) -> list[dict[str, Any]]:
    """JSON, or the single-quoted Python literal that the EUDI Python RP sends."""
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise invalid_request("authorization_details is not valid JSON") from None
    try:  # a Python literal may hold bytes, sets, ...: keep only what JSON can carry
        value = json.loads(json.dumps(value))
    except (TypeError, ValueError):
        raise invalid_request("authorization_details is not valid JSON") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(d, dict) for d in value):
        raise invalid_request("authorization_details must be a non-empty array of objects")
    return value


def credential_authorization(params: Mapping[str, str], client_id: str, max_hashes: int) -> tuple[CredentialAuthorization, Any]:
    """The three forms of credential authorization; returns it and the details to echo."""
    details = None
    if params.get("authorization_details"):
        details = parse_authorization_details(params["authorization_details"])
        creds = [d for d in details if d.get("type") in CREDENTIAL_TYPES]
        if len(creds) != 1 or len(details) != 1:
            raise invalid_request("authorization_details must hold exactly one entry of type credential")
        d = creds[0]
        credential_id = d.get("credentialID")
        digests = d.get("documentDigests")
        alg = d.get("hashAlgorithmOID")
        if not isinstance(digests, list) or not digests or not all(isinstance(x, dict) for x in digests):
            raise invalid_request("authorization_details.documentDigests must be a non-empty array")
        raw_hashes = [x.get("hash") for x in digests]
        labels = [str(x.get("label", ""))[:200] for x in digests]
        num = d.get("numSignatures", len(digests))
        if isinstance(num, str) and num.isdigit():
            num = int(num)
    else:
        credential_id = params.get("credentialID")
        hashes_param = params.get("hashes") or params.get("hash") or ""
        raw_hashes = [h for h in hashes_param.split(",") if h]
        labels = []
        alg = params.get("hashAlgorithmOID")
        try:
            num = int(params.get("numSignatures", len(raw_hashes)))
        except ValueError:
            raise invalid_request("Invalid parameter numSignatures") from None
    if not isinstance(credential_id, str) or not credential_id:
        raise invalid_request("credentialID is required (authorization by signatureQualifier is not supported)")
    if not raw_hashes:
        raise invalid_request("hashes are required for credential authorization (SCAL2)")
    if len(raw_hashes) > max_hashes:
        raise invalid_request(f"Too many hashes: at most {max_hashes} per request")
    try:
        hash_ = Hash.from_oid(alg) if isinstance(alg, str) else None
    except SamError:
        hash_ = None
    except Exception:  # noqa: BLE001 - UnsupportedAlgorithm
        hash_ = None
    if hash_ is None:
        raise invalid_request("Invalid parameter hashAlgorithmOID")
    try:
        hashes = tuple(_decode_digest(h) for h in raw_hashes)
    except (ValueError, TypeError):
        raise invalid_request("Invalid Base64 hash string parameter") from None
    if any(len(h) != hash_.digest_size for h in hashes):
        raise invalid_request("Invalid digest value length")
    if not isinstance(num, int) or isinstance(num, bool) or num != len(hashes):
        raise invalid_request("numSignatures must equal the number of hashes")
    return CredentialAuthorization(client_id, credential_id, hashes, alg, num, tuple(labels)), details


class AuthorizationServer:
    def __init__(self, rt: Any, authenticator: ClientAuthenticator, tokens: TokenService) -> None:
        self._rt = rt
        self._auth = authenticator
        self._tokens = tokens

    # -- client checks -----------------------------------------------------------------------------
    async def _client_for_authorize(self, client_id: str | None, redirect_uri: str | None) -> tuple[Client, str]:
        """Validate client and redirect_uri first: until both are known good, errors are shown, not redirected."""
        client = await self._rt.clients.get(client_id) if client_id else None
        if client is None or client.status != "active":
            raise invalid_request("Unknown client_id")
        if "authorization_code" not in client.grants:
            raise ProtocolError("unauthorized_client", "The client may not use the authorization code grant")
        if redirect_uri is None:
            if len(client.redirect_uris) != 1:
                raise invalid_request("redirect_uri is required")
            redirect_uri = client.redirect_uris[0]
        if redirect_uri not in client.redirect_uris:  # exact string match (RFC 9700 §4.1.3)
            raise invalid_request("redirect_uri does not match a registered redirect URI")
        return client, redirect_uri

    # -- validation ----------------------------------------------------------------------------------
    def _validate(self, client: Client, redirect_uri: str, p: Mapping[str, str]) -> AuthzRequest:
        state = p.get("state")
        if p.get("response_type") != "code":
            raise RedirectError(redirect_uri, "unsupported_response_type", "response_type must be code", state)
        challenge = p.get("code_challenge")
        if not challenge or p.get("code_challenge_method", "plain") != "S256":
            raise RedirectError(redirect_uri, "invalid_request", "PKCE with code_challenge_method=S256 is required", state)
        if not (43 <= len(challenge) <= 128):
            raise RedirectError(redirect_uri, "invalid_request", "Invalid code_challenge", state)
        has_credential = bool(p.get("authorization_details") or p.get("credentialID") or p.get("hashes") or p.get("hash"))
        scope = p.get("scope") or ("credential" if has_credential else "service")
        if scope not in ("service", "credential"):
            raise RedirectError(redirect_uri, "invalid_scope", "scope must be service or credential", state)
        if scope == "service" and has_credential:
            raise RedirectError(redirect_uri, "invalid_request", "Credential parameters need scope=credential", state)
        credential = details = None
        if scope == "credential":
            try:
                credential, details = credential_authorization(p, client.client_id, self._rt.settings.max_hashes)
            except ProtocolError as e:
                raise RedirectError(redirect_uri, e.error, e.description, state) from None
        if p.get("prompt") not in (None, "", "login", "consent"):
            raise RedirectError(redirect_uri, "invalid_request", "Unsupported prompt value", state)
        return AuthzRequest(client.client_id, redirect_uri, state, challenge, scope, details, credential)

    # -- PAR -----------------------------------------------------------------------------------------
    async def pushed_authorize(self, form: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, Any]:
        """RFC 9126 §2: authenticate, validate as /authorize would, store for single use."""
        if "request_uri" in form:
            raise invalid_request("request_uri must not be pushed")
        client = await self._auth.authenticate_or_public(form, headers)
        if form.get("client_id") and form["client_id"] != client.client_id:
            raise invalid_request("client_id does not match the authenticated client")
        _, redirect_uri = await self._client_for_authorize(client.client_id, form.get("redirect_uri"))
        try:
            self._validate(client, redirect_uri, form)
        except RedirectError as e:  # PAR answers directly (RFC 9126 §2.3)
            raise ProtocolError(e.error, e.description) from None
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
        params = {k: v for k, v in form.items() if k in AUTHZ_PARAMS}
        params["client_id"] = client.client_id
        params.setdefault("redirect_uri", redirect_uri)
        now = self._rt.clock.now()
        async with self._rt.engine.begin() as conn:
            await conn.execute(insert(schema.par_requests).values(
                request_uri=request_uri, client_id=client.client_id, params=params,
                expires_at=now + timedelta(seconds=PAR_LIFETIME), used=False))
        return {"request_uri": request_uri, "expires_in": PAR_LIFETIME}

    async def _consume_par(self, request_uri: str, client_id: str | None) -> dict[str, str]:
        t = schema.par_requests
        now = self._rt.clock.now()
        async with self._rt.engine.begin() as conn:
            res = await conn.execute(update(t).where(t.c.request_uri == request_uri, t.c.used.is_(False),
                                                     t.c.expires_at > now).values(used=True))
            row = (await conn.execute(select(t).where(t.c.request_uri == request_uri))).first()
        if res.rowcount != 1 or row is None:
            raise invalid_request("request_uri is invalid, expired or already used")
        if client_id and client_id != row.client_id:
            raise invalid_request("request_uri was pushed by another client")
        return dict(row.params)

    # -- authorize ------------------------------------------------------------------------------------
    async def authorize(self, query: Mapping[str, str]) -> AuthzRequest:
        """RFC 6749 §4.1.1 (or RFC 9126 §4 with request_uri)."""
        params: Mapping[str, str] = query
        if query.get("request_uri"):
            if not query.get("client_id"):
                raise invalid_request("client_id is required with request_uri")
            params = await self._consume_par(query["request_uri"], query.get("client_id"))
        client, redirect_uri = await self._client_for_authorize(params.get("client_id"), params.get("redirect_uri"))
        return self._validate(client, redirect_uri, params)

    async def start(self, req: AuthzRequest, verifier: Any, *, flow: str) -> Any:
        from ..oid4vp.routes import qc_request_entry

        if req.scope == "credential":
            assert req.credential is not None
            td = [approval_entry(req.credential, legacy=self._rt.settings.qes_approval_type == "qes_authorization")]
            purpose = "authorize"
        else:
            td = [qc_request_entry(verifier.base)]  # enrolls on first contact
            purpose = "login"
        return await verifier.start(purpose=purpose, flow=flow, response_mode="direct_post.jwt",
                                    transaction_data=td, context=req.context())

    # -- what the wallet's approval produces --------------------------------------------------------------
    async def on_credential_approval(self, t: Any, _verified: Any, evidence: WalletEvidence) -> dict[str, Any]:
        ctx = t.context
        grant = await self._rt.sam.authorize_signer(evidence, credential_from_context(ctx))
        if ctx.get("mode") == "async":
            return {"SAD": grant.sad, "expiresIn": grant.expires_in, "credentialID": grant.claims.credential_id}
        code = await self._new_code(ctx, grant.claims.sub, {"sad": grant.sad, "exp": grant.claims.exp,
                                                            "credentialID": grant.claims.credential_id})
        return {"redirect_to": self._redirect(ctx, code)}

    async def on_login(self, t: Any, verified: Any, evidence: WalletEvidence) -> dict[str, Any]:
        from ..enroll import enroll

        ctx = t.context
        outcome = await enroll(self._rt, verified, evidence.evidence_id, transaction_id=t.id)
        code = await self._new_code(ctx, f"signer:{outcome['signer_id']}", {})
        return {"redirect_to": self._redirect(ctx, code), "enrolled": outcome["enrolled"]}

    def _redirect(self, ctx: dict[str, Any], code: str) -> str:
        q = {"code": code}
        if ctx.get("state") is not None:
            q["state"] = ctx["state"]
        ru = ctx["redirect_uri"]
        return ru + ("&" if urlsplit(ru).query else "?") + urlencode(q)

    def error_redirect(self, ctx: dict[str, Any], error: str, description: str) -> str:
        return RedirectError(ctx["redirect_uri"], error, description, ctx.get("state")).location

    async def _new_code(self, ctx: dict[str, Any], subject: str, grant: dict[str, Any]) -> str:
        code = secrets.token_urlsafe(32)
        now = self._rt.clock.now()
        async with self._rt.engine.begin() as conn:
            await conn.execute(insert(schema.authorization_codes).values(
                code_hash=sha256_hex(code), client_id=ctx["client_id"], redirect_uri=ctx["redirect_uri"],
                code_challenge=ctx["code_challenge"], scope=ctx["scope"], subject=subject,
                grant={**grant, "authorization_details": ctx.get("authorization_details")},
                expires_at=now + timedelta(seconds=CODE_LIFETIME), used=False))
        return code

    # -- token endpoint ---------------------------------------------------------------------------------
    async def token_authorization_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        """RFC 6749 §4.1.3 + RFC 7636 §4.6. The code is spent by the first attempt, good or bad."""
        code, verifier = form.get("code"), form.get("code_verifier")
        if not code:
            raise invalid_request("Missing parameter code")
        t = schema.authorization_codes
        now = self._rt.clock.now()
        h = sha256_hex(code)
        async with self._rt.engine.begin() as conn:
            # Write first (takes the row/database lock), then read, then erase the grant: one use only.
            res = await conn.execute(update(t).where(t.c.code_hash == h, t.c.used.is_(False)).values(used=True))
            row = (await conn.execute(select(t).where(t.c.code_hash == h))).first() if res.rowcount == 1 else None
            if row is not None:
                await conn.execute(update(t).where(t.c.code_hash == h).values(grant={}))
        if row is None:
            raise ProtocolError("invalid_grant", "Authorization code is invalid or expired")
        exp = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=timezone.utc)
        if exp <= now or not hmac.compare_digest(row.client_id, client.client_id):
            raise ProtocolError("invalid_grant", "Authorization code is invalid or expired")
        if form.get("redirect_uri", row.redirect_uri) != row.redirect_uri:
            raise ProtocolError("invalid_grant", "redirect_uri parameter does not match")
        if not verifier or not hmac.compare_digest(s256(verifier).encode(), row.code_challenge.encode()):
            raise ProtocolError("invalid_grant", "PKCE verification failed")
        grant = dict(row.grant or {})
        if row.scope == "credential":
            sad = grant.get("sad")
            if not sad:
                raise ProtocolError("invalid_grant", "Authorization code is invalid or expired")
            out = {"access_token": sad, "token_type": "Bearer",
                   "expires_in": max(0, int(grant["exp"] - now.timestamp())), "scope": "credential",
                   "credentialID": grant["credentialID"]}
            if grant.get("authorization_details") is not None:
                out["authorization_details"] = [{**d, "credentialID": grant["credentialID"]} for d in grant["authorization_details"]]
            await self._rt.audit.append(AuditEvent("token.issued", row.subject, {
                "grant_type": "authorization_code", "scope": "credential", "client_id": client.client_id,
                "credentialID": grant["credentialID"]}))
            return out
        body = await self._tokens.issue(client, row.subject, "service", grant_type="authorization_code")
        body["refresh_token"] = await self._new_refresh(client.client_id, row.subject)
        return body

    async def _new_refresh(self, client_id: str, subject: str) -> str:
        token = secrets.token_urlsafe(32)
        async with self._rt.engine.begin() as conn:
            await conn.execute(insert(schema.refresh_tokens).values(
                token_hash=sha256_hex(token), client_id=client_id, subject=subject, scope="service",
                expires_at=self._rt.clock.now() + REFRESH_LIFETIME, revoked=False))
        return token

    async def token_refresh(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        """RFC 6749 §6, service scope only; the refresh token rotates on every use."""
        token = form.get("refresh_token")
        if not token:
            raise invalid_request("Missing parameter refresh_token")
        if form.get("scope") not in (None, "", "service"):
            raise ProtocolError("invalid_scope", "Refresh tokens grant the service scope only")
        t = schema.refresh_tokens
        async with self._rt.engine.begin() as conn:
            res = await conn.execute(update(t).where(
                t.c.token_hash == sha256_hex(token), t.c.revoked.is_(False), t.c.client_id == client.client_id,
                t.c.expires_at > self._rt.clock.now()).values(revoked=True))
            row = (await conn.execute(select(t).where(t.c.token_hash == sha256_hex(token)))).first() if res.rowcount == 1 else None
        if row is None:
            raise ProtocolError("invalid_grant", "Refresh token expired")
        body = await self._tokens.issue(client, row.subject, "service", grant_type="refresh_token")
        body["refresh_token"] = await self._new_refresh(client.client_id, row.subject)
        return body

    async def revoke(self, client: Client, form: Mapping[str, str]) -> None:
        """RFC 7009: refresh tokens, service access tokens and credential tokens (SADs)."""
        token = form.get("token")
        if not token:
            raise invalid_request("Missing parameter token")
        t = schema.refresh_tokens
        async with self._rt.engine.begin() as conn:
            res = await conn.execute(update(t).where(t.c.token_hash == sha256_hex(token), t.c.client_id == client.client_id)
                                     .values(revoked=True))
        if res.rowcount:
            await self._rt.audit.append(AuditEvent("token.revoked", f"client:{client.client_id}", {"type": "refresh_token"}))
            return
        typ = _peek_typ(token)
        if typ == SAD_TYP:
            try:
                claims = self._rt.sam.verify_sad(token)
            except SamError:
                return
            if claims.azp == client.client_id:
                await self._rt.ledger.spend(claims.jti, claims.credential_id, claims.expires_at, AuditEvent(
                    "token.revoked", f"client:{client.client_id}", {"type": "credential", "jti": claims.jti}))
            return
        await self._tokens.revoke(token, client)


def _peek_typ(token: str) -> str | None:
    """The unverified ``typ`` header, only to choose which verifier to run."""
    try:
        h = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4))).get("typ")
    except (ValueError, AttributeError, IndexError):
        return None
