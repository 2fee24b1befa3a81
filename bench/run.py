"""rqes throughput benchmark (``make bench`` = ``python -m bench.run``).

One run, on one machine, measures for each key type (EC P-256, RSA-2048):

1. the raw HSM rate: python-pkcs11 signing digests directly on the same SoftHSM token, one
   thread, in a separate process (:mod:`bench.raw`), before and after the HTTP runs, with the
   rqes server idle;
2. rqes over real HTTP (:mod:`bench.load`): authorize + signHash cycles with 1, 10 and 100
   hashes per request against ``rqes serve --workers 1``; then the 100-hash run with two
   concurrent clients on one worker and on ``--workers 2``.

Then complete wallet-approved signing transactions (:mod:`bench.wallet_tx`: PAR, authorize,
OpenID4VP with the reference wallet in-process, token, signHash of one hash) with 1, 2 and 4
concurrent clients, and a cProfile of one client's transactions on both sides.

The ratio column is rqes signHash signatures/s divided by the raw rate. Results go to stdout,
``bench/results/latest.md`` and ``bench/results/<UTC timestamp>.md``. Everything runs on
127.0.0.1 in a temporary data dir that is removed at the end (also on error).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
SIGN_ALGO = {"ec-p256": "1.2.840.10045.4.3.2", "rsa-2048": "1.2.840.113549.1.1.11"}  # *-with-SHA256
LABEL = {"ec-p256": "EC P-256", "rsa-2048": "RSA-2048"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchFailure(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- server CPU from /proc ------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime+cutime+cstime in ticks) of one process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = raw[raw.rindex(")") + 2:].split()  # fields from #3 (state) on; comm may hold spaces
    return int(f[1]), int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])


def tree_cpu_ms(root: int) -> float:
    """CPU time of ``root`` and all its live descendants (plus their reaped children), in ms."""
    table: dict[int, tuple[int, int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None:
                table[int(d)] = st
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(table[p][1] for p in tree if p in table) * 1000.0 / CLK_TCK


def _ticks(path: str) -> int:
    """utime + stime of one process or thread (``/proc/<pid>[/task/<tid>]/stat``), 0 if gone."""
    try:
        raw = Path(path).read_text()
    except OSError:
        return 0
    f = raw[raw.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def worker_cpu_ms(root: int) -> dict[int, float]:
    """CPU (ms) of each direct child of ``root`` (uvicorn's worker processes)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None and st[0] == root:
                out[int(d)] = _ticks(f"/proc/{d}/stat") * 1000.0 / CLK_TCK
    return out


def tree_thread_cpu_ms(root: int) -> tuple[float, float]:
    """(main threads, all other threads) CPU of ``root`` and its live descendants, in ms. In
    ``rqes serve`` the main thread runs the event loop; the others are aiosqlite's connection
    threads, the PKCS#11 executor thread and asyncio's default executor."""
    pids = [root]
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != root:
            st = _stat(int(d))
            if st is not None and st[0] == root:
                pids.append(int(d))  # uvicorn's workers are children of the server process
    main = total = 0
    for pid in pids:
        total += _ticks(f"/proc/{pid}/stat")
        main += _ticks(f"/proc/{pid}/task/{pid}/stat")
    return main * 1000.0 / CLK_TCK, (total - main) * 1000.0 / CLK_TCK


# -- the rqes deployment under test ------------------------------------------------------------------
PACKAGES = ("app", "sam", "hsm")


def snapshot_code(data_dir: Path, source: str) -> Path:
    """Copy the rqes packages into the data dir: the whole run (and the server restart) uses one
    version of the code even while the working tree is being edited. ``source`` is ``worktree``
    or a git revision (e.g. ``HEAD``)."""
    dst = data_dir / "src"
    if source == "worktree":
        for pkg in PACKAGES:
            shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return dst
    proc = subprocess.run(["git", "archive", "--format=tar", source, *PACKAGES], cwd=ROOT, capture_output=True,
                          timeout=60)
    if proc.returncode != 0:
        raise BenchFailure(f"git archive {source} failed: {proc.stderr.decode(errors='replace').strip()}")
    dst.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dst, filter="data")
    return dst


@dataclass
class Deployment:
    data_dir: Path
    port: int
    code_dir: Path
    env: dict[str, str] = field(init=False)
    proc: subprocess.Popen | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RQES_") and k != "SOFTHSM2_CONF"}
        env.update({"RQES_DATA_DIR": str(self.data_dir), "RQES_PUBLIC_URL": self.base_url,
                    "RQES_LOG_LEVEL": "WARNING", "PYTHONPATH": str(self.code_dir)})
        self.env = env

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        proc = subprocess.run([PY, "-m", "app.cli", *args], env=self.env, cwd=self.code_dir, capture_output=True,
                              text=True, timeout=180)
        if proc.returncode != 0:
            raise BenchFailure(f"rqes {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
        return proc.stdout

    def cli_python(self, code: str) -> str:
        return subprocess.run([PY, "-c", code], env=self.env, cwd=self.code_dir, capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args))

    def start(self, workers: int, profile_to: Path | None = None) -> None:
        """``rqes serve --workers N``; with ``profile_to``, under :func:`bench.wallet_tx.serve_profiled`
        (one worker; cProfile switched on and off by SIGUSR1 / SIGUSR2)."""
        self.stop()
        logf = open(self.data_dir / "server.log", "ab")
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        if profile_to is None:
            argv = [PY, "-m", "app.cli", *serve]
        else:  # bench/ is appended to the path last: app, sam and hsm still come from the snapshot
            argv = [PY, "-c", f"import sys; sys.path.append({str(ROOT)!r}); from bench.wallet_tx import main; "
                    "sys.exit(main(sys.argv[1:]))", "serve-profiled", str(profile_to), "--", *serve]
        self.proc = subprocess.Popen(argv, env=self.env, cwd=self.code_dir, stdout=logf, stderr=logf,
                                     start_new_session=True)
        logf.close()
        self.workers = workers
        deadline = time.monotonic() + 60
        ok = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchFailure(f"rqes serve exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    ok += 1
                    if ok >= 3:
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise BenchFailure(f"rqes serve did not become healthy: {self.log_tail()}")
        time.sleep(1.0 if workers > 1 else 0.3)  # let every worker finish its start-up

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        # The server ran in its own session/process group (pgid == its pid): reap stray workers.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            os.killpg(proc.pid, sig)
            time.sleep(1.0)

    def log_tail(self) -> str:
        try:
            return (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no server log)"


# -- measurements -----------------------------------------------------------------------------------
def raw_rate(dep: Deployment, key_type: str, seconds: float) -> dict[str, Any]:
    from hsm.softhsm import default_module

    env = dict(dep.env, SOFTHSM2_CONF=str(dep.data_dir / "softhsm2.conf"))
    proc = subprocess.run([PY, "-m", "bench.raw", "--module", default_module(), "--token", "rqes",
                           "--pin-file", str(dep.data_dir / "pkcs11.pin"), "--key-type", key_type,
                           "--seconds", str(seconds), "--max", "200000"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        raise BenchFailure(f"raw HSM baseline ({key_type}) failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(proc.stdout)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def http_phase(dep: Deployment, token: str, cred: str, key_type: str, batch: int, clients: int,
               seconds: float, warmup: float) -> dict[str, Any]:
    now = time.time()
    job = {"base_url": dep.base_url, "token": token, "credential_id": cred, "sign_algo": SIGN_ALGO[key_type],
           "batch": batch, "start_at": now + warmup, "end_at": now + warmup + seconds,
           "max_cycles": max(20, 200_000 // batch)}
    assert dep.proc is not None
    cpu0 = tree_cpu_ms(dep.proc.pid)
    procs = [subprocess.Popen([PY, "-m", "bench.load", json.dumps(job)], cwd=ROOT, env=dep.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=warmup + seconds + 180)
            if p.returncode != 0:
                raise BenchFailure(f"load driver failed: {err.strip()[-1500:]}\nserver log: {dep.log_tail()}")
            outs.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    cpu_ms = tree_cpu_ms(dep.proc.pid) - cpu0
    sigs = sum(o["signatures"] for o in outs)
    all_sigs = sigs + sum(o["warmup_signatures"] for o in outs)
    lat = [x for o in outs for x in o["latencies"]]
    if not sigs:
        raise BenchFailure(f"no measured cycles for batch {batch}")
    return {
        "batch": batch, "clients": clients, "workers": dep.workers, "requests": sum(o["cycles"] for o in outs),
        "signatures": sigs,
        # one client: signatures / time spent inside signHash; several: the sum of those per-client rates
        "signhash_rate": sum(o["signatures"] / o["signhash_seconds"] for o in outs),
        # signatures / wall time of the measured window (authorize + signHash, all clients together)
        "cycle_rate": sigs / max(o["wall_seconds"] for o in outs),
        "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
        "cpu_ms_per_sig": cpu_ms / all_sigs,
    }


def verify_once(dep: Deployment, token: str, cred: str, key_type: str) -> None:
    """One 10-hash cycle, with every returned signature checked against the credential's certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    from bench.load import cycle

    with httpx.Client(base_url=dep.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        r = c.post("/csc/v2/credentials/info", json={"credentialID": cred, "certificates": "single"})
        if r.status_code != 200:
            raise BenchFailure(f"credentials/info -> {r.status_code}: {r.text[:300]}")
        cert = x509.load_der_x509_certificate(base64.b64decode(r.json()["cert"]["certificates"][0]))
        _, _, hashes_b64, sigs = cycle(c, {"credential_id": cred, "batch": 10, "sign_algo": SIGN_ALGO[key_type]})
    pub = cert.public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    for h, s in zip(hashes_b64, sigs):
        d, sig = base64.b64decode(h), base64.b64decode(s)
        if key_type.startswith("ec"):
            pub.verify(sig, d, ec.ECDSA(prehashed))  # type: ignore[call-arg, union-attr]
        else:
            pub.verify(sig, d, padding.PKCS1v15(), prehashed)  # type: ignore[call-arg, union-attr]


def get_token(dep: Deployment, client_id: str, secret: str) -> str:
    r = httpx.post(f"{dep.base_url}/oauth2/token", data={"grant_type": "client_credentials", "scope": "service"},
                   auth=(client_id, secret), timeout=30)
    if r.status_code != 200:
        raise BenchFailure(f"token request -> {r.status_code}: {r.text[:300]}")
    return r.json()["access_token"]


# -- wallet-approved transactions (bench/wallet_tx.py) ----------------------------------------------------
WALLET_REDIRECT = "http://127.0.0.1/cb"


@dataclass
class WalletBench:
    """The PID issuer (in this process: it serves the status list rqes checks) and the signers, one
    per concurrent client: a wallet file with a PID, enrolled, with its credential ID."""
    issuer_server: Any
    jobs: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None

    def close(self) -> None:
        self.issuer_server.shutdown()


def wallet_setup(dep: Deployment, signers: int) -> WalletBench:
    from wallet import PidAttributes, PidIssuer, Wallet, serve_in_thread

    from bench.wallet_tx import enroll

    iss = PidIssuer(dep.data_dir / "pid-issuer")
    srv, url = serve_in_thread(iss)
    iss.set_public_url(url)
    wb = WalletBench(srv, [])
    client = dep.cli_json("clients", "add", "--client-id", "bench-wallet", "--grant", "authorization_code",
                          "--grant", "refresh_token", "--redirect-uri", WALLET_REDIRECT)
    root_ca = dep.data_dir / "ca" / "root.pem"
    for i in range(signers):
        path = dep.data_dir / f"wallet-{i}.json"
        w = Wallet.create(path)
        pid = iss.issue(w.holder_jwk, PidAttributes(given_name="Bench", family_name=f"Signer{i}", birthdate="1980-01-01",
                                                    personal_administrative_number=f"BENCH{i:03d}"))
        w.add_credential(pid.sd_jwt)
        w.save()
        try:
            e = enroll(dep.base_url, path, root_ca, "bench-wallet", client["client_secret"])
        except Exception as err:  # noqa: BLE001
            wb.close()
            raise BenchFailure(f"wallet enrollment failed: {err}\nserver log: {dep.log_tail()}") from err
        wb.jobs.append({"base_url": dep.base_url, "client_id": "bench-wallet", "client_secret": client["client_secret"],
                        "wallet": str(path), "root_ca": str(root_ca), **e})
    return wb


def _run_wallet_clients(dep: Deployment, jobs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    # bench/ and wallet/ come from the working tree (cwd); app/, sam/, hsm/ are not imported by clients
    procs = [subprocess.Popen([PY, "-m", "bench.wallet_tx", json.dumps(j)], cwd=ROOT, env=dep.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for j in jobs]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise BenchFailure(f"wallet transaction driver failed: {err.strip()[-1500:]}\nserver log: {dep.log_tail()}")
            outs.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs


def wallet_phase(dep: Deployment, wb: WalletBench, clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    now = time.time()
    jobs = [dict(j, start_at=now + warmup, end_at=now + warmup + seconds, max_tx=5000) for j in wb.jobs[:clients]]
    assert dep.proc is not None
    cpu0 = tree_cpu_ms(dep.proc.pid)
    main0, other0 = tree_thread_cpu_ms(dep.proc.pid)
    workers0 = worker_cpu_ms(dep.proc.pid)
    outs = _run_wallet_clients(dep, jobs, warmup + seconds + 180)
    cpu_ms = tree_cpu_ms(dep.proc.pid) - cpu0
    main1, other1 = tree_thread_cpu_ms(dep.proc.pid)
    workers1 = worker_cpu_ms(dep.proc.pid)
    per_worker = sorted((w for w in (workers1[p] - workers0.get(p, 0.0) for p in workers1) if w >= 50), reverse=True)
    tx = sum(o["tx"] for o in outs)
    all_tx = tx + sum(o["warmup_tx"] for o in outs)
    if not tx:
        raise BenchFailure(f"no measured wallet transactions with {clients} client(s)")
    lat = [x for o in outs for x in o["latencies"]]
    steps = {k: 1000 * sum(o["steps"][k] for o in outs) / tx for k in outs[0]["steps"]}
    row = {"clients": clients, "workers": dep.workers, "tx": tx, "all_tx": all_tx,
           "tx_rate": tx / max(o["wall_seconds"] for o in outs),
           "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
           "server_cpu_ms": cpu_ms / all_tx, "loop_cpu_ms": (main1 - main0) / all_tx,
           "other_cpu_ms": (other1 - other0) / all_tx,
           "client_cpu_ms": 1000 * sum(o["client_cpu_seconds"] for o in outs) / tx, "steps_ms": steps,
           "worker_cpu_s": [w / 1000 for w in per_worker] if dep.workers > 1 else []}
    wb.rows.append(row)
    log(f"wallet tx, {clients} client(s), {dep.workers} worker(s): {row['tx_rate']:.1f} tx/s, p50 {row['p50_ms']:.0f} ms, "
        f"p99 {row['p99_ms']:.0f} ms, server {row['server_cpu_ms']:.1f} CPU ms/tx, client {row['client_cpu_ms']:.1f} CPU ms/tx"
        + (" (CPU s per worker: " + ", ".join(f"{w:.1f}" for w in row["worker_cpu_s"]) + ")" if row["worker_cpu_s"] else ""))
    return row


def wallet_profile(dep: Deployment, wb: WalletBench, n_tx: int, warmup: float) -> dict[str, Any]:
    """One client, ``n_tx`` transactions with the server's event-loop thread and the client
    process under cProfile (start-up and warm-up excluded)."""
    server_prof = dep.data_dir / "server.prof"
    client_prof = dep.data_dir / "client.prof"
    dep.start(1, profile_to=server_prof)
    assert dep.proc is not None
    now = time.time()
    _run_wallet_clients(dep, [dict(wb.jobs[0], start_at=now + warmup, end_at=now + warmup, max_tx=1000)], warmup + 120)
    cpu0 = tree_cpu_ms(dep.proc.pid)
    main0, other0 = tree_thread_cpu_ms(dep.proc.pid)
    os.kill(dep.proc.pid, signal.SIGUSR1)
    now = time.time()
    out = _run_wallet_clients(dep, [dict(wb.jobs[0], start_at=now, end_at=now + 120, max_tx=n_tx, check=False,
                                         profile=str(client_prof))], 240)[0]
    os.kill(dep.proc.pid, signal.SIGUSR2)
    cpu_ms = tree_cpu_ms(dep.proc.pid) - cpu0
    main1, other1 = tree_thread_cpu_ms(dep.proc.pid)
    deadline = time.monotonic() + 30
    while not server_prof.exists():
        if time.monotonic() > deadline or dep.proc.poll() is not None:
            raise BenchFailure(f"the profiled server wrote no profile: {dep.log_tail()}")
        time.sleep(0.2)
    tx = out["tx"]
    res = {"tx": tx, "tx_rate": tx / out["wall_seconds"], "wall_ms": 1000 * out["wall_seconds"] / tx,
           "server_cpu_ms": cpu_ms / tx, "loop_cpu_ms": (main1 - main0) / tx, "other_cpu_ms": (other1 - other0) / tx,
           "client_cpu_ms": 1000 * out["client_cpu_seconds"] / tx,
           "steps_ms": {k: 1000 * v / tx for k, v in out["steps"].items()},
           "server": summarize_profile(server_prof, tx, dep.code_dir), "client": summarize_profile(client_prof, tx, ROOT)}
    wb.profile = res
    log(f"profiled: {tx} transactions, {res['tx_rate']:.1f} tx/s under cProfile; server {res['server_cpu_ms']:.1f} "
        f"CPU ms/tx (loop thread {res['loop_cpu_ms']:.1f}), client {res['client_cpu_ms']:.1f} CPU ms/tx")
    return res


IDLE = ("idle (epoll wait)", "waiting for the server (socket recv)")
_NATIVE = (("scrypt", "hashlib.scrypt (client secrets)"), ("cryptography", "cryptography (Rust)"),
           ("pkcs11", "python-pkcs11"), ("sqlite3", "sqlite3"), ("asyncpg", "asyncpg"), ("msgspec", "msgspec"),
           ("select.epoll", IDLE[0]), ("'recv' of '_socket.socket'", IDLE[1]), ("_ssl", "ssl"),
           ("socket", "socket I/O"), ("zlib", "zlib"), ("json", "json"), ("_hashlib", "hashlib"),
           ("greenlet", "greenlet (sqlalchemy async)"), ("uvloop", "uvloop"), ("_pickle", "pickle"),
           ("re.Pattern", "re"), ("_asyncio", "asyncio"))


def _bucket(filename: str, func: str, code_dir: Path) -> str:
    """Where a function lives: rqes package, third-party distribution, stdlib module or native."""
    if filename == "~":
        for needle, name in _NATIVE:
            if needle in func:
                return name
        return "builtins"
    f = filename.replace("\\", "/")
    if "/site-packages/" in f:
        return f.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for prefix in (str(code_dir), str(ROOT)):
        if f.startswith(prefix + "/"):
            return "rqes " + f[len(prefix) + 1:].split("/", 1)[0] + "/"
    mod = Path(f).parent.name if Path(f).parent.name not in ("lib", "") and not Path(f).parent.name.startswith("python3") \
        else Path(f).stem
    return f"stdlib {mod}"


def _fname(key: tuple[str, int, str], code_dir: Path) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    f = filename.replace(str(code_dir) + "/", "").replace(str(ROOT) + "/", "")
    if "/site-packages/" in f:
        f = f.split("/site-packages/", 1)[1]
    elif f.startswith("/"):
        f = "/".join(Path(f).parts[-2:])
    return f"{f}:{line} {func}"


def summarize_profile(path: Path, tx: int, code_dir: Path, top: int = 15) -> dict[str, Any]:
    import pstats

    st = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    buckets: dict[str, float] = {}
    for key, (_, _, tt, _, _) in st.items():
        b = _bucket(key[0], key[2], code_dir)
        buckets[b] = buckets.get(b, 0.0) + tt
    idle = sum(buckets.pop(k, 0.0) for k in IDLE)
    busy = sum(buckets.values())
    own = sorted(st.items(), key=lambda kv: kv[1][2], reverse=True)
    own = [kv for kv in own if _bucket(kv[0][0], kv[0][2], code_dir) not in IDLE][:top]
    ours = [kv for kv in st.items() if _bucket(kv[0][0], kv[0][2], code_dir).startswith("rqes ")]
    cum = sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:top]
    ms = 1000.0 / tx
    return {"busy_ms": busy * ms, "idle_ms": idle * ms,
            "buckets": sorted(((k, v * ms) for k, v in buckets.items()), key=lambda kv: kv[1], reverse=True),
            "own": [(_fname(k, code_dir), v[1] / tx, v[2] * ms) for k, v in own],
            "cumulative": [(_fname(k, code_dir), v[1] / tx, v[3] * ms) for k, v in cum]}


STEP_DOC = {"par": "PAR", "authorize": "GET authorize", "request": "request_uri fetch", "verify": "wallet: verify request (client)",
            "present": "wallet: SD-JWT + KB-JWT (client)", "encrypt": "wallet: JWE (client)",
            "response": "POST response_uri", "code": "GET status_url (code)", "token": "token", "sign": "signHash"}


def render_wallet(wb: WalletBench, target: float) -> list[str]:
    out = ["## Wallet-approved signing transaction (EC P-256 signer, one hash)", "",
           "PAR, authorize, request_uri fetch, wallet response (reference wallet in-process, real HTTP, "
           "`direct_post.jwt`), status poll for the code, token (code + PKCE), signHash with the credential token.", "",
           "| clients | workers | tx/s | p50 ms | p99 ms | server CPU ms/tx | loop thread / other threads | client CPU ms/tx | tx measured |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = sorted(wb.rows, key=lambda r: (r["workers"], r["clients"]))
    for r in rows:
        out.append(f"| {r['clients']} | {r['workers']} | {r['tx_rate']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                   f"{r['server_cpu_ms']:.1f} | {r['loop_cpu_ms']:.1f} / {r['other_cpu_ms']:.1f} | {r['client_cpu_ms']:.1f} | {r['tx']} |")
    out.append("")
    if rows:
        best = max(rows, key=lambda r: r["tx_rate"])
        verdict = "met" if best["tx_rate"] >= target else "NOT met"
        seq = next((r for r in rows if r["clients"] == 1 and r["workers"] == 1), rows[0])
        for r in rows:
            if r["worker_cpu_s"]:
                out.append(f"- {r['clients']} clients on {r['workers']} workers: CPU seconds per worker process over the phase: "
                           + ", ".join(f"{w:.1f}" for w in r["worker_cpu_s"])
                           + " (each client keeps one keep-alive connection, which stays on the worker that accepted it)")
        out.append(f"- target >= {target:.0f} complete transactions/s: best {best['tx_rate']:.1f} tx/s "
                   f"({best['clients']} client{'s' if best['clients'] > 1 else ''}, {best['workers']} worker{'s' if best['workers'] > 1 else ''}), **{verdict}**. "
                   f"At {seq['server_cpu_ms']:.0f} server CPU ms per transaction, {nproc_hint()} cores bound the server alone "
                   f"to about {1000 * (os.cpu_count() or 1) / seq['server_cpu_ms']:.0f} tx/s, with no CPU left for clients; "
                   f"{target:.0f} tx/s needs <= {1000 * (os.cpu_count() or 1) / target:.0f} CPU ms per transaction, server and client together.")
        out += ["", "Mean time per step, ms (wall time in the client; the *client* steps are the wallet's own CPU work):", "",
                "| step | " + " | ".join(f"{r['clients']}c/{r['workers']}w" for r in rows) + " |",
                "|---|" + "---:|" * len(rows)]
        for k in STEP_DOC:
            out.append(f"| {STEP_DOC[k]} | " + " | ".join(f"{r['steps_ms'].get(k, 0):.1f}" for r in rows) + " |")
        out.append("| **whole transaction (mean)** | " + " | ".join(f"{sum(r['steps_ms'].values()):.1f}" for r in rows) + " |")
        out.append("")
    p = wb.profile
    if p:
        out += [f"### Where the time goes (cProfile, one client, {p['tx']} transactions, `--workers 1`)", "",
                f"Under the profiler: {p['tx_rate']:.1f} tx/s, {p['wall_ms']:.0f} ms wall per transaction; server "
                f"{p['server_cpu_ms']:.1f} CPU ms/tx ({p['loop_cpu_ms']:.1f} on the event-loop thread, {p['other_cpu_ms']:.1f} on other "
                f"threads: aiosqlite, PKCS#11 executor), client {p['client_cpu_ms']:.1f} CPU ms/tx. cProfile sees only "
                "the event-loop thread of the server and inflates Python-heavy code, so read shares, not absolute numbers.", ""]
        for side, title in (("server", "Server (rqes event-loop thread)"), ("client", "Client (application + reference wallet, one process)")):
            s = p[side]
            out += [f"**{title}**: {s['busy_ms']:.1f} ms busy per transaction under the profiler"
                    + (f" (and {s['idle_ms']:.1f} ms waiting)." if s["idle_ms"] >= 0.05 else "."), "",
                    "| own time by package | ms/tx | share |", "|---|---:|---:|"]
            for name, v in s["buckets"][:12]:
                out.append(f"| {name} | {v:.2f} | {100 * v / s['busy_ms']:.0f}% |")
            out += ["", "| top rqes functions, cumulative | calls/tx | ms/tx |", "|---|---:|---:|"]
            for name, calls, v in s["cumulative"][:12]:
                out.append(f"| `{name}` | {calls:.1f} | {v:.2f} |")
            out += ["", "| top functions, own time | calls/tx | ms/tx |", "|---|---:|---:|"]
            for name, calls, v in s["own"][:12]:
                out.append(f"| `{name}` | {calls:.1f} | {v:.2f} |")
            out.append("")
    out += ["Columns: *tx/s* = measured transactions / wall time of the measured window (all clients together); "
            "p50/p99 = latency of the whole transaction (PAR to signature); *server CPU ms/tx* = user+system CPU of the "
            "server process tree over the phase, warm-up included, / all transactions, split into the event-loop (main) "
            "threads and the other threads; *client CPU ms/tx* = CPU of the client processes (application, wallet, httpx) "
            "over the measured window / measured transactions. Clients and server share the machine's cores.", ""]
    return out


def nproc_hint() -> str:
    return str(os.cpu_count() or 1)


# -- report ------------------------------------------------------------------------------------------
def machine_info(source: str) -> dict[str, str]:
    try:
        sh = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        sh = "unknown"
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        p11 = version("python-pkcs11")
    except Exception:  # noqa: BLE001
        p11 = "unknown"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD" if source == "worktree" else source], cwd=ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
        if source == "worktree":
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *PACKAGES],
                                   cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
            rev += " + uncommitted changes (working tree)" if dirty else " (working tree, clean)"
        else:
            rev += f" (committed tree, `--source {source}`)"
    except OSError:
        rev = "unknown"
    return {"git": rev, "nproc": str(os.cpu_count()), "cpu": cpu, "python": platform.python_version(), "softhsm": sh,
            "python-pkcs11": p11, "kernel": platform.release()}


def row_name(r: dict[str, Any]) -> str:
    if r["clients"] == 1 and r["workers"] == 1:
        return str(r["batch"])
    return f"{r['batch']} ({r['clients']} clients, {r['workers']} worker{'s' if r['workers'] > 1 else ''})"


def render(results: dict[str, Any], info: dict[str, str], started: dt.datetime, elapsed: float,
           load_before: str, load_after: str, notes: list[str], wallet: list[str] | None = None) -> str:
    out = [f"# rqes benchmark, {started.strftime('%Y-%m-%d %H:%M:%S')} UTC", ""]
    out += [f"- machine: nproc {info['nproc']}, {info['cpu']}, Linux {info['kernel']}",
            f"- python {info['python']}, python-pkcs11 {info['python-pkcs11']}, SoftHSM {info['softhsm']}",
            f"- rqes at git {info['git']}; app/, sam/, hsm/ copied at the start and served from the copy",
            f"- load average before / after: {load_before} / {load_after}; run took {elapsed:.0f} s", ""]
    for kt, res in results.items():
        raws = res["raw"]
        raw = sum(r["rate"] for r in raws) / len(raws)
        out += [f"## {LABEL[kt]}", "",
                "| batch | signHash sig/s | cycle sig/s | raw HSM sig/s | ratio | p50 ms | p99 ms | server CPU ms/sig |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["rows"]:
            out.append(f"| {row_name(r)} | {r['signhash_rate']:,.0f} | {r['cycle_rate']:,.0f} | {raw:,.0f} | "
                       f"{r['signhash_rate'] / raw:.2f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_ms_per_sig']:.3f} |")
        out.append("")
        raw_list = " and ".join(f"{r['rate']:,.0f}" for r in raws)
        spread = (max(r["rate"] for r in raws) - min(r["rate"] for r in raws)) / raw
        cpu_raw = sum(r["cpu_ms_per_sig"] for r in raws) / len(raws)
        out.append(f"- raw HSM: {raw_list} sig/s (before / after this key type's HTTP runs, server idle; mean used; "
                   f"spread {100 * spread:.0f}%), {cpu_raw:.3f} CPU ms/sig in the raw process")
        out.append("- requests measured: " + ", ".join(f"{row_name(r)}: {r['requests']}" for r in res["rows"]))
        main100 = next((r for r in res["rows"] if r["batch"] == 100 and r["clients"] == 1 and r["workers"] == 1), None)
        if main100:
            ratio = main100["signhash_rate"] / raw
            verdict = "met" if ratio >= 0.85 else "NOT met"
            out.append(f"- aim (100-hash signHash within 15% of the raw HSM rate on one worker, ratio >= 0.85): "
                       f"ratio {ratio:.2f}, **{verdict}**; the authorize+signHash cycle reaches "
                       f"{main100['cycle_rate'] / raw:.2f} of raw")
        out.append("")
    out += ["Columns: *signHash sig/s* = signatures / time spent in signHash calls (one request in flight per client; "
            "with several clients, the sum of per-client rates); *cycle sig/s* = signatures / wall time of "
            "authorize + signHash loops (all clients together); *ratio* = signHash sig/s / raw HSM sig/s; "
            "p50/p99 = signHash request latency; *server CPU ms/sig* = user+system CPU of the server process tree "
            "over the whole phase (authorize, signHash, audit, warm-up included) / signatures.", ""]
    out += wallet or []
    out += [f"Note: {n}" for n in notes]
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------------------------
def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--key-types", default="ec-p256,rsa-2048")
    p.add_argument("--batches", default="1,10,100")
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per batch-1/10 phase")
    p.add_argument("--seconds-100", type=float, default=10.0, help="measured seconds per 100-hash phase")
    p.add_argument("--warmup", type=float, default=2.5, help="warm-up seconds before each phase")
    p.add_argument("--raw-seconds", type=float, default=3.0)
    p.add_argument("--no-scaling", action="store_true", help="skip the 2-client / 2-worker rows")
    p.add_argument("--wallet-clients", default="1,2,4",
                   help="concurrent clients for the wallet-approved transaction rows ('' skips them)")
    p.add_argument("--wallet-seconds", type=float, default=10.0, help="measured seconds per wallet transaction phase")
    p.add_argument("--wallet-profile-tx", type=int, default=40,
                   help="transactions run under cProfile (server and client); 0 skips the profile")
    p.add_argument("--wallet-target", type=float, default=100.0, help="target complete transactions/s")
    p.add_argument("--source", default="worktree",
                   help="code to benchmark: 'worktree' (default) or a git revision such as HEAD")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (prints its path)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/")
    a = p.parse_args(argv)
    key_types = [k.strip() for k in a.key_types.split(",") if k.strip()]
    batches = [int(b) for b in a.batches.split(",") if b.strip()]
    wallet_clients = [int(c) for c in a.wallet_clients.split(",") if c.strip()]
    for kt in key_types:
        if kt not in SIGN_ALGO:
            p.error(f"unsupported key type {kt!r}")
    if any(b < 1 or b > 100 for b in batches):
        p.error("batch sizes must be within 1..100 (the seals are created with --multisign 100)")
    if any(c < 1 or c > 16 for c in wallet_clients):
        p.error("--wallet-clients: 1..16 concurrent clients")

    signal.signal(signal.SIGTERM, _sigterm)
    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.monotonic()
    load_before = "{} {} {}".format(*(f"{x:.2f}" for x in os.getloadavg()))
    data_dir = Path(tempfile.mkdtemp(prefix="rqes-bench-"))
    results: dict[str, Any] = {kt: {"raw": [], "rows": []} for kt in key_types}
    notes: list[str] = []
    wallet_report: list[str] = []
    failed = False
    dep = Deployment(data_dir, free_port(), data_dir / "src")
    wb: WalletBench | None = None
    try:
        snapshot_code(data_dir, a.source)
        # the wallet rows' PIDs come from the reference wallet's test PID issuer
        shutil.copy(ROOT / "wallet" / "testdata" / "test-pid-ca.pem", data_dir / "pid-issuers.pem")
        dep.env["RQES_TRUSTED_PID_ISSUERS"] = str(data_dir / "pid-issuers.pem")
        log(f"data dir {data_dir}; rqes init")
        where = dep.cli_python("import app, sam, hsm; print(app.__file__, sam.__file__, hsm.__file__)")
        if any(not f.startswith(str(dep.code_dir)) for f in where.split()):
            raise BenchFailure(f"the server would not run the snapshot: {where}")
        dep.cli("init")
        client = dep.cli_json("clients", "add", "--client-id", "bench")
        creds = {}
        for kt in key_types:
            creds[kt] = dep.cli_json("seals", "create", "--client-id", "bench", "--organization", "Bench",
                                     "--key-type", kt, "--multisign", "100")["credentialID"]
        log(f"starting rqes serve --workers 1 on {dep.base_url}")
        dep.start(1)
        token = get_token(dep, "bench", client["client_secret"])
        for kt in key_types:
            verify_once(dep, token, creds[kt], kt)
        log("signatures from signHash verified against the seal certificates")

        scaling = not a.no_scaling and 100 in batches
        for kt in key_types:  # raw, HTTP phases, raw again: the two raw runs bracket this key type's phases
            r = raw_rate(dep, kt, a.raw_seconds)
            results[kt]["raw"].append(r)
            log(f"raw HSM {kt}: {r['rate']:,.0f} sig/s ({r['signatures']} in {r['seconds']:.1f} s)")
            for b in batches:
                secs = a.seconds_100 if b >= 100 else a.seconds
                r = http_phase(dep, token, creds[kt], kt, b, 1, secs, a.warmup)
                results[kt]["rows"].append(r)
                log(f"{kt} batch {b}: signHash {r['signhash_rate']:,.0f} sig/s, cycle {r['cycle_rate']:,.0f} sig/s, "
                    f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['cpu_ms_per_sig']:.3f} CPU ms/sig")
            if scaling:
                r = http_phase(dep, token, creds[kt], kt, 100, 2, a.seconds_100, a.warmup)
                results[kt]["rows"].append(r)
                log(f"{kt} batch 100, 2 clients, 1 worker: signHash {r['signhash_rate']:,.0f}, cycle {r['cycle_rate']:,.0f} sig/s")
            r = raw_rate(dep, kt, a.raw_seconds)
            results[kt]["raw"].append(r)
            log(f"raw HSM {kt} (after): {r['rate']:,.0f} sig/s")
        if scaling:
            log("restarting rqes serve --workers 2")
            try:  # best effort: a failure here keeps the one-worker results
                dep.start(2)
                for kt in key_types:
                    r = http_phase(dep, token, creds[kt], kt, 100, 2, a.seconds_100, a.warmup)
                    results[kt]["rows"].append(r)
                    log(f"{kt} batch 100, 2 clients, 2 workers: signHash {r['signhash_rate']:,.0f}, "
                        f"cycle {r['cycle_rate']:,.0f} sig/s")
            except BenchFailure as e:
                first = str(e).splitlines()[0]
                log(f"--workers 2 phase failed: {e}")
                notes.append(f"The `--workers 2` phase failed: {first}")
        if wallet_clients:
            try:
                if dep.workers != 1 or dep.proc is None or dep.proc.poll() is not None:
                    log("restarting rqes serve --workers 1 for the wallet transactions")
                    dep.start(1)
                log(f"wallet transactions: issuing PIDs and enrolling {max(wallet_clients)} signer(s)")
                wb = wallet_setup(dep, max(wallet_clients))
                for c in wallet_clients:
                    wallet_phase(dep, wb, c, a.wallet_seconds, a.warmup)
                if not a.no_scaling:
                    log("restarting rqes serve --workers 2")
                    dep.start(2)
                    wallet_phase(dep, wb, max(wallet_clients), a.wallet_seconds, a.warmup)
                if a.wallet_profile_tx > 0:
                    log(f"restarting rqes serve --workers 1 under cProfile for {a.wallet_profile_tx} transactions")
                    wallet_profile(dep, wb, a.wallet_profile_tx, a.warmup)
            except BenchFailure as e:
                log(f"wallet transaction phase failed: {e}")
                notes.append(f"The wallet transaction phase failed: {str(e).splitlines()[0]}")
                failed = True
            if wb is not None:
                wallet_report = render_wallet(wb, a.wallet_target)
        dep.stop()
    except BenchFailure as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        dep.stop()
        if wb is not None:
            wb.close()
        if a.keep:
            log(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    load_after = "{} {} {}".format(*(f"{x:.2f}" for x in os.getloadavg()))
    report = render(results, machine_info(a.source), started, time.monotonic() - t_start, load_before, load_after, notes,
                    wallet_report)
    print(report)
    if not a.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        (RESULTS / f"{stamp}.md").write_text(report + "\n")
        (RESULTS / "latest.md").write_text(report + "\n")
        log(f"wrote bench/results/latest.md and bench/results/{stamp}.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
