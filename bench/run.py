"""rqes throughput benchmark (``make bench`` = ``python -m bench.run``).

One run, on one machine, measures for each key type (EC P-256, RSA-2048):

1. the raw HSM rate: python-pkcs11 signing digests directly on the same SoftHSM token, one
   thread, in a separate process (:mod:`bench.raw`), before and after the HTTP runs, with the
   rqes server idle;
2. rqes over real HTTP (:mod:`bench.load`): authorize + signHash cycles with 1, 10 and 100
   hashes per request against ``rqes serve --workers 1``; then the 100-hash run with two
   concurrent clients on one worker and on ``--workers 2``.

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

    def start(self, workers: int) -> None:
        self.stop()
        logf = open(self.data_dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [PY, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
            env=self.env, cwd=self.code_dir, stdout=logf, stderr=logf, start_new_session=True)
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
           load_before: str, load_after: str, notes: list[str]) -> str:
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
    p.add_argument("--source", default="worktree",
                   help="code to benchmark: 'worktree' (default) or a git revision such as HEAD")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (prints its path)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/")
    a = p.parse_args(argv)
    key_types = [k.strip() for k in a.key_types.split(",") if k.strip()]
    batches = [int(b) for b in a.batches.split(",")]
    for kt in key_types:
        if kt not in SIGN_ALGO:
            p.error(f"unsupported key type {kt!r}")
    if any(b < 1 or b > 100 for b in batches):
        p.error("batch sizes must be within 1..100 (the seals are created with --multisign 100)")

    signal.signal(signal.SIGTERM, _sigterm)
    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.monotonic()
    load_before = "{} {} {}".format(*(f"{x:.2f}" for x in os.getloadavg()))
    data_dir = Path(tempfile.mkdtemp(prefix="rqes-bench-"))
    results: dict[str, Any] = {kt: {"raw": [], "rows": []} for kt in key_types}
    notes: list[str] = []
    dep = Deployment(data_dir, free_port(), data_dir / "src")
    try:
        snapshot_code(data_dir, a.source)
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
        dep.stop()
    except BenchFailure as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        dep.stop()
        if a.keep:
            log(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    load_after = "{} {} {}".format(*(f"{x:.2f}" for x in os.getloadavg()))
    report = render(results, machine_info(a.source), started, time.monotonic() - t_start, load_before, load_after, notes)
    print(report)
    if not a.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        (RESULTS / f"{stamp}.md").write_text(report + "\n")
        (RESULTS / "latest.md").write_text(report + "\n")
        log(f"wrote bench/results/latest.md and bench/results/{stamp}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
