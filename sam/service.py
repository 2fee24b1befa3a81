"""The Signature Activation Module: the only code path that activates a credential key.

It trusts nothing ``app/`` says about the signer beyond the authenticated caller. It takes the
authorization evidence and the request, decides, consumes the authorization atomically, writes
the audit record, and only then asks the HSM to sign (EN 419 241-1 SRA_SAP.2.x, sam-hsm.md §4).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

from hsm import HsmError, InvalidDigest, KeyStore, SignScheme, UnsupportedAlgorithm, resolve_scheme
from hsm.jws import b64url
from hsm.mechanisms import Hash, pss_salt_allowed

from .clock import Clock
from .errors import (
    CredentialUnusable,
    HashNotAuthorized,
    InvalidRequest,
    SadInvalid,
    SadReplayed,
    SamError,
    SigningFailed,
)
from .approval import ApprovalRejected, CredentialAuthorization, WalletEvidence, check_approval, find_approval
from .identity import signer_identity
from .ports import AuditEvent, AuditSink, CredentialDirectory, CredentialRecord, EvidenceStore, SadLedger
from .sad import SadClaims, SadSigner, SadVerifier, new_jti

if TYPE_CHECKING:
    from .sdjwt import SdJwtVcVerifier

log = logging.getLogger("rqes.sam")


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """CSC credentials/authorize (explicit, RSSP-managed): exactly what is to be signed."""

    credential_id: str
    hashes: list[bytes]
    hash_algorithm: str
    num_signatures: int
    description: str | None = None


@dataclass(frozen=True, slots=True)
class SignRequest:
    """CSC signatures/signHash, decoded: the SAM checks every field against the SAD."""

    credential_id: str
    hashes: list[bytes]
    hash_algorithm: str | None
    sign_algo: str
    sign_algo_params: bytes | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    sad: str
    expires_in: int
    claims: SadClaims


def seal_owner(client_id: str) -> str:
    return f"client:{client_id}"


def _same(a: str, b: str) -> bool:
    """Constant-time string equality; ``hmac.compare_digest`` raises TypeError on non-ASCII str."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _same_digests(authorized: list[bytes], requested: list[bytes]) -> bool:
    """Byte-exact, order-exact, constant-time over the contents (sam-hsm.md §4 Binding)."""
    if len(authorized) != len(requested):
        return False
    ok = True
    for a, r in zip(authorized, requested):
        ok &= hmac.compare_digest(a, r)
    return ok


class SignatureActivationModule:
    def __init__(
        self,
        *,
        keys: KeyStore,
        credentials: CredentialDirectory,
        ledger: SadLedger,
        audit: AuditSink,
        sad_signer: SadSigner,
        sad_verifier: SadVerifier,
        clock: Clock,
        issuer: str,
        audience: str,
        sad_lifetime: int,
        max_hashes: int,
        wallet_verifier: Callable[[datetime | None], SdJwtVcVerifier] | None = None,
        evidence: EvidenceStore | None = None,
        approval_vcts: tuple[str, ...] = ("urn:eudi:pid:1", "urn:eu.europa.ec.eudi:pid:1"),
    ) -> None:
        if not 0 < sad_lifetime <= 300:
            raise ValueError("SAD lifetime must be 1..300 s by policy")
        self._keys = keys
        self._credentials = credentials
        self._ledger = ledger
        self._audit = audit
        self._signer = sad_signer
        self._verifier = sad_verifier
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._lifetime = sad_lifetime
        self._max_hashes = max_hashes
        self._wallet_verifier = wallet_verifier
        self._evidence = evidence
        # Which credential may approve is policy (PID rulebook §5 vs CSC-DMB): today the PID.
        self._approval_vcts = frozenset(approval_vcts)
        self._traced: set[bytes] = set()

    # -- authorization ---------------------------------------------------------------------------
    async def extend(self, sad: str, client_id: str, req: AuthorizationRequest, *, owner: str | None = None) -> Grant | None:
        """CSC credentials/extendTransaction. For seals the current SAD is spent and a new one
        minted for the new hashes; for signers None is returned: only a new wallet approval can
        authorize new digests."""
        try:
            claims = self._verifier.verify(sad)
            if not hmac.compare_digest(claims.azp.encode(), client_id.encode()):
                raise SadInvalid("other_client")
            if not hmac.compare_digest(claims.credential_id.encode(), req.credential_id.encode()):
                raise SadInvalid("other_credential")
            if owner is not None and not hmac.compare_digest(claims.sub.encode(), owner.encode()):
                raise SadInvalid("other_subject")
        except SamError as e:
            await self._refused("authorization.refused", client_id, req.credential_id, e)
            raise
        if claims.authn.get("method") != "oauth2client":
            return None
        if not await self._ledger.spend(claims.jti, claims.credential_id, claims.expires_at, AuditEvent(
                "authorization.extended", f"client:{client_id}", {"credentialID": claims.credential_id, "jti": claims.jti})):
            e = SadReplayed()
            await self._refused("authorization.refused", client_id, req.credential_id, e)
            raise e
        return await self.authorize_seal(client_id, req, owner=owner)

    async def authorize_seal(self, client_id: str, req: AuthorizationRequest, *, owner: str | None = None) -> Grant:
        """CSC v2 §11.6 credentials/authorize, explicit mode with empty authData: the RSSP-managed
        seal authorization. The authenticated OAuth2 client *is* the seal creator's
        authentication; the SAD binds that client, the credential, its key version and the exact
        hashes."""
        try:
            cred = await self._usable_credential(req.credential_id, owner or seal_owner(client_id))
            if not cred.owner.startswith("client:"):
                # A natural person's key is activated only by their wallet's approval (SCAL2).
                raise CredentialUnusable("Invalid parameter credentialID", reason="requires_wallet_approval")
            self._check_authorization(req, cred)
            now = int(self._clock.now().timestamp())
            claims = SadClaims(
                iss=self._issuer, aud=self._audience, sub=cred.owner, jti=new_jti(),
                iat=now, nbf=now, exp=now + self._lifetime,
                credential_id=cred.credential_id, key_version=cred.key_version,
                hashes=tuple(b64url(h) for h in req.hashes), hash_algorithm=req.hash_algorithm,
                num_signatures=req.num_signatures, azp=client_id,
                authn={"method": "oauth2client", "client_id": client_id},
                evidence=f"oauth2client:{client_id}",
            )
            sad = await self._signer.mint(claims)
        except SamError as e:
            await self._refused("authorization.refused", client_id, req.credential_id, e)
            raise
        await self._audit.append(AuditEvent("authorization.granted", f"client:{client_id}", {
            "credentialID": claims.credential_id, "jti": claims.jti, "sub": claims.sub,
            "hashes": list(claims.hashes), "hashAlgorithmOID": claims.hash_algorithm,
            "numSignatures": claims.num_signatures, "exp": claims.exp, "evidence": claims.evidence,
        }))
        return Grant(sad, self._lifetime, claims)

    async def authorize_signer(self, evidence: WalletEvidence, auth: CredentialAuthorization) -> Grant:
        """SCAL2 for natural persons: the wallet's KB-JWT covers the exact QES approval entry rqes
        sent, which names exactly these digests; the presenting signer owns the credential. Only
        then is a SAD minted, bound to the evidence."""
        try:
            verified = await self._verify_evidence(evidence, auth)
            identity = signer_identity(verified.claims)
            cred = await self._usable_credential(auth.credential_id, identity.owner)
            self._check_authorization(AuthorizationRequest(
                auth.credential_id, list(auth.hashes), auth.hash_algorithm, auth.num_signatures), cred)
            now = int(self._clock.now().timestamp())
            claims = SadClaims(
                iss=self._issuer, aud=self._audience, sub=cred.owner, jti=new_jti(),
                iat=now, nbf=now, exp=now + self._lifetime,
                credential_id=cred.credential_id, key_version=cred.key_version,
                hashes=tuple(b64url(h) for h in auth.hashes), hash_algorithm=auth.hash_algorithm,
                num_signatures=auth.num_signatures, azp=auth.client_id,
                authn={"method": "openid4vp", "vct": verified.vct, "amr": ["pid", "hwk"],
                       "iat": int(verified.kb.get("iat", now))},
                evidence=evidence.evidence_id,
            )
            sad = await self._signer.mint(claims)
            # One wallet approval yields one SAD: the approval is spent like a SAD, and the grant is
            # audited in the same atomic step.
            granted = AuditEvent("authorization.granted", claims.sub, {
                "credentialID": claims.credential_id, "jti": claims.jti, "client_id": auth.client_id,
                "hashes": list(claims.hashes), "hashAlgorithmOID": claims.hash_algorithm,
                "numSignatures": claims.num_signatures, "exp": claims.exp, "evidence": claims.evidence,
            })
            if not await self._ledger.spend(f"evd:{evidence.evidence_id}"[:64], claims.credential_id, claims.expires_at, granted):
                raise ApprovalRejected("approval_replayed", "This wallet approval was already used")
        except SamError as e:
            await self._refused("authorization.refused", auth.client_id, auth.credential_id, e)
            raise
        return Grant(sad, self._lifetime, claims)

    async def _verify_evidence(self, evidence: WalletEvidence, auth: CredentialAuthorization, *, recheck: bool = False):  # noqa: ANN202
        """Verify the presentation (at receipt time when re-checking stored evidence), the
        transaction-data binding over the exact strings sent, and the approved content."""
        if self._wallet_verifier is None:
            raise SadInvalid("wallet_approval_not_configured")
        from .sdjwt import check_transaction_data

        verifier = self._wallet_verifier(evidence.received_at if recheck else None)
        verified = await verifier.verify(evidence.presentation, audience=evidence.audience, nonce=evidence.nonce,
                                         check_status=not recheck)
        if verified.vct not in self._approval_vcts:
            raise ApprovalRejected("approval_credential_not_allowed", "This credential type may not approve signatures")
        entry = find_approval(evidence.transaction_data, evidence.dcql_ids)
        check_transaction_data(verified.kb, evidence.transaction_data, [entry])
        check_approval(entry, verified.kb, auth)
        return verified

    def _check_authorization(self, req: AuthorizationRequest, cred: CredentialRecord) -> None:
        if not req.hashes:
            raise InvalidRequest("Empty hash array")
        if len(req.hashes) > self._max_hashes:
            raise InvalidRequest(f"Too many hashes: at most {self._max_hashes} per request", reason="too_many_hashes")
        if req.num_signatures < 1:
            raise InvalidRequest("Invalid parameter numSignatures", reason="bad_num_signatures")
        if req.num_signatures > cred.multisign:
            raise InvalidRequest("Numbers of signatures is too high", reason="over_multisign")
        if req.num_signatures != len(req.hashes):
            raise InvalidRequest("numSignatures does not match the number of hashes", reason="count_mismatch")
        try:
            hash_ = Hash.from_oid(req.hash_algorithm)
        except UnsupportedAlgorithm:
            raise InvalidRequest("Invalid parameter hashAlgorithmOID", reason="bad_hash_algorithm") from None
        for h in req.hashes:
            if len(h) != hash_.digest_size:
                raise InvalidRequest("Invalid digest value length", reason="bad_digest_length")

    async def _usable_credential(self, credential_id: str, owner: str) -> CredentialRecord:
        cred = await self._credentials.get(credential_id)
        if cred is None or cred.status == "deleted" or not _same(cred.owner, owner):
            raise CredentialUnusable("Invalid parameter credentialID", reason="unknown_credential")
        if cred.status != "enabled":
            raise CredentialUnusable("Credential is disabled", reason="credential_disabled")
        now = self._clock.now()
        if cred.not_after is not None and now > cred.not_after:
            raise CredentialUnusable("Signing certificate is expired", reason="certificate_expired")
        if cred.not_before is not None and now + timedelta(seconds=60) < cred.not_before:
            raise CredentialUnusable("Signing certificate is not yet valid", reason="certificate_not_yet_valid")
        return cred

    def verify_sad(self, sad: str) -> SadClaims:
        """Verify a SAD (signature, issuer, audience, lifetime) without spending it: for using a
        credential token as a bearer token on credentials/info and for revocation."""
        return self._verifier.verify(sad)

    # -- activation --------------------------------------------------------------------------------
    async def activate(self, sad: str, client_id: str, req: SignRequest) -> list[bytes]:
        """CSC v2 §11.9 signatures/signHash: verify the SAD against the request, spend it, sign."""
        try:
            claims = self._verifier.verify(sad)
            scheme = self._check_binding(claims, client_id, req)
            cred = await self._usable_credential(req.credential_id, claims.sub)
            if cred.key_version != claims.key_version:
                raise SadInvalid("key_version_changed")
            try:
                resolve_scheme(cred.key_type, req.sign_algo, req.hash_algorithm, req.sign_algo_params)
            except UnsupportedAlgorithm as e:
                raise InvalidRequest(str(e), reason="bad_sign_algo") from None
            if not pss_salt_allowed(scheme, cred.key_type):
                raise InvalidRequest("Invalid parameter signAlgoParams", reason="bad_sign_algo")
            if claims.authn.get("method") == "openid4vp":
                await self._recheck_evidence(claims)
        except SamError as e:
            await self._refused("signature.refused", client_id, req.credential_id, e)
            raise
        event = AuditEvent("signature.activated", f"client:{client_id}", {
            "credentialID": claims.credential_id, "kver": claims.key_version, "jti": claims.jti,
            "sub": claims.sub, "hashes": list(claims.hashes), "hashAlgorithmOID": claims.hash_algorithm,
            "signAlgo": req.sign_algo, "evidence": claims.evidence,
        })
        if not await self._ledger.spend(claims.jti, claims.credential_id, claims.expires_at, event):
            e = SadReplayed()
            await self._refused("signature.refused", client_id, req.credential_id, e)
            raise e
        try:
            return await self._keys.sign_digests(cred.key_label, scheme, req.hashes)
        except HsmError as err:
            log.error("HSM signing failed for credential %s: %s", claims.credential_id, type(err).__name__)
            await self._audit.append(AuditEvent("signature.failed", f"client:{client_id}", {
                "credentialID": claims.credential_id, "jti": claims.jti, "error": type(err).__name__,
            }))
            raise SigningFailed("The signature could not be created") from err

    async def _recheck_evidence(self, claims: SadClaims) -> None:
        """At signing, the wallet evidence behind the SAD is verified again, not only the SAD."""
        await self.trace(claims.evidence, claims.sub, claims.credential_id, claims.digests(), claims.hash_algorithm)

    async def trace(self, evidence_id: str, sub: str, credential_id: str, digests: list[bytes], hash_algorithm: str) -> None:
        """Offline proof that a signature traces to a wallet signature over its exact hashes:
        the stored evidence still hashes to its id, the presentation and KB-JWT verify as of
        receipt, the KB-JWT covers the approval entry, the entry names these digests, and the
        presenting person is ``sub``. Used at signHash and by ``rqes audit verify --evidence``."""
        if self._evidence is None:
            raise SadInvalid("evidence_unavailable")
        evidence = await self._evidence.load(evidence_id)  # None unless the content still hashes to its id
        if evidence is None:
            raise SadInvalid("evidence_missing")
        # The re-check is a pure function of the (content-addressed) evidence and these values, as
        # of receipt time: a success can be remembered, so replays are refused cheaply by the spend.
        key = hashlib.sha256(repr((evidence_id, sub, credential_id, [bytes(d) for d in digests], hash_algorithm)).encode()).digest()
        if key in self._traced:
            return
        auth = CredentialAuthorization("", credential_id, tuple(digests), hash_algorithm, len(digests))
        verified = await self._verify_evidence(evidence, auth, recheck=True)
        if signer_identity(verified.claims).owner != sub:
            raise SadInvalid("evidence_other_signer")
        if len(self._traced) >= 4096:
            self._traced.clear()
        self._traced.add(key)

    def _check_binding(self, claims: SadClaims, client_id: str, req: SignRequest) -> SignScheme:
        if not _same(claims.azp, client_id):
            raise SadInvalid("other_client")
        if not _same(claims.credential_id, req.credential_id):
            raise SadInvalid("other_credential")
        if not req.hashes:
            raise InvalidRequest("Empty hash array")
        if len(req.hashes) > self._max_hashes:
            raise InvalidRequest(f"Too many hashes: at most {self._max_hashes} per request", reason="too_many_hashes")
        if req.hash_algorithm is not None and req.hash_algorithm != claims.hash_algorithm:
            raise InvalidRequest("Invalid parameter hashAlgorithmOID", reason="other_hash_algorithm")
        try:
            hash_ = Hash.from_oid(claims.hash_algorithm)
            scheme = _scheme_for(req, hash_)
        except UnsupportedAlgorithm as e:
            raise InvalidRequest(str(e), reason="bad_sign_algo") from None
        for h in req.hashes:
            try:
                scheme.check_digest(h)
            except InvalidDigest:
                raise InvalidRequest("Invalid digest value length", reason="bad_digest_length") from None
        if len(req.hashes) != claims.num_signatures:
            raise HashNotAuthorized("count_mismatch")
        if not _same_digests(claims.digests(), req.hashes):
            raise HashNotAuthorized("hash_not_authorized")
        return scheme

    async def _refused(self, kind: str, client_id: str, credential_id: str, e: SamError) -> None:
        await self._audit.append(AuditEvent(kind, f"client:{client_id}", {
            "credentialID": credential_id[:128], "reason": e.reason, "error": e.description,
        }))


def _scheme_for(req: SignRequest, authorized: Hash) -> SignScheme:
    """Resolve signAlgo for the key family it names, and insist it uses the authorized hash."""
    from hsm.mechanisms import KeyType, all_algorithms

    if req.sign_algo not in all_algorithms():
        raise UnsupportedAlgorithm("Invalid parameter signAlgo")
    family = KeyType.EC_P256 if req.sign_algo.startswith("1.2.840.10045") else KeyType.RSA_2048
    scheme = resolve_scheme(family, req.sign_algo, req.hash_algorithm or authorized.value, req.sign_algo_params)
    if scheme.hash is not authorized:
        raise UnsupportedAlgorithm("Invalid parameter hashAlgorithmOID")
    return scheme
