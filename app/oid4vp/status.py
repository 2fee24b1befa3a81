"""Status list retrieval for :mod:`sam.sdjwt`: httpx with a timeout and a small TTL cache."""

from __future__ import annotations

import base64
import json
import time

import httpx

from sam.sdjwt import StatusUnavailable

MAX_TOKEN_BYTES = 1_000_000


class HttpStatusListFetcher:
    def __init__(self, *, timeout: float = 5.0, default_ttl: int = 300, max_ttl: int = 3600) -> None:
        self._timeout = timeout
        self._default_ttl = default_ttl
        self._max_ttl = max_ttl
        self._cache: dict[str, tuple[float, str]] = {}

    async def fetch(self, uri: str) -> str:
        now = time.monotonic()
        hit = self._cache.get(uri)
        if hit and hit[0] > now:
            return hit[1]
        if not uri.startswith(("https://", "http://")):
            raise StatusUnavailable("status list URI must be http(s)")
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                r = await client.get(uri, headers={"Accept": "application/statuslist+jwt"})
        except httpx.HTTPError as e:
            raise StatusUnavailable(f"status list unreachable: {type(e).__name__}") from None
        if r.status_code != 200 or len(r.content) > MAX_TOKEN_BYTES:
            raise StatusUnavailable(f"status list answered {r.status_code}")
        token = r.text.strip()
        self._cache[uri] = (now + self._ttl_of(token), token)
        return token

    def _ttl_of(self, token: str) -> int:
        """Cache for the token's ``ttl`` (bounded); the token itself is verified on every use."""
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            ttl = int(claims.get("ttl", self._default_ttl))
        except (IndexError, ValueError, TypeError):
            return 0
        return max(0, min(ttl, self._max_ttl))
