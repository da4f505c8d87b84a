"""uvicorn's httptools protocol with the limits it lacks: timeouts, header size, a cap.

uvicorn (0.55, which the server extra pins) times out only idle keep-alive
connections. A client that opens a connection and sends nothing, sends headers
one byte at a time or stops in the middle of a body holds its connection
forever. This subclass closes such connections:

- header timeout: from the connection or the end of the previous answer until
  the headers are complete;
- body timeout: from the end of the headers until the body is complete;
- idle timeout: between an answer and the next request (uvicorn's keep-alive);
- header size: the request line and headers together, answered 431;
- connection cap: a connection past the cap is closed at once.

It also closes a gap of uvicorn's: the client certificate verified in the TLS
handshake never reaches the application. Each request's scope gets
`scope["extensions"]["tls"]`, the ASGI TLS extension, filled once per
connection by `kratos_webhooks.tls.extension.tls_extension`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..tls.extension import tls_extension

__all__ = ["ConnectionLimits", "bounded_protocol"]

_TOO_LARGE_BODY: Final = (
    b'{"error":{"code":"payload_too_large",'
    b'"message":"The request headers are larger than allowed."}}'
)
_HEADERS_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_TOO_LARGE_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _TOO_LARGE_BODY
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits; times in seconds, sizes in bytes."""

    header_timeout: float = 5.0
    body_timeout: float = 10.0
    max_header_bytes: int = 16_384
    max_connections: int = 1000


def bounded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """Return a protocol class that enforces `limits` on each connection."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._in_headers = True
            self._header_bytes = 0
            self._tls: dict[str, Any] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)

            if len(self.connections) > limits.max_connections:
                self.logger.warning("connection refused: the connection cap is reached")
                transport.abort()
                return

            ssl_object = transport.get_extra_info("ssl_object")

            if ssl_object is not None:
                self._tls = tls_extension(ssl_object)

            self._arm(limits.header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_headers and self._deadline is None:
                self._arm(limits.header_timeout)

            if self._in_headers:
                self._header_bytes += len(data)

            super().data_received(data)

            # Counted only while the headers are incomplete, so body bytes that
            # arrive with the last header bytes do not count.
            if self._in_headers and self._header_bytes > limits.max_header_bytes:
                self._reject_headers()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True

            if self._tls is not None:
                extensions: dict[str, object] = {"tls": dict(self._tls)}
                self.scope["extensions"] = extensions  # type: ignore[typeddict-item]

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._header_bytes = 0
            self._arm(limits.body_timeout)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._in_headers = True
            super().on_response_complete()

        def _reject_headers(self) -> None:
            self._disarm()

            if not self.transport.is_closing():
                self.transport.write(_HEADERS_TOO_LARGE)
                self.transport.close()

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None

            if not self.transport.is_closing():
                self.transport.close()

    return BoundedHttpToolsProtocol
