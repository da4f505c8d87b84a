"""Real servers on loopback for the integration tests, each bounded and stopped."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .cases import Response, Send

STARTUP_TIMEOUT = 10.0


@contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """Serve an ASGI application with uvicorn on 127.0.0.1 and a free port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT

    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")

        time.sleep(0.01)

    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT)
        sock.close()
        assert not thread.is_alive()


@contextmanager
def wsgi_server(server: Any) -> Iterator[str]:
    """Run a socketserver-style WSGI server in a thread until the block ends."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()

    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STARTUP_TIMEOUT)
        assert not thread.is_alive()


@contextmanager
def http_sender(base_url: str) -> Iterator[Send]:
    """Send requests to a real server with httpx, bounded in time."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:

        def send(path: str, body: bytes, headers: dict[str, str]) -> Response:
            response = client.post(path, content=body, headers=headers)
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status_code, response.content, headers

        yield send
