"""The admin listener: /metrics for Prometheus, /healthz and /readyz."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["AdminApp"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class AdminApp:
    """Serve metrics and probes; `ready` tells whether the receiver takes traffic."""

    def __init__(self, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        self._registry = registry
        self._ready = ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return

        path = scope["path"]

        if scope["method"] not in ("GET", "HEAD"):
            status, content_type, body = (
                405,
                "application/json",
                b'{"status":"method_not_allowed"}',
            )
        elif path == "/metrics":
            status, content_type = 200, CONTENT_TYPE_LATEST
            body = generate_latest(self._registry)
        elif path == "/healthz":
            status, content_type, body = 200, "application/json", b'{"status":"ok"}'
        elif path == "/readyz":
            ready = self._ready()
            status = 200 if ready else 503
            content_type = "application/json"
            body = b'{"status":"ready"}' if ready else b'{"status":"not_ready"}'
        else:
            status, content_type, body = (
                404,
                "application/json",
                b'{"status":"not_found"}',
            )

        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
