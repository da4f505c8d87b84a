"""A real HTTP application on loopback that records what the worker delivers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Upstream:
    """An application served by uvicorn; `stop` and `start` again keep the port.

    `status` is the status every request gets after `delay` seconds, and
    `location` is sent with it so a redirect can be tested.
    """

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.delay = 0.0
        self.location: str | None = None
        self.received: list[Received] = []
        self.arrived = asyncio.Condition()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/deliveries"

    async def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            interface="asgi3",
            proxy_headers=False,
        )
        self._stopping.clear()
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[listener]))

        while not self._server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        assert self._server is not None
        assert self._task is not None
        # Slow responses end at once, so shutting down does not wait for them.
        self._stopping.set()
        self._server.should_exit = True
        await self._task
        self._server = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` requests have arrived in all."""
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.received) >= count), timeout
            )

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""

        while True:
            message = await receive()
            body += message.get("body", b"")

            if not message.get("more_body"):
                break

        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
        }

        async with self.arrived:
            self.received.append(Received(scope["path"], headers, body))
            self.arrived.notify_all()

        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)

        answer_headers = [(b"content-type", b"application/json")]

        if self.location is not None:
            answer_headers.append((b"location", self.location.encode()))

        answer = b"" if self.status in (204, 304) else b"{}"
        start = {"type": "http.response.start", "status": self.status}
        await send({**start, "headers": answer_headers})
        await send({"type": "http.response.body", "body": answer})
