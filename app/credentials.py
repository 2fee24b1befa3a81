"""Credential lifecycle: create a seal (key in the HSM, certificate from the embedded CA),
disable, enable, delete. No half-written state: a key whose credential could not be recorded is
destroyed again, and every step is audited."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timezone

from cryptography.hazmat.primitives import serialization

from hsm import HsmError, KeyType
from sam.ports import AuditEvent
from sam.service import seal_owner

from .pki import CaUrls, SealSubject, issue_seal_certificate
from .ids import new_credential_id
from .runtime import Runtime, kid_for
from .store import StoredCredential

log = logging.getLogger("rqes.credentials")


class CredentialError(Exception):
    pass


def credential_label(credential_id: str, version: int) -> str:
    return f"rqes/cred/{credential_id}/v{version}"


async def create_seal(
    rt: Runtime, *, client_id: str, organization: str, key_type: KeyType, organization_identifier: str | None = None,
    country: str | None = None, multisign: int | None = None, description: str | None = None, actor: str = "operator",
) -> StoredCredential:
    client = await rt.clients.get(client_id)
    if client is None:
        raise CredentialError(f"no such client: {client_id}")
    organization = organization.strip()
    if not organization or len(organization) > 64:
        raise CredentialError("organization must be 1..64 characters")
    country = (country or rt.settings.region).upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise CredentialError("country must be a two-letter code")
    org_id = organization_identifier or f"NTR{country}-{client_id}"
    if not re.fullmatch(r"[A-Z]{3}[A-Z]{2}-\S{1,56}", org_id):
        raise CredentialError("organization identifier must look like NTRBE-0123456789 (EN 319 412-1 §5.1.4)")
    multisign = multisign or rt.settings.default_multisign
    if not 1 <= multisign <= rt.settings.max_hashes:
        raise CredentialError(f"multisign must be between 1 and {rt.settings.max_hashes}")
    credential_id = new_credential_id()
    label = credential_label(credential_id, 1)
    info = await rt.keys.generate_key(label, key_type)
    try:
        now = rt.clock.now()
        subject = SealSubject(organization, org_id, country)
        cert = await asyncio.get_running_loop().run_in_executor(None, lambda: issue_seal_certificate(
            rt.keys, rt.issuing_cert, info.public_key_der, subject, CaUrls.under(rt.settings.public_url), now))
        cred = StoredCredential(
            credential_id=credential_id, kind="seal", owner=seal_owner(client_id), description=description,
            key_label=label, key_type=key_type, key_version=1, status="enabled", multisign=multisign,
            signature_qualifier="eu_eidas_qeseal", certificate=cert.public_bytes(serialization.Encoding.DER),
            cert_serial=format(cert.serial_number, "x"), not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )
        await rt.credentials.add(cred, [
            AuditEvent("key.generated", actor, {"credentialID": credential_id, "label": label, "key_type": key_type.value,
                                                "kid": kid_for(info.public_key_der)}),
            AuditEvent("certificate.issued", actor, {"credentialID": credential_id, "serial": cred.cert_serial,
                                                     "subject": cert.subject.rfc4514_string(), "qcType": "eseal"}),
            AuditEvent("credential.created", actor, {"credentialID": credential_id, "owner": cred.owner,
                                                     "kind": "seal", "multisign": multisign}),
        ])
    except BaseException:
        try:
            await rt.keys.destroy_key(label)
        except HsmError:
            log.error("could not destroy orphaned key %s", label)
        raise
    return cred


async def set_status(rt: Runtime, credential_id: str, status: str, actor: str = "operator") -> bool:
    allowed = {"enabled": ("disabled",), "disabled": ("enabled",)}[status]
    return await rt.credentials.set_status(credential_id, status, AuditEvent(
        f"credential.{'enabled' if status == 'enabled' else 'disabled'}", actor, {"credentialID": credential_id}), allowed_from=allowed)


async def delete(rt: Runtime, credential_id: str, actor: str = "operator") -> bool:
    """Mark deleted first (no signature can start after that), then destroy the key object."""
    cred = await rt.credentials.load(credential_id)
    if cred is None or cred.status == "deleted":
        return False
    if not await rt.credentials.set_status(credential_id, "deleted", AuditEvent(
            "credential.deleted", actor, {"credentialID": credential_id}), allowed_from=("enabled", "disabled")):
        return False
    try:
        await rt.keys.destroy_key(cred.key_label)
        await rt.audit.append(AuditEvent("key.destroyed", actor, {"credentialID": credential_id, "label": cred.key_label}))
    except HsmError as e:
        await rt.audit.append(AuditEvent("key.destroy_failed", actor, {"credentialID": credential_id, "error": type(e).__name__}))
        raise
    return True


def as_utc(dt):  # noqa: ANN001, ANN201
    return dt.astimezone(timezone.utc) if dt is not None else None
