"""The signature mechanism table (hsm/mechanisms.py): OID resolution, digest checks, DigestInfo, DER."""

from __future__ import annotations

import hashlib
import os

import pytest
from asn1crypto import algos, core
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from hsm import Hash, InvalidDigest, KeyType, Padding, SignScheme, UnsupportedAlgorithm, algorithms_for, all_algorithms, resolve_scheme
from hsm.mechanisms import EC_PUBLIC_KEY, RSA_ENCRYPTION, RSASSA_PSS, pss_params_der, raw_ecdsa_to_der
from hsm.software import SoftwareKeyStore

SHA256, SHA384, SHA512 = Hash.SHA256, Hash.SHA384, Hash.SHA512
ECDSA_WITH = {"1.2.840.10045.4.3.2": SHA256, "1.2.840.10045.4.3.3": SHA384, "1.2.840.10045.4.3.4": SHA512}
RSA_WITH = {"1.2.840.113549.1.1.11": SHA256, "1.2.840.113549.1.1.12": SHA384, "1.2.840.113549.1.1.13": SHA512}
SHA1_OID = "1.3.14.3.2.26"
MD5_OID = "1.2.840.113549.2.5"
SHA1_WITH_RSA = "1.2.840.113549.1.1.5"
ECDSA_WITH_SHA1 = "1.2.840.10045.4.1"
EC_KEYS = [KeyType.EC_P256, KeyType.EC_P384]
RSA_KEYS = [KeyType.RSA_2048, KeyType.RSA_3072]
PYCA = {SHA256: hashes.SHA256, SHA384: hashes.SHA384, SHA512: hashes.SHA512}
HASHLIB = {SHA256: hashlib.sha256, SHA384: hashlib.sha384, SHA512: hashlib.sha512}

# RFC 8017 §9.2 note 1, written out here independently of hsm/mechanisms.py.
RFC8017_PREFIX = {
    SHA256: "3031300d060960864801650304020105000420",
    SHA384: "3041300d060960864801650304020205000430",
    SHA512: "3051300d060960864801650304020305000440",
}


# -- ECDSA -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", EC_KEYS)
@pytest.mark.parametrize("oid,hash_", ECDSA_WITH.items())
def test_ecdsa_with_sha_implies_hash(key_type, oid, hash_):
    assert resolve_scheme(key_type, oid, None, None) == SignScheme(Padding.ECDSA, hash_)
    # hashAlgorithmOID may be repeated as long as it agrees
    assert resolve_scheme(key_type, oid, hash_.value, None) == SignScheme(Padding.ECDSA, hash_)


@pytest.mark.parametrize("key_type", EC_KEYS)
@pytest.mark.parametrize("hash_", list(Hash))
def test_ec_public_key_takes_hash_from_hash_algorithm_oid(key_type, hash_):
    assert resolve_scheme(key_type, EC_PUBLIC_KEY, hash_.value, None) == SignScheme(Padding.ECDSA, hash_)


@pytest.mark.parametrize("key_type", EC_KEYS)
def test_ec_public_key_requires_hash_algorithm_oid(key_type):
    with pytest.raises(UnsupportedAlgorithm, match="^Invalid parameter hashAlgorithmOID$"):
        resolve_scheme(key_type, EC_PUBLIC_KEY, None, None)


# -- RSA PKCS#1 v1.5 -------------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", RSA_KEYS)
@pytest.mark.parametrize("oid,hash_", RSA_WITH.items())
def test_sha_with_rsa_implies_hash(key_type, oid, hash_):
    assert resolve_scheme(key_type, oid, None, None) == SignScheme(Padding.PKCS1V15, hash_)
    assert resolve_scheme(key_type, oid, hash_.value, None) == SignScheme(Padding.PKCS1V15, hash_)


@pytest.mark.parametrize("key_type", RSA_KEYS)
@pytest.mark.parametrize("hash_", list(Hash))
def test_rsa_encryption_takes_hash_from_hash_algorithm_oid(key_type, hash_):
    assert resolve_scheme(key_type, RSA_ENCRYPTION, hash_.value, None) == SignScheme(Padding.PKCS1V15, hash_)


def test_rsa_encryption_requires_hash_algorithm_oid():
    with pytest.raises(UnsupportedAlgorithm, match="^Invalid parameter hashAlgorithmOID$"):
        resolve_scheme(KeyType.RSA_2048, RSA_ENCRYPTION, None, None)


# -- RSASSA-PSS ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", RSA_KEYS)
@pytest.mark.parametrize("hash_", list(Hash))
def test_pss_with_explicit_params(key_type, hash_):
    scheme = resolve_scheme(key_type, RSASSA_PSS, None, pss_params_der(hash_))
    assert scheme == SignScheme(Padding.PSS, hash_, hash_.digest_size)
    # the agreeing hashAlgorithmOID is accepted too
    assert resolve_scheme(key_type, RSASSA_PSS, hash_.value, pss_params_der(hash_)) == scheme


@pytest.mark.parametrize("salt", [0, 20, 64])
def test_pss_salt_length_comes_from_params(salt):
    scheme = resolve_scheme(KeyType.RSA_2048, RSASSA_PSS, None, pss_params_der(SHA256, salt))
    assert scheme == SignScheme(Padding.PSS, SHA256, salt)


def test_pss_without_params_uses_hash_algorithm_oid_and_digest_sized_salt():
    assert resolve_scheme(KeyType.RSA_2048, RSASSA_PSS, SHA384.value, None) == SignScheme(Padding.PSS, SHA384, 48)


def test_pss_without_params_or_hash_is_refused():
    with pytest.raises(UnsupportedAlgorithm, match="^Invalid parameter signAlgoParams$"):
        resolve_scheme(KeyType.RSA_2048, RSASSA_PSS, None, None)


def _pss_params(hash_name: str | None, mgf_hash: str | None, salt: int | None = None, mgf: str = "mgf1", trailer: int | None = None) -> bytes:
    d: dict = {}
    if hash_name is not None:
        d["hash_algorithm"] = {"algorithm": hash_name}
    if mgf_hash is not None:
        d["mask_gen_algorithm"] = {"algorithm": mgf, "parameters": {"algorithm": mgf_hash}}
    if salt is not None:
        d["salt_length"] = salt
    if trailer is not None:
        d["trailer_field"] = trailer
    return algos.RSASSAPSSParams(d).dump()


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(_pss_params("sha256", "sha384", 32), id="mgf1-hash-differs"),
        pytest.param(b"\x30\x00", id="all-defaults-sha1"),
        pytest.param(_pss_params("sha1", "sha1", 20), id="sha1"),
        pytest.param(_pss_params("sha256", "sha256", 513), id="salt-too-long"),
        pytest.param(_pss_params("sha256", "sha256", 32, trailer=2), id="bad-trailer"),
        pytest.param(_pss_params("sha224", "sha224", 28), id="sha224"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30\x00\x00", id="trailing-garbage"),
        pytest.param(b"\x04\x03abc", id="not-a-sequence"),
        pytest.param(os.urandom(40), id="random"),
        pytest.param(pss_params_der(SHA256)[:-1], id="truncated"),
    ],
)
def test_pss_bad_params_are_refused(params):
    with pytest.raises(UnsupportedAlgorithm, match="^Invalid parameter signAlgoParams$"):
        resolve_scheme(KeyType.RSA_2048, RSASSA_PSS, None, params)


def test_pss_params_der_is_rfc4055_shape():
    p = algos.RSASSAPSSParams.load(pss_params_der(SHA384))
    assert p["hash_algorithm"]["algorithm"].native == "sha384"
    assert p["mask_gen_algorithm"]["algorithm"].native == "mgf1"
    assert p["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha384"
    assert p["salt_length"].native == 48


# -- contradictions and unknown algorithms ---------------------------------------------------------
@pytest.mark.parametrize(
    "key_type,sign_algo,hash_oid,params",
    [
        (KeyType.EC_P256, "1.2.840.10045.4.3.2", SHA384.value, None),
        (KeyType.EC_P256, "1.2.840.10045.4.3.2", SHA512.value, None),
        (KeyType.EC_P384, "1.2.840.10045.4.3.3", SHA256.value, None),
        (KeyType.EC_P384, "1.2.840.10045.4.3.4", SHA384.value, None),
        (KeyType.RSA_2048, "1.2.840.113549.1.1.11", SHA512.value, None),
        (KeyType.RSA_2048, "1.2.840.113549.1.1.12", SHA256.value, None),
        (KeyType.RSA_3072, "1.2.840.113549.1.1.13", SHA384.value, None),
        (KeyType.RSA_2048, RSASSA_PSS, SHA384.value, pss_params_der(SHA256)),
        (KeyType.RSA_2048, RSASSA_PSS, SHA256.value, pss_params_der(SHA512)),
    ],
)
def test_contradicting_hash_algorithm_oid_is_refused(key_type, sign_algo, hash_oid, params):
    with pytest.raises(UnsupportedAlgorithm, match="^hashAlgorithmOID contradicts with signAlgo$"):
        resolve_scheme(key_type, sign_algo, hash_oid, params)


@pytest.mark.parametrize("key_type", EC_KEYS)
@pytest.mark.parametrize(
    "sign_algo",
    [*RSA_WITH, RSA_ENCRYPTION, RSASSA_PSS, ECDSA_WITH_SHA1, SHA1_WITH_RSA, "1.2.3.4", "", "1.2.840.10045.4.3.2 "],
)
def test_unknown_sign_algo_for_ec_key(key_type, sign_algo):
    with pytest.raises(UnsupportedAlgorithm, match="^Invalid parameter signAlgo$"):
        resolve_scheme(key_type, sign_algo, SHA256.value, pss_params_der(SHA256) if sign_algo == RSASSA_PSS else None)


@pytest.mark.parametrize("key_type", RSA_KEYS)
@pytest.mark.parametrize("sign_algo", [*ECDSA_WITH, EC_PUBLIC_KEY, ECDSA_WITH_SHA1, SHA1_WITH_RSA, "1.2.3.4", ""])
def test_unknown_sign_algo_for_rsa_key(key_type, sign_algo):
    with pytest.raises(UnsupportedAlgorithm, match="^Invalid parameter signAlgo$"):
        resolve_scheme(key_type, sign_algo, SHA256.value, None)


@pytest.mark.parametrize("hash_oid", [SHA1_OID, MD5_OID, "2.16.840.1.101.3.4.2.4", "2.16.840.1.101.3.4.2.8", "garbage"])
@pytest.mark.parametrize(
    "key_type,sign_algo", [(KeyType.EC_P256, EC_PUBLIC_KEY), (KeyType.RSA_2048, RSA_ENCRYPTION), (KeyType.RSA_2048, RSASSA_PSS)]
)
def test_unsupported_hash_algorithm_oid_is_refused(key_type, sign_algo, hash_oid):
    with pytest.raises(UnsupportedAlgorithm):
        resolve_scheme(key_type, sign_algo, hash_oid, None)


def test_hash_from_oid_and_sizes():
    assert [h.digest_size for h in Hash] == [32, 48, 64]
    assert Hash.from_oid("2.16.840.1.101.3.4.2.2") is SHA384
    with pytest.raises(UnsupportedAlgorithm):
        Hash.from_oid(SHA1_OID)


# -- digest length -----------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_", list(Padding))
@pytest.mark.parametrize("hash_", list(Hash))
def test_wrong_digest_length_raises_invalid_digest(padding_, hash_):
    scheme = SignScheme(padding_, hash_, hash_.digest_size if padding_ is Padding.PSS else None)
    scheme.check_digest(b"\x00" * hash_.digest_size)
    for n in {0, 1, 20, hash_.digest_size - 1, hash_.digest_size + 1, 32, 48, 64, 128} - {hash_.digest_size}:
        with pytest.raises(InvalidDigest, match="^Invalid digest value length$"):
            scheme.check_digest(b"\x00" * n)
        with pytest.raises(InvalidDigest):
            scheme.prepare(b"\x00" * n)


@pytest.mark.parametrize(
    "key_type,scheme",
    [
        (KeyType.EC_P256, SignScheme(Padding.ECDSA, SHA256)),
        (KeyType.RSA_2048, SignScheme(Padding.PKCS1V15, SHA256)),
        (KeyType.RSA_2048, SignScheme(Padding.PSS, SHA256, 32)),
    ],
)
async def test_wrong_digest_length_is_refused_before_any_signing(key_type, scheme):
    store = SoftwareKeyStore()
    store.generate_key_sync("k", key_type)
    good = hashlib.sha256(b"doc").digest()
    for batch in ([good[:-1]], [good, good + b"\x00"], [good, hashlib.sha384(b"doc").digest()]):
        with pytest.raises(InvalidDigest):
            store.sign_digests_sync("k", scheme, batch)
        with pytest.raises(InvalidDigest):
            await store.sign_digests("k", scheme, batch)
    assert store.sign_calls == 0
    assert len(store.sign_digests_sync("k", scheme, [good, good])) == 2
    assert store.sign_calls == 2


# -- PKCS#1 v1.5 DigestInfo --------------------------------------------------------------------------
@pytest.mark.parametrize("hash_", list(Hash))
def test_digest_info_prefix_matches_rfc8017(hash_):
    digest = HASHLIB[hash_](b"message").digest()
    block = SignScheme(Padding.PKCS1V15, hash_).prepare(digest)
    assert block == bytes.fromhex(RFC8017_PREFIX[hash_]) + digest
    # and it parses as a DigestInfo naming the right algorithm with NULL parameters
    info = core.Sequence.load(block)
    alg = algos.DigestAlgorithm.load(info[0].dump())
    assert alg["algorithm"].native == hash_.pyca_name
    assert alg["parameters"].native is None and alg["parameters"].dump() == b"\x05\x00"
    assert core.OctetString.load(info[1].dump()).native == digest


@pytest.mark.parametrize("hash_", list(Hash))
def test_ecdsa_and_pss_pass_the_bare_digest(hash_):
    digest = os.urandom(hash_.digest_size)
    assert SignScheme(Padding.ECDSA, hash_).prepare(digest) == digest
    assert SignScheme(Padding.PSS, hash_, hash_.digest_size).prepare(digest) == digest


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _ckm_rsa_pkcs(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    """What the token does with CKM_RSA_PKCS: EMSA-PKCS1-v1_5 type-1 padding around the block, then RSA."""
    n = key.private_numbers().public_numbers.n
    d = key.private_numbers().d
    k = (n.bit_length() + 7) // 8
    em = b"\x00\x01" + b"\xff" * (k - 3 - len(block)) + b"\x00" + block
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


@pytest.mark.parametrize("hash_", list(Hash))
def test_digest_info_signature_verifies_over_original_message(rsa_key, hash_):
    message = b"the document the signer saw " + hash_.value.encode()
    digest = HASHLIB[hash_](message).digest()
    sig = _ckm_rsa_pkcs(rsa_key, SignScheme(Padding.PKCS1V15, hash_).prepare(digest))
    rsa_key.public_key().verify(sig, message, padding.PKCS1v15(), PYCA[hash_]())
    with pytest.raises(InvalidSignature):
        rsa_key.public_key().verify(sig, message + b"!", padding.PKCS1v15(), PYCA[hash_]())


@pytest.mark.parametrize("hash_", list(Hash))
def test_software_rsa_pkcs1v15_signature_verifies_over_original_message(hash_):
    store = SoftwareKeyStore()
    info = store.generate_key_sync("rsa", KeyType.RSA_2048)
    message = b"a message to sign"
    digest = HASHLIB[hash_](message).digest()
    scheme = resolve_scheme(KeyType.RSA_2048, RSA_ENCRYPTION, hash_.value, None)
    (sig,) = store.sign_digests_sync("rsa", scheme, [digest])
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    pub = load_der_public_key(info.public_key_der)
    pub.verify(sig, message, padding.PKCS1v15(), PYCA[hash_]())
    # the software adapter and the DigestInfo the HSM path builds agree byte for byte
    # (PKCS#1 v1.5 is deterministic)
    priv = store._keys["rsa"][0]
    assert _ckm_rsa_pkcs(priv, scheme.prepare(digest)) == sig


# -- raw r||s to DER ----------------------------------------------------------------------------------
@pytest.mark.parametrize("curve,size", [(ec.SECP256R1(), 32), (ec.SECP384R1(), 48)])
def test_raw_ecdsa_to_der_roundtrip_with_real_signatures(curve, size):
    key = ec.generate_private_key(curve)
    for i in range(20):
        der = key.sign(b"m%d" % i, ec.ECDSA(hashes.SHA256()))
        r, s = utils.decode_dss_signature(der)
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        assert raw_ecdsa_to_der(raw) == der
        key.public_key().verify(raw_ecdsa_to_der(raw), b"m%d" % i, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("r,s", [(1, 1), (0x80, 0x7F), (2**255, 2**255 - 1), (2**256 - 1, 1), (0x00FF, 2**248)])
def test_raw_ecdsa_to_der_handles_leading_zeros_and_high_bits(r, s):
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = raw_ecdsa_to_der(raw)
    assert utils.decode_dss_signature(der) == (r, s)
    assert der == utils.encode_dss_signature(r, s)


# -- algorithm lists ---------------------------------------------------------------------------------
def test_algorithms_for_puts_preferred_hash_specific_oid_first():
    assert algorithms_for(KeyType.EC_P256)[0] == "1.2.840.10045.4.3.2"
    assert algorithms_for(KeyType.EC_P384)[0] == "1.2.840.10045.4.3.3"
    assert algorithms_for(KeyType.RSA_2048)[0] == "1.2.840.113549.1.1.11"
    assert algorithms_for(KeyType.RSA_3072)[0] == "1.2.840.113549.1.1.11"
    for kt in EC_KEYS:
        assert algorithms_for(kt)[-1] == EC_PUBLIC_KEY
    for kt in RSA_KEYS:
        assert algorithms_for(kt)[-1] == RSA_ENCRYPTION


@pytest.mark.parametrize("key_type", list(KeyType))
def test_every_listed_algorithm_resolves_for_its_key_type(key_type):
    algs = algorithms_for(key_type)
    assert len(algs) == len(set(algs))
    assert set(algs) <= set(all_algorithms())
    for oid in algs:
        hash_oid = None if oid in ECDSA_WITH or oid in RSA_WITH else SHA256.value
        scheme = resolve_scheme(key_type, oid, hash_oid, None)
        assert (scheme.padding is Padding.ECDSA) == key_type.is_ec
    # and nothing outside its list does
    for oid in set(all_algorithms()) - set(algs):
        with pytest.raises(UnsupportedAlgorithm):
            resolve_scheme(key_type, oid, SHA256.value, None)


def test_all_algorithms_is_the_union_without_duplicates():
    algs = all_algorithms()
    assert len(algs) == len(set(algs))
    assert set(algs) == set().union(*(algorithms_for(kt) for kt in KeyType))
    assert SHA1_WITH_RSA not in algs and ECDSA_WITH_SHA1 not in algs


def test_key_type_properties():
    assert [kt.is_ec for kt in KeyType] == [True, True, False, False]
    assert [kt.bits for kt in KeyType] == [256, 384, 2048, 3072]
    assert KeyType.EC_P256.curve_name == "secp256r1" and KeyType.EC_P384.curve_oid == "1.3.132.0.34"
    assert KeyType.RSA_2048.curve_name is None
