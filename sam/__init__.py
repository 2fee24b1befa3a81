"""Signature activation: SAD minting and verification, binding checks, single use, audit events."""

from .clock import Clock, FixedClock, SystemClock
from .errors import (
    AccessDenied, CredentialUnusable, HashNotAuthorized, InvalidRequest, SadExpired, SadInvalid,
    SadReplayed, SamError, SigningFailed,
)
from .ports import AuditEvent, AuditSink, CredentialDirectory, CredentialRecord, SadLedger
from .sad import SAD_TYP, SadClaims, SadSigner, SadVerifier
from .service import AuthorizationRequest, Grant, SignatureActivationModule, SignRequest, seal_owner

__all__ = [
    "AccessDenied", "AuditEvent", "AuditSink", "AuthorizationRequest", "Clock", "CredentialDirectory",
    "CredentialRecord", "CredentialUnusable", "FixedClock", "Grant", "HashNotAuthorized", "InvalidRequest",
    "SAD_TYP", "SadClaims", "SadExpired", "SadInvalid", "SadLedger", "SadReplayed", "SadSigner", "SadVerifier",
    "SamError", "SignRequest", "SignatureActivationModule", "SigningFailed", "SystemClock", "seal_owner",
]
