"""OpenID4VP 1.0 verifier (HAIP profile): transactions, signed request objects, the response
endpoint. Evidence verification itself is :mod:`sam.sdjwt`; this module moves the messages.

- Request objects are JWTs (``typ oauth-authz-req+jwt``) signed by the verifier access key in the
  HSM, with ``x5c`` = [access certificate, issuing CA]; ``client_id`` uses the ``x509_hash``
  prefix (HAIP) or ``x509_san_dns``.
- ``direct_post.jwt`` uses an ephemeral ECDH-ES P-256 key per transaction; both A128GCM and
  A256GCM are accepted.
- Every transaction, nonce, response and response_code is single use and expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import timedelta
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import urlencode

from cryptography.hazmat.primitives import serialization
from jwcrypto import jwe, jwk
from jwcrypto.common import JWException

from hsm.jws import sign_compact
from sam.approval import WalletEvidence
from sam.errors import SamError
from sam.ports import AuditEvent
from sam.sdjwt import PresentationRejected, SdJwtVcVerifier, VerifiedPresentation, check_transaction_data

from ..errors import ProtocolError
from ..pki import VERIFIER_LABEL
from ..runtime import Runtime
from .transactions import Transaction, TransactionRepo

PID_VCTS = ["urn:eudi:pid:1", "urn:eu.europa.ec.eudi:pid:1"]
REQUEST_TYP = "oauth-authz-req+jwt"
TXN_LIFETIME = timedelta(minutes=5)
ENC_VALUES = ["A128GCM", "A256GCM"]
MAX_RESPONSE_BYTES = 256 * 1024

Handler = Callable[[Transaction, "VerifiedPresentation | None", WalletEvidence], Awaitable[dict[str, Any]]]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_entry(entry: dict[str, Any]) -> str:
    """A transaction_data entry as sent: base64url of compact JSON. The string is stored and
    hashed as sent, never re-serialised (openid4vp-sdjwt.md §5 pitfalls)."""
    return b64url(json.dumps(entry, separators=(",", ":")).encode())


def pid_dcql(extra_claims: tuple[str, ...] = ()) -> dict[str, Any]:
    base = ["given_name", "family_name", "birthdate", "issuing_country"]
    claims = [{"id": c, "path": [c]} for c in (*base, *extra_claims, "personal_administrative_number", "document_number")]
    return {"credentials": [{
        "id": "pid", "format": "dc+sd-jwt", "meta": {"vct_values": PID_VCTS}, "claims": claims,
        "claim_sets": [[*base, *extra_claims, "personal_administrative_number"], [*base, *extra_claims, "document_number"]],
    }]}


def wallet_error(error: str, description: str, status: int = 400) -> ProtocolError:
    return ProtocolError(error, description, status)


def decrypt_response(compact: str, private_jwk_json: str) -> dict[str, Any]:
    """OpenID4VP §8.3 ``direct_post.jwt``: an unsigned JWE, ECDH-ES with A128GCM or A256GCM,
    whose payload holds the response parameters."""
    if len(compact) > MAX_RESPONSE_BYTES:
        raise wallet_error("invalid_request", "The encrypted response is too large")
    try:
        token = jwe.JWE(algs=["ECDH-ES", *ENC_VALUES])
        token.deserialize(compact, key=jwk.JWK.from_json(private_jwk_json))
        hdr = token.jose_header
        if hdr.get("alg") != "ECDH-ES" or hdr.get("enc") not in ENC_VALUES:
            raise ValueError("algorithm")
        payload = json.loads(token.payload)
    except (JWException, ValueError, TypeError, KeyError):
        raise wallet_error("invalid_request", "The encrypted response could not be decrypted") from None
    if not isinstance(payload, dict):
        raise wallet_error("invalid_request", "The encrypted response is not a JSON object")
    return payload


class VerifierService:
    def __init__(self, rt: Runtime, verifier: SdJwtVcVerifier, *, client_id_prefix: str = "x509_hash") -> None:
        self._rt = rt
        self._sdjwt = verifier
        self.txns = TransactionRepo(rt.engine)
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        leaf = rt.verifier_cert.public_bytes(serialization.Encoding.DER)
        issuing = rt.issuing_cert.public_bytes(serialization.Encoding.DER)
        self._x5c = [base64.b64encode(leaf).decode(), base64.b64encode(issuing).decode()]
        if client_id_prefix == "x509_hash":
            self.client_id = "x509_hash:" + b64url(hashlib.sha256(leaf).digest())
        else:
            from urllib.parse import urlsplit

            self.client_id = "x509_san_dns:" + (urlsplit(rt.settings.public_url).hostname or "localhost")

    def on(self, purpose: str, handler: Handler, *, verify: bool = True) -> None:
        """Register what a verified response does; ``verify=False`` hands the raw evidence on
        (the SAM verifies signature approvals itself)."""
        self._handlers[purpose] = (handler, verify)

    @property
    def base(self) -> str:
        return self._rt.settings.issuer

    # -- starting a transaction ------------------------------------------------------------------
    async def start(
        self, *, purpose: str, flow: str, response_mode: str, transaction_data: list[dict[str, Any]],
        context: dict[str, Any], dcql: dict[str, Any] | None = None,
    ) -> Transaction:
        if response_mode not in ("direct_post", "direct_post.jwt"):
            raise ProtocolError("invalid_request", "response_mode must be direct_post or direct_post.jwt")
        if flow not in ("same-device", "cross-device"):
            raise ProtocolError("invalid_request", "flow must be same-device or cross-device")
        now = self._rt.clock.now()
        enc = jwk.JWK.generate(kty="EC", crv="P-256", kid=secrets.token_urlsafe(8), alg="ECDH-ES", use="enc") \
            if response_mode == "direct_post.jwt" else None
        t = Transaction(
            id=secrets.token_urlsafe(24), request_id=secrets.token_urlsafe(24), purpose=purpose, flow=flow,
            nonce=secrets.token_urlsafe(32), state=secrets.token_urlsafe(24), client_id=self.client_id,
            response_mode=response_mode, enc_jwk=enc.export_private() if enc else None, dcql=dcql or pid_dcql(),
            transaction_data=[encode_entry(e) for e in transaction_data], context=context, status="created",
            response_code=None, result=None, created_at=now, expires_at=now + TXN_LIFETIME,
        )
        await self.txns.create(t)
        return t

    def invocation_uri(self, t: Transaction, *, request_uri_method: str = "post") -> str:
        q = {"client_id": t.client_id, "request_uri": f"{self.base}/oid4vp/request/{t.request_id}"}
        if request_uri_method == "post":
            q["request_uri_method"] = "post"
        return "openid4vp://?" + urlencode(q)

    # -- the request object ------------------------------------------------------------------------
    async def request_object(self, rid: str, *, wallet_nonce: str | None = None) -> str:
        """OpenID4VP §5 (JAR by reference). Fetching twice returns an equivalent object; once the
        wallet has answered, the request is gone."""
        t = await self.txns.by_request_id(rid)
        now = self._rt.clock.now()
        if t is None or t.status not in ("created", "fetched") or t.expired(now):
            raise ProtocolError("invalid_request", "Unknown, answered or expired request", 404)
        if wallet_nonce is not None and (not wallet_nonce or len(wallet_nonce) > 256):
            raise ProtocolError("invalid_request", "Invalid wallet_nonce")
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "aud": "https://self-issued.me/v2", "iat": iat, "exp": int(t.expires_at.timestamp()),
            "client_id": t.client_id, "response_type": "vp_token", "response_mode": t.response_mode,
            "response_uri": f"{self.base}/oid4vp/response/{t.request_id}", "nonce": t.nonce, "state": t.state,
            "dcql_query": t.dcql, "client_metadata": self._client_metadata(t),
        }
        if t.transaction_data:
            claims["transaction_data"] = t.transaction_data
        if wallet_nonce is not None:
            claims["wallet_nonce"] = wallet_nonce
        header = {"typ": REQUEST_TYP, "x5c": self._x5c}
        token = await sign_compact(self._rt.keys, VERIFIER_LABEL, self._rt.verifier_key_type, header, claims)
        await self.txns.mark_fetched(rid)
        return token

    def _client_metadata(self, t: Transaction) -> dict[str, Any]:
        md: dict[str, Any] = {"vp_formats_supported": {"dc+sd-jwt": {
            "sd-jwt_alg_values": ["ES256", "ES384"], "kb-jwt_alg_values": ["ES256", "ES384"]}}}
        if t.enc_jwk:
            pub = jwk.JWK.from_json(t.enc_jwk).export_public(as_dict=True)
            md["jwks"] = {"keys": [pub]}
            md["encrypted_response_enc_values_supported"] = ENC_VALUES
        return md

    # -- the response endpoint ---------------------------------------------------------------------
    async def receive(self, rid: str, form: Mapping[str, str]) -> dict[str, Any]:
        """OpenID4VP §8.2 response_uri. Returns the JSON body for the wallet."""
        t = await self.txns.by_request_id(rid)
        if t is None:
            raise wallet_error("invalid_request", "Unknown request", 404)
        if not await self.txns.claim_for_response(rid, self._rt.clock.now()):
            raise wallet_error("invalid_request", "This request was already answered or has expired")
        try:
            body = await self._process(t, form)
        except ProtocolError as e:
            await self._fail(t, e.error, e.description)
            raise
        except SamError as e:
            await self._fail(t, e.error, f"{e.description} ({e.reason})")
            raise
        except BaseException:
            await self._fail(t, "server_error", "The response could not be processed")
            raise
        return body

    async def _fail(self, t: Transaction, error: str, description: str) -> None:
        await self.txns.finish(t.request_id, "failed", {"error": error, "error_description": description})
        await self._rt.audit.append(AuditEvent(f"{t.purpose}.refused", "wallet", {
            "transaction": t.id, "error": error, "reason": description}))

    def _decrypt(self, t: Transaction, form: Mapping[str, str]) -> dict[str, Any]:
        if t.response_mode == "direct_post.jwt":
            if "response" not in form:
                raise wallet_error("invalid_request", "An encrypted response (direct_post.jwt) was requested")
            if set(form) - {"response"}:
                raise wallet_error("invalid_request", "Unexpected parameters beside the encrypted response")
            assert t.enc_jwk is not None
            return decrypt_response(form["response"], t.enc_jwk)
        if "response" in form:
            raise wallet_error("invalid_request", "An unencrypted response (direct_post) was requested")
        return dict(form)

    async def _process(self, t: Transaction, form: Mapping[str, str]) -> dict[str, Any]:
        params = self._decrypt(t, form)
        if "error" in params:
            desc = str(params.get("error_description", ""))[:200]
            await self._fail(t, "access_denied", f"wallet answered {str(params['error'])[:64]}: {desc}")
            return {}
        if not hmac.compare_digest(str(params.get("state", "")).encode(), t.state.encode()):
            raise wallet_error("invalid_request", "state does not match the request")
        presentation = self._pid_presentation(params.get("vp_token"))
        handler, verify_here = self._handlers[t.purpose]
        verified = None
        if verify_here:  # authentication and enrollment; signature approvals are verified by the SAM itself
            verified = await self._sdjwt.verify(presentation, audience=t.client_id, nonce=t.nonce)
            if t.transaction_data:
                check_transaction_data(verified.kb, t.transaction_data, t.transaction_data)
        evidence = await self._store_evidence(t, presentation)
        result = await handler(t, verified, evidence)
        code = secrets.token_urlsafe(24) if t.flow == "same-device" else None
        await self.txns.finish(t.request_id, "done", result, response_code=code)
        if code:
            done = "oauth2/authorize/done" if t.purpose in ("authorize", "login") else "enroll/done"
            return {"redirect_uri": f"{self.base}/{done}?response_code={code}"}
        return {}

    @staticmethod
    def _pid_presentation(vp_token: Any) -> str:
        if isinstance(vp_token, str):
            try:
                vp_token = json.loads(vp_token)
            except ValueError:
                raise wallet_error("invalid_request", "vp_token is not JSON") from None
        if not isinstance(vp_token, dict) or set(vp_token) != {"pid"}:
            raise wallet_error("invalid_request", "vp_token must answer exactly the DCQL query 'pid'")
        items = vp_token["pid"]
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], str):
            raise wallet_error("invalid_request", "vp_token.pid must hold exactly one presentation")
        return items[0]

    async def _store_evidence(self, t: Transaction, presentation: str) -> WalletEvidence:
        """Keep what a later offline check needs: the presentation, the exact transaction data,
        the nonce and client_id it was bound to, the DCQL ids and when it arrived."""
        received = self._rt.clock.now()
        data = {"kind": "openid4vp", "presentation": presentation, "transaction_data": t.transaction_data,
                "nonce": t.nonce, "client_id": t.client_id, "purpose": t.purpose,
                "dcql_ids": [c["id"] for c in t.dcql.get("credentials", [])], "received_at": received.isoformat()}
        eid = await self._rt.evidence.store(data)
        return WalletEvidence(eid, presentation, tuple(t.transaction_data), t.nonce, t.client_id,
                              tuple(data["dcql_ids"]), received)

    async def status(self, tid: str) -> dict[str, Any]:
        t = await self.txns.by_id(tid)
        if t is None:
            raise ProtocolError("invalid_request", "Unknown transaction", 404)
        if t.status in ("created", "fetched", "responding"):
            state = "expired" if t.expired(self._rt.clock.now()) else "pending"
            return {"status": state}
        return {"status": t.status, "result": t.result}


__all__ = ["PresentationRejected", "VerifierService", "encode_entry", "pid_dcql"]
