"""CSC API v2 + OAuth2 seal conformance suite, run against any rqes base URL.

``python -m conformance --base-url URL --client-id ID --client-secret SECRET --credential-id CID``

It speaks only HTTP with literal JSON (httpx), never importing the server's code: if a field were
misspelt on both sides, a shared model would hide it (STYLE.md, Tests).
"""

from .csc_v2 import CHECKS, CheckFailed, Context, Result, run

__all__ = ["CHECKS", "CheckFailed", "Context", "Result", "run"]
