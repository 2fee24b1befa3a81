"""An HSM key as a ``cryptography`` private key object (sam-hsm.md §13).

``CertificateBuilder.sign``, ``CertificateRevocationListBuilder.sign`` and
``OCSPResponseBuilder.sign`` accept a subclass of ``ec.EllipticCurvePrivateKey``. They hand it
the whole TBS bytes; we hash them here and sign the digest in the token with ``CKM_ECDSA``.
Only the operations those builders need are implemented; everything that would reveal the key
raises.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from .api import KeyStore
from .errors import UnsupportedAlgorithm
from .mechanisms import Hash, Padding, SignScheme

_BY_NAME = {"sha256": Hash.SHA256, "sha384": Hash.SHA384, "sha512": Hash.SHA512}


class HsmEcPrivateKey(ec.EllipticCurvePrivateKey):
    def __init__(self, store: KeyStore, label: str) -> None:
        info = store.key_info_sync(label)
        if not info.key_type.is_ec:
            raise UnsupportedAlgorithm("the embedded trust services use EC keys")
        self._store = store
        self._label = label
        self._public = serialization.load_der_public_key(info.public_key_der)

    @property
    def label(self) -> str:
        return self._label

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve  # type: ignore[union-attr]

    @property
    def key_size(self) -> int:
        return self._public.key_size  # type: ignore[union-attr]

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public  # type: ignore[return-value]

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = signature_algorithm.algorithm
        if not isinstance(signature_algorithm, ec.ECDSA) or isinstance(algorithm, utils.Prehashed):
            raise UnsupportedAlgorithm("only ECDSA is supported")
        hash_ = _BY_NAME.get(algorithm.name)
        if hash_ is None:
            raise UnsupportedAlgorithm(f"unsupported hash {algorithm.name}")
        h = hashes.Hash(algorithm)
        h.update(data)
        return self._store.sign_digests_sync(self._label, SignScheme(Padding.ECDSA, hash_), [h.finalize()])[0]

    def exchange(self, algorithm, peer_public_key):  # noqa: ANN001
        raise UnsupportedAlgorithm("HSM keys sign only")

    def private_numbers(self):  # noqa: ANN201
        raise UnsupportedAlgorithm("HSM keys are not extractable")

    def private_bytes(self, encoding, format, encryption_algorithm):  # noqa: ANN001, A002
        raise UnsupportedAlgorithm("HSM keys are not extractable")

    def __copy__(self) -> "HsmEcPrivateKey":
        return self

    def __deepcopy__(self, memo: dict) -> "HsmEcPrivateKey":
        return self
