"""uvicorn's httptools protocol with the limits it lacks: timeouts, header size, a cap.

uvicorn (0.55, which the server extra pins) times out only idle keep-alive
connections. A client that opens a connection and sends nothing, sends headers
one byte at a time or stops in the middle of a body keeps its connection
forever. This subclass closes such connections:

- header timeout: from the connection or the end of the previous answer until
  the headers are complete;
- body timeout: from the end of the headers until the body is complete;
- idle timeout: between an answer and the next request (uvicorn's keep-alive);
- header size: the request line and headers together, answered 431;
- connection cap: a connection past the cap is closed at once.

A connection cut off by a timeout is aborted, not closed: a TLS close waits
for the peer's close_notify, and a peer that never sends it would keep its
slot under the cap.

Requests that uvicorn would answer itself in plain text get the service's
JSON error shape, an access line and a metric instead:

- malformed HTTP/1.1 (both Content-Length and Transfer-Encoding, two
  Content-Lengths, a bad chunk size, obs-fold, a control character in a
  header, an unknown method, the HTTP/2 preface): 400 `malformed_request`;
- any `Upgrade` header, such as `h2c`: 400 `malformed_request`, because
  uvicorn's parser stops at the end of an upgrade request's headers and
  passes it on with an empty body;
- a transfer coding other than one `chunked`: 415 `unsupported_encoding`,
  because the body would reach the pipeline still encoded.

It also closes a gap of uvicorn's: the client certificate verified in the TLS
handshake never reaches the application. Each request's scope gets
`scope["extensions"]["tls"]`, the ASGI TLS extension, filled once per
connection by `kratos_webhooks.tls.extension.tls_extension`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httptools
import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..observability.logging import ACCESS_LOGGER
from ..tls.extension import tls_extension

if TYPE_CHECKING:
    from ..observability.metrics import HttpMetrics

__all__ = ["ConnectionLimits", "Rejection", "bounded_protocol"]

_UNROUTED: Final = "-"
# Bytes each header line adds to its name and value: ": " and CRLF.
_HEADER_LINE_OVERHEAD: Final = 4


class Rejection(Exception):
    """A request answered by the protocol itself, before any route sees it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> bytes:
        """Return the HTTP/1.1 response bytes, with `connection: close`."""
        body = json.dumps(
            {"error": {"code": self.code, "message": self.message}}
        ).encode()
        head = (
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"cache-control: no-store\r\n"
            b"connection: close\r\n\r\n"
        )
        return STATUS_LINE[self.status] + head + body


def _headers_too_large() -> Rejection:
    return Rejection(
        431, "payload_too_large", "The request headers are larger than allowed."
    )


def _malformed(error: httptools.HttpParserError) -> Rejection:
    # llhttp's messages are fixed texts that never quote the request.
    reason = str(error).strip().rstrip(".") or "invalid framing"
    return Rejection(
        400, "malformed_request", f"The request is not valid HTTP/1.1: {reason}."
    )


def _check_transfer_coding(headers: list[tuple[bytes, bytes]]) -> None:
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name == b"transfer-encoding"
        for coding in value.split(b",")
    ]

    if codings and codings != [b"chunked"]:
        raise Rejection(
            415,
            "unsupported_encoding",
            "Only the chunked transfer coding is accepted.",
        )


def _check_upgrade(headers: list[tuple[bytes, bytes]]) -> None:
    if any(name == b"upgrade" for name, _ in headers):
        raise Rejection(
            400,
            "malformed_request",
            "Protocol upgrades, such as h2c, are not accepted.",
        )


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits; times in seconds, sizes in bytes."""

    header_timeout: float = 5.0
    body_timeout: float = 10.0
    max_header_bytes: int = 16_384
    max_connections: int = 1000


def bounded_protocol(
    limits: ConnectionLimits,
    *,
    metrics: HttpMetrics | None = None,
    logger_name: str = ACCESS_LOGGER,
) -> type[HttpToolsProtocol]:
    """Return a protocol class that enforces `limits` on each connection.

    A request rejected by the protocol is logged as a `request` line on
    `logger_name` and counted in `metrics` under the route `-`.
    """
    access_log = structlog.stdlib.get_logger(logger_name)

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._in_headers = True
            self._header_bytes = 0
            self._tls: dict[str, Any] | None = None
            self._started = self.loop.time()

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
            self._unset_keepalive_if_required()

            if self._in_headers and self._deadline is None:
                self._arm(limits.header_timeout)

            if self._in_headers:
                self._header_bytes += len(data)

            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                # WebSocket is off, so the request was passed on as plain HTTP.
                return
            except httptools.HttpParserError as exc:
                rejection = exc.__context__
                self._reject(
                    rejection if isinstance(rejection, Rejection) else _malformed(exc)
                )
                return

            # Headers that arrive over several reads are counted here, before
            # they are complete; on_headers_complete checks those of one read.
            if self._in_headers and self._header_bytes > limits.max_header_bytes:
                self._reject(_headers_too_large())

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._started = self.loop.time()

            if self._tls is not None:
                extensions: dict[str, object] = {"tls": dict(self._tls)}
                self.scope["extensions"] = extensions  # type: ignore[typeddict-item]

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._header_bytes = 0
            size = len(self.url) + sum(
                len(name) + len(value) + _HEADER_LINE_OVERHEAD
                for name, value in self.headers
            )

            # Raised through the parser, which data_received turns into an answer.
            if size > limits.max_header_bytes:
                raise _headers_too_large()

            _check_upgrade(self.headers)
            _check_transfer_coding(self.headers)
            self._arm(limits.body_timeout)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._in_headers = True
            super().on_response_complete()

        def _reject(self, rejection: Rejection) -> None:
            self._disarm()

            if self.transport.is_closing():
                return

            cycle = self.cycle

            if cycle is not None and not cycle.response_complete:
                if not cycle.more_body:
                    # An earlier pipelined request is still being answered.
                    # Its answer goes out first, then the connection closes.
                    cycle.keep_alive = False
                    self.flow.pause_reading()
                    self._record(rejection)
                    return

                # The broken request is the one being read: its application
                # call sees a disconnect and sends nothing more.
                cycle.disconnected = True
                cycle.message_event.set()

            self.transport.write(rejection.response())
            self.transport.close()

            self._record(rejection)

        def _record(self, rejection: Rejection) -> None:
            seconds = self.loop.time() - self._started

            if metrics is not None:
                metrics.observe(_UNROUTED, rejection.status, rejection.code, seconds)

            scope = self.scope or {}
            access_log.info(
                "request",
                method=scope.get("method"),
                route=_UNROUTED,
                source=self.client[0] if self.client else None,
                status=rejection.status,
                reason=rejection.code,
                detail=str(rejection),
                latency_ms=round(seconds * 1000, 3),
            )

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            # Aborted: a TLS close would wait for the peer's close_notify.
            self.transport.abort()

    return BoundedHttpToolsProtocol
