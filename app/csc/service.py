"""CSC API v2 (v2.0.0.2) for remote seals: info, credentials/list, credentials/info,
credentials/authorize (explicit, RSSP-managed) and signatures/signHash. Framework-free."""

from __future__ import annotations

import base64
import hmac
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hsm import algorithms_for, all_algorithms
from sam import AuthorizationRequest, SamError, SignRequest
from sam.ports import AuditEvent

from ..errors import ProtocolError, invalid_request
from ..oauth.service import Principal
from ..pki.ca import POLICY_QCP_L_QSCD, POLICY_RQES, QC_COMPLIANCE, QC_SSCD, QC_TYPE
from ..runtime import Runtime
from ..store import StoredCredential
from . import wire

METHODS = ["info", "credentials/list", "credentials/info", "credentials/authorize", "credentials/authorizeCheck",
           "credentials/extendTransaction", "signatures/signHash"]


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def _gtime(dt) -> str:  # noqa: ANN001
    return dt.strftime("%Y%m%d%H%M%SZ")


class CscService:
    def __init__(self, rt: Runtime, verifier: Any = None) -> None:
        self._rt = rt
        self._verifier = verifier
        self._issuing_der = rt.issuing_cert.public_bytes(serialization.Encoding.DER)
        self._root_der = rt.root_cert.public_bytes(serialization.Encoding.DER)

    def info(self, body: dict[str, Any]) -> dict[str, Any]:
        """CSC v2 §11.1 info."""
        s = self._rt.settings
        out: dict[str, Any] = {
            "specs": s.csc_specs,
            "name": s.service_name,
            "logo": f"{s.issuer}/static/logo.svg",  # served by app.routes.logo
            "region": s.region,
            "lang": body.get("lang") if isinstance(body.get("lang"), str) else "en-US",
            "description": "rqes remote qualified signature and seal service (SCAL2, keys in a PKCS#11 HSM)",
            "authType": ["oauth2client", "oauth2code"],
            "oauth2": s.issuer,
            "asynchronousOperationMode": False,
            "methods": METHODS,
            "validationInfo": False,
            "signAlgorithms": {"algos": all_algorithms(), "algoParams": []},
            "signature_formats": {"formats": ["C", "P"], "envelope_properties": [["Detached"], ["Certification", "Revision"]]},
            "conformance_levels": ["Ades-B-B", "Ades-B-T"],
        }
        if s.csc_specs == "2.2.0.0":
            out["supportedHashTypes"] = ["DTBSR"]
            out["supportsRar"] = False
        return out

    async def credentials_list(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """CSC v2 §11.4 credentials/list: the calling client's seal credentials."""
        with_info = wire.opt_bool(body, "credentialInfo")
        certificates = wire.certificates_param(body)
        cert_info = wire.opt_bool(body, "certInfo")
        auth_info = wire.opt_bool(body, "authInfo")
        only_valid = wire.opt_bool(body, "onlyValid")
        if who.is_credential_token:
            raise ProtocolError("invalid_token", "credentials/list needs a service access token", 401,
                                www_authenticate='Bearer realm="rqes", error="invalid_token"')
        creds = await self._rt.credentials.list(who.subject)
        if only_valid:
            now = self._rt.clock.now()
            creds = [c for c in creds if c.status == "enabled" and c.not_after and c.not_before and c.not_before <= now <= c.not_after]
        out: dict[str, Any] = {"credentialIDs": [c.credential_id for c in creds]}
        if with_info:
            out["credentialInfos"] = [
                {"credentialID": c.credential_id, **self._describe(c, certificates, cert_info, auth_info)} for c in creds]
        if only_valid:
            out["onlyValid"] = True
        return out

    async def _own_credential(self, who: Principal, credential_id: str) -> StoredCredential:
        cred = await self._rt.credentials.load(credential_id)
        if cred is None or cred.status == "deleted" or not hmac.compare_digest(cred.owner.encode(), who.subject.encode()):
            raise invalid_request("Invalid parameter credentialID")
        if who.is_credential_token and who.credential_id != credential_id:
            raise invalid_request("Invalid parameter credentialID")
        return cred

    async def credentials_info(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """CSC v2 §11.5 credentials/info."""
        credential_id = wire.req_str(body, "credentialID")
        certificates = wire.certificates_param(body)
        cert_info = wire.opt_bool(body, "certInfo")
        auth_info = wire.opt_bool(body, "authInfo", True)
        cred = await self._own_credential(who, credential_id)
        return self._describe(cred, certificates, cert_info, auth_info)

    def _describe(self, c: StoredCredential, certificates: str, cert_info: bool, auth_info: bool) -> dict[str, Any]:
        key: dict[str, Any] = {
            "status": "enabled" if c.status == "enabled" else "disabled",
            "algo": algorithms_for(c.key_type),
            "len": c.key_type.bits,
        }
        if c.key_type.curve_oid:
            key["curve"] = c.key_type.curve_oid
        cert: dict[str, Any] = {}
        if c.certificate is not None:
            now = self._rt.clock.now()
            cert["status"] = "valid" if c.not_after and now <= c.not_after else "expired"
            if certificates != "none":
                chain = [c.certificate] + ([self._issuing_der, self._root_der] if certificates == "chain" else [])
                cert["certificates"] = [_b64(d) for d in chain]
            if cert_info:
                parsed = x509.load_der_x509_certificate(c.certificate)
                cert.update({
                    "issuerDN": parsed.issuer.rfc4514_string(),
                    "serialNumber": format(parsed.serial_number, "x"),
                    "subjectDN": parsed.subject.rfc4514_string(),
                    "validFrom": _gtime(parsed.not_valid_before_utc),
                    "validTo": _gtime(parsed.not_valid_after_utc),
                })
                if self._rt.settings.csc_specs == "2.2.0.0":
                    cert["qcStatements"] = [QC_COMPLIANCE, QC_SSCD, QC_TYPE]
                    cert["policy"] = [POLICY_QCP_L_QSCD, POLICY_RQES]
        out: dict[str, Any] = {
            "description": c.description or "Qualified electronic seal",
            "signatureQualifier": c.signature_qualifier,
            "key": key,
            "cert": cert,
            "SCAL": "2",
            "multisign": c.multisign,
            "lang": "en-US",
        }
        if auth_info:
            if c.kind == "seal":
                # RSSP-managed seal authorization: explicit mode, no authentication objects (authData: []).
                out["auth"] = {"mode": "explicit", "expression": None, "objects": []}
            else:
                # Signers approve in their wallet: OAuth2 code flow (asynchronous explicit mode also offered).
                out["auth"] = {"mode": "oauth2code", "expression": None, "objects": None}
        return out

    def _parse_authorization(self, body: dict[str, Any]) -> tuple[str, int, list[bytes], str, str | None]:
        credential_id = wire.req_str(body, "credentialID")
        num = wire.req_int(body, "numSignatures")
        hashes = wire.hashes_param(body, self._rt.settings.max_hashes)
        hash_algo = wire.opt_str(body, "hashAlgorithmOID", "hashAlgo")
        if hash_algo is None and "hashes" not in body:
            # CSC v1 authorize (pyHanko's format_csc_auth_request) names no algorithm: SHA-2 by length.
            hash_algo = wire.hash_oid_for_length(hashes)
        if hash_algo is None:
            raise invalid_request("Missing (or invalid type) string parameter hashAlgorithmOID")
        description = wire.opt_str(body, "description")
        if description is not None and len(description) > 500:
            raise invalid_request("Invalid parameter description")
        return credential_id, num, hashes, hash_algo, description

    async def credentials_authorize(self, who: Principal, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """CSC v2 §11.6 credentials/authorize, explicit mode. Seals: RSSP-managed (empty authData),
        answered at once. Signer credentials: the wallet approves asynchronously (202 + handle)."""
        try:
            credential_id, num, hashes, hash_algo, description = self._parse_authorization(body)
            auth_data = body.get("authData", [])
            if auth_data not in (None, []) or body.get("PIN") or body.get("OTP"):
                raise ProtocolError("invalid_authentication_data", "rqes takes no authentication data (authData must be empty)")
            cred = await self._rt.credentials.load(credential_id)
        except ProtocolError as e:
            await self._refusal("authorization.refused", who, body, e)
            raise
        if cred is not None and cred.kind == "signature" and cred.owner == who.subject and cred.status != "deleted":
            return await self._start_wallet_approval(who, credential_id, num, hashes, hash_algo, description), 202
        grant = await self._rt.sam.authorize_seal(who.client_id, AuthorizationRequest(
            credential_id=credential_id, hashes=hashes, hash_algorithm=hash_algo, num_signatures=num, description=description),
            owner=who.subject)
        return {"SAD": grant.sad, "expiresIn": grant.expires_in}, 200

    async def _start_wallet_approval(self, who: Principal, credential_id: str, num: int, hashes: list[bytes],
                                     hash_algo: str, description: str | None) -> dict[str, Any]:
        verifier = self._verifier
        if verifier is None:
            raise ProtocolError("temporarily_unavailable", "Wallet approvals are off: no trusted PID issuer", 503)
        from sam.approval import CredentialAuthorization, approval_entry

        from ..oauth.authorization import b64url

        label = (description or "Document")[:200]
        auth = CredentialAuthorization(who.client_id, credential_id, tuple(hashes), hash_algo, num,
                                       tuple(f"{label} ({i + 1})" if len(hashes) > 1 else label for i in range(len(hashes))))
        legacy = self._rt.settings.qes_approval_type == "qes_authorization"
        ctx = {"client_id": who.client_id, "subject": who.subject, "mode": "async", "credential": {
            "credentialID": credential_id, "hashes": [b64url(h) for h in hashes], "hashAlgorithmOID": hash_algo,
            "numSignatures": num, "labels": list(auth.labels)}}
        t = await verifier.start(purpose="authorize", flow="cross-device", response_mode="direct_post.jwt",
                                 transaction_data=[approval_entry(auth, legacy=legacy)], context=ctx)
        return {"handle": t.id, "approvalURI": verifier.invocation_uri(t),
                "approvalPage": f"{self._rt.settings.issuer}/csc/approve/{t.id}"}

    async def authorize_check(self, who: Principal, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """CSC v2 §11.7 credentials/authorizeCheck: 202 while the wallet has not answered; the SAD
        once (it is handed out a single time)."""
        handle = wire.req_str(body, "handle")
        verifier = self._verifier
        t = await verifier.txns.by_id(handle) if verifier is not None else None
        if (t is None or t.context.get("mode") != "async"
                or not hmac.compare_digest(str(t.context.get("client_id")).encode(), who.client_id.encode())
                or not hmac.compare_digest(str(t.context.get("subject")).encode(), who.subject.encode())):
            raise invalid_request("Invalid parameter handle")
        st = await verifier.status(handle)
        if st["status"] == "pending":
            return {"handle": handle}, 202
        if st["status"] == "expired":
            raise ProtocolError("invalid_authentication_data", "The wallet approval expired")
        if st["status"] == "failed":
            desc = (st.get("result") or {}).get("error_description", "The wallet approval failed")
            raise ProtocolError("invalid_authentication_data", desc)
        result = await verifier.txns.take_result(t.request_id)
        if not result or "SAD" not in result:
            raise invalid_request("Invalid parameter handle")
        return {"SAD": result["SAD"], "expiresIn": result["expiresIn"]}, 200

    async def extend_transaction(self, who: Principal, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """CSC v2 §11.8 credentials/extendTransaction: new hashes under the current, unexpired SAD.
        Seals get a new SAD at once (and the old one is spent); signers approve the new digests in
        the wallet (202 + handle), because SCAL2 binds every digest to the signer's approval."""
        try:
            credential_id, _, hashes, hash_algo, description = self._parse_authorization({**body, "numSignatures": 1})
            sad = wire.req_str(body, "SAD")
        except ProtocolError as e:
            await self._refusal("authorization.refused", who, body, e)
            raise
        grant = await self._rt.sam.extend(sad, who.client_id, AuthorizationRequest(
            credential_id=credential_id, hashes=hashes, hash_algorithm=hash_algo, num_signatures=len(hashes),
            description=description), owner=who.subject)
        if grant is None:
            return await self._start_wallet_approval(who, credential_id, len(hashes), hashes, hash_algo, description), 202
        return {"SAD": grant.sad, "expiresIn": grant.expires_in}, 200

    async def sign_hash(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """CSC v2 §11.9 signatures/signHash (v2 names, and pyHanko's v1 ``hash``/``hashAlgo``)."""
        try:
            credential_id = wire.req_str(body, "credentialID")
            sad = body.get("SAD") if isinstance(body.get("SAD"), str) and body.get("SAD") else who.sad
            if not sad:
                raise invalid_request("Missing (or invalid type) string parameter SAD")
            hashes = wire.hashes_param(body, self._rt.settings.max_hashes)
            hash_algo = wire.opt_str(body, "hashAlgorithmOID", "hashAlgo") or None
            sign_algo = wire.req_str(body, "signAlgo")
            params = wire.b64_param(body, "signAlgoParams")
            mode = body.get("operationMode", "S")
            if mode == "A":
                raise ProtocolError("invalid_request", "Asynchronous operation mode is not implemented", 501)
            if mode not in ("S", None):
                raise invalid_request("Invalid parameter operationMode")
        except ProtocolError as e:
            await self._refusal("signature.refused", who, body, e)
            raise
        signatures = await self._rt.sam.activate(sad, who.client_id, SignRequest(
            credential_id=credential_id, hashes=hashes, hash_algorithm=hash_algo, sign_algo=sign_algo, sign_algo_params=params))
        return {"signatures": [_b64(s) for s in signatures]}

    async def _refusal(self, kind: str, who: Principal, body: dict[str, Any], e: ProtocolError) -> None:
        cid = body.get("credentialID")
        await self._rt.audit.append(AuditEvent(kind, f"client:{who.client_id}", {
            "credentialID": cid[:128] if isinstance(cid, str) else None, "reason": "malformed_request", "error": e.description}))


__all__ = ["CscService", "METHODS", "SamError"]
