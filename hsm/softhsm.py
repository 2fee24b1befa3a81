"""SoftHSMv2 set-up for the embedded default: a private config and token under the data dir."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import HsmConfigError

DEFAULT_MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def default_module() -> str:
    for p in DEFAULT_MODULE_PATHS:
        if os.path.exists(p):
            return p
    return DEFAULT_MODULE_PATHS[0]


def is_softhsm(module: str) -> bool:
    return "softhsm" in os.path.basename(module).lower()


def config_path(data_dir: Path) -> Path:
    return data_dir / "softhsm2.conf"


def write_config(data_dir: Path) -> Path:
    """A SoftHSM config whose token directory lives in ``data_dir/tokens``."""
    tokens = data_dir / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = config_path(data_dir)
    if not conf.exists():
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
        )
    return conf


def use_config(data_dir: Path) -> None:
    """Point SoftHSM at the data dir's config, unless the operator already chose one."""
    conf = config_path(data_dir)
    if conf.exists():
        os.environ.setdefault("SOFTHSM2_CONF", str(conf))


def token_exists(label: str) -> bool:
    util = shutil.which("softhsm2-util")
    if util is None:
        raise HsmConfigError("softhsm2-util not found: install the Debian package softhsm2")
    out = subprocess.run([util, "--show-slots"], capture_output=True, text=True, check=False).stdout
    labels = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("Label:")]
    return label in labels


def init_token(label: str, pin: str, so_pin: str) -> None:
    util = shutil.which("softhsm2-util")
    if util is None:
        raise HsmConfigError("softhsm2-util not found: install the Debian package softhsm2")
    proc = subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise HsmConfigError(f"softhsm2-util could not create token {label!r}: {proc.stderr.strip() or proc.stdout.strip()}")
