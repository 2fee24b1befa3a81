"""The ``rqes`` command line (DESIGN.md §5)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from hsm import HsmError, KeyType

from .settings import Settings, SettingsError, load_settings, require_runtime


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def _run(coro_fn: Callable[[Settings], Awaitable[int]], settings: Settings) -> int:
    return asyncio.run(coro_fn(settings))


async def _with_runtime(settings: Settings, fn: Callable[[Any], Awaitable[int]]) -> int:
    from .runtime import Runtime

    rt = await Runtime.open(settings)
    try:
        return await fn(rt)
    finally:
        await rt.close()


# -- commands -----------------------------------------------------------------------------------------
def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from .runtime import initialize

    did = asyncio.run(initialize(settings))
    for line in did:
        print(f"rqes init: {line}")
    print(f"rqes init: ready in {settings.data_dir}" + ("" if did else " (nothing to do)"))
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    require_runtime(settings)
    from .runtime import Runtime

    async def check() -> None:  # fail fast, with one line, before forking workers
        from .oid4vp import load_trust_anchors

        load_trust_anchors(settings)
        rt = await Runtime.open(settings)
        await rt.close()

    asyncio.run(check())
    os.environ["RQES_HOST"], os.environ["RQES_PORT"] = host, str(port)
    print(f"rqes: serving on http://{host}:{port} with {args.workers} worker(s)", flush=True)
    uvicorn.run("app.asgi:build", factory=True, host=host, port=port, workers=args.workers,
                log_level=settings.log_level.lower(), access_log=args.access_log, proxy_headers=False)
    return 0


def cmd_clients(settings: Settings, args: argparse.Namespace) -> int:
    from .oauth.secrets import hash_secret, new_secret
    from .store import Client

    async def run(rt: Any) -> int:
        if args.action == "add":
            grants = args.grant or ["client_credentials"]
            jwks = None
            if args.jwks:
                try:
                    jwks = json.loads(Path(args.jwks).read_text())
                except (OSError, ValueError) as e:
                    print(f"rqes clients add: cannot read JWKS {args.jwks}: {e}", file=sys.stderr)
                    return 2
                if "keys" not in jwks:
                    jwks = {"keys": [jwks]}
            secret = None if (args.public or jwks) and not args.secret else (args.secret or new_secret())
            client = Client(args.client_id, hash_secret(secret, generated=not args.secret) if secret else None, jwks, grants,
                            args.redirect_uri or [], bool(args.public), "active")
            if not await rt.clients.add(client, "operator"):
                print(f"rqes clients add: client {args.client_id!r} already exists", file=sys.stderr)
                return 1
            out = {"client_id": args.client_id, "client_secret": secret, "grants": grants}
            if jwks:
                out["token_endpoint_auth_method"] = "private_key_jwt"
            _print(out)
            return 0
        if args.action == "list":
            _print([{"client_id": c.client_id, "grants": c.grants, "public": c.public, "status": c.status,
                     "auth": "private_key_jwt" if c.jwks else ("none" if c.public else "client_secret")}
                    for c in await rt.clients.list()])
            return 0
        if not await rt.clients.remove(args.client_id, "operator"):
            print(f"rqes clients remove: no client {args.client_id!r}", file=sys.stderr)
            return 1
        _print({"removed": args.client_id})
        return 0

    return asyncio.run(_with_runtime(settings, run))


def cmd_seals(settings: Settings, args: argparse.Namespace) -> int:
    from .credentials import CredentialError, create_seal

    async def run(rt: Any) -> int:
        try:
            cred = await create_seal(rt, client_id=args.client_id, organization=args.organization,
                                     key_type=KeyType(args.key_type), organization_identifier=args.organization_identifier,
                                     country=args.country, multisign=args.multisign, description=args.description)
        except CredentialError as e:
            print(f"rqes seals create: {e}", file=sys.stderr)
            return 1
        _print({"credentialID": cred.credential_id, "key_type": cred.key_type.value, "multisign": cred.multisign,
                "certificate_serial": cred.cert_serial, "not_after": cred.not_after.isoformat() if cred.not_after else None})
        return 0

    return asyncio.run(_with_runtime(settings, run))


def cmd_credentials(settings: Settings, args: argparse.Namespace) -> int:
    from . import credentials as creds

    async def run(rt: Any) -> int:
        if args.action == "list":
            rows = await rt.credentials.list(include_deleted=args.all)
            out = []
            for c in rows:
                item = {"credentialID": c.credential_id, "kind": c.kind, "owner": c.owner, "status": c.status,
                        "key_type": c.key_type.value, "key_version": c.key_version, "multisign": c.multisign,
                        "not_after": c.not_after.isoformat() if c.not_after else None}
                if args.certificates and c.certificate:
                    from cryptography import x509
                    from cryptography.hazmat.primitives.serialization import Encoding

                    chain = [x509.load_der_x509_certificate(c.certificate), rt.issuing_cert, rt.root_cert]
                    item["subject"] = chain[0].subject.rfc4514_string()
                    item["certificates"] = [x.public_bytes(Encoding.PEM).decode() for x in chain]
                out.append(item)
            _print(out)
            return 0
        if args.action in ("disable", "enable"):
            ok = await creds.set_status(rt, args.credential_id, "disabled" if args.action == "disable" else "enabled")
        else:
            ok = await creds.delete(rt, args.credential_id)
        if not ok:
            print(f"rqes credentials {args.action}: no credential {args.credential_id!r} in a state that allows it", file=sys.stderr)
            return 1
        _print({"credentialID": args.credential_id, "action": args.action})
        return 0

    return asyncio.run(_with_runtime(settings, run))


async def _verify_evidence(rt: Any, rep: Any) -> int:
    """Every wallet-approved signature in the log must trace to a wallet signature over its hash."""
    import base64

    from sam import SamError
    from .store.audit import tail

    records = await tail(rt.engine, 10**9, "signature.activated")
    traced = seals = 0
    bad: list[str] = []
    for r in records:
        d = r["data"]
        if str(d.get("evidence", "")).startswith("oauth2client:"):
            seals += 1
            continue
        digests = [base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)) for h in d["hashes"]]
        try:
            await rt.sam.trace(d["evidence"], d["sub"], d["credentialID"], digests, d["hashAlgorithmOID"])
            traced += 1
        except SamError as e:
            bad.append(f"record {r['seq']}: {e.description} ({e.reason})")
    if bad:
        print(f"audit log chain OK, but {len(bad)} signature(s) do not trace to wallet evidence:", file=sys.stderr)
        for line in bad[:20]:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"audit log OK: {rep.records} records, {rep.checkpoints} signed checkpoints; "
          f"{traced} wallet-approved signatures traced to their evidence, {seals} seal activations")
    return 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from .store import verify_chain

    async def run(rt: Any) -> int:
        if args.action == "tail":
            from .store.audit import tail

            _print(await tail(rt.engine, args.n, args.kind))
            return 0
        if args.action == "checkpoint":
            seq = await rt.audit.checkpoint()
            _print({"checkpoint": seq})
            return 0
        rep = await verify_chain(rt.engine, rt.verify_checkpoint)
        if rep.ok and args.evidence:
            return await _verify_evidence(rt, rep)
        if rep.ok:
            print(f"audit log OK: {rep.records} records, {rep.checkpoints} signed checkpoints")
            return 0
        print(f"audit log BROKEN at record {rep.first_bad}: {rep.reason}", file=sys.stderr)
        for p in rep.problems[1:20]:
            print(f"  also: {p}", file=sys.stderr)
        return 1

    return asyncio.run(_with_runtime(settings, run))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rqes", description="Remote qualified electronic signatures and seals (CSC API v2, SCAL2 SAM, PKCS#11).")
    p.add_argument("--config", help="TOML settings file (also RQES_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the data dir, SoftHSM token, database, system keys and CA (idempotent)")
    s = sub.add_parser("serve", help="serve HTTP")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, default=1, help="worker processes, each with its own PKCS#11 session")
    s.add_argument("--access-log", action="store_true")
    c = sub.add_parser("clients", help="OAuth2 client registry")
    csub = c.add_subparsers(dest="action", required=True)
    ca = csub.add_parser("add")
    ca.add_argument("--client-id", required=True)
    ca.add_argument("--grant", action="append", choices=["client_credentials", "authorization_code", "refresh_token"])
    ca.add_argument("--secret", help="client secret (default: a new random one, printed once)")
    ca.add_argument("--jwks", help="JWKS file: the client authenticates with private_key_jwt")
    ca.add_argument("--redirect-uri", action="append")
    ca.add_argument("--public", action="store_true")
    csub.add_parser("list")
    cr = csub.add_parser("remove")
    cr.add_argument("--client-id", required=True)
    se = sub.add_parser("seals", help="electronic seal credentials")
    ssub = se.add_subparsers(dest="action", required=True)
    sc = ssub.add_parser("create")
    sc.add_argument("--client-id", required=True)
    sc.add_argument("--organization", required=True)
    sc.add_argument("--organization-identifier", help="EN 319 412-1 identifier, e.g. VATBE-0123456789 (default NTR<country>-<client-id>)")
    sc.add_argument("--country")
    sc.add_argument("--key-type", default="ec-p256", choices=[k.value for k in KeyType])
    sc.add_argument("--multisign", type=int)
    sc.add_argument("--description")
    cr2 = sub.add_parser("credentials", help="list, disable, enable or delete credentials")
    crsub = cr2.add_subparsers(dest="action", required=True)
    cl = crsub.add_parser("list")
    cl.add_argument("--all", action="store_true", help="include deleted credentials")
    cl.add_argument("--certificates", action="store_true", help="include the PEM chain (leaf, issuing CA, root)")
    for action in ("disable", "enable", "delete"):
        a = crsub.add_parser(action)
        a.add_argument("credential_id")
    au = sub.add_parser("audit", help="audit log")
    ausub = au.add_subparsers(dest="action", required=True)
    av = ausub.add_parser("verify", help="re-check the hash chain and the signed checkpoints")
    av.add_argument("--evidence", action="store_true",
                    help="also re-verify, offline, that every signature traces to a wallet signature over its hash")
    ausub.add_parser("checkpoint", help="sign a checkpoint over the current head")
    at = ausub.add_parser("tail", help="print the last records as JSON")
    at.add_argument("-n", type=int, default=20)
    at.add_argument("--kind")
    return p


COMMANDS = {"init": cmd_init, "serve": cmd_serve, "clients": cmd_clients, "seals": cmd_seals,
            "credentials": cmd_credentials, "audit": cmd_audit}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return COMMANDS[args.command](settings, args)
    except SettingsError as e:
        print(f"rqes: configuration error: {e}", file=sys.stderr)
        return 2
    except HsmError as e:
        print(f"rqes: HSM error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
