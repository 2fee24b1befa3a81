"""Embedded trust services: the CA (root and issuing), with keys in the HSM."""

from .ca import (
    CA_KEY_TYPE, ISSUING_LABEL, ROOT_LABEL, VERIFIER_LABEL, CaUrls, PersonSubject, SealSubject,
    issue_person_certificate, issue_seal_certificate, issue_verifier_certificate, make_issuing, make_root,
)

__all__ = [
    "CA_KEY_TYPE", "ISSUING_LABEL", "ROOT_LABEL", "VERIFIER_LABEL", "CaUrls", "PersonSubject", "SealSubject",
    "issue_person_certificate", "issue_seal_certificate", "issue_verifier_certificate", "make_issuing", "make_root",
]
