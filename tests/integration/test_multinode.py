"""Several rqes processes share one database and one token (DESIGN.md §6): single use holds
whichever node serves the call, and `--workers N` scales with processes without crashing the
PKCS#11 library."""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from typing import Iterator

import httpx
import pytest

from tests.conftest import RQES, ROOT, Server, free_port
from tests.integration.test_csc_seals import assert_error, b64, digest, sad_for, sign

ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def start_node(srv: Server, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([*RQES, "serve", "--port", str(port), *extra], env=srv.env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("second node did not start")


@pytest.fixture(scope="module")
def node_b(server: Server) -> Iterator[str]:
    proc, url = start_node(server)
    yield url
    proc.terminate()
    proc.wait(20)


def sign_on(url: str, seal, sad: str, hs: list[bytes]) -> httpx.Response:  # noqa: ANN001
    return httpx.post(f"{url}/csc/v2/signatures/signHash", json={
        "credentialID": seal.credential_id, "SAD": sad, "hashes": [b64(h) for h in hs], "signAlgo": ECDSA_SHA256},
        headers={"Authorization": f"Bearer {seal.token}"}, timeout=60)


def test_rejects_replay_on_another_node(server: Server, node_b: str) -> None:
    seal = server.new_seal()
    hs = [digest()]
    sad = sad_for(server, seal, hs)
    assert sign_on(node_b, seal, sad, hs).status_code == 200
    assert_error(sign(server, seal, sad, hs), 400, "invalid_request", "Invalid parameter SAD")


def test_rejects_concurrent_replay_across_nodes(server: Server, node_b: str) -> None:
    seal = server.new_seal()
    for _ in range(3):
        hs = [digest()]
        sad = sad_for(server, seal, hs)
        urls = [server.base_url, node_b] * 4
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda u: sign_on(u, seal, sad, hs).status_code, urls))
        assert sorted(codes) == [200] + [400] * 7


def test_workers_sign_in_parallel_without_crashing(server: Server) -> None:
    proc, url = start_node(server, "--workers", "2")
    try:
        seal = server.new_seal()
        sads = [(sad_for(server, seal, hs := [digest(i)]), hs) for i in range(24)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda p: sign_on(url, seal, *p).status_code, sads))
        assert codes == [200] * 24
        assert proc.poll() is None
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)
