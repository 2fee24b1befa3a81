"""Raw HSM baseline: sign digests directly with python-pkcs11, one thread, one session.

Run as a subprocess by :mod:`bench.run` with ``SOFTHSM2_CONF`` pointing at the benchmark's data
dir, so the PKCS#11 library reads the same token store as the rqes server. The key is a
*session* object (``store=False``): it lives only in this process and never touches the token
files the server uses.

    python -m bench.raw --module M --token rqes --pin-file F --key-type ec-p256 --seconds 3 --max 50000

Prints one JSON object: signatures, seconds, rate, CPU ms per signature.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")  # RFC 8017 §9.2 note 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.raw")
    p.add_argument("--module", required=True)
    p.add_argument("--token", default="rqes")
    p.add_argument("--pin-file", required=True)
    p.add_argument("--key-type", choices=["ec-p256", "rsa-2048"], required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--max", type=int, default=50_000, help="upper bound on signatures")
    p.add_argument("--warmup", type=int, default=20)
    a = p.parse_args(argv)

    pin = open(a.pin_file).read().strip()
    lib = pkcs11.lib(a.module)
    token = lib.get_token(token_label=a.token)
    session = token.open(rw=True, user_pin=pin)
    try:
        if a.key_type == "ec-p256":
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
            _, priv = params.generate_keypair(store=False)
            mech = Mechanism.ECDSA
            prefix = b""
        else:
            _, priv = session.generate_keypair(KeyType.RSA, 2048, store=False)
            mech = Mechanism.RSA_PKCS
            prefix = SHA256_DIGEST_INFO
        # Inputs prepared up front: the loop times C_Sign (plus python-pkcs11's own overhead) only.
        pool = [prefix + os.urandom(32) for _ in range(256)]
        for i in range(a.warmup):
            priv.sign(pool[i % len(pool)], mechanism=mech)

        n = 0
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        deadline = t0 + a.seconds
        while n < a.max:
            priv.sign(pool[n & 255], mechanism=mech)
            n += 1
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        session.close()
    json.dump({"key_type": a.key_type, "signatures": n, "seconds": elapsed, "rate": n / elapsed,
               "cpu_ms_per_sig": 1000 * cpu / n}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
