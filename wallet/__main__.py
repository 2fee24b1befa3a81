"""``python -m wallet``: the reference wallet, the test PID issuer and a signing client (``sign``) from the command line.

Human-readable review text goes to stderr, machine-readable JSON results to stdout. Any failure
prints one ``error: ...`` line and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urljoin

import httpx
from cryptography import x509

from ._jose import jwk_thumbprint
from ._statuslist import STATUS_NAMES
from .errors import VerifierUnreachable, WalletError
from .holder import HTTP_TIMEOUT, AuthorizationRequest, Outcome, Wallet, approve, describe_text
from .issuer import DEFAULT_ISSUER_URL, DEFAULT_PORT, DEFAULT_STATE_DIR, PidAttributes, PidIssuer, make_status_server

DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"  # wallet.client.DEFAULT_REDIRECT_URI (imported lazily)

# rqes same-device enrollment entry point (app/oid4vp/routes.py); answers {"uri": "openid4vp://...", ...}.
ENROLL_START_PATH = "/enroll/start?flow=same-device"


class CliError(Exception):
    pass


def _emit(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _anchors(path: str | None) -> list[x509.Certificate] | None:
    if not path:
        return None
    try:
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read --verifier-ca {path}: {e}") from e
    return certs


def _confirm(assume_yes: bool):
    def confirm(request: AuthorizationRequest, matches: dict) -> bool:
        for line in describe_text(request, matches):
            print(line, file=sys.stderr)
        if assume_yes:
            print("Approved (--yes).", file=sys.stderr)
            return True
        print("Approve? [y/N] ", end="", file=sys.stderr, flush=True)
        try:
            answer = input()
        except EOFError:
            answer = ""
        return answer.strip().lower() in ("y", "yes")
    return confirm


def _finish(outcome: Outcome, *, final_only: bool) -> int:
    if final_only and isinstance(outcome.final_body, (dict, list)):
        _emit(outcome.final_body)
    elif final_only and not outcome.redirect_uri and isinstance(outcome.body, dict):
        _emit(outcome.body)
    else:
        _emit(outcome.to_json())
    if not outcome.ok:
        status = outcome.final_status if 200 <= outcome.status_code < 300 else outcome.status_code
        raise CliError(f"the verifier did not accept the response (HTTP {status})")
    return 0


def cmd_issue_pid(args: argparse.Namespace) -> int:
    issuer = PidIssuer(args.state_dir, issuer_url=args.issuer_url)
    created = not Path(args.wallet).exists()
    wallet = Wallet.open(args.wallet, create=True)
    attrs: dict[str, Any] = {"given_name": args.given_name, "family_name": args.family_name,
                             "birthdate": args.birthdate}
    if args.nationality:
        attrs["nationalities"] = tuple(args.nationality)
    for name in ("personal_administrative_number", "issuing_country", "document_number"):
        if getattr(args, name):
            attrs[name] = getattr(args, name)
    issued = issuer.issue(wallet.holder_jwk, PidAttributes(**attrs), status_uri=args.status_url)
    stored = wallet.add_credential(issued.sd_jwt)
    wallet.save()
    _emit({"wallet": str(Path(args.wallet).resolve()), "wallet_created": created, "credential_id": stored.id,
           "iss": issuer.issuer_url, "holder_jwk_thumbprint": jwk_thumbprint(wallet.holder_jwk),
           "status_index": issued.status_index, "issuer_state_dir": str(issuer.state_dir), **issued.summary()})
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    wallet = Wallet.load(args.wallet)
    outcome = approve(args.uri, wallet, trust_anchors=_anchors(args.verifier_ca), confirm=_confirm(args.yes))
    return _finish(outcome, final_only=False)


def cmd_enroll(args: argparse.Namespace) -> int:
    wallet = Wallet.load(args.wallet)
    anchors = _anchors(args.verifier_ca)
    start = urljoin(args.server.rstrip("/") + "/", ENROLL_START_PATH.lstrip("/"))
    # One client for the whole story: the session cookie set at start must come back with the
    # redirect after the response (HAIP same-device session binding).
    with httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
        try:
            r = client.get(start, headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise VerifierUnreachable(f"cannot reach {start}: {e}") from e
        location = r.headers.get("location", "")
        if r.is_redirect and location and not location.startswith(("http://", "https://")):
            uri = location
        else:
            try:
                uri = r.json()["uri"]
            except (ValueError, KeyError, TypeError):
                raise VerifierUnreachable(f"{start} answered HTTP {r.status_code} without a request link: "
                                          f"{r.text[:200]}") from None
        outcome = approve(uri, wallet, http=client, trust_anchors=anchors, confirm=_confirm(args.yes))
    return _finish(outcome, final_only=True)


def cmd_sign(args: argparse.Namespace) -> int:
    # pyHanko and aiohttp load only for this subcommand.
    from .client import ClientError, RqesClient, check_pdf, choose_credential, sign_pdf, validate_pdf

    wallet = Wallet.load(args.wallet)
    src = Path(args.pdf)
    pdf = src.read_bytes()
    check_pdf(pdf)
    anchors = _anchors(args.verifier_ca)
    confirm = _confirm(args.yes)

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
            rqes = RqesClient(args.server, args.client_id, http=http, client_secret=args.client_secret,
                              redirect_uri=args.redirect_uri)
            roots = anchors or await rqes.root_ca()
            print(f"Signing in to {rqes.server} with the wallet (scope=service)...", file=sys.stderr)
            service = await rqes.service_login(wallet, trust_anchors=roots, confirm=confirm)
            credential_id = choose_credential(await rqes.list_credentials(service.access_token), args.credential_id)
            print(f"Signing {src.name} with credential {credential_id} (scope=credential)...", file=sys.stderr)
            signed, _ = await sign_pdf(rqes, wallet, pdf, credential_id=credential_id,
                                       service_token=service.access_token, label=src.name, trust_anchors=roots,
                                       confirm=confirm)
        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_bytes(signed)
        tmp.replace(out)
        summary = await validate_pdf(signed, roots)
        result = {"out": str(out.resolve()), "credentialID": credential_id, "intact": summary.intact,
                  "valid": summary.valid, "trusted": summary.trusted, "signer": summary.signer}
        if args.report:
            Path(args.report).write_text(summary.report)
            result["report"] = str(Path(args.report).resolve())
        _emit(result)
        if not (summary.intact and summary.valid and summary.trusted):
            raise ClientError("the signed PDF does not validate as intact, valid and trusted "
                              f"(intact={summary.intact}, valid={summary.valid}, trusted={summary.trusted})")
        return result

    asyncio.run(run())
    return 0


def cmd_issuer_serve(args: argparse.Namespace) -> int:
    issuer = PidIssuer(args.state_dir, issuer_url=args.issuer_url)
    try:
        server = make_status_server(issuer, args.host, args.port)
    except OSError as e:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {e}") from e
    public = (args.public_url or f"http://{args.host}:{server.server_address[1]}").rstrip("/")
    issuer.set_public_url(public)
    print(f"test PID issuer: status lists at {public}/status/<id> (state {issuer.state_dir})", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_issuer_status(args: argparse.Namespace) -> int:
    issuer = PidIssuer(args.state_dir, issuer_url=args.issuer_url)
    uri = {"revoke": issuer.revoke, "suspend": issuer.suspend, "reinstate": issuer.reinstate}[args.action](args.index)
    _emit({"index": args.index, "status": STATUS_NAMES[issuer.status_of(args.index)], "status_list_uri": uri})
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wallet", description="rqes reference EUDI wallet and test PID issuer")
    sub = p.add_subparsers(dest="command", required=True)

    def state_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="issuer state (default %(default)s)")
        sp.add_argument("--issuer-url", default=DEFAULT_ISSUER_URL, help="the PID iss (default %(default)s)")

    sp = sub.add_parser("issue-pid", help="issue a test PID into a wallet file (created if new)")
    sp.add_argument("--wallet", required=True)
    sp.add_argument("--given-name", required=True)
    sp.add_argument("--family-name", required=True)
    sp.add_argument("--birthdate", required=True, help="YYYY-MM-DD")
    sp.add_argument("--nationality", action="append", help="ISO 3166-1 alpha-2; repeatable (default DE)")
    sp.add_argument("--personal-administrative-number")
    sp.add_argument("--issuing-country")
    sp.add_argument("--document-number")
    sp.add_argument("--status-url", help="status list URI to embed (default: <issuer public URL>/status/<id>)")
    state_dir(sp)
    sp.set_defaults(func=cmd_issue_pid)

    sp = sub.add_parser("approve", help="answer an openid4vp:// request")
    sp.add_argument("--wallet", required=True)
    sp.add_argument("uri")
    sp.add_argument("--yes", action="store_true", help="approve without asking")
    sp.add_argument("--verifier-ca", help="PEM trust anchor(s) for the verifier's x5c chain")
    sp.set_defaults(func=cmd_approve)

    sp = sub.add_parser("enroll", help="same-device enrollment with an rqes server")
    sp.add_argument("--wallet", required=True)
    sp.add_argument("--server", required=True, help="rqes base URL, e.g. http://127.0.0.1:8080")
    sp.add_argument("--yes", action="store_true", help="approve without asking")
    sp.add_argument("--verifier-ca", help="PEM trust anchor(s) for the verifier's x5c chain")
    sp.set_defaults(func=cmd_enroll)

    sp = sub.add_parser("sign", help="sign a PDF through rqes (OAuth2 + CSC v2), approving with the wallet")
    sp.add_argument("--wallet", required=True)
    sp.add_argument("--server", required=True, help="rqes base URL, e.g. http://127.0.0.1:8080")
    sp.add_argument("--client-id", required=True, help="the OAuth2 client (signature creation application)")
    sp.add_argument("--client-secret", help="for a confidential client (HTTP Basic); omit for a public client")
    sp.add_argument("--redirect-uri", default=DEFAULT_REDIRECT_URI, help="registered redirect URI (default %(default)s)")
    sp.add_argument("pdf", metavar="IN.pdf")
    sp.add_argument("--out", required=True, metavar="OUT.pdf")
    sp.add_argument("--credential-id", help="default: the signer's first enabled credential")
    sp.add_argument("--verifier-ca", help="PEM root CA of rqes: trust anchor for the wallet and for validation "
                                          "(default: fetched from <server>/pki/root.pem)")
    sp.add_argument("--report", metavar="FILE", help="also write pyHanko's validation report there")
    sp.add_argument("--yes", action="store_true", help="approve without asking")
    sp.set_defaults(func=cmd_sign)

    ip = sub.add_parser("pid-issuer", help="run or administer the test PID issuer")
    isub = ip.add_subparsers(dest="issuer_command", required=True)
    sp = isub.add_parser("serve", help="serve GET /status/<list-id>")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=DEFAULT_PORT)
    sp.add_argument("--public-url", help="base URL embedded in status list URIs (default http://<host>:<port>)")
    state_dir(sp)
    sp.set_defaults(func=cmd_issuer_serve)
    for action in ("revoke", "suspend", "reinstate"):
        sp = isub.add_parser(action, help=f"{action} an issued PID by status index")
        sp.add_argument("--index", type=int, required=True)
        state_dir(sp)
        sp.set_defaults(func=cmd_issuer_status, action=action)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (WalletError, CliError) as e:
        print(f"error: {e}", file=sys.stderr)
    except httpx.HTTPError as e:
        print(f"error: HTTP: {e}", file=sys.stderr)
    except OSError as e:
        print(f"error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
