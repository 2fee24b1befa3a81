"""Command line: one ``PASS name`` / ``FAIL name: why`` line per check, then ``N passed, M failed``."""

from __future__ import annotations

import argparse
import sys

import httpx

from .csc_v2 import CHECKS, Context, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance", description=(
        "Run the CSC API v2 + OAuth2 seal conformance checks against a running rqes."))
    p.add_argument("--base-url", required=True, help="rqes base URL; the CSC API is at <base>/csc/v2")
    p.add_argument("--client-id", required=True, help="OAuth2 client owning the seal credential")
    p.add_argument("--client-secret", required=True)
    p.add_argument("--credential-id", required=True, help="a seal credential of that client")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    p.add_argument("-k", dest="only", default=None, help="run only checks whose name contains this text")
    args = p.parse_args(argv)

    checks = [(n, c) for n, c in CHECKS if args.only is None or args.only in n]
    with httpx.Client(timeout=args.timeout) as http:
        ctx = Context(args.base_url.rstrip("/"), args.client_id, args.client_secret, args.credential_id, http)
        results = run(ctx, checks)
    for r in results:
        print(f"PASS {r.name}" if r.passed else f"FAIL {r.name}: {r.why}", flush=True)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
