"""PKCS#11 adapter (python-pkcs11), SoftHSMv2 by default, Thales Luna by configuration.

Concurrency (DESIGN.md §7, sam-hsm.md §8): python-pkcs11 0.10.1 calls ``C_Initialize(NULL)``
and releases the GIL in every ``C_*`` call, and two threads signing on separate SoftHSM sessions
crash the process. So this adapter keeps, per process:

- one library handle and one logged-in session (the login anchor), never closed while in use;
- one dedicated worker thread through which *every* PKCS#11 call runs, so calls are serialised
  and stay off the event loop;
- recovery: when the token reports a lost session or login, the session is re-opened, the key
  cache dropped and the call retried once. Signing is idempotent, so the retry is safe.

Parallelism comes from processes (``rqes serve --workers N``), each with its own adapter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Callable, Sequence, TypeVar

import pkcs11
from pkcs11 import Attribute, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .api import KeyInfo
from .errors import HsmConfigError, HsmError, HsmUnavailable, KeyExists, KeyNotFound, UnsupportedAlgorithm
from .mechanisms import Hash, KeyType, Padding, SignScheme, raw_ecdsa_to_der

log = logging.getLogger("rqes.hsm")
T = TypeVar("T")

_LOST = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.UserNotLoggedIn,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.ObjectHandleInvalid,
)
_PSS_PARAMS = {
    Hash.SHA256: (Mechanism.SHA256, pkcs11.MGF.SHA256),
    Hash.SHA384: (Mechanism.SHA384, pkcs11.MGF.SHA384),
    Hash.SHA512: (Mechanism.SHA512, pkcs11.MGF.SHA512),
}

# Key hardening (sam-hsm.md §6): sign only, never leaves the token, never changes.
_PRIVATE_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.COPYABLE: False,
    Attribute.SIGN: True,
    Attribute.SIGN_RECOVER: False,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
_PUBLIC_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.MODIFIABLE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
    Attribute.VERIFY_RECOVER: False,
}


class Pkcs11KeyStore:
    """:class:`hsm.api.KeyStore` over one PKCS#11 token, selected by label."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self._module = module
        self._token_label = token_label
        self._pin = pin
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._session: Any = None
        self._token: Any = None
        self._keys: dict[str, tuple[Any, KeyType]] = {}
        self._thread_id: int | None = None
        self.reopen_count = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> "Pkcs11KeyStore":
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pkcs11")
        self._run_sync(self._login)
        return self

    def close(self) -> None:
        if self._executor is None:
            return
        try:
            self._run_sync(self._logout)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _login(self) -> None:
        self._thread_id = threading.get_ident()
        try:
            lib = pkcs11.lib(self._module)
        except (RuntimeError, OSError, p11e.PKCS11Error) as e:
            raise HsmConfigError(f"cannot load PKCS#11 module {self._module}: {e}") from e
        try:
            self._token = lib.get_token(token_label=self._token_label)
        except p11e.NoSuchToken:
            raise HsmConfigError(f"no PKCS#11 token labelled {self._token_label!r}") from None
        except p11e.MultipleTokensReturned:
            raise HsmConfigError(f"several PKCS#11 tokens labelled {self._token_label!r}") from None
        try:
            self._session = self._token.open(rw=True, user_pin=self._pin)
        except p11e.PinIncorrect:
            raise HsmConfigError("the PKCS#11 PIN was refused by the token") from None
        except p11e.UserAlreadyLoggedIn:
            # Login is per application (SoftHSMv2#509): another session of ours is still logged in.
            self._session = self._token.open(rw=True)
        self._keys.clear()

    def _logout(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            except p11e.PKCS11Error:
                pass
            self._session = None
        self._keys.clear()

    def _reopen(self) -> None:
        log.warning("PKCS#11 session lost; logging in again")
        self.reopen_count += 1
        self._logout()
        self._login()

    # -- the one way in: every call on the worker thread, retried once after a lost session --
    def _guarded(self, fn: Callable[[], T]) -> T:
        if self._session is None:
            self._login()
        try:
            return fn()
        except _LOST:
            try:
                self._reopen()
            except HsmError:
                raise
            except p11e.PKCS11Error as e:
                raise HsmUnavailable("the HSM is unavailable") from e
            return fn()

    def _run_sync(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise HsmUnavailable("the key store is not open")
        if threading.get_ident() == self._thread_id:
            return fn()
        return self._executor.submit(fn).result()

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise HsmUnavailable("the key store is not open")
        return await asyncio.wrap_future(self._executor.submit(self._guarded, fn))

    def _call_sync(self, fn: Callable[[], T]) -> T:
        return self._run_sync(lambda: self._guarded(fn))

    # -- operations (worker thread) ------------------------------------------------------------
    def _find(self, label: str) -> tuple[Any, KeyType]:
        cached = self._keys.get(label)
        if cached is not None:
            return cached
        try:
            key = self._session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        except p11e.NoSuchKey:
            raise KeyNotFound(f"no key labelled {label!r}") from None
        except p11e.MultipleObjectsReturned:
            raise HsmError(f"several keys labelled {label!r}") from None
        entry = (key, self._key_type_of(key))
        self._keys[label] = entry
        return entry

    def _key_type_of(self, key: Any) -> KeyType:
        if key.key_type == P11KeyType.EC:
            params = key[Attribute.EC_PARAMS]
            for kt in (KeyType.EC_P256, KeyType.EC_P384):
                if params == encode_named_curve_parameters(kt.curve_name):
                    return kt
            raise UnsupportedAlgorithm("unsupported EC curve on the token")
        if key.key_type == P11KeyType.RSA:
            bits = key.key_length
            for kt in (KeyType.RSA_2048, KeyType.RSA_3072):
                if bits == kt.bits:
                    return kt
            raise UnsupportedAlgorithm(f"unsupported RSA size {bits}")
        raise UnsupportedAlgorithm("unsupported key type on the token")

    def _public_der(self, label: str, key_type: KeyType) -> bytes:
        pub = self._session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
        if key_type.is_ec:
            return encode_ec_public_key(pub)
        n = int.from_bytes(pub[Attribute.MODULUS], "big")
        e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
        return (
            rsa.RSAPublicNumbers(e, n)
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def _exists(self, label: str) -> bool:
        return any(True for _ in self._session.get_objects({Attribute.LABEL: label}))

    def _generate(self, label: str, key_type: KeyType) -> KeyInfo:
        if self._exists(label):
            raise KeyExists(f"a key labelled {label!r} already exists")
        kw = dict(
            label=label,
            id=label.encode(),
            store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template=_PUBLIC_TEMPLATE,
            private_template=_PRIVATE_TEMPLATE,
        )
        if key_type.is_ec:
            params = self._session.create_domain_parameters(
                P11KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(key_type.curve_name)}, local=True
            )
            params.generate_keypair(**kw)
        else:
            self._session.generate_keypair(
                P11KeyType.RSA,
                key_type.bits,
                public_template={**_PUBLIC_TEMPLATE, Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01"},
                **{k: v for k, v in kw.items() if k != "public_template"},
            )
        return KeyInfo(label, key_type, self._public_der(label, key_type))

    def _info(self, label: str) -> KeyInfo:
        _, key_type = self._find(label)
        return KeyInfo(label, key_type, self._public_der(label, key_type))

    def _sign(self, label: str, scheme: SignScheme, digests: Sequence[bytes], raw_ecdsa: bool) -> list[bytes]:
        key, key_type = self._find(label)
        if key_type.is_ec != (scheme.padding is Padding.ECDSA):
            raise UnsupportedAlgorithm("Invalid parameter signAlgo")
        blocks = [scheme.prepare(d) for d in digests]  # length checks before the HSM sees anything
        if scheme.padding is Padding.ECDSA:
            raw = [key.sign(b, mechanism=Mechanism.ECDSA) for b in blocks]
            return raw if raw_ecdsa else [raw_ecdsa_to_der(r) for r in raw]
        if scheme.padding is Padding.PKCS1V15:
            return [key.sign(b, mechanism=Mechanism.RSA_PKCS) for b in blocks]
        hash_mech, mgf = _PSS_PARAMS[scheme.hash]
        param = (hash_mech, mgf, scheme.salt_length)
        return [key.sign(b, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=param) for b in blocks]

    def _destroy(self, label: str) -> None:
        objs = list(self._session.get_objects({Attribute.LABEL: label}))
        if not objs:
            raise KeyNotFound(f"no key labelled {label!r}")
        for obj in objs:
            obj.destroy()
        self._keys.pop(label, None)

    def _attributes(self, label: str) -> dict[str, Any]:
        key, _ = self._find(label)
        names = [
            "SENSITIVE", "ALWAYS_SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE", "LOCAL", "MODIFIABLE",
            "SIGN", "SIGN_RECOVER", "DECRYPT", "UNWRAP", "DERIVE", "TOKEN", "PRIVATE", "LABEL",
        ]
        out: dict[str, Any] = {}
        for name in names:
            try:
                out[name] = key[getattr(Attribute, name)]
            except p11e.PKCS11Error:
                out[name] = None
        return out

    def _try_export(self, label: str) -> bytes:
        """Ask the token for the private value: used by tests to prove it refuses."""
        key, key_type = self._find(label)
        attr = Attribute.VALUE if key_type.is_ec else Attribute.PRIVATE_EXPONENT
        return key[attr]

    # -- KeyStore --------------------------------------------------------------------------------
    async def generate_key(self, label: str, key_type: KeyType) -> KeyInfo:
        return await self._run(lambda: self._generate(label, key_type))

    def generate_key_sync(self, label: str, key_type: KeyType) -> KeyInfo:
        return self._call_sync(lambda: self._generate(label, key_type))

    async def key_info(self, label: str) -> KeyInfo:
        return await self._run(lambda: self._info(label))

    def key_info_sync(self, label: str) -> KeyInfo:
        return self._call_sync(lambda: self._info(label))

    async def has_key(self, label: str) -> bool:
        return await self._run(lambda: self._exists(label))

    def has_key_sync(self, label: str) -> bool:
        return self._call_sync(lambda: self._exists(label))

    async def sign_digests(
        self, label: str, scheme: SignScheme, digests: Sequence[bytes], *, raw_ecdsa: bool = False
    ) -> list[bytes]:
        for d in digests:
            scheme.check_digest(d)
        return await self._run(lambda: self._sign(label, scheme, list(digests), raw_ecdsa))

    def sign_digests_sync(
        self, label: str, scheme: SignScheme, digests: Sequence[bytes], *, raw_ecdsa: bool = False
    ) -> list[bytes]:
        for d in digests:
            scheme.check_digest(d)
        return self._call_sync(lambda: self._sign(label, scheme, list(digests), raw_ecdsa))

    async def destroy_key(self, label: str) -> None:
        await self._run(lambda: self._destroy(label))

    def destroy_key_sync(self, label: str) -> None:
        self._call_sync(lambda: self._destroy(label))

    def attributes_sync(self, label: str) -> dict[str, Any]:
        return self._call_sync(lambda: self._attributes(label))

    def try_export_sync(self, label: str) -> bytes:
        return self._call_sync(lambda: self._try_export(label))

    def drop_session_for_test(self) -> None:
        """Close the logged-in session under the adapter's feet, as a token reset would."""
        self._run_sync(lambda: self._session.close())
