"""Signer enrollment from a verified PID presentation (wallet identity issue, DESIGN.md §2).

Identity: the PID carries no persistent identifier, so the signer is keyed on the issuing
country plus ``personal_administrative_number`` (or, failing that, ``document_number``).
Namesakes born on the same day have different numbers and never collide; a second enrollment of
the same person finds the existing signer and credential. The certificate's ``serialNumber`` is
the EN 319 412-1 §5.1.3 natural-person identifier built from the same number (``PNOXX-…`` or
``IDCXX-…``).

No half-enrolled signer: the key is generated and the certificate issued first; the signer,
the credential and their audit records are then written in one transaction; on any failure the
key is destroyed again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from hsm import HsmError, KeyType
from sam.identity import signer_identity
from sam.ports import AuditEvent
from sam.sdjwt import VerifiedPresentation

from .credentials import credential_label
from .errors import ProtocolError
from .pki import CaUrls, PersonSubject, issue_person_certificate
from .ids import new_credential_id
from .runtime import Runtime, kid_for
from .store import schema

log = logging.getLogger("rqes.enroll")
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


def signer_owner(signer_id: str) -> str:
    return f"signer:{signer_id}"


def _claim(claims: dict[str, Any], name: str, pattern: str | None = None) -> str:
    v = claims.get(name)
    if not isinstance(v, str) or not _NAME.fullmatch(v) or (pattern and not re.fullmatch(pattern, v)):
        raise ProtocolError("invalid_request", f"The PID presentation lacks a valid {name}")
    return v


async def find_signer_credential(rt: Runtime, signer_id: str) -> Any:
    creds = [c for c in await rt.credentials.list(signer_owner(signer_id)) if c.kind == "signature"]
    return creds[0] if creds else None


async def enroll(rt: Runtime, verified: VerifiedPresentation, evidence_id: str, *, transaction_id: str) -> dict[str, Any]:
    claims = verified.claims
    who = signer_identity(claims)  # the SAM's derivation: one definition of who a signer is
    signer_id, basis, serial = who.signer_id, who.basis, who.serial_number
    given, family = _claim(claims, "given_name"), _claim(claims, "family_name")
    birthdate = _claim(claims, "birthdate", r"\d{4}-\d{2}-\d{2}")
    country = _claim(claims, "issuing_country", r"[A-Z]{2}")
    existing = await find_signer_credential(rt, signer_id)
    if existing is not None:
        await rt.audit.append(AuditEvent("signer.authenticated", signer_owner(signer_id), {
            "transaction": transaction_id, "evidence": evidence_id, "credentialID": existing.credential_id}))
        return {"signer_id": signer_id, "credentialID": existing.credential_id, "enrolled": False}
    credential_id = new_credential_id()
    label = credential_label(credential_id, 1)
    info = await rt.keys.generate_key(label, KeyType.EC_P256)
    try:
        subject = PersonSubject(given, family, serial, country)
        now = rt.clock.now()
        cert = await asyncio.get_running_loop().run_in_executor(None, lambda: issue_person_certificate(
            rt.keys, rt.issuing_cert, info.public_key_der, subject, CaUrls.under(rt.settings.public_url), now))
        owner = signer_owner(signer_id)
        known = await signer_exists(rt, signer_id)  # e.g. the earlier credential was deleted
        async with rt.engine.begin() as conn:
            if not known:
                await conn.execute(insert(schema.signers).values(
                    signer_id=signer_id, identity_basis=basis, serial_number=serial, given_name=given,
                    family_name=family, birthdate=birthdate, country=country, created_at=datetime.now(timezone.utc)))
            await conn.execute(insert(schema.credentials).values(
                credential_id=credential_id, kind="signature", owner=owner, description="Qualified electronic signature",
                key_label=label, key_type=KeyType.EC_P256.value, key_version=1, status="enabled",
                multisign=rt.settings.default_multisign, signature_qualifier="eu_eidas_qes",
                certificate=cert.public_bytes(serialization.Encoding.DER), cert_serial=format(cert.serial_number, "x"),
                not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, created_at=datetime.now(timezone.utc)))
            for ev in (
                AuditEvent("signer.enrolled", owner, {"transaction": transaction_id, "evidence": evidence_id,
                                                     "basis": basis, "vct": verified.vct}),
                AuditEvent("key.generated", owner, {"credentialID": credential_id, "label": label, "key_type": "ec-p256",
                                                    "kid": kid_for(info.public_key_der)}),
                AuditEvent("certificate.issued", owner, {"credentialID": credential_id, "serial": format(cert.serial_number, "x"),
                                                         "subject": cert.subject.rfc4514_string(), "qcType": "esign"}),
                AuditEvent("credential.created", owner, {"credentialID": credential_id, "kind": "signature",
                                                         "evidence": evidence_id}),
            ):
                await rt.audit.append_in(conn, ev)
    except BaseException as e:
        try:
            await rt.keys.destroy_key(label)
        except HsmError:
            log.error("could not destroy orphaned key %s", label)
        if isinstance(e, IntegrityError):  # the same person enrolled concurrently: use theirs
            again = await find_signer_credential(rt, signer_id)
            if again is not None:
                return {"signer_id": signer_id, "credentialID": again.credential_id, "enrolled": False}
        raise
    return {"signer_id": signer_id, "credentialID": credential_id, "enrolled": True}


async def signer_exists(rt: Runtime, signer_id: str) -> bool:
    async with rt.engine.connect() as conn:
        return (await conn.execute(select(schema.signers.c.signer_id).where(schema.signers.c.signer_id == signer_id))).first() is not None
