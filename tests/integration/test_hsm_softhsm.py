"""hsm.pkcs11.Pkcs11KeyStore against a real SoftHSMv2 token (DESIGN.md §7, sam-hsm.md §6-§8, §13)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import threading
import uuid

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from hsm import Hash, InvalidDigest, KeyExists, KeyNotFound, KeyType, Padding, SignScheme, UnsupportedAlgorithm
from hsm.jws import sign_compact, sign_compact_sync
from hsm.mechanisms import raw_ecdsa_to_der
from hsm.pkcs11 import Pkcs11KeyStore
from hsm.pyca import HsmEcPrivateKey
from hsm.softhsm import default_module, init_token, token_exists, write_config

TOKEN = "HSMTEST"
PIN = "246810"
SO_PIN = "1357911"
RUN = uuid.uuid4().hex[:8]  # labels are never reused: a reused token may hold an earlier run's keys
PYCA = {Hash.SHA256: hashes.SHA256, Hash.SHA384: hashes.SHA384, Hash.SHA512: hashes.SHA512}


def label(name: str) -> str:
    return f"hsmtest-{RUN}-{name}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A logged-in store on our own token.

    SoftHSM reads ``SOFTHSM2_CONF`` and scans its token directory only at ``C_Initialize``, which
    python-pkcs11 does once per process (``pkcs11.lib`` caches the handle). So: reuse the
    process's config when one is set; otherwise write ours and point the variable at it before
    the library is first loaded. A token created after the library was initialised is invisible
    to it until it is re-initialised.
    """
    module = default_module()
    if not os.path.exists(module):
        pytest.skip(f"SoftHSMv2 module not found at {module}")
    own_conf = "SOFTHSM2_CONF" not in os.environ
    if own_conf:
        os.environ["SOFTHSM2_CONF"] = str(write_config(tmp_path_factory.mktemp("softhsm-hsmtest")))
    loaded = pkcs11._loaded.get(module)
    was_loaded = loaded is not None and loaded.initialized
    if not token_exists(TOKEN):
        init_token(TOKEN, PIN, SO_PIN)
        if was_loaded:
            # Another fixture initialised the library before our token existed. Re-initialising
            # invalidates its sessions; Pkcs11KeyStore re-opens lost sessions by design.
            loaded.reinitialize()
    ks = Pkcs11KeyStore(module, TOKEN, PIN).open()
    try:
        yield ks
    finally:
        ks.close()
        if not was_loaded:
            # Leave the process as we found it: the next user initialises with its own config.
            lib = pkcs11._loaded.get(module)
            if lib is not None and lib.initialized:
                lib.finalize()
        if own_conf:
            os.environ.pop("SOFTHSM2_CONF", None)


@pytest.fixture(scope="module")
def keys(store: Pkcs11KeyStore) -> dict[KeyType, str]:
    """One key of each type, generated once for the module."""
    out = {}
    for kt in KeyType:
        out[kt] = label(kt.value)
        store.generate_key_sync(out[kt], kt)
    return out


def public_key(store: Pkcs11KeyStore, lbl: str):
    return serialization.load_der_public_key(store.key_info_sync(lbl).public_key_der)


# -- generation and hardening --------------------------------------------------------------------
@pytest.mark.parametrize("key_type", list(KeyType))
async def test_generate_every_key_type(store, key_type):
    lbl = label(f"gen-{key_type.value}")
    info = await store.generate_key(lbl, key_type)
    assert info.label == lbl and info.key_type is key_type
    pub = serialization.load_der_public_key(info.public_key_der)
    if key_type.is_ec:
        assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == key_type.curve_name
    else:
        assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == key_type.bits
        assert pub.public_numbers().e == 65537
    # read back from the token, not from the generation result
    assert (await store.key_info(lbl)) == info
    assert await store.has_key(lbl) and store.has_key_sync(lbl)
    assert not await store.has_key(label("never-generated"))


@pytest.mark.parametrize("key_type", list(KeyType))
def test_private_key_attributes_read_back_from_token(store, keys, key_type):
    attrs = store.attributes_sync(keys[key_type])
    for name in ("SENSITIVE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE", "LOCAL", "SIGN", "TOKEN", "PRIVATE"):
        assert attrs[name] is True, (name, attrs[name])
    for name in ("EXTRACTABLE", "MODIFIABLE", "DECRYPT", "UNWRAP", "DERIVE", "SIGN_RECOVER"):
        assert attrs[name] is False, (name, attrs[name])
    assert attrs["LABEL"] == keys[key_type]


@pytest.mark.parametrize("key_type", list(KeyType))
def test_public_key_attributes_read_back_from_token(store, keys, key_type):
    def read():
        pub = store._session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=keys[key_type])
        return {a: pub[a] for a in (Attribute.VERIFY, Attribute.ENCRYPT, Attribute.WRAP, Attribute.MODIFIABLE, Attribute.TOKEN)}

    attrs = store._call_sync(read)
    assert attrs[Attribute.VERIFY] is True and attrs[Attribute.TOKEN] is True
    assert attrs[Attribute.ENCRYPT] is False and attrs[Attribute.WRAP] is False and attrs[Attribute.MODIFIABLE] is False


@pytest.mark.parametrize("key_type", list(KeyType))
def test_private_key_cannot_be_exported(store, keys, key_type):
    with pytest.raises(p11e.PKCS11Error) as info:
        store.try_export_sync(keys[key_type])
    assert isinstance(info.value, p11e.AttributeSensitive), type(info.value)


@pytest.mark.parametrize("key_type", [KeyType.EC_P256, KeyType.RSA_2048])
@pytest.mark.parametrize("attribute,value", [(Attribute.EXTRACTABLE, True), (Attribute.SENSITIVE, False), (Attribute.DECRYPT, True),
                                             (Attribute.LABEL, "renamed")])
def test_private_key_attributes_cannot_be_changed(store, keys, key_type, attribute, value):
    def change():
        key = store._session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=keys[key_type])
        key[attribute] = value

    with pytest.raises(p11e.PKCS11Error):
        store._call_sync(change)
    attrs = store.attributes_sync(keys[key_type])
    assert attrs["EXTRACTABLE"] is False and attrs["SENSITIVE"] is True and attrs["DECRYPT"] is False
    assert attrs["LABEL"] == keys[key_type]


# -- signatures ----------------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", [KeyType.EC_P256, KeyType.EC_P384])
@pytest.mark.parametrize("hash_", list(Hash))
async def test_ecdsa_signature_verifies(store, keys, key_type, hash_):
    messages = [b"first", b"second", b""]
    digests = [hashlib.new(hash_.pyca_name, m).digest() for m in messages]
    sigs = await store.sign_digests(keys[key_type], SignScheme(Padding.ECDSA, hash_), digests)
    pub = public_key(store, keys[key_type])
    for sig, digest, message in zip(sigs, digests, messages):
        assert sig[0] == 0x30  # DER ECDSA-Sig-Value, not raw r||s
        pub.verify(sig, digest, ec.ECDSA(utils.Prehashed(PYCA[hash_]())))
        pub.verify(sig, message, ec.ECDSA(PYCA[hash_]()))
    with pytest.raises(InvalidSignature):
        pub.verify(sigs[0], digests[1], ec.ECDSA(utils.Prehashed(PYCA[hash_]())))


@pytest.mark.parametrize("key_type", [KeyType.RSA_2048, KeyType.RSA_3072])
@pytest.mark.parametrize("hash_", list(Hash))
async def test_rsa_pkcs1v15_signature_verifies(store, keys, key_type, hash_):
    message = b"a document " + hash_.value.encode()
    digest = hashlib.new(hash_.pyca_name, message).digest()
    (sig,) = await store.sign_digests(keys[key_type], SignScheme(Padding.PKCS1V15, hash_), [digest])
    assert len(sig) == key_type.bits // 8
    pub = public_key(store, keys[key_type])
    pub.verify(sig, message, padding.PKCS1v15(), PYCA[hash_]())
    pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(PYCA[hash_]()))


@pytest.mark.parametrize("key_type", [KeyType.RSA_2048, KeyType.RSA_3072])
@pytest.mark.parametrize("hash_,salt", [(Hash.SHA256, 32), (Hash.SHA384, 48), (Hash.SHA512, 64), (Hash.SHA256, 0), (Hash.SHA256, 20)])
def test_rsa_pss_signature_verifies(store, keys, key_type, hash_, salt):
    message = b"pss " + str(salt).encode()
    digest = hashlib.new(hash_.pyca_name, message).digest()
    (sig,) = store.sign_digests_sync(keys[key_type], SignScheme(Padding.PSS, hash_, salt), [digest])
    pub = public_key(store, keys[key_type])
    pub.verify(sig, message, padding.PSS(padding.MGF1(PYCA[hash_]()), salt), PYCA[hash_]())
    if salt:
        with pytest.raises(InvalidSignature):  # the salt length really is the one asked for
            pub.verify(sig, message, padding.PSS(padding.MGF1(PYCA[hash_]()), salt - 1), PYCA[hash_]())


@pytest.mark.parametrize("key_type,size", [(KeyType.EC_P256, 64), (KeyType.EC_P384, 96)])
async def test_raw_ecdsa_output_is_r_concat_s(store, keys, key_type, size):
    hash_ = Hash.SHA256 if key_type is KeyType.EC_P256 else Hash.SHA384
    digests = [hashlib.new(hash_.pyca_name, b"%d" % i).digest() for i in range(5)]
    raws = await store.sign_digests(keys[key_type], SignScheme(Padding.ECDSA, hash_), digests, raw_ecdsa=True)
    pub = public_key(store, keys[key_type])
    for raw, digest in zip(raws, digests):
        assert len(raw) == size
        pub.verify(raw_ecdsa_to_der(raw), digest, ec.ECDSA(utils.Prehashed(PYCA[hash_]())))


@pytest.mark.parametrize(
    "key_type,scheme",
    [
        (KeyType.EC_P256, SignScheme(Padding.ECDSA, Hash.SHA256)),
        (KeyType.EC_P384, SignScheme(Padding.ECDSA, Hash.SHA384)),
        (KeyType.RSA_2048, SignScheme(Padding.PKCS1V15, Hash.SHA256)),
        (KeyType.RSA_2048, SignScheme(Padding.PSS, Hash.SHA256, 32)),
    ],
)
async def test_wrong_digest_length_raises_invalid_digest(store, keys, key_type, scheme):
    good = b"\x11" * scheme.hash.digest_size
    for batch in ([good[:-1]], [good + b"\x00"], [b""], [b"\x11" * 20], [good, b"\x11" * 64 if len(good) != 64 else b"\x11" * 48]):
        with pytest.raises(InvalidDigest):
            await store.sign_digests(keys[key_type], scheme, batch)
        with pytest.raises(InvalidDigest):
            store.sign_digests_sync(keys[key_type], scheme, batch)
    assert len(await store.sign_digests(keys[key_type], scheme, [good])) == 1


@pytest.mark.parametrize(
    "key_type,scheme",
    [
        (KeyType.EC_P256, SignScheme(Padding.PKCS1V15, Hash.SHA256)),
        (KeyType.EC_P256, SignScheme(Padding.PSS, Hash.SHA256, 32)),
        (KeyType.RSA_2048, SignScheme(Padding.ECDSA, Hash.SHA256)),
    ],
)
async def test_padding_of_the_other_key_family_is_refused(store, keys, key_type, scheme):
    with pytest.raises(UnsupportedAlgorithm):
        await store.sign_digests(keys[key_type], scheme, [b"\x00" * 32])


# -- lifecycle -----------------------------------------------------------------------------------
async def test_duplicate_label_raises_key_exists(store, keys):
    with pytest.raises(KeyExists):
        await store.generate_key(keys[KeyType.EC_P256], KeyType.EC_P256)
    with pytest.raises(KeyExists):
        store.generate_key_sync(keys[KeyType.EC_P256], KeyType.RSA_2048)
    # the original key is untouched
    digest = hashlib.sha256(b"x").digest()
    (sig,) = await store.sign_digests(keys[KeyType.EC_P256], SignScheme(Padding.ECDSA, Hash.SHA256), [digest])
    public_key(store, keys[KeyType.EC_P256]).verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


async def test_destroy_then_sign_raises_key_not_found(store):
    lbl = label("doomed")
    await store.generate_key(lbl, KeyType.EC_P256)
    scheme = SignScheme(Padding.ECDSA, Hash.SHA256)
    await store.sign_digests(lbl, scheme, [b"\x00" * 32])  # cached handle now
    await store.destroy_key(lbl)
    with pytest.raises(KeyNotFound):
        await store.sign_digests(lbl, scheme, [b"\x00" * 32])
    with pytest.raises(KeyNotFound):
        store.sign_digests_sync(lbl, scheme, [b"\x00" * 32])
    with pytest.raises(KeyNotFound):
        await store.key_info(lbl)
    with pytest.raises(KeyNotFound):
        await store.destroy_key(lbl)
    assert not await store.has_key(lbl)
    # both halves of the pair are gone from the token
    objs = store._call_sync(lambda: list(store._session.get_objects({Attribute.LABEL: lbl})))
    assert objs == []


async def test_sign_with_unknown_label_raises_key_not_found(store):
    with pytest.raises(KeyNotFound):
        await store.sign_digests(label("nope"), SignScheme(Padding.ECDSA, Hash.SHA256), [b"\x00" * 32])


# python-pkcs11 finalises a search begun on the yanked session from __del__ and reports the
# token's SessionHandleInvalid as "exception ignored"; the store then re-opens, as tested here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_session_recovery(store, keys):
    lbl = keys[KeyType.EC_P256]
    scheme = SignScheme(Padding.ECDSA, Hash.SHA256)
    digest = hashlib.sha256(b"before").digest()
    await store.sign_digests(lbl, scheme, [digest])  # the key handle is cached
    before = store.reopen_count
    store.drop_session_for_test()
    (sig,) = await store.sign_digests(lbl, scheme, [digest])
    assert store.reopen_count == before + 1
    public_key(store, lbl).verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    # and again, through the synchronous path and a call that does not use a cached key
    store.drop_session_for_test()
    assert store.key_info_sync(keys[KeyType.RSA_2048]).key_type is KeyType.RSA_2048
    assert store.reopen_count == before + 2
    assert len(store.sign_digests_sync(lbl, scheme, [digest])) == 1
    assert store.reopen_count == before + 2


async def test_concurrent_async_tasks_and_threads(store, keys):
    """8 event-loop tasks and 4 plain threads sign at once through one store. Two threads on
    separate SoftHSM sessions crash the process (sam-hsm.md §8); the store's single worker thread
    serialises every call, so all of them succeed."""
    ec_lbl, rsa_lbl = keys[KeyType.EC_P256], keys[KeyType.RSA_2048]
    ec_scheme, rsa_scheme = SignScheme(Padding.ECDSA, Hash.SHA256), SignScheme(Padding.PSS, Hash.SHA256, 32)
    ec_pub, rsa_pub = public_key(store, ec_lbl), public_key(store, rsa_lbl)
    rounds = 25
    start = threading.Barrier(5)
    thread_results: dict[int, list] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait(timeout=30)
            out = []
            for i in range(rounds):
                d = hashlib.sha256(b"thread %d %d" % (n, i)).digest()
                if i % 5 == 0:
                    out.append(("rsa", d, store.sign_digests_sync(rsa_lbl, rsa_scheme, [d])[0]))
                else:
                    out.append(("ec", d, store.sign_digests_sync(ec_lbl, ec_scheme, [d])[0]))
            thread_results[n] = out
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    async def task(n: int) -> list:
        out = []
        for i in range(rounds):
            ds = [hashlib.sha256(b"task %d %d %d" % (n, i, j)).digest() for j in range(3)]
            if i % 5 == 0:
                sigs = await store.sign_digests(rsa_lbl, rsa_scheme, ds)
                out += [("rsa", d, s) for d, s in zip(ds, sigs)]
            else:
                sigs = await store.sign_digests(ec_lbl, ec_scheme, ds)
                out += [("ec", d, s) for d, s in zip(ds, sigs)]
        return out

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    await asyncio.to_thread(start.wait, 30)
    task_results = await asyncio.gather(*(task(n) for n in range(8)))
    for t in threads:
        await asyncio.to_thread(t.join, 120)
    assert not errors, errors
    assert sorted(thread_results) == [0, 1, 2, 3]
    everything = [r for rs in task_results for r in rs] + [r for rs in thread_results.values() for r in rs]
    assert len(everything) == 8 * rounds * 3 + 4 * rounds
    for kind, digest, sig in everything:
        if kind == "ec":
            ec_pub.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        else:
            rsa_pub.verify(sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))


# -- HSM keys in the Python crypto stack (sam-hsm.md §13) ------------------------------------------
@pytest.mark.parametrize("key_type,hash_cls", [(KeyType.EC_P256, hashes.SHA256), (KeyType.EC_P384, hashes.SHA384), (KeyType.EC_P256, hashes.SHA512)])
def test_hsm_key_signs_self_signed_certificate(store, keys, key_type, hash_cls):
    key = HsmEcPrivateKey(store, keys[key_type])
    assert key.key_size == key_type.bits and key.curve.name == key_type.curve_name
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rqes test {key_type.value}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hash_cls())
    )
    cert.verify_directly_issued_by(cert)
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_cls()))
    assert cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == (
        store.key_info_sync(keys[key_type]).public_key_der
    )
    # a CSR too (proof of possession)
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hash_cls())
    assert csr.is_signature_valid


def test_hsm_ec_private_key_never_reveals_the_key(store, keys):
    key = HsmEcPrivateKey(store, keys[KeyType.EC_P256])
    with pytest.raises(UnsupportedAlgorithm):
        key.private_numbers()
    with pytest.raises(UnsupportedAlgorithm):
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(UnsupportedAlgorithm):
        key.exchange(ec.ECDH(), key.public_key())
    with pytest.raises(UnsupportedAlgorithm):
        key.sign(b"x" * 32, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    with pytest.raises(UnsupportedAlgorithm):
        key.sign(b"data", ec.ECDSA(hashes.SHA1()))
    with pytest.raises(UnsupportedAlgorithm):
        HsmEcPrivateKey(store, keys[KeyType.RSA_2048])


@pytest.mark.parametrize("key_type,alg", [(KeyType.EC_P256, "ES256"), (KeyType.EC_P384, "ES384")])
async def test_jws_sign_compact_verifies_with_jwcrypto(store, keys, key_type, alg):
    from jwcrypto import jwk, jws

    pem = public_key(store, keys[key_type]).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub = jwk.JWK.from_pem(pem)
    payload = {"sub": "signer", "hashes": ["abc"], "n": 1}
    for token in (
        await sign_compact(store, keys[key_type], key_type, {"typ": "test+jwt", "kid": "k"}, payload),
        sign_compact_sync(store, keys[key_type], key_type, {"typ": "test+jwt", "kid": "k"}, payload),
    ):
        obj = jws.JWS()
        obj.deserialize(token)
        obj.verify(pub, alg=alg)
        assert json.loads(obj.payload) == payload
        assert obj.jose_header == {"alg": alg, "typ": "test+jwt", "kid": "k"}
        # one changed payload character breaks it
        h, p, s = token.split(".")
        bad = jws.JWS()
        bad.deserialize(f"{h}.{p[:-1]}{'A' if p[-1] != 'A' else 'B'}.{s}")
        with pytest.raises(jws.InvalidJWSSignature):
            bad.verify(pub, alg=alg)
