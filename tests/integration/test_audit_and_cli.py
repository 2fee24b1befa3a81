"""The audit log, the CLI contract and start-up settings, against a real token and database."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import text

from app.store.engine import make_engine
from tests.conftest import _SESSION_DIR, RQES, ROOT, Server, _pg_create, _pg_drop, engines, free_port


def _offline(engine: str) -> Iterator[Server]:
    """An initialised data dir with a client and a seal, no server running."""
    data_dir = Path(tempfile.mkdtemp(prefix="rqes-cli-", dir=_SESSION_DIR))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RQES_") and k != "SOFTHSM2_CONF"}
    env.update({"RQES_DATA_DIR": str(data_dir), "RQES_AUDIT_CHECKPOINT_INTERVAL": "5", "PYTHONPATH": str(ROOT),
                "RQES_LOG_LEVEL": "WARNING"})
    admin = os.environ.get("RQES_TEST_DATABASE_URL", "")
    db = _pg_create(admin) if engine == "postgres" else None
    if db:
        env["RQES_DATABASE_URL"] = db
    srv = Server(f"http://127.0.0.1:{free_port()}", env, data_dir, engine)
    try:
        srv.cli("init")
        srv.cli("clients", "add", "--client-id", "acme")
        srv.cli("seals", "create", "--client-id", "acme", "--organization", "ACME SA")
        yield srv
    finally:
        if db:
            _pg_drop(admin, db)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(params=engines())
def offline(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A fresh one per test: these tests tamper with the database."""
    yield from _offline(request.param)


@pytest.fixture(scope="module")
def offline_ro() -> Iterator[Server]:
    """Shared by the tests that only read or fail at start-up."""
    yield from _offline("sqlite")


def sql(srv: Server, statement: str) -> None:
    url = srv.env.get("RQES_DATABASE_URL") or f"sqlite:///{srv.data_dir / 'rqes.db'}"

    async def go() -> None:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text(statement))
        await engine.dispose()

    asyncio.run(go())


def verify(srv: Server) -> subprocess.CompletedProcess:
    return srv.cli("audit", "verify", check=False)


def test_init_is_idempotent(offline: Server) -> None:
    out = offline.cli("init").stdout
    assert "nothing to do" in out
    assert verify(offline).returncode == 0


def test_audit_records_key_generation_issuance_and_client_changes(offline: Server) -> None:
    kinds = [r["kind"] for r in offline.cli_json("audit", "tail", "-n", "100")]
    for k in ("key.generated", "certificate.issued", "client.added", "credential.created"):
        assert k in kinds
    text_all = offline.cli("audit", "tail", "-n", "100").stdout
    pin = (offline.data_dir / "pkcs11.pin").read_text().strip()
    assert pin not in text_all


def test_audit_verify_passes_with_signed_checkpoints(offline: Server) -> None:
    r = verify(offline)
    assert r.returncode == 0, r.stderr
    assert "signed checkpoints" in r.stdout and not r.stdout.startswith("audit log OK: 0 records")


def test_audit_detects_edited_record(offline: Server) -> None:
    sql(offline, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    r = verify(offline)
    assert r.returncode == 1
    assert "BROKEN at record 3" in r.stderr and "edited" in r.stderr


def test_audit_detects_deleted_record(offline: Server) -> None:
    sql(offline, "DELETE FROM audit_log WHERE seq = 4")
    r = verify(offline)
    assert r.returncode == 1 and "BROKEN at record 4" in r.stderr


def test_audit_detects_truncation_behind_a_checkpoint(offline: Server) -> None:
    # Remove the tail and rewrite the head so the chain itself looks complete: the signed
    # checkpoint at seq 5 still names the missing record.
    sql(offline, "DELETE FROM audit_log WHERE seq >= 5")
    sql(offline, "UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_log WHERE seq = 4) WHERE id = 1")
    r = verify(offline)
    assert r.returncode == 1 and "BROKEN at record 5" in r.stderr and "truncated" in r.stderr


def test_audit_detects_forged_checkpoint(offline: Server) -> None:
    sql(offline, "UPDATE audit_checkpoints SET signature = signature || 'x' "
                 "WHERE seq = (SELECT MAX(seq) FROM audit_checkpoints)")
    r = verify(offline)
    assert r.returncode == 1 and "checkpoint signature invalid" in r.stderr


def test_cli_clients_and_credentials_contract(offline: Server) -> None:
    out = offline.cli_json("clients", "add", "--client-id", "beta", "--grant", "client_credentials", "--secret", "s3cr3t-value")
    assert out == {"client_id": "beta", "client_secret": "s3cr3t-value", "grants": ["client_credentials"]}
    assert offline.cli("clients", "add", "--client-id", "beta", check=False).returncode == 1
    assert "beta" in [c["client_id"] for c in offline.cli_json("clients", "list")]
    cred = offline.cli_json("seals", "create", "--client-id", "beta", "--organization", "Beta", "--key-type", "ec-p384")
    cid = cred["credentialID"]
    assert offline.cli_json("credentials", "disable", cid)["action"] == "disable"
    assert offline.cli("credentials", "disable", cid, check=False).returncode == 1  # already disabled
    offline.cli("credentials", "enable", cid)
    offline.cli("credentials", "delete", cid)
    assert cid not in [c["credentialID"] for c in offline.cli_json("credentials", "list")]
    assert cid in [c["credentialID"] for c in offline.cli_json("credentials", "list", "--all")]
    bad = offline.cli("seals", "create", "--client-id", "nobody", "--organization", "X", check=False)
    assert bad.returncode == 1 and "no such client" in bad.stderr
    assert offline.cli_json("clients", "remove", "--client-id", "beta") == {"removed": "beta"}
    assert verify(offline).returncode == 0


@pytest.mark.parametrize("name,value,fragment", [
    ("RQES_PORT", "eighty", "RQES_PORT: expected an integer"),
    ("RQES_SAD_LIFETIME", "3600", "RQES_SAD_LIFETIME: must be between 1 and 300"),
    ("RQES_DATABASE_URL", "mysql://x", "RQES_DATABASE_URL: unsupported scheme"),
    ("RQES_PUBLIC_URL", "ftp://x", "RQES_PUBLIC_URL: must be an absolute http(s) URL"),
    ("RQES_PKCS11_MODULE", "/nonexistent/lib.so", "RQES_PKCS11_MODULE: no such file"),
    ("RQES_PKCS11_PIN_FILE", "/nonexistent/pin", "RQES_PKCS11_PIN_FILE: cannot read"),
    ("RQES_DEMO", "maybe", "RQES_DEMO: expected a boolean"),
])
def test_bad_setting_stops_startup_with_one_line(offline_ro: Server, name: str, value: str, fragment: str) -> None:
    env = {**offline_ro.env, name: value}
    r = subprocess.run([*RQES, "serve", "--port", str(free_port())], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], r.stderr


def test_wrong_pin_stops_startup_with_one_line(offline_ro: Server) -> None:
    env = {**offline_ro.env, "RQES_PKCS11_PIN": "000000"}
    r = subprocess.run([*RQES, "serve", "--port", str(free_port())], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "PIN was refused" in lines[0] and "000000" not in r.stderr


def test_unknown_toml_setting_and_secret_in_toml_are_refused(offline_ro: Server, tmp_path: Path) -> None:
    for content, fragment in (('porrt = 1\n', "porrt: unknown setting"), ('pkcs11_pin = "1234"\n', "pkcs11_pin: secrets are not read")):
        cfg = tmp_path / "rqes.toml"
        cfg.write_text(content)
        r = subprocess.run([*RQES, "--config", str(cfg), "serve"], env=offline_ro.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1
