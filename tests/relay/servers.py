"""Real uvicorn servers on loopback for the relay tests, each in its own thread."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


def free_port() -> int:
    with free_socket() as sock:
        return int(sock.getsockname()[1])


@contextmanager
def serve_asgi(app: App, *, context: ssl.SSLContext | None = None) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port; yield its base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        ssl_context_factory=(lambda _config, _default: context) if context else None,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10

    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")

        time.sleep(0.01)

    scheme = "https" if context else "http"

    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingApp:
    """An ASGI app that records each request and responds with a scripted reply."""

    status: int = 200
    body: bytes = b"{}"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return

        chunks = []

        while True:
            message = await receive()
            chunks.append(message.get("body", b""))

            if not message.get("more_body"):
                break

        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
        }
        self.requests.append(
            Recorded(scope["method"], scope["path"], headers, b"".join(chunks))
        )

        if self.delay:
            await asyncio.sleep(self.delay)

        response_headers = [(b"content-type", b"application/json"), *self.headers]
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": response_headers,
            }
        )
        await send({"type": "http.response.body", "body": self.body})
