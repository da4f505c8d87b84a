"""The receiver's ASGI application in the test's own process, with real state.

Requests go straight into the application as ASGI calls, so a test can set
the scope (a client certificate in the TLS extension) and read `caplog`.
The store is a real SQLite file and the delivery worker really delivers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kratos_webhooks.config import Config, parse_config
from kratos_webhooks.observability.metrics import Metrics
from kratos_webhooks.receiver.build import build_app, upstream_client
from kratos_webhooks.receiver.pipeline import ReceiverApp
from kratos_webhooks.receiver.server import open_state

from .harness import Certificates


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return str(self.json()["error"]["code"])


class InProcessReceiver:
    """Sends requests to a `ReceiverApp` as uvicorn would."""

    def __init__(self, app: ReceiverApp) -> None:
        self.app = app

    async def post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        extensions: dict[str, Any] | None = None,
    ) -> Reply:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8443),
        }

        if extensions is not None:
            scope["extensions"] = extensions

        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)

            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start, *bodies = sent
        return Reply(
            status=start["status"],
            headers={k.decode(): v.decode() for k, v in start["headers"]},
            body=b"".join(message.get("body", b"") for message in bodies),
        )


def receiver_document(
    tmp_path: Path, certificates: Certificates, routes: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "server": {
            "listen": "127.0.0.1:0",
            "tls": {
                "cert_file": str(certificates.cert_file),
                "key_file": str(certificates.key_file),
            },
        },
        "admin": {"listen": "127.0.0.1:0"},
        "storage": f"sqlite://{tmp_path / 'state.db'}",
        "routes": routes,
    }


@asynccontextmanager
async def in_process_receiver(config: Config) -> AsyncIterator[InProcessReceiver]:
    metrics = Metrics()
    store, worker = open_state(config, metrics)
    client = upstream_client()
    app = build_app(
        config, store=store, worker=worker, metrics=metrics.http, client=client
    )
    await store.start()
    await worker.start()

    try:
        yield InProcessReceiver(app)
    finally:
        await worker.stop()
        await store.close()
        await client.aclose()


def load(
    tmp_path: Path, certificates: Certificates, routes: list[dict[str, Any]]
) -> Config:
    """Validate a configuration; its secrets are read from `os.environ`."""
    return parse_config(receiver_document(tmp_path, certificates, routes))
