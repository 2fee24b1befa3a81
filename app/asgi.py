"""ASGI entry point for uvicorn workers: each worker process builds its own app, with its own
PKCS#11 handle and login (DESIGN.md §7)."""

from __future__ import annotations

from litestar import Litestar

from .factory import create_app
from .settings import load_settings


def build() -> Litestar:
    return create_app(load_settings())
