"""Injected time: every expiry check takes ``now`` from a Clock (aware UTC datetimes only)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock for tests; ``advance`` moves it forward."""

    def __init__(self, at: datetime | None = None) -> None:
        self._now = at or datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
