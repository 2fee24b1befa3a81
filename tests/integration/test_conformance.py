"""``python -m conformance`` against a real rqes: it passes on a correct setup, and it can fail."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLOSING = re.compile(r"^(\d+) passed, (\d+) failed$")


def run_suite(server, client_id: str, secret: str, credential_id: str) -> tuple[int, list[str], int, int]:  # noqa: ANN001
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", f"--base-url={server.base_url}", f"--client-id={client_id}",
         f"--client-secret={secret}", f"--credential-id={credential_id}"],  # '=' form: values may start with '-'
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    closing = CLOSING.match(lines[-1])
    assert closing, f"bad closing line {lines[-1]!r}\n{proc.stderr}"
    assert all(line.startswith(("PASS ", "FAIL ")) for line in lines[:-1]), proc.stdout
    return proc.returncode, lines[:-1], int(closing[1]), int(closing[2])


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_suite_passes_and_leaves_the_credential_usable(server, key_type: str) -> None:
    seal = server.new_seal(key_type)
    rc, lines, passed, failed = run_suite(server, seal.client_id, seal.secret, seal.credential_id)
    assert (rc, failed) == (0, 0), "\n".join(line for line in lines if line.startswith("FAIL"))
    assert passed == len(lines) >= 25

    digest = base64.b64encode(hashlib.sha256(b"after the conformance run").digest()).decode()
    r = server.post("/csc/v2/credentials/authorize", {
        "credentialID": seal.credential_id, "numSignatures": 1, "hashes": [digest],
        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "authData": []}, token=seal.token)
    assert r.status_code == 200, r.text
    sign_algo = "1.2.840.10045.4.3.2" if key_type.startswith("ec") else "1.2.840.113549.1.1.11"
    r = server.post("/csc/v2/signatures/signHash", {
        "credentialID": seal.credential_id, "SAD": r.json()["SAD"], "hashes": [digest],
        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "signAlgo": sign_algo}, token=seal.token)
    assert r.status_code == 200, r.text


def test_suite_reports_a_wrong_client_secret(server) -> None:
    seal = server.new_seal("ec-p256")
    rc, lines, passed, failed = run_suite(server, seal.client_id, seal.secret + "x", seal.credential_id)
    assert rc == 1 and failed > 0
    assert any(line.startswith("FAIL oauth2.token_client_secret_basic: ") for line in lines)
    assert any(line.startswith("FAIL sign_hash.v2_names: ") for line in lines)
    assert "PASS info.required_fields" in lines  # info needs no authentication


def test_suite_reports_a_foreign_credential(server) -> None:
    mine, theirs = server.new_seal("ec-p256"), server.new_seal("ec-p256")
    rc, lines, _, failed = run_suite(server, mine.client_id, mine.secret, theirs.credential_id)
    assert rc == 1 and failed > 0
    assert any(line.startswith("FAIL credentials_list.contains_credential: ") for line in lines)
    assert any(line.startswith("FAIL sign_hash.v2_names: ") for line in lines)
    assert "PASS oauth2.token_client_secret_basic" in lines
