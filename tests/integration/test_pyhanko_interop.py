"""pyHanko's own ``CSCSigner`` seals PDFs through a running rqes over HTTP (csc-api-v2.md §11).

pyHanko speaks CSC v1.0.4.0: with ``api_ver="v2"`` only the URL changes, the signHash body keeps
``hash``/``hashAlgo``. Both that stock client and a v2 adapter (``hashes``/``hashAlgorithmOID``)
must produce PAdES signatures that pyHanko's validator finds intact, valid and trusted under the
embedded root. pyHanko never calls ``credentials/authorize`` itself: the authorization manager
below does, once per batch, with exactly that batch's hashes (SCAL2 hash pinning).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import datetime, timedelta, timezone
from io import BytesIO
from typing import Any

import aiohttp
import pytest
from asn1crypto import algos
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import csc_signer
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

ORGANIZATION = "ACME Test SA"  # what tests/conftest.py's new_seal puts in the seal certificate

# Digest pyHanko is told to use per key type; the SAD is pinned to this algorithm.
MD_FOR = {"ec-p256": "sha256", "ec-p384": "sha384", "rsa-2048": "sha256", "rsa-3072": "sha256"}


class V2CSCSigner(csc_signer.CSCSigner):
    """CSCSigner with the v2 signHash names (csc-api-v2.md §9, §11)."""

    async def format_csc_signing_req(self, tbs_hashes: list[str], digest_algorithm: str) -> dict:
        req = await super().format_csc_signing_req(tbs_hashes, digest_algorithm)
        req["hashes"] = req.pop("hash")
        req["hashAlgorithmOID"] = req.pop("hashAlgo")
        return req


class ShortSaltPssSigner(V2CSCSigner):
    """RSASSA-PSS with salt length = digest length (RFC 4055's default choice) instead of pyHanko's maximum."""

    def get_signature_mechanism_for_digest(self, digest_algorithm: str | None) -> algos.SignedDigestAlgorithm:
        if digest_algorithm is None:  # PdfSigner probing for a mechanism-implied digest: PSS implies none
            return super().get_signature_mechanism_for_digest(None)
        mech = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": algos.RSASSAPSSParams({
            "hash_algorithm": {"algorithm": digest_algorithm},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest_algorithm}},
            "salt_length": hashlib.new(digest_algorithm).digest_size,
        })})
        assert mech["algorithm"].native in self.auth_manager.credential_info.supported_mechanisms
        return mech


class SealAuthorizationManager(csc_signer.CSCAuthorizationManager):
    """CSC v2 §11.6 credentials/authorize for an RSSP-managed seal: explicit mode, ``authData: []``.

    ``v2_names=False`` sends pyHanko's own v1 body (``hash``) from ``format_csc_auth_request``,
    plus the ``hashAlgorithmOID`` that SCAL2 requires at authorization.
    """

    def __init__(self, session_info: csc_signer.CSCServiceSessionInfo, credential_info: csc_signer.CSCCredentialInfo,
                 http: aiohttp.ClientSession, md_algorithm: str, *, v2_names: bool) -> None:
        super().__init__(session_info, credential_info)
        self._http = http
        self._hash_oid = algos.DigestAlgorithmId(md_algorithm).dotted
        self._v2_names = v2_names
        self.requests: list[dict[str, Any]] = []

    async def authorize_signature(self, hash_b64s: list[str]) -> csc_signer.CSCAuthorizationInfo:
        if self._v2_names:
            body: dict[str, Any] = {"credentialID": self.csc_session_info.credential_id,
                                    "numSignatures": len(hash_b64s), "hashes": hash_b64s}
        else:
            body = self.format_csc_auth_request(hash_b64s=hash_b64s)
        body["hashAlgorithmOID"] = self._hash_oid
        body["authData"] = []
        self.requests.append(body)
        async with self._http.post(self.csc_session_info.endpoint_url("credentials/authorize"),
                                   headers=self.auth_headers, json=body) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise SigningError(f"credentials/authorize refused: {resp.status} {data}")
        return csc_signer.CSCAuthorizationInfo(
            sad=data["SAD"], expires_at=datetime.now(timezone.utc) + timedelta(seconds=int(data.get("expiresIn", 3600))))


def blank_pdf() -> bytes:
    w = PdfFileWriter()
    content = w.add_object(generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 720 Td (rqes) Tj ET"))
    w.insert_page(PageObject(contents=content, media_box=(0, 0, 595, 842)))
    out = BytesIO()
    w.write(out)
    return out.getvalue()


def record_calls(calls: list[tuple[str, int]]) -> aiohttp.TraceConfig:
    """Record (CSC method, HTTP status) for every request the aiohttp session makes."""

    def method(url: Any) -> str:
        return url.path.split("/csc/v2/", 1)[-1]

    async def on_end(_session: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        calls.append((method(params.url), params.response.status))

    async def on_error(_session: Any, _ctx: Any, params: aiohttp.TraceRequestExceptionParams) -> None:
        # pyHanko posts signHash with raise_for_status=True: a refusal surfaces here, not in on_end.
        status = params.exception.status if isinstance(params.exception, aiohttp.ClientResponseError) else -1
        calls.append((method(params.url), status))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_error)
    return trace


ONE_BATCH = [("credentials/info", 200), ("credentials/authorize", 200), ("signatures/signHash", 200)]


async def seal_pdf(signer: csc_signer.CSCSigner, md_algorithm: str, field_name: str = "Seal1") -> bytes:
    meta = signers.PdfSignatureMetadata(field_name=field_name, md_algorithm=md_algorithm)
    out = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(blank_pdf())), meta, signer=signer)
    return out.getvalue()


async def validate(server, pdf: bytes):  # noqa: ANN001, ANN201
    root = load_cert_from_pemder(str(server.data_dir / "ca" / "root.pem"))
    # CRL and OCSP URLs in the certificates are not served yet: no fetching, soft-fail revocation.
    vc = ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")
    (sig,) = PdfFileReader(BytesIO(pdf)).embedded_signatures
    assert sig.field_name == "Seal1"
    return await async_validate_pdf_signature(sig, signer_validation_context=vc)


def assert_trusted_seal(status, credential_info: csc_signer.CSCCredentialInfo) -> None:  # noqa: ANN001
    assert (status.intact, status.valid, status.trusted) == (True, True, True), status.pretty_print_details()
    assert status.signing_cert.dump() == credential_info.signing_cert.dump()
    assert status.signing_cert.subject.native["organization_name"] == ORGANIZATION


async def open_signer(server, seal, http: aiohttp.ClientSession, *, v2_names: bool, **kw: Any):  # noqa: ANN001, ANN201
    session_info = csc_signer.CSCServiceSessionInfo(server.base_url, seal.credential_id, oauth_token=seal.token,
                                                    api_ver="v2")
    credential_info = await csc_signer.fetch_certs_in_csc_credential(http, session_info)
    assert credential_info.hash_pinning_required, "rqes seals are SCAL2"
    auth = SealAuthorizationManager(session_info, credential_info, http, kw.pop("md_algorithm"), v2_names=v2_names)
    cls = V2CSCSigner if v2_names else csc_signer.CSCSigner
    return cls(http, auth, **kw), auth


@pytest.mark.parametrize("v2_names", [False, True], ids=["stock-v1-names", "v2-adapter"])
@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048", "ec-p384", "rsa-3072"])
async def test_csc_signer_seals_a_pdf_that_validates(server, key_type: str, v2_names: bool) -> None:
    seal = server.new_seal(key_type)
    md = MD_FOR[key_type]
    calls: list[tuple[str, int]] = []
    async with aiohttp.ClientSession(trace_configs=[record_calls(calls)]) as http:
        signer, auth = await open_signer(server, seal, http, v2_names=v2_names, md_algorithm=md)
        pdf = await seal_pdf(signer, md)

    status = await validate(server, pdf)
    assert_trusted_seal(status, auth.credential_info)
    assert status.md_algorithm == md
    assert calls == ONE_BATCH
    (req,) = auth.requests
    assert req["numSignatures"] == 1 and len(req["hashes" if v2_names else "hash"]) == 1


async def test_rsa_pss_with_hash_length_salt(server) -> None:
    """RSASSA-PSS through pyHanko's signAlgoParams, with the common salt length = digest length."""
    seal = server.new_seal("rsa-2048")
    async with aiohttp.ClientSession() as http:
        _, auth = await open_signer(server, seal, http, v2_names=True, md_algorithm="sha256")
        pdf = await seal_pdf(ShortSaltPssSigner(http, auth), "sha256")

    status = await validate(server, pdf)
    assert_trusted_seal(status, auth.credential_info)
    assert status.pkcs7_signature_mechanism == "rsassa_pss"


async def test_rsa_pss_with_pyhanko_default_salt(server) -> None:
    """pyHanko's ``prefer_pss=True`` asks for the maximum salt (222 bytes for RSA-2048 with
    SHA-256); rqes accepts the hash length or the maximum, and the seal validates."""
    seal = server.new_seal("rsa-2048")
    async with aiohttp.ClientSession() as http:
        signer, auth = await open_signer(server, seal, http, v2_names=True, md_algorithm="sha256", prefer_pss=True)
        pdf = await seal_pdf(signer, "sha256")
    status = await validate(server, pdf)
    assert_trusted_seal(status, auth.credential_info)
    assert status.pkcs7_signature_mechanism == "rsassa_pss"


async def test_one_batch_of_two_signatures_uses_one_sad(server) -> None:
    """batch_size=2: two documents signed concurrently share one authorize and one signHash call."""
    seal = server.new_seal("ec-p256")
    calls: list[tuple[str, int]] = []
    async with aiohttp.ClientSession(trace_configs=[record_calls(calls)]) as http:
        signer, auth = await open_signer(server, seal, http, v2_names=True, md_algorithm="sha256", batch_size=2)
        pdfs = await asyncio.wait_for(asyncio.gather(seal_pdf(signer, "sha256"), seal_pdf(signer, "sha256")), 120)

    assert calls == ONE_BATCH
    (req,) = auth.requests
    assert req["numSignatures"] == 2 and len(set(req["hashes"])) == 2
    for pdf in pdfs:
        assert_trusted_seal(await validate(server, pdf), auth.credential_info)


async def test_sad_pinned_to_other_hash_is_refused(server) -> None:
    """SCAL2 through pyHanko: a SAD prefetched for another digest cannot seal this document."""
    seal = server.new_seal("ec-p256")
    other = base64.b64encode(hashlib.sha256(b"some other document").digest()).decode()
    r = server.post("/csc/v2/credentials/authorize", {
        "credentialID": seal.credential_id, "numSignatures": 1, "hashes": [other],
        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "authData": []}, token=seal.token)
    assert r.status_code == 200, r.text
    calls: list[tuple[str, int]] = []
    async with aiohttp.ClientSession(trace_configs=[record_calls(calls)]) as http:
        session_info = csc_signer.CSCServiceSessionInfo(server.base_url, seal.credential_id, oauth_token=seal.token,
                                                        api_ver="v2")
        credential_info = await csc_signer.fetch_certs_in_csc_credential(http, session_info)
        auth = csc_signer.PrefetchedSADAuthorizationManager(
            session_info, credential_info, csc_signer.CSCAuthorizationInfo(sad=r.json()["SAD"]))
        with pytest.raises(SigningError):
            await seal_pdf(V2CSCSigner(http, auth), "sha256")
    assert calls == [("credentials/info", 200), ("signatures/signHash", 400)]
