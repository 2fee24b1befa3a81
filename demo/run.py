"""``make demo``: the whole rqes story on loopback, with real components.

1. a fresh rqes (SoftHSM token, SQLite, embedded CA) in a temporary data directory, in demo mode;
2. the test PID issuer, serving its status list;
3. an OAuth2 client registered for the signature creation application;
4. a test PID issued into a new wallet file, then the wallet enrolls with rqes (qualified
   certificate from the embedded CA, key generated in SoftHSM);
5. ``python -m wallet sign`` signs demo/sample.pdf: OAuth2 (PAR + PKCE) for the service and for
   the credential, each approved by the wallet over OpenID4VP; PAdES B-B by pyHanko's CSC signer;
6. pyHanko validates the signed PDF against the embedded root.

The signed PDF and the validation report stay in ``var/demo/`` (or ``$DEMO_OUT``, a directory);
the server, the issuer and the temporary data are removed on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(__file__).resolve().parent / "sample.pdf"
CLIENT_ID = "demo-app"
REDIRECT_URI = "http://127.0.0.1/callback"
STEP_TIMEOUT = 180  # seconds per command
START_TIMEOUT = 60


class DemoError(Exception):
    pass


def make_sample_pdf() -> bytes:
    """A one-page A4 PDF with a few lines of text (Helvetica, no embedded fonts)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

    lines = ["Sample contract", "", "The parties agree that this document is signed with a",
             "qualified electronic signature created by rqes, approved in the",
             "signer's EUDI wallet (OpenID4VP, qes-approval transaction data).", "",
             "Signer: ______________________"]
    ops = ["BT", "/F1 20 Tf", "72 760 Td", f"({lines[0]}) Tj", "/F1 12 Tf"]
    for line in lines[1:]:
        ops += ["0 -22 Td", "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj"]
    ops.append("ET")
    w = PdfFileWriter()
    font = w.add_object(generic.DictionaryObject({
        generic.pdf_name("/Type"): generic.pdf_name("/Font"), generic.pdf_name("/Subtype"): generic.pdf_name("/Type1"),
        generic.pdf_name("/BaseFont"): generic.pdf_name("/Helvetica"),
        generic.pdf_name("/Encoding"): generic.pdf_name("/WinAnsiEncoding")}))
    resources = generic.DictionaryObject({generic.pdf_name("/Font"): generic.DictionaryObject(
        {generic.pdf_name("/F1"): font})})
    content = w.add_object(generic.StreamObject(stream_data="\n".join(ops).encode("latin-1")))
    w.insert_page(PageObject(contents=content, media_box=(0, 0, 595, 842), resources=resources))
    out = BytesIO()
    w.write(out)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step(n: int | str, text: str) -> None:
    print(f"\n== {n}. {text}", flush=True)


def output_paths() -> tuple[Path, Path]:
    target = Path(os.environ.get("DEMO_OUT") or ROOT / "var" / "demo")
    if target.suffix.lower() == ".pdf":
        target.parent.mkdir(parents=True, exist_ok=True)
        return target, target.with_suffix(".validation.txt")
    target.mkdir(parents=True, exist_ok=True)
    return target / "signed.pdf", target / "validation.txt"


class Demo:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="rqes-demo-"))
        self.data_dir = self.tmp / "data"
        self.port = free_port()
        self.issuer_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RQES_") and k != "SOFTHSM2_CONF"}
        self.env.update({"RQES_DATA_DIR": str(self.data_dir), "RQES_PUBLIC_URL": self.base_url, "RQES_DEMO": "1",
                         "RQES_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    # -- processes --------------------------------------------------------------------------

    def run(self, *argv: str, timeout: float = STEP_TIMEOUT, show_stderr: bool = False) -> str:
        try:
            p = subprocess.run([sys.executable, *argv], env=self.env, cwd=ROOT, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DemoError(f"{' '.join(argv[:3])} did not finish within {timeout:.0f} s") from e
        if show_stderr and p.stderr.strip():
            for line in p.stderr.rstrip().splitlines():
                print(f"   | {line}", flush=True)
        if p.returncode != 0:
            err = p.stderr.strip().splitlines()
            raise DemoError(f"{' '.join(argv[:3])} failed (exit {p.returncode}): {err[-1] if err else p.stdout[-300:]}")
        return p.stdout

    def run_json(self, *argv: str, **kw: Any) -> Any:
        out = self.run(*argv, **kw)
        try:
            return json.loads(out)
        except ValueError as e:
            raise DemoError(f"{' '.join(argv[:3])} printed no JSON: {out[:300]!r}") from e

    def start(self, name: str, *argv: str) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        with open(log, "ab") as fh:
            proc = subprocess.Popen([sys.executable, *argv], env=self.env, cwd=ROOT, stdout=fh, stderr=fh)
        self.procs.append((name, proc, log))
        return proc

    def wait_http(self, name: str, proc: subprocess.Popen, url: str, ok: tuple[int, ...] = (200,)) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with {proc.returncode}: {self.log_tail(name)}")
            try:
                if httpx.get(url, timeout=1).status_code in ok:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise DemoError(f"{name} did not answer {url} within {START_TIMEOUT} s")

    def log_tail(self, name: str) -> str:
        for n, _, log in self.procs:
            if n == name and log.exists():
                return log.read_text(errors="replace")[-1500:]
        return ""

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the story --------------------------------------------------------------------------

    def story(self) -> dict[str, Any]:
        signed_pdf, report = output_paths()
        if not SAMPLE.exists():
            SAMPLE.write_bytes(make_sample_pdf())
        wallet = self.tmp / "wallet.json"
        issuer_dir = self.tmp / "pid-issuer"

        step(0, f"rqes: init and serve on {self.base_url} (SoftHSM + SQLite in {self.data_dir}, RQES_DEMO=1)")
        self.run("-m", "app.cli", "init")
        server = self.start("rqes", "-m", "app.cli", "serve", "--port", str(self.port))
        self.wait_http("rqes", server, f"{self.base_url}/healthz")
        root_pem = self.data_dir / "ca" / "root.pem"
        print(f"   rqes is up; root CA {root_pem}")

        issuer_url = f"http://127.0.0.1:{self.issuer_port}"
        issuer = self.start("pid-issuer", "-m", "wallet", "pid-issuer", "serve", "--port", str(self.issuer_port),
                            "--state-dir", str(issuer_dir))
        self.wait_http("pid-issuer", issuer, f"{issuer_url}/status/none", ok=(200, 404))
        print(f"   test PID issuer status lists at {issuer_url}/status/<id>")

        client = self.run_json("-m", "app.cli", "clients", "add", "--client-id", CLIENT_ID,
                               "--grant", "authorization_code", "--grant", "refresh_token",
                               "--redirect-uri", REDIRECT_URI)
        secret = client.get("client_secret")
        print(f"   OAuth2 client {client['client_id']} registered (confidential, redirect_uri {REDIRECT_URI})")

        step(1, "Issue a test PID into a new wallet")
        pid = self.run_json("-m", "wallet", "issue-pid", "--wallet", str(wallet), "--given-name", "Erika",
                            "--family-name", "Mustermann", "--birthdate", "1964-08-12", "--state-dir", str(issuer_dir))
        print(f"   wallet {wallet.name}: PID for Erika Mustermann (status index {pid['status_index']})")

        step(2, "Enroll with rqes: the wallet presents the PID and accepts certificate creation")
        enrolled = self.run_json("-m", "wallet", "enroll", "--wallet", str(wallet), "--server", self.base_url,
                                 "--verifier-ca", str(root_pem), "--yes", show_stderr=True)
        result = enrolled.get("result") or {}
        print(f"   enrolled={result.get('enrolled')} credentialID={result.get('credentialID')}")

        step(3, f"Sign {SAMPLE.relative_to(ROOT)}: OAuth2 PAR + wallet approval + CSC signHash via pyHanko")
        argv = ["-m", "wallet", "sign", "--wallet", str(wallet), "--server", self.base_url, "--client-id", CLIENT_ID,
                *(["--client-secret", secret] if secret else []), str(SAMPLE), "--out", str(signed_pdf),
                "--verifier-ca", str(root_pem), "--report", str(report), "--yes"]
        summary = self.run_json(*argv, show_stderr=True)

        step(4, "Signed PDF")
        print(f"   {summary['out']}")
        print(f"   validation report: {summary.get('report', report)}")

        step(5, "pyHanko validation against the embedded root")
        print(json.dumps({k: summary[k] for k in ("credentialID", "signer", "intact", "valid", "trusted")},
                         indent=2, ensure_ascii=False))
        return summary


def main() -> int:
    demo = Demo()

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        summary = demo.story()
    except DemoError as e:
        print(f"\ndemo failed: {e}", file=sys.stderr)
        for name, _, _ in demo.procs:
            tail = demo.log_tail(name).strip()
            if tail:
                print(f"--- {name} log (tail) ---\n{tail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    finally:
        demo.stop()
    ok = summary["intact"] and summary["valid"] and summary["trusted"]
    print(f"\nDemo {'complete' if ok else 'FAILED'}: {summary['out']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
