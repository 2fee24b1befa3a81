"""The embedded CA: root and issuing CA with keys in the HSM (DESIGN.md §8).

Seal certificates follow ETSI EN 319 412-3 (legal person: organizationName,
organizationIdentifier) and EN 319 412-5 (QC statements QcCompliance, QcSSCD, QcType eseal).
Operators replace the CA by configuration; the builders never see a private key, only
:class:`hsm.pyca.HsmEcPrivateKey`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from asn1crypto import core as asn1
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID, ObjectIdentifier

from hsm import KeyStore, KeyType
from hsm.pyca import HsmEcPrivateKey

ROOT_LABEL = "rqes/sys/ca-root"
ISSUING_LABEL = "rqes/sys/ca-issuing"

OID_QC_STATEMENTS = ObjectIdentifier("1.3.6.1.5.5.7.1.3")
QC_COMPLIANCE = "0.4.0.1862.1.1"
QC_SSCD = "0.4.0.1862.1.4"
QC_TYPE = "0.4.0.1862.1.6"
QC_TYPE_ESIGN = "0.4.0.1862.1.6.1"
QC_TYPE_ESEAL = "0.4.0.1862.1.6.2"
# ETSI EN 319 411-2: QCP-l-qscd (legal person, key in a QSCD) and QCP-n-qscd (natural person).
POLICY_QCP_L_QSCD = "0.4.0.194112.1.3"
POLICY_QCP_N_QSCD = "0.4.0.194112.1.2"
# rqes's own certificate policy arc (private enterprise arc placeholder documented in README).
POLICY_RQES = "1.3.6.1.4.1.59999.1.1"


class _QcStatement(asn1.Sequence):
    _fields = [("statement_id", asn1.ObjectIdentifier), ("statement_info", asn1.Any, {"optional": True})]


class _QcStatements(asn1.SequenceOf):
    _child_spec = _QcStatement


class _OidList(asn1.SequenceOf):
    _child_spec = asn1.ObjectIdentifier


def qc_statements_der(qc_type: str) -> bytes:
    return _QcStatements([
        {"statement_id": QC_COMPLIANCE},
        {"statement_id": QC_SSCD},
        {"statement_id": QC_TYPE, "statement_info": _OidList([qc_type])},
    ]).dump()


def _ski(public_key) -> x509.SubjectKeyIdentifier:  # noqa: ANN001
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


@dataclass(frozen=True)
class CaUrls:
    crl: str
    ocsp: str
    ca_issuers: str

    @classmethod
    def under(cls, public_url: str) -> "CaUrls":
        base = public_url.rstrip("/")
        return cls(f"{base}/pki/issuing.crl", f"{base}/pki/ocsp", f"{base}/pki/issuing.cer")


def make_root(store: KeyStore, region: str, now: dt.datetime) -> x509.Certificate:
    key = HsmEcPrivateKey(store, ROOT_LABEL)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, region),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rqes"),
        x509.NameAttribute(NameOID.COMMON_NAME, "rqes Root CA"),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365 * 20))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(_ski(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )


def make_issuing(store: KeyStore, root: x509.Certificate, region: str, urls: CaUrls, now: dt.datetime) -> x509.Certificate:
    root_key = HsmEcPrivateKey(store, ROOT_LABEL)
    key = HsmEcPrivateKey(store, ISSUING_LABEL)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, region),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rqes"),
        x509.NameAttribute(NameOID.COMMON_NAME, "rqes Qualified Issuing CA"),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(root.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365 * 10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(_ski(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA384())
    )


@dataclass(frozen=True)
class SealSubject:
    organization: str
    organization_identifier: str
    country: str


def issue_seal_certificate(
    store: KeyStore, issuing: x509.Certificate, subject_public_key_der: bytes, subject: SealSubject,
    urls: CaUrls, now: dt.datetime, days: int = 3 * 365,
) -> x509.Certificate:
    """A qualified certificate for an electronic seal whose key is in the QSCD (QCP-l-qscd)."""
    ca_key = HsmEcPrivateKey(store, ISSUING_LABEL)
    public_key = serialization.load_der_public_key(subject_public_key_der)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, subject.country),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.organization),
        x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, subject.organization_identifier),
        x509.NameAttribute(NameOID.COMMON_NAME, subject.organization),
    ])
    return _end_entity(ca_key, issuing, public_key, name, urls, now, days, QC_TYPE_ESEAL, POLICY_QCP_L_QSCD)


def _end_entity(ca_key, issuing, public_key, name, urls, now, days, qc_type, policy):  # noqa: ANN001, ANN202
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(issuing.subject).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.CertificatePolicies([
            x509.PolicyInformation(ObjectIdentifier(policy), None),
            x509.PolicyInformation(ObjectIdentifier(POLICY_RQES), None),
        ]), critical=False)
        .add_extension(x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl)], None, None, None)]), critical=False)
        .add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp)),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(urls.ca_issuers)),
        ]), critical=False)
        .add_extension(x509.UnrecognizedExtension(OID_QC_STATEMENTS, qc_statements_der(qc_type)), critical=False)
        .sign(ca_key, hashes.SHA384())
    )


CA_KEY_TYPE = KeyType.EC_P384


VERIFIER_LABEL = "rqes/sys/verifier"


@dataclass(frozen=True)
class PersonSubject:
    """EN 319 412-2 natural person: givenName, surname, serialNumber (EN 319 412-1 §5.1.3), C."""

    given_name: str
    family_name: str
    serial_number: str
    country: str


def issue_person_certificate(
    store: KeyStore, issuing: x509.Certificate, subject_public_key_der: bytes, subject: PersonSubject,
    urls: CaUrls, now: dt.datetime, days: int = 2 * 365,
) -> x509.Certificate:
    """A qualified certificate for electronic signatures, key in the QSCD (QCP-n-qscd, QcType esign)."""
    ca_key = HsmEcPrivateKey(store, ISSUING_LABEL)
    public_key = serialization.load_der_public_key(subject_public_key_der)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, subject.country),
        x509.NameAttribute(NameOID.GIVEN_NAME, subject.given_name),
        x509.NameAttribute(NameOID.SURNAME, subject.family_name),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, subject.serial_number),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{subject.given_name} {subject.family_name}"[:64]),
    ])
    return _end_entity(ca_key, issuing, public_key, name, urls, now, days, QC_TYPE_ESIGN, POLICY_QCP_N_QSCD)


def issue_verifier_certificate(
    store: KeyStore, issuing: x509.Certificate, public_url: str, now: dt.datetime, days: int = 365,
) -> x509.Certificate:
    """The OpenID4VP verifier access certificate (request objects, x509_hash / x509_san_dns)."""
    from urllib.parse import urlsplit

    ca_key = HsmEcPrivateKey(store, ISSUING_LABEL)
    key = HsmEcPrivateKey(store, VERIFIER_LABEL)
    host = urlsplit(public_url).hostname or "localhost"
    names: list[x509.GeneralName] = [x509.DNSName(host)]
    if host != "localhost":
        names.append(x509.DNSName("localhost"))
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, issuing.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rqes"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"rqes verifier {host}"),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(issuing.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(_ski(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
