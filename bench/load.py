"""Load driver: authorize + signHash cycles against a running rqes over real HTTP.

One process, one keep-alive ``httpx.Client``, one request in flight. :mod:`bench.run` starts one
(or, for the multi-worker row, several in parallel) as subprocesses with a JSON job on argv:

    python -m bench.load '{"base_url": ..., "token": ..., "credential_id": ..., "sign_algo": ...,
                           "batch": 100, "start_at": <epoch s>, "end_at": <epoch s>, "max_cycles": N}'

Cycles before ``start_at`` are warm-up (counted for server CPU, not for rates); measured cycles
start until ``end_at`` or ``max_cycles``. Prints one JSON object.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import Any

import httpx

SHA256 = "2.16.840.1.101.3.4.2.1"


class BenchError(RuntimeError):
    pass


def _hashes(n: int) -> list[str]:
    return [base64.b64encode(os.urandom(32)).decode() for _ in range(n)]


def cycle(client: httpx.Client, job: dict[str, Any]) -> tuple[float, float, list[str], list[str]]:
    """One authorize + signHash. Returns (cycle seconds, signHash seconds, hashes, signatures)."""
    hashes = _hashes(job["batch"])
    t0 = time.perf_counter()
    r = client.post("/csc/v2/credentials/authorize", json={
        "credentialID": job["credential_id"], "numSignatures": len(hashes), "hashes": hashes,
        "hashAlgorithmOID": SHA256, "authData": []})
    if r.status_code != 200:
        raise BenchError(f"credentials/authorize -> {r.status_code}: {r.text[:300]}")
    sad = r.json()["SAD"]
    t1 = time.perf_counter()
    r = client.post("/csc/v2/signatures/signHash", json={
        "credentialID": job["credential_id"], "SAD": sad, "hashes": hashes,
        "hashAlgorithmOID": SHA256, "signAlgo": job["sign_algo"]})
    t2 = time.perf_counter()
    if r.status_code != 200:
        raise BenchError(f"signatures/signHash -> {r.status_code}: {r.text[:300]}")
    sigs = r.json()["signatures"]
    if len(sigs) != len(hashes):
        raise BenchError(f"signHash returned {len(sigs)} signatures for {len(hashes)} hashes")
    return t2 - t0, t2 - t1, hashes, sigs


def run(job: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {job['token']}"}
    warm = 0
    lat: list[float] = []
    cycle_total = 0.0
    with httpx.Client(base_url=job["base_url"], headers=headers, timeout=60.0) as client:
        # Warm-up: at least one cycle, then until start_at (bounded by max_cycles too).
        while warm < job["max_cycles"]:
            cycle(client, job)
            warm += 1
            if time.time() >= job["start_at"]:
                break
        w0 = time.perf_counter()
        while len(lat) < job["max_cycles"] and time.time() < job["end_at"]:
            c, s, _, _ = cycle(client, job)
            cycle_total += c
            lat.append(s)
        wall = time.perf_counter() - w0
    return {"batch": job["batch"], "warmup_cycles": warm, "cycles": len(lat), "signatures": len(lat) * job["batch"],
            "warmup_signatures": warm * job["batch"], "signhash_seconds": sum(lat), "cycle_seconds": cycle_total,
            "wall_seconds": wall, "latencies": lat}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(argv[0])
    try:
        out = run(job)
    except (BenchError, httpx.HTTPError) as e:
        print(f"bench.load: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
