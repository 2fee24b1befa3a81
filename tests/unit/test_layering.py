"""DESIGN.md §4: the "must not import" column, pinned. The SAM stays framework-free, the HSM
layer knows nothing above it, and the wallet and conformance suites are independent clients."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "sam": {"litestar", "sqlalchemy", "aiosqlite", "asyncpg", "httpx", "app"},
    "hsm": {"litestar", "sam", "app", "sqlalchemy", "httpx"},
    "wallet": {"app", "sam", "hsm"},
    "conformance": {"app", "sam", "hsm"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden_layers(package: str) -> None:
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    bad = {str(f.relative_to(ROOT)): sorted(imports(f) & FORBIDDEN[package]) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_only_the_sam_activates_credential_keys() -> None:
    """App code may sign with system keys (CA, tokens, audit) but never calls the raw signing
    entry point itself: credential keys are reached only through sam.SignatureActivationModule."""
    offenders = []
    for f in (ROOT / "app").rglob("*.py"):
        src = f.read_text()
        if "sign_digests(" in src or "sign_digests_sync(" in src:
            offenders.append(str(f.relative_to(ROOT)))
    assert offenders == []
