"""pyHanko's CSCSigner, a real third-party client, signs a PDF for a natural person through
rqes: PAR + wallet approval of the exact digest + token + signHash, once with pyHanko's v1 field
names (SAD in the body) and once with v2 names (credential token as Bearer only). pyHanko's
validator reports the signature intact, valid and trusted against the embedded root."""

from __future__ import annotations

import asyncio
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.signers import csc_signer

from tests.conftest import Server
from tests.integration.signer_flow import REDIRECT, App, credential_id_of, login, new_signer, root_ca
from wallet import PidIssuer
from wallet.client import RqesClient, RqesCSCSigner, WalletAuthorizationManager, validate_pdf

SAMPLE = Path(__file__).resolve().parents[2] / "demo" / "sample.pdf"


@pytest.mark.parametrize("names", ["v1", "v2"])
def test_pyhanko_signs_a_pdf_with_wallet_approval(server: Server, issuer: PidIssuer, tmp_path: Path, names: str) -> None:  # noqa: F811
    app = App.register(server)
    signer = new_signer(issuer, tmp_path)
    service = login(app, signer)["access_token"]
    cid = credential_id_of(app, service)
    root = root_ca(server)
    pdf_in = SAMPLE.read_bytes()

    async def run() -> tuple[bytes, WalletAuthorizationManager]:
        import aiohttp

        async with httpx.AsyncClient(timeout=60) as http, aiohttp.ClientSession() as session:
            rqes = RqesClient(server.base_url, app.client_id, http=http, client_secret=app.secret, redirect_uri=REDIRECT)
            info = csc_signer.CSCServiceSessionInfo(server.base_url, cid, oauth_token=service, api_ver="v2")
            cred = await csc_signer.fetch_certs_in_csc_credential(session, info)
            auth = WalletAuthorizationManager(info, cred, rqes=rqes, wallet=signer.wallet, trust_anchors=[root],
                                              confirm=lambda *_: True, label="sample.pdf")
            cls = RqesCSCSigner if names == "v2" else csc_signer.CSCSigner
            pdf_signer = cls(session, auth)
            meta = signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm="sha256",
                                                subfilter=fields.SigSeedSubFilter.PADES)
            out = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf_in)), meta, signer=pdf_signer)
            return out.getvalue(), auth

    pdf, auth = asyncio.run(run())
    assert len(auth.tokens) == 1  # one wallet approval for the one digest
    summary = asyncio.run(validate_pdf(pdf, [root]))
    assert summary.intact and summary.valid and summary.trusted, summary.report
    assert "Sig" in summary.signer and "PNODE-" in summary.signer
    kinds = [r["kind"] for r in server.cli_json("audit", "tail", "-n", "10")]
    assert "signature.activated" in kinds
