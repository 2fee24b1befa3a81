"""A signature creation application (SCA) for rqes: OAuth2 with PAR and PKCE, CSC API v2, and
pyHanko's CSC signer driven through the reference wallet.

The protocol steps are separate coroutines so that a caller can stop or inspect between them::

    meta   = await rqes.discover()                              # RFC 8414
    pushed = await rqes.par(scope="credential", ...)            # RFC 9126 + RFC 7636 + RFC 9396
    code   = await rqes.authorize_with_wallet(pushed, wallet)   # authorize → openid4vp:// → status → code
    tokens = await rqes.token(code, pushed)                     # RFC 6749 §4.1.3

``service_login`` runs them with ``scope=service``; ``authorize_credential`` with ``scope=credential``
and ``authorization_details`` naming the document digests (CSC API v2 §8.4.2). With
``scope=credential`` the access token *is* the SAD (CSC API v2 §3.2, oauth2code mode): it goes to
``signatures/signHash`` as the Bearer token.

:class:`WalletAuthorizationManager` and :class:`RqesCSCSigner` plug that into pyHanko's
``CSCSigner``: one wallet approval per signing batch, bound to exactly that batch's hashes.

The wallet is synchronous (httpx.Client); its approval runs in a worker thread so that the event
loop, which pyHanko's signer shares, never blocks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from io import BytesIO
from typing import Any, Sequence
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import aiohttp
import httpx
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import csc_signer
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from .errors import AccessDenied, WalletError
from .holder import (Confirm, Outcome, Wallet, build_presentation, match_credentials, resolve, respond,
                     respond_error)

DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"
HTTP_TIMEOUT = 30.0
APPROVAL_TIMEOUT = 120.0  # seconds from GET authorize until the status endpoint reports done
POLL_INTERVAL = 0.5
CREDENTIAL_TYPE = "credential"  # CSC API v2.0.0.2 §8.4.2; the 2025 URI form is also accepted by rqes
CREDENTIAL_TYPE_2025 = "https://cloudsignatureconsortium.org/2025/credential"
SHA256_OID = "2.16.840.1.101.3.4.2.1"
HASH_OIDS = {"sha256": SHA256_OID, "sha384": "2.16.840.1.101.3.4.2.2", "sha512": "2.16.840.1.101.3.4.2.3"}
DIGEST_SIZES = {SHA256_OID: 32, "2.16.840.1.101.3.4.2.2": 48, "2.16.840.1.101.3.4.2.3": 64}
SIGNATURE_FIELD = "Signature1"


class ClientError(WalletError):
    """The signature creation application could not complete a step."""

    error = "client_error"


class OAuthError(ClientError):
    """An OAuth2 or CSC error answer (RFC 6749 §5.2, CSC API v2 §10): ``error`` is the server's code."""

    def __init__(self, where: str, error: str, description: str | None = None, *, status_code: int | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{where}: {description or '(no error_description)'}"
                         + (f" (HTTP {status_code})" if status_code else ""))
        self.error = error
        self.status_code = status_code
        self.body = body


# -- pure parts ---------------------------------------------------------------------------------

def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair(verifier: str | None = None) -> tuple[str, str]:
    """RFC 7636 §4.1-§4.2: a high-entropy ``code_verifier`` (43 characters from 32 random bytes)
    and its S256 ``code_challenge`` = BASE64URL(SHA256(ASCII(code_verifier)))."""
    verifier = verifier or _b64u(secrets.token_bytes(32))
    if not 43 <= len(verifier) <= 128 or any(c not in _PKCE_CHARS for c in verifier):
        raise ClientError("code_verifier must be 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)")
    return verifier, _b64u(hashlib.sha256(verifier.encode("ascii")).digest())


_PKCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _std_b64_digest(value: str | bytes, size: int, index: int) -> str:
    """A digest as standard base64 with padding; base64url or unpadded input is normalised."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        text = value.strip().replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as e:
            raise ClientError(f"hashes[{index}] is not base64: {value!r}") from e
    if len(raw) != size:
        raise ClientError(f"hashes[{index}] has {len(raw)} bytes, the hash algorithm gives {size}")
    return base64.b64encode(raw).decode("ascii")


def credential_authorization_details(credential_id: str, hashes: Sequence[str | bytes], *,
                                     hash_algorithm_oid: str = SHA256_OID,
                                     labels: Sequence[str] | None = None,
                                     type_: str = CREDENTIAL_TYPE) -> list[dict[str, Any]]:
    """RFC 9396 ``authorization_details`` of CSC type ``credential`` (CSC API v2 §8.4.2): the
    credential, one ``documentDigests`` entry per hash (standard base64), the hash algorithm and
    ``numSignatures`` = the number of digests."""
    if not credential_id:
        raise ClientError("credentialID is required")
    if not hashes:
        raise ClientError("at least one document digest is required")
    size = DIGEST_SIZES.get(hash_algorithm_oid)
    if size is None:
        raise ClientError(f"unsupported hashAlgorithmOID {hash_algorithm_oid}")
    if labels is not None and len(labels) != len(hashes):
        raise ClientError(f"{len(labels)} labels for {len(hashes)} hashes")
    names = list(labels) if labels is not None else [
        "Document" if len(hashes) == 1 else f"Document {i}" for i in range(1, len(hashes) + 1)]
    digests = [{"hash": _std_b64_digest(h, size, i), "label": names[i]} for i, h in enumerate(hashes)]
    return [{"type": type_, "credentialID": credential_id, "documentDigests": digests,
             "hashAlgorithmOID": hash_algorithm_oid, "numSignatures": len(digests)}]


def parse_redirect(redirect_to: str, *, state: str, redirect_uri: str | None = None,
                   issuer: str | None = None) -> str:
    """RFC 6749 §4.1.2 / §4.1.2.1: the authorization response at the client's ``redirect_uri``.
    Returns ``code`` after checking ``state`` (RFC 6749 §10.12) and, when present, ``iss``
    (RFC 9207); an error response is raised as :class:`OAuthError`."""
    parts = urlsplit(redirect_to)
    if redirect_uri is not None:
        want = urlsplit(redirect_uri)
        if (parts.scheme, parts.netloc, parts.path) != (want.scheme, want.netloc, want.path):
            raise ClientError(f"the authorization response went to {redirect_to.split('?')[0]}, "
                              f"not to our redirect_uri {redirect_uri}")
    q = parse_qs(parts.query, keep_blank_values=True)
    for name, values in q.items():
        if len(values) > 1:
            raise ClientError(f"the authorization response repeats {name}")
    get = lambda name: q[name][0] if name in q else None  # noqa: E731
    got_state = get("state")
    if got_state is None or not hmac.compare_digest(got_state.encode(), state.encode()):
        raise ClientError("the authorization response carries another state than the one we sent (RFC 6749 §10.12)")
    if issuer is not None and get("iss") is not None and get("iss") != issuer:
        raise ClientError(f"the authorization response comes from issuer {get('iss')!r}, expected {issuer!r} "
                          "(RFC 9207)")
    if get("error"):
        raise OAuthError("authorization", get("error") or "", get("error_description"))
    code = get("code")
    if not code:
        raise ClientError("the authorization response has no code")
    return code


def _error_of(where: str, r: httpx.Response) -> OAuthError:
    try:
        body = r.json()
    except ValueError:
        body = r.text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return OAuthError(where, body["error"], body.get("error_description"), status_code=r.status_code, body=body)
    return OAuthError(where, "server_error", f"unexpected answer {str(body)[:200]!r}", status_code=r.status_code,
                      body=body)


def wallet_approve(uri: str, wallet: Wallet, *, trust_anchors: list[x509.Certificate] | None = None,
                   confirm: Confirm | None = None) -> Outcome:
    """:func:`wallet.holder.approve` for a wallet on another device than the client: the same
    steps, but a ``redirect_uri`` from the response endpoint is not followed. It belongs to the
    user agent that started the authorization (its session cookie redeems the response_code); this
    client learns the outcome from the status endpoint instead."""
    with httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
        try:
            request = resolve(uri, http=http, trust_anchors=trust_anchors)
            matches = match_credentials(wallet, request)
            if confirm is not None and not confirm(request, matches):
                raise AccessDenied("declined by the user", request=request)
        except WalletError as e:
            if e.request is not None:
                respond_error(e.request, e.error, e.description, http=http)
            raise
        return respond(build_presentation(wallet, request, matches=matches), http=http, follow_redirect=False)


# -- data ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerMetadata:
    """RFC 8414 §2 authorization server metadata (the members this client uses)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    pushed_authorization_request_endpoint: str
    revocation_endpoint: str | None
    raw: dict[str, Any]


@dataclass(frozen=True)
class PushedRequest:
    """What PAR returned, plus the secrets the client keeps for the token request."""

    request_uri: str
    expires_in: int
    state: str
    code_verifier: str
    scope: str
    authorization_details: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Tokens:
    """RFC 6749 §5.1 token response; for ``scope=credential`` the access token is the SAD."""

    access_token: str
    token_type: str
    expires_at: datetime
    scope: str | None
    credential_id: str | None
    authorization_details: list[dict[str, Any]] | None
    refresh_token: str | None
    raw: dict[str, Any] = field(repr=False)


# -- the client ----------------------------------------------------------------------------------

class RqesClient:
    """An OAuth2 client of one rqes server (confidential with ``client_secret``, public without).

    ``http`` is an ``httpx.AsyncClient`` the caller owns; the wallet approval uses its own
    synchronous client in a worker thread."""

    def __init__(self, server: str, client_id: str, *, http: httpx.AsyncClient, client_secret: str | None = None,
                 redirect_uri: str = DEFAULT_REDIRECT_URI, approval_timeout: float = APPROVAL_TIMEOUT) -> None:
        self.server = server.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.http = http
        self.approval_timeout = approval_timeout
        self._meta: ServerMetadata | None = None

    # RFC 6749 §2.3.1: the id and secret are form-urlencoded before HTTP Basic.
    def _client_auth(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        form = {**form, "client_id": self.client_id}
        if self.client_secret is None:
            return form, {}
        basic = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
        return form, {"Authorization": "Basic " + base64.b64encode(basic.encode()).decode("ascii")}

    async def discover(self) -> ServerMetadata:
        """RFC 8414 §3: GET /.well-known/oauth-authorization-server; ``issuer`` must be the server
        we were told to use (§3.3)."""
        if self._meta is not None:
            return self._meta
        url = f"{self.server}/.well-known/oauth-authorization-server"
        try:
            r = await self.http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach {url}: {e}") from e
        if r.status_code != 200:
            raise _error_of("authorization server metadata", r)
        try:
            raw = r.json()
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise ClientError(f"{url} did not answer JSON metadata: {e}") from e
        missing = [k for k in ("issuer", "authorization_endpoint", "token_endpoint",
                               "pushed_authorization_request_endpoint") if not isinstance(raw.get(k), str)]
        if missing:
            raise ClientError(f"authorization server metadata lacks {', '.join(missing)}")
        if raw["issuer"].rstrip("/") != self.server:
            raise ClientError(f"authorization server metadata names issuer {raw['issuer']!r}, not {self.server!r} "
                              "(RFC 8414 §3.3)")
        self._meta = ServerMetadata(raw["issuer"], raw["authorization_endpoint"], raw["token_endpoint"],
                                    raw["pushed_authorization_request_endpoint"], raw.get("revocation_endpoint"), raw)
        return self._meta

    async def par(self, *, scope: str, authorization_details: list[dict[str, Any]] | None = None) -> PushedRequest:
        """RFC 9126 §2: push the authorization request (PKCE S256, fresh state) and get a
        ``request_uri``."""
        meta = await self.discover()
        verifier, challenge = pkce_pair()
        state = _b64u(secrets.token_bytes(16))
        form = {"response_type": "code", "redirect_uri": self.redirect_uri, "code_challenge": challenge,
                "code_challenge_method": "S256", "state": state, "scope": scope}
        if authorization_details is not None:
            form["authorization_details"] = json.dumps(authorization_details, separators=(",", ":"))
        form, headers = self._client_auth(form)
        try:
            r = await self.http.post(meta.pushed_authorization_request_endpoint, data=form, headers=headers)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach the PAR endpoint: {e}") from e
        if r.status_code not in (200, 201):
            raise _error_of("pushed authorization request", r)
        body = r.json()
        if not isinstance(body, dict) or not isinstance(body.get("request_uri"), str):
            raise ClientError(f"the PAR endpoint answered without request_uri: {str(body)[:200]}")
        return PushedRequest(body["request_uri"], int(body.get("expires_in", 60)), state, verifier, scope,
                             authorization_details)

    async def start_authorization(self, pushed: PushedRequest) -> dict[str, Any]:
        """GET authorize with only ``client_id`` and ``request_uri`` (RFC 9126 §4), asking for JSON:
        ``{transaction_id, uri: openid4vp://..., status_url}``. An immediate error redirect
        (RFC 6749 §4.1.2.1) is raised."""
        meta = await self.discover()
        try:
            r = await self.http.get(meta.authorization_endpoint,
                                    params={"client_id": self.client_id, "request_uri": pushed.request_uri},
                                    headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach the authorization endpoint: {e}") from e
        if r.is_redirect and "location" in r.headers:
            location = urljoin(str(r.url), r.headers["location"])
            parse_redirect(location, state=pushed.state, redirect_uri=self.redirect_uri, issuer=meta.issuer)
            raise ClientError("the authorization endpoint redirected without asking the wallet")
        if r.status_code != 200:
            raise _error_of("authorization", r)
        try:
            body = r.json()
        except ValueError:
            raise ClientError(f"the authorization endpoint answered {r.headers.get('content-type')!r}, "
                              "not JSON, to Accept: application/json") from None
        if not isinstance(body, dict) or not isinstance(body.get("uri"), str) or not isinstance(
                body.get("status_url"), str):
            raise ClientError(f"the authorization endpoint answered without uri and status_url: {str(body)[:200]}")
        body["status_url"] = urljoin(self.server + "/", body["status_url"])
        return body

    async def wait_for_code(self, pushed: PushedRequest, status_url: str, deadline: float) -> str:
        """Poll the transaction until rqes reports where it redirects (bounded by ``deadline``,
        a ``time.monotonic()`` value)."""
        meta = await self.discover()
        while True:
            try:
                r = await self.http.get(status_url, headers={"Accept": "application/json"})
            except httpx.HTTPError as e:
                raise ClientError(f"cannot poll {status_url}: {e}") from e
            if r.status_code != 200:
                raise _error_of("authorization status", r)
            st = r.json()
            status = st.get("status") if isinstance(st, dict) else None
            if status == "done":
                redirect_to = st.get("redirect_to")
                if not isinstance(redirect_to, str):
                    raise ClientError(f"the authorization is done but names no redirect_to: {str(st)[:200]}")
                return parse_redirect(redirect_to, state=pushed.state, redirect_uri=self.redirect_uri,
                                      issuer=meta.issuer)
            if status in ("failed", "expired", "error"):
                result = st.get("result") if isinstance(st.get("result"), dict) else {}
                raise OAuthError("authorization", str(result.get("error") or "access_denied"),
                                 result.get("error_description") or f"the authorization {status}")
            if time.monotonic() >= deadline:
                raise ClientError(f"the wallet approval did not complete within {self.approval_timeout:.0f} s "
                                  f"(last status {status!r})")
            await asyncio.sleep(POLL_INTERVAL)

    async def authorize_with_wallet(self, pushed: PushedRequest, wallet: Wallet, *,
                                    trust_anchors: list[x509.Certificate] | None = None,
                                    confirm: Confirm | None = None) -> str:
        """Authorize → the wallet answers the ``openid4vp://`` request → poll the status → code."""
        deadline = time.monotonic() + self.approval_timeout
        started = await self.start_authorization(pushed)
        try:
            outcome: Outcome = await asyncio.wait_for(
                asyncio.to_thread(wallet_approve, started["uri"], wallet, trust_anchors=trust_anchors,
                                  confirm=confirm),
                timeout=max(1.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise ClientError(f"the wallet did not answer within {self.approval_timeout:.0f} s") from None
        if not 200 <= outcome.status_code < 300:
            body = outcome.body if isinstance(outcome.body, dict) else {}
            raise OAuthError("wallet response", str(body.get("error") or "access_denied"),
                             body.get("error_description") or f"the verifier refused the presentation: "
                                                               f"{str(outcome.body)[:200]}",
                             status_code=outcome.status_code, body=outcome.body)
        return await self.wait_for_code(pushed, started["status_url"], deadline)

    async def token(self, code: str, pushed: PushedRequest) -> Tokens:
        """RFC 6749 §4.1.3 with the RFC 7636 §4.5 ``code_verifier``."""
        meta = await self.discover()
        form, headers = self._client_auth({"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": self.redirect_uri, "code_verifier": pushed.code_verifier})
        try:
            r = await self.http.post(meta.token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach the token endpoint: {e}") from e
        if r.status_code != 200:
            raise _error_of("token", r)
        body = r.json()
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise ClientError(f"the token endpoint answered without access_token: {str(body)[:200]}")
        if str(body.get("token_type", "")).lower() != "bearer":
            raise ClientError(f"unsupported token_type {body.get('token_type')!r}")
        expires_in = int(body.get("expires_in", 3600))
        details = body.get("authorization_details")
        return Tokens(body["access_token"], body["token_type"],
                      datetime.now(timezone.utc) + timedelta(seconds=expires_in), body.get("scope"),
                      body.get("credentialID"), details if isinstance(details, list) else None,
                      body.get("refresh_token"), body)

    async def service_login(self, wallet: Wallet, *, trust_anchors: list[x509.Certificate] | None = None,
                            confirm: Confirm | None = None) -> Tokens:
        """CSC API v2 §3.1 service authorization through the wallet (the signer presents the PID;
        rqes enrolls a new signer on first contact)."""
        pushed = await self.par(scope="service")
        code = await self.authorize_with_wallet(pushed, wallet, trust_anchors=trust_anchors, confirm=confirm)
        return await self.token(code, pushed)

    async def authorize_credential(self, wallet: Wallet, credential_id: str, hashes: Sequence[str], *,
                                   hash_algorithm_oid: str = SHA256_OID, labels: Sequence[str] | None = None,
                                   trust_anchors: list[x509.Certificate] | None = None,
                                   confirm: Confirm | None = None) -> Tokens:
        """CSC API v2 §3.2 oauth2code: the credential token (= SAD) for exactly these hashes."""
        details = credential_authorization_details(credential_id, hashes, hash_algorithm_oid=hash_algorithm_oid,
                                                   labels=labels)
        pushed = await self.par(scope="credential", authorization_details=details)
        code = await self.authorize_with_wallet(pushed, wallet, trust_anchors=trust_anchors, confirm=confirm)
        tokens = await self.token(code, pushed)
        if tokens.credential_id is not None and tokens.credential_id != credential_id:
            raise ClientError(f"the credential token is for {tokens.credential_id}, not {credential_id}")
        return tokens

    async def csc(self, method: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        """POST /csc/v2/<method> with a Bearer token."""
        url = f"{self.server}/csc/v2/{method}"
        try:
            r = await self.http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach {url}: {e}") from e
        if r.status_code != 200:
            raise _error_of(method, r)
        out = r.json()
        if not isinstance(out, dict):
            raise ClientError(f"{method} answered {str(out)[:200]}")
        return out

    async def list_credentials(self, service_token: str) -> dict[str, Any]:
        """CSC API v2 §11.4 credentials/list with the signer's certificates."""
        return await self.csc("credentials/list", {"credentialInfo": True, "certificates": "chain", "certInfo": True},
                              service_token)

    async def root_ca(self) -> list[x509.Certificate]:
        """The embedded root CA at /pki/root.pem (fetched over the same channel: trust on first use)."""
        url = f"{self.server}/pki/root.pem"
        try:
            r = await self.http.get(url)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach {url}: {e}") from e
        if r.status_code != 200:
            raise ClientError(f"{url} answered HTTP {r.status_code}")
        try:
            return x509.load_pem_x509_certificates(r.content)
        except ValueError as e:
            raise ClientError(f"{url} is not a PEM certificate: {e}") from e


def choose_credential(listing: dict[str, Any], wanted: str | None = None) -> str:
    """Pick ``wanted`` (which must be listed) or the first enabled credential with a valid
    certificate from a credentials/list answer."""
    ids = listing.get("credentialIDs")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ClientError(f"credentials/list answered without credentialIDs: {str(listing)[:200]}")
    if wanted is not None:
        if wanted not in ids:
            raise ClientError(f"credential {wanted} is not one of this signer's ({', '.join(ids) or 'none'})")
        return wanted
    infos = listing.get("credentialInfos")
    if isinstance(infos, list):
        for info in infos:
            if not isinstance(info, dict):
                continue
            key_ok = (info.get("key") or {}).get("status", "enabled") == "enabled"
            cert_ok = (info.get("cert") or {}).get("status", "valid") == "valid"
            if key_ok and cert_ok and info.get("credentialID") in ids:
                return info["credentialID"]
    if not ids:
        raise ClientError("this signer has no credential")
    return ids[0]


# -- pyHanko -------------------------------------------------------------------------------------

class WalletAuthorizationManager(csc_signer.CSCAuthorizationManager):
    """pyHanko's authorization hook for oauth2code: per batch, PAR with ``scope=credential`` and
    the batch's hashes as ``documentDigests``, wallet approval, token. The credential token is the
    SAD; :attr:`auth_headers` sends it as the Bearer token of the signHash call that follows.

    pyHanko reads ``auth_manager.auth_headers`` right after ``format_csc_signing_req`` returns,
    with no ``await`` in between, so the header always carries the token of its own batch."""

    def __init__(self, session_info: csc_signer.CSCServiceSessionInfo, credential_info: csc_signer.CSCCredentialInfo,
                 *, rqes: RqesClient, wallet: Wallet, md_algorithm: str = "sha256", label: str = "Document",
                 trust_anchors: list[x509.Certificate] | None = None, confirm: Confirm | None = None) -> None:
        super().__init__(session_info, credential_info)
        if md_algorithm not in HASH_OIDS:
            raise ClientError(f"unsupported digest algorithm {md_algorithm}")
        self.rqes, self.wallet, self.label = rqes, wallet, label
        self.hash_oid = HASH_OIDS[md_algorithm]
        self.trust_anchors, self.confirm = trust_anchors, confirm
        self.tokens: list[Tokens] = []
        self._current: str | None = None

    async def authorize_signature(self, hash_b64s: list[str]) -> csc_signer.CSCAuthorizationInfo:
        labels = [self.label] if len(hash_b64s) == 1 else [f"{self.label} ({i})" for i in range(1, len(hash_b64s) + 1)]
        tokens = await self.rqes.authorize_credential(
            self.wallet, self.csc_session_info.credential_id, hash_b64s, hash_algorithm_oid=self.hash_oid,
            labels=labels, trust_anchors=self.trust_anchors, confirm=self.confirm)
        self.tokens.append(tokens)
        self._current = tokens.access_token
        return csc_signer.CSCAuthorizationInfo(sad=tokens.access_token, expires_at=tokens.expires_at)

    @property
    def auth_headers(self) -> dict[str, str]:
        if self._current is None:
            return self.csc_session_info.auth_headers
        return {"Authorization": f"Bearer {self._current}"}


class RqesCSCSigner(csc_signer.CSCSigner):
    """pyHanko's CSCSigner with CSC v2 signHash names (``hashes``, ``hashAlgorithmOID``) and the
    credential token as the Bearer token instead of a ``SAD`` member (CSC API v2 §3.2 (a))."""

    async def format_csc_signing_req(self, tbs_hashes: list[str], digest_algorithm: str) -> dict:
        req = await super().format_csc_signing_req(tbs_hashes, digest_algorithm)
        req["hashes"] = req.pop("hash")
        req["hashAlgorithmOID"] = req.pop("hashAlgo")
        req.pop("SAD", None)
        return req


class _ExplainingSession:
    """An aiohttp session proxy that keeps the error body of a refused CSC call in the exception
    (pyHanko posts with ``raise_for_status=True``, which drops it)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @staticmethod
    async def _raise_with_body(resp: aiohttp.ClientResponse) -> None:
        if resp.ok:
            return
        try:
            text = (await resp.text())[:300]
        except (aiohttp.ClientError, UnicodeDecodeError):
            text = ""
        raise aiohttp.ClientResponseError(resp.request_info, resp.history, status=resp.status,
                                          message=f"{resp.reason}: {text}" if text else str(resp.reason),
                                          headers=resp.headers)

    def post(self, url: str, *, raise_for_status: Any = None, **kw: Any) -> Any:
        if raise_for_status is True:
            raise_for_status = self._raise_with_body
        return self._session.post(url, raise_for_status=raise_for_status, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _explain(e: BaseException) -> str:
    parts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts.append(f"HTTP {e.status} {e.message}" if isinstance(e, aiohttp.ClientResponseError) else str(e))
        e = e.__cause__ or e.__context__
    return ": ".join(p for p in parts if p)


def check_pdf(pdf: bytes, *, field_name: str = SIGNATURE_FIELD) -> None:
    """Fail before any network step if the input cannot take the signature."""
    try:
        reader = PdfFileReader(BytesIO(pdf))
        signed = [s.field_name for s in reader.embedded_signatures]
    except (PdfError, ValueError, KeyError, TypeError) as e:
        raise ClientError(f"not a readable PDF: {e}") from e
    if field_name in signed:
        raise ClientError(f"the PDF already has a signed field {field_name}")


async def sign_pdf(rqes: RqesClient, wallet: Wallet, pdf: bytes, *, credential_id: str, service_token: str,
                   label: str, trust_anchors: list[x509.Certificate] | None = None, confirm: Confirm | None = None,
                   field_name: str = SIGNATURE_FIELD, md_algorithm: str = "sha256") -> tuple[bytes, list[Tokens]]:
    """PAdES B-B through rqes: credentials/info with the service token, then pyHanko's signer with
    a wallet approval of the document digest."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as raw_session:
        session: Any = _ExplainingSession(raw_session)
        info = csc_signer.CSCServiceSessionInfo(rqes.server, credential_id, oauth_token=service_token, api_ver="v2")
        try:
            cred = await csc_signer.fetch_certs_in_csc_credential(session, info)
        except SigningError as e:
            raise ClientError(f"credentials/info: {_explain(e)}") from e
        auth = WalletAuthorizationManager(info, cred, rqes=rqes, wallet=wallet, md_algorithm=md_algorithm,
                                          label=label, trust_anchors=trust_anchors, confirm=confirm)
        signer = RqesCSCSigner(session, auth, sign_timeout=int(HTTP_TIMEOUT))
        meta = signers.PdfSignatureMetadata(field_name=field_name, md_algorithm=md_algorithm,
                                            subfilter=fields.SigSeedSubFilter.PADES)
        try:
            out = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), meta, signer=signer)
        except SigningError as e:
            raise ClientError(f"signing: {_explain(e)}") from e
    return out.getvalue(), auth.tokens


@dataclass(frozen=True)
class ValidationSummary:
    field: str
    intact: bool
    valid: bool
    trusted: bool
    signer: str
    md_algorithm: str
    signature_mechanism: str
    coverage: str
    report: str

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "intact": self.intact, "valid": self.valid, "trusted": self.trusted,
                "signer": self.signer, "md_algorithm": self.md_algorithm,
                "signature_mechanism": self.signature_mechanism, "coverage": self.coverage}


async def validate_pdf(pdf: bytes, roots: list[x509.Certificate], *, field_name: str = SIGNATURE_FIELD
                       ) -> ValidationSummary:
    """pyHanko validation of one signature against the given roots. The demo PKI's CRL/OCSP are
    not fetched: revocation is soft-fail."""
    trust = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in roots]
    vc = ValidationContext(trust_roots=trust, allow_fetching=False, revocation_mode="soft-fail")
    sigs = [s for s in PdfFileReader(BytesIO(pdf)).embedded_signatures if s.field_name == field_name]
    if not sigs:
        raise ClientError(f"the signed PDF has no signature field {field_name}")
    status = await async_validate_pdf_signature(sigs[0], signer_validation_context=vc)
    return ValidationSummary(field_name, bool(status.intact), bool(status.valid), bool(status.trusted),
                             status.signing_cert.subject.human_friendly, str(status.md_algorithm),
                             str(status.pkcs7_signature_mechanism), str(status.coverage.name),
                             status.pretty_print_details())
