"""A small HTTP/1.1 client that POSTs deliveries over kept-alive connections.

The delivery worker needs one thing from HTTP: send a body, learn the status.
This client does only that, on asyncio streams, for `http://` and `https://`
URLs. It never follows a redirect, never reads a proxy from the environment,
verifies TLS certificates and host names with the given context, and reads at
most a bounded response body: a longer body closes the connection instead. Callers
bound each request in time (`asyncio.timeout`); a request that is cancelled or
fails leaves no connection behind for reuse.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError

__all__ = ["UpstreamClient", "UpstreamError"]

# Only the status matters, so a longer response body is dropped with its connection.
MAX_ANSWER_BYTES: Final = 65_536
MAX_HEADER_BYTES: Final = 65_536
# Servers close idle connections after a few seconds (uvicorn's default is 5).
# A connection idle for longer is dropped rather than written to while closing.
IDLE_SECONDS: Final = 4.0
USER_AGENT: Final = "kratos-webhooks"


class UpstreamError(Exception):
    """The request failed before a complete status and headers arrived.

    `kind` names the failure the way the inbox records it: `ConnectError`,
    `WriteError`, `ReadError` or `RemoteProtocolError`.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        return (
            now - self.idle_since < IDLE_SECONDS
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class UpstreamClient:
    """POST to one URL, keeping up to `max_idle` connections open between calls."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 8,
    ) -> None:
        parts = urlsplit(url)

        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("upstream URL must be http:// or https:// with a host")

        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError("upstream URL has an invalid port") from exc

        self._host = parts.hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None

        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()

        default_port = self._port == (443 if self._ssl else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        authority = host if default_port else f"{host}:{self._port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n"
        head += f"user-agent: {USER_AGENT}\r\n"

        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(pair.encode()).decode("ascii")
            head += f"authorization: Basic {token}\r\n"

        self._head = head.encode("latin-1")
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        """Send `body` with `headers` and return the response status.

        Raises:
            UpstreamError: the connection, the write or the response failed.
            ValueError: a header name or value contains a line break.
        """
        request = self._request(body, headers)
        connection = self._take_idle()

        if connection is not None:
            try:
                return await self._exchange(connection, request)
            except _StaleConnection:
                # The server closed the idle connection before it read this
                # request. A repeat carries the same webhook-id anyway.
                pass

        connection = await self._connect()

        try:
            return await self._exchange(connection, request)
        except _StaleConnection as exc:
            raise UpstreamError("ReadError", str(exc)) from exc

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []

        for connection in idle:
            connection.close()

    def _request(self, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [self._head]

        for name, value in headers.items():
            line = f"{name}: {value}\r\n"

            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError("a header contains a line break")

            lines.append(line.encode("latin-1"))

        lines.append(b"content-length: %d\r\n\r\n" % len(body))
        lines.append(body)
        return b"".join(lines)

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()

        while self._idle:
            connection = self._idle.pop()

            if connection.usable(now):
                return connection

            connection.close()

        return None

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
                limit=MAX_HEADER_BYTES,
            )
        except ssl.SSLError as exc:
            raise UpstreamError("ConnectError", exc.reason or "TLS failed") from exc
        except OSError as exc:
            raise UpstreamError("ConnectError", exc.strerror or str(exc)) from exc

        return _Connection(reader, writer)

    async def _exchange(self, connection: _Connection, request: bytes) -> int:
        """Run one request; the connection is pooled again only if it is clean."""
        reusable = False

        try:
            status, reusable = await self._send_and_read(connection, request)
        finally:
            if reusable and len(self._idle) < self._max_idle:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()

        return status

    async def _send_and_read(
        self, connection: _Connection, request: bytes
    ) -> tuple[int, bool]:
        reader, writer = connection.reader, connection.writer

        try:
            writer.write(request)
            await writer.drain()
        except (OSError, ssl.SSLError) as exc:
            raise _StaleConnection(type(exc).__name__) from exc

        while True:
            try:
                line = await reader.readline()
            except (OSError, ssl.SSLError) as exc:
                raise _StaleConnection(type(exc).__name__) from exc
            except ValueError as exc:
                detail = "status line too long"
                raise UpstreamError("RemoteProtocolError", detail) from exc

            if not line:
                raise _StaleConnection("no response")

            status, keep_alive = _parse_status(line)
            length, chunked, keep_alive = await _read_headers(reader, keep_alive)

            # A 1xx response is interim, and the final response follows it.
            if status >= 200 or status == 101:
                break

        if status in (204, 304) or 100 <= status < 200:
            return status, keep_alive

        complete = await _drain_body(reader, length, chunked)
        return status, keep_alive and complete


class _StaleConnection(Exception):
    """The connection ended before any byte of the response."""


def _parse_status(line: bytes) -> tuple[int, bool]:
    version, _, rest = line.partition(b" ")
    code = rest[:3]

    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit():
        raise UpstreamError("RemoteProtocolError", "malformed status line")

    return int(code), version == b"HTTP/1.1"


async def _read_headers(
    reader: asyncio.StreamReader, keep_alive: bool
) -> tuple[int | None, bool, bool]:
    """Read headers; return the body length, whether chunked, and keep-alive."""
    length: int | None = None
    chunked = False
    size = 0

    while True:
        try:
            line = await reader.readline()
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError("ReadError", type(exc).__name__) from exc
        except ValueError as exc:
            raise UpstreamError("RemoteProtocolError", "header too long") from exc

        size += len(line)

        if not line.endswith(b"\n") or size > MAX_HEADER_BYTES:
            raise UpstreamError("RemoteProtocolError", "incomplete headers")

        if line in (b"\r\n", b"\n"):
            return length, chunked, keep_alive

        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()

        if name == b"content-length":
            if not value.isdigit():
                raise UpstreamError("RemoteProtocolError", "bad content-length")

            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection" and b"close" in value:
            keep_alive = False


async def _drain_body(
    reader: asyncio.StreamReader, length: int | None, chunked: bool
) -> bool:
    """Read and drop the response body; return whether the connection is reusable."""
    try:
        if chunked:
            return await _drain_chunks(reader)

        # A body without a length runs to the end of the connection. The status
        # is known already, so the connection is dropped instead of read.
        if length is None or length > MAX_ANSWER_BYTES:
            return False

        await reader.readexactly(length)
        return True
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
        # The status is known already, so only the connection is lost.
        return False


async def _drain_chunks(reader: asyncio.StreamReader) -> bool:
    total = 0

    while True:
        size_line = await reader.readline()
        size_text = size_line.split(b";", 1)[0].strip()

        try:
            size = int(size_text, 16)
        except ValueError:
            return False

        if size < 0:
            return False

        total += size

        if total > MAX_ANSWER_BYTES:
            return False

        if size == 0:
            # Trailers, if any, end with an empty line.
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass

            return True

        await reader.readexactly(size + 2)
