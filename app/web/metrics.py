"""A minimal Prometheus text exposition: per-process counters (no client library needed)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.events: Counter[tuple[str, str]] = Counter()
        self.started = time.time()

    def request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1

    def event(self, name: str, label: str = "") -> None:
        with self._lock:
            self.events[(name, label)] += 1

    def render(self) -> str:
        lines = [
            "# HELP rqes_http_requests_total HTTP requests by method, route and status.",
            "# TYPE rqes_http_requests_total counter",
        ]
        with self._lock:
            for (m, r, s), n in sorted(self.requests.items()):
                lines.append(f'rqes_http_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}')
            lines += ["# HELP rqes_events_total Security events (signatures, refusals by reason).",
                      "# TYPE rqes_events_total counter"]
            for (name, label), n in sorted(self.events.items()):
                lines.append(f'rqes_events_total{{event="{name}",reason="{label}"}} {n}')
        lines += ["# HELP rqes_process_start_time_seconds Start time of this worker.",
                  "# TYPE rqes_process_start_time_seconds gauge", f"rqes_process_start_time_seconds {self.started:.0f}"]
        return "\n".join(lines) + "\n"


def metrics_middleware(metrics: Metrics) -> Any:
    def factory(app: Any) -> Any:
        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = {"code": 500}

            async def capture(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                route = scope.get("path_template") or scope.get("path", "")
                if status["code"] == 404:
                    route = "unmatched"
                metrics.request(scope.get("method", ""), route, status["code"])

        return middleware

    return factory
