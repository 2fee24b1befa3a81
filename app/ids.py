"""Identifiers that operators type: URL-safe, 128 bits, never starting with '-' or '_' (a leading
dash would read as an option to ``rqes credentials disable ID``)."""

from __future__ import annotations

import secrets


def new_credential_id() -> str:
    while True:
        value = secrets.token_urlsafe(16)
        if value[0].isalnum():
            return value
