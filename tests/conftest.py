"""Shared fixtures: a real rqes server (SoftHSM token, SQLite or PostgreSQL) over real HTTP.

The PostgreSQL variant runs when ``RQES_TEST_DATABASE_URL`` is set (CI sets it): each test
session gets a fresh database on that server, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
RQES = [sys.executable, "-m", "app.cli"]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="rqes-tests-"))

# In-process PKCS#11 users (HSM tests) share one SoftHSM config: the library reads it once.
if "SOFTHSM2_CONF" not in os.environ:
    from hsm import softhsm as _softhsm

    os.environ["SOFTHSM2_CONF"] = str(_softhsm.write_config(_SESSION_DIR / "inproc"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_create(url: str) -> str:
    import asyncpg

    name = f"rqes_test_{secrets.token_hex(4)}"

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(go())
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _pg_drop(admin_url: str, db_url: str) -> None:
    import asyncpg

    name = db_url.rpartition("/")[2]

    async def go() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(go())


@dataclass
class Seal:
    client_id: str
    secret: str
    credential_id: str
    token: str
    key_type: str


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    data_dir: Path
    engine: str
    proc: subprocess.Popen | None = None
    _n: int = field(default=0)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*RQES, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"rqes {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def new_client(self, grants: tuple[str, ...] = ("client_credentials",)) -> tuple[str, str]:
        self._n += 1
        client_id = f"client-{self._n}-{secrets.token_hex(3)}"
        argv = ["clients", "add", "--client-id", client_id]
        for g in grants:
            argv += ["--grant", g]
        out = self.cli_json(*argv)
        return out["client_id"], out["client_secret"]

    def token(self, client_id: str, secret: str) -> str:
        r = httpx.post(f"{self.base_url}/oauth2/token", data={"grant_type": "client_credentials", "scope": "service"},
                       auth=(client_id, secret))
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def new_seal(self, key_type: str = "ec-p256", *extra: str) -> Seal:
        client_id, secret = self.new_client()
        cred = self.cli_json("seals", "create", "--client-id", client_id, "--organization", "ACME Test SA",
                             "--key-type", key_type, *extra)
        return Seal(client_id, secret, cred["credentialID"], self.token(client_id, secret), key_type)

    def post(self, path: str, body: Any = None, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.post(f"{self.base_url}{path}", json=body if body is not None else {}, headers=headers, timeout=60, **kw)

    def start(self) -> None:
        port = int(self.base_url.rsplit(":", 1)[1])
        log = open(self.data_dir / "server.log", "ab")
        self.proc = subprocess.Popen([*RQES, "serve", "--port", str(port)], env=self.env, cwd=ROOT, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"rqes serve exited: {(self.data_dir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("rqes serve did not become healthy")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def engines() -> list[str]:
    return ["sqlite", "postgres"] if os.environ.get("RQES_TEST_DATABASE_URL") else ["sqlite"]


def make_server(engine: str, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"rqes-{engine}-", dir=_SESSION_DIR))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RQES_") and k != "SOFTHSM2_CONF"}
    env.update({"RQES_DATA_DIR": str(data_dir), "RQES_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "RQES_LOG_LEVEL": os.environ.get("RQES_TEST_LOG_LEVEL", "WARNING"), "PYTHONPATH": str(ROOT), "RQES_DEMO": "1"})
    admin_url = os.environ.get("RQES_TEST_DATABASE_URL", "")
    db_url = None
    if engine == "postgres":
        db_url = _pg_create(admin_url)
        env["RQES_DATABASE_URL"] = db_url
    env.update(extra_env or {})
    srv = Server(f"http://127.0.0.1:{port}", env, data_dir, engine)
    try:
        srv.cli("init")
        srv.start()
        yield srv
    finally:
        srv.stop()
        if db_url:
            _pg_drop(admin_url, db_url)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session", params=engines())
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from make_server(request.param)


@pytest.fixture(scope="session")
def sqlite_server() -> Iterator[Server]:
    yield from make_server("sqlite")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The reference wallet's test PID issuer with its status list served on loopback."""
    from wallet import PidIssuer, serve_in_thread

    iss = PidIssuer(tmp_path_factory.mktemp("pid-issuer"))
    srv, url = serve_in_thread(iss)
    iss.set_public_url(url)
    yield iss
    srv.shutdown()
