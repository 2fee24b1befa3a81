"""The signature mechanism table: which CSC algorithm OIDs a key can serve, and how.

Everything here is pure: it maps (key type, signAlgo, hashAlgorithmOID, signAlgoParams) to one
:class:`SignScheme`, builds PKCS#1 v1.5 DigestInfo blocks itself (sam-hsm.md §7) and converts
PKCS#11's raw ``r‖s`` to DER ``ECDSA-Sig-Value``. The digest length is checked here, before any
byte reaches the HSM: SoftHSM's ``CKM_ECDSA`` signs inputs of any length without complaint.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from asn1crypto import algos as _algos
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import InvalidDigest, UnsupportedAlgorithm


class KeyType(str, enum.Enum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"

    @property
    def is_ec(self) -> bool:
        return self in (KeyType.EC_P256, KeyType.EC_P384)

    @property
    def bits(self) -> int:
        return {"ec-p256": 256, "ec-p384": 384, "rsa-2048": 2048, "rsa-3072": 3072}[self.value]

    @property
    def curve_oid(self) -> str | None:
        return {"ec-p256": "1.2.840.10045.3.1.7", "ec-p384": "1.3.132.0.34"}.get(self.value)

    @property
    def curve_name(self) -> str | None:
        return {"ec-p256": "secp256r1", "ec-p384": "secp384r1"}.get(self.value)


class Hash(str, enum.Enum):
    SHA256 = "2.16.840.1.101.3.4.2.1"
    SHA384 = "2.16.840.1.101.3.4.2.2"
    SHA512 = "2.16.840.1.101.3.4.2.3"

    @property
    def digest_size(self) -> int:
        return {Hash.SHA256: 32, Hash.SHA384: 48, Hash.SHA512: 64}[self]

    @property
    def pyca_name(self) -> str:
        return {Hash.SHA256: "sha256", Hash.SHA384: "sha384", Hash.SHA512: "sha512"}[self]

    @classmethod
    def from_oid(cls, oid: str) -> "Hash":
        try:
            return cls(oid)
        except ValueError:
            raise UnsupportedAlgorithm(f"unsupported hash algorithm {oid}") from None

    @classmethod
    def from_name(cls, name: str) -> "Hash":
        return {"sha256": cls.SHA256, "sha384": cls.SHA384, "sha512": cls.SHA512}[name]


# RFC 8017 §9.2 note 1: the DER prefix of DigestInfo for each hash.
_DIGEST_INFO_PREFIX = {
    Hash.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    Hash.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    Hash.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}

RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
RSASSA_PSS = "1.2.840.113549.1.1.10"
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_RSA_WITH = {
    "1.2.840.113549.1.1.11": Hash.SHA256,
    "1.2.840.113549.1.1.12": Hash.SHA384,
    "1.2.840.113549.1.1.13": Hash.SHA512,
}
_ECDSA_WITH = {
    "1.2.840.10045.4.3.2": Hash.SHA256,
    "1.2.840.10045.4.3.3": Hash.SHA384,
    "1.2.840.10045.4.3.4": Hash.SHA512,
}


class Padding(str, enum.Enum):
    ECDSA = "ecdsa"
    PKCS1V15 = "pkcs1v15"
    PSS = "pss"


@dataclass(frozen=True, slots=True)
class SignScheme:
    """One resolved way of signing a digest: the padding, the hash and (PSS) the salt length."""

    padding: Padding
    hash: Hash
    salt_length: int | None = None

    def check_digest(self, digest: bytes) -> None:
        if len(digest) != self.hash.digest_size:
            raise InvalidDigest("Invalid digest value length")

    def prepare(self, digest: bytes) -> bytes:
        """The exact bytes handed to ``C_Sign``: a DigestInfo for PKCS#1 v1.5, the digest otherwise."""
        self.check_digest(digest)
        if self.padding is Padding.PKCS1V15:
            return _DIGEST_INFO_PREFIX[self.hash] + digest
        return digest


def algorithms_for(key_type: KeyType) -> list[str]:
    """``key.algo`` for credentials/info: the preferred hash-specific OID first (EUDI clients
    default to the first), then the rest, then the key-type OID (usable with hashAlgorithmOID)."""
    if key_type.is_ec:
        preferred = "1.2.840.10045.4.3.3" if key_type is KeyType.EC_P384 else "1.2.840.10045.4.3.2"
        rest = [o for o in _ECDSA_WITH if o != preferred]
        return [preferred, *rest, EC_PUBLIC_KEY]
    return [*_RSA_WITH, RSASSA_PSS, RSA_ENCRYPTION]


def all_algorithms() -> list[str]:
    """Every signAlgo rqes can serve, for CSC ``info.signAlgorithms``."""
    return [*_ECDSA_WITH, EC_PUBLIC_KEY, *_RSA_WITH, RSASSA_PSS, RSA_ENCRYPTION]


def resolve_scheme(
    key_type: KeyType, sign_algo: str, hash_algo: str | None, sign_algo_params: bytes | None
) -> SignScheme:
    """Map a CSC signHash request onto one :class:`SignScheme`, or refuse it.

    CSC v2 §11.9: ``hashAlgorithmOID`` may be omitted when ``signAlgo`` implies it, is required
    with key-type OIDs, and must never contradict ``signAlgo``.
    """
    requested = Hash.from_oid(hash_algo) if hash_algo else None
    if key_type.is_ec:
        if sign_algo in _ECDSA_WITH:
            implied = _ECDSA_WITH[sign_algo]
            if requested is not None and requested is not implied:
                raise UnsupportedAlgorithm("hashAlgorithmOID contradicts with signAlgo")
            return SignScheme(Padding.ECDSA, implied)
        if sign_algo == EC_PUBLIC_KEY:
            if requested is None:
                raise UnsupportedAlgorithm("Invalid parameter hashAlgorithmOID")
            return SignScheme(Padding.ECDSA, requested)
        raise UnsupportedAlgorithm("Invalid parameter signAlgo")
    if sign_algo in _RSA_WITH:
        implied = _RSA_WITH[sign_algo]
        if requested is not None and requested is not implied:
            raise UnsupportedAlgorithm("hashAlgorithmOID contradicts with signAlgo")
        return SignScheme(Padding.PKCS1V15, implied)
    if sign_algo == RSA_ENCRYPTION:
        if requested is None:
            raise UnsupportedAlgorithm("Invalid parameter hashAlgorithmOID")
        return SignScheme(Padding.PKCS1V15, requested)
    if sign_algo == RSASSA_PSS:
        return _pss_scheme(sign_algo_params, requested)
    raise UnsupportedAlgorithm("Invalid parameter signAlgo")


def _pss_scheme(params_der: bytes | None, requested: Hash | None) -> SignScheme:
    """RSASSA-PSS needs explicit parameters (RFC 4055): the same hash for message and MGF1."""
    if params_der is None:
        if requested is None:
            raise UnsupportedAlgorithm("Invalid parameter signAlgoParams")
        return SignScheme(Padding.PSS, requested, requested.digest_size)
    try:
        params = _algos.RSASSAPSSParams.load(params_der, strict=True)
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        mgf_hash = mgf["parameters"]["algorithm"].native
        salt = int(params["salt_length"].native)
        trailer = params["trailer_field"].native
    except (ValueError, TypeError, KeyError) as e:
        raise UnsupportedAlgorithm("Invalid parameter signAlgoParams") from e
    if mgf["algorithm"].native != "mgf1" or hash_name != mgf_hash or trailer not in ("trailer_field_bc", 1):
        raise UnsupportedAlgorithm("Invalid parameter signAlgoParams")
    try:
        hash_ = Hash.from_name(hash_name)
    except KeyError:
        raise UnsupportedAlgorithm("Invalid parameter signAlgoParams") from None
    if requested is not None and requested is not hash_:
        raise UnsupportedAlgorithm("hashAlgorithmOID contradicts with signAlgo")
    if salt < 0 or salt > 512:
        raise UnsupportedAlgorithm("Invalid parameter signAlgoParams")
    return SignScheme(Padding.PSS, hash_, salt)


def pss_salt_allowed(scheme: SignScheme, key_type: KeyType) -> bool:
    """rqes PSS policy: the salt is the hash length (RFC 8017 §9.1 note 4) or the maximum the key
    allows (emLen - hLen - 2, pyHanko's default); nothing shorter."""
    if scheme.padding is not Padding.PSS:
        return True
    em_len = (key_type.bits - 1 + 7) // 8
    return scheme.salt_length in (scheme.hash.digest_size, em_len - scheme.hash.digest_size - 2)


def pss_params_der(hash_: Hash, salt_length: int | None = None) -> bytes:
    """DER RSASSA-PSS-params for ``signAlgoParams`` (used by clients and tests)."""
    name = hash_.pyca_name
    return _algos.RSASSAPSSParams(
        {
            "hash_algorithm": {"algorithm": name},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": name}},
            "salt_length": hash_.digest_size if salt_length is None else salt_length,
        }
    ).dump()


def raw_ecdsa_to_der(raw: bytes) -> bytes:
    """PKCS#11 ``CKM_ECDSA`` returns ``r‖s``; CMS and CSC signHash want DER ``ECDSA-Sig-Value``."""
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
