"""Private files: written atomically with mode 0600, refused when group or others can read them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator


class PrivateFileError(OSError):
    pass


def write_private(path: Path, data: bytes) -> None:
    """Write to a temporary sibling created 0600 and rename over ``path``, so a reader never sees
    a half-written file and the secret is never world-readable, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_private_json(path: Path, obj: Any) -> None:
    write_private(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_private(path: Path) -> bytes:
    mode = os.stat(path).st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise PrivateFileError(f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); run chmod 600 {path}")
    return path.read_bytes()


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Serialise read-modify-write cycles between processes (issue-pid vs revoke vs serve)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
