"""A small HTTP/1.1 client that sends requests over kept-alive connections.

The delivery worker needs one thing from HTTP: send a body, learn the status.
The relay also needs the response's headers and body, unchanged. This client
does only that, on asyncio streams, for `http://` and `https://` URLs. It never
follows a redirect, never reads a proxy from the environment, verifies TLS
certificates and host names with the given context (which may carry a client
certificate), and reads at most a bounded response body.

An optional address resolver decides where to connect: it gets the URL's host
and returns the addresses to dial, in order. TLS still verifies the certificate
against the host name, and the Host header keeps the name, so a resolver that
checks each address (the relay's target guard) pins only the address.

Callers bound each request in time (`asyncio.timeout`), and `connect_timeout`
and `read_timeout` bound the connection and the response. A request that is
cancelled or fails leaves no connection behind for reuse.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError

__all__ = [
    "AddressResolver",
    "AnswerTooLarge",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamResponse",
]

AddressResolver = Callable[[str, int], Awaitable[Sequence[str]]]

# `post` needs only the status, so a longer response body is dropped with its
# connection.
MAX_ANSWER_BYTES: Final = 65_536
MAX_HEADER_BYTES: Final = 65_536
# Servers close idle connections after a few seconds (uvicorn's default is 5).
# A connection idle for longer is dropped rather than written to while closing.
IDLE_SECONDS: Final = 4.0
USER_AGENT: Final = "kratos-webhooks"
_END_OF_HEAD: Final = b"\r\n\r\n"


class UpstreamError(Exception):
    """The request failed before a complete response arrived.

    `kind` names the failure the way the inbox records it: `ConnectError`,
    `ConnectTimeout`, `WriteError`, `ReadError`, `ReadTimeout`,
    `RemoteProtocolError` or `AnswerTooLarge`.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class AnswerTooLarge(UpstreamError):
    """The response body is longer than the caller accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__("AnswerTooLarge", f"response body above {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A complete response: status, headers with lower-case names, body."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def header(self, name: bytes) -> str | None:
        """Return a header's value (the last one if repeated), or None."""
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")


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


@dataclass(slots=True)
class _Head:
    status: int
    headers: dict[bytes, bytes]
    length: int | None
    chunked: bool
    keep_alive: bool


class UpstreamClient:
    """Send requests to one URL, keeping up to `max_idle` connections open.

    `slots`, when set, bounds the requests in flight, and so the connections
    in use at once; further requests wait for a free slot. Clients that share
    one semaphore share the bound.
    """

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 8,
        slots: asyncio.Semaphore | None = None,
        resolver: AddressResolver | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        user_agent: str = USER_AGENT,
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
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        fields = f"host: {authority}\r\nuser-agent: {user_agent}\r\n"

        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(pair.encode()).decode("ascii")
            fields += f"authorization: Basic {token}\r\n"

        self._fields = fields
        self._heads: dict[str, bytes] = {}
        self._max_idle = max_idle
        self._idle: list[_Connection] = []
        self._slots = slots
        self._resolve = resolver
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        """Send `body` with `headers` and return the response status.

        The response body is read and dropped, or the connection is closed
        when the body is longer than 64 KiB.

        Raises:
            UpstreamError: the connection, the write or the response failed.
            ValueError: a header name or value contains a line break.
        """
        response = await self.send("POST", body, headers.items(), max_answer_bytes=None)
        return response.status

    async def send(
        self,
        method: str,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        *,
        max_answer_bytes: int | None,
    ) -> UpstreamResponse:
        """Send one request and return the complete response.

        With `max_answer_bytes` None, the body is dropped (the response's body
        is empty), as `post` does; otherwise a longer body raises
        `AnswerTooLarge`.

        Raises:
            UpstreamError: the connection, the write or the response failed,
                or took longer than `connect_timeout` or `read_timeout`.
            ValueError: the method is not an upper-case token, or a header
                name or value contains a line break.
        """
        request = self._request(method, body, headers)

        if self._slots is None:
            return await self._send(request, method, max_answer_bytes)

        async with self._slots:
            return await self._send(request, method, max_answer_bytes)

    async def aclose(self) -> None:
        """Close every idle connection, and wait until their sockets are closed."""
        idle, self._idle = self._idle, []

        # Nothing is in flight on an idle connection, so it is dropped without
        # the TLS close exchange, which a silent server could stretch to 30 s.
        for connection in idle:
            connection.writer.transport.abort()

        for connection in idle:
            with contextlib.suppress(OSError, ssl.SSLError):
                await connection.writer.wait_closed()

    async def _send(
        self, request: bytes, method: str, limit: int | None
    ) -> UpstreamResponse:
        connection = self._take_idle()

        if connection is not None:
            try:
                return await self._exchange(connection, request, method, limit)
            except _StaleConnection:
                # The server closed the idle connection before it read this
                # request. A repeat carries the same webhook-id anyway.
                pass

        connection = await self._connect()

        try:
            return await self._exchange(connection, request, method, limit)
        except _StaleConnection as exc:
            raise UpstreamError("ReadError", str(exc)) from exc

    def _request(
        self, method: str, body: bytes, headers: Iterable[tuple[str, str]]
    ) -> bytes:
        head = self._heads.get(method)

        if head is None:
            if not (method.isascii() and method.isalpha() and method.isupper()):
                raise ValueError("the method must be an upper-case token")

            head = f"{method} {self._target} HTTP/1.1\r\n{self._fields}".encode()
            self._heads[method] = head

        lines = [head]

        for name, value in headers:
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError("a header contains a line break")

            lines.append(f"{name}: {value}\r\n".encode("latin-1"))

        lines.append(b"content-length: %d\r\n\r\n" % len(body))
        lines.append(body)
        return b"".join(lines)

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()

        # The most recent connection is taken first, so under light load the
        # oldest would sit unused, its server gone, unless closed here.
        while self._idle and not self._idle[0].usable(now):
            self._idle.pop(0).close()

        while self._idle:
            connection = self._idle.pop()

            if connection.usable(now):
                return connection

            connection.close()

        return None

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await self._dial()
        except TimeoutError as exc:
            detail = f"no connection within {self._connect_timeout:g} s"
            raise UpstreamError("ConnectTimeout", detail) from exc

    async def _dial(self) -> _Connection:
        if self._resolve is None:
            addresses: Sequence[str] = (self._host,)
        else:
            addresses = await self._resolve(self._host, self._port)

        failure: OSError | None = None

        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                    limit=MAX_HEADER_BYTES,
                )
            except ssl.SSLError as exc:
                # The server responded, but its certificate (or ours) was
                # rejected, and another address of the name would do the same.
                raise UpstreamError("ConnectError", exc.reason or "TLS failed") from exc
            except OSError as exc:
                failure = exc
                continue

            return _Connection(reader, writer)

        detail = "no address" if failure is None else failure.strerror or str(failure)
        raise UpstreamError("ConnectError", detail) from failure

    async def _exchange(
        self, connection: _Connection, request: bytes, method: str, limit: int | None
    ) -> UpstreamResponse:
        """Run one request; the connection is pooled again only if it is clean."""
        reusable = False

        try:
            if self._read_timeout is None:
                response, reusable = await self._send_and_read(
                    connection, request, method, limit
                )
            else:
                try:
                    async with asyncio.timeout(self._read_timeout):
                        response, reusable = await self._send_and_read(
                            connection, request, method, limit
                        )
                except TimeoutError as exc:
                    detail = f"no response within {self._read_timeout:g} s"
                    raise UpstreamError("ReadTimeout", detail) from exc
        finally:
            if reusable and len(self._idle) < self._max_idle:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()

        return response

    async def _send_and_read(
        self, connection: _Connection, request: bytes, method: str, limit: int | None
    ) -> tuple[UpstreamResponse, bool]:
        reader, writer = connection.reader, connection.writer

        try:
            writer.write(request)
            await writer.drain()
        except (OSError, ssl.SSLError) as exc:
            raise _StaleConnection(type(exc).__name__) from exc

        first = True

        while True:
            head = await _read_head(reader, stale_if_empty=first)
            first = False

            # A 1xx response is interim, and the final response follows it.
            if head.status >= 200 or head.status == 101:
                break

        status = head.status

        if status in (204, 304) or status < 200 or method == "HEAD":
            return UpstreamResponse(status, head.headers, b""), head.keep_alive

        if limit is None:
            complete = await _drain_body(reader, head.length, head.chunked)
            return UpstreamResponse(status, head.headers, b""), (
                head.keep_alive and complete
            )

        body = await _read_body(reader, head, limit)
        reusable = head.keep_alive and (head.length is not None or head.chunked)
        return UpstreamResponse(status, head.headers, body), reusable


class _StaleConnection(Exception):
    """The connection ended before any byte of the response."""


async def _read_head(reader: asyncio.StreamReader, *, stale_if_empty: bool) -> _Head:
    """Read a status line and headers, up to the blank line that ends them."""
    try:
        data = await reader.readuntil(_END_OF_HEAD)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial and stale_if_empty:
            raise _StaleConnection("no response") from exc

        raise UpstreamError("RemoteProtocolError", "incomplete headers") from exc
    except asyncio.LimitOverrunError as exc:
        raise UpstreamError("RemoteProtocolError", "headers too long") from exc
    except (OSError, ssl.SSLError) as exc:
        if stale_if_empty:
            raise _StaleConnection(type(exc).__name__) from exc

        raise UpstreamError("ReadError", type(exc).__name__) from exc

    lines = data[: -len(_END_OF_HEAD)].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]

    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit():
        raise UpstreamError("RemoteProtocolError", "malformed status line")

    head = _Head(int(code), {}, None, False, version == b"HTTP/1.1")

    for line in lines[1:]:
        name, colon, value = line.partition(b":")

        if not colon:
            raise UpstreamError("RemoteProtocolError", "malformed header line")

        name = name.strip().lower()
        value = value.strip()
        head.headers[name] = value

        if name == b"content-length":
            if not value.isdigit():
                raise UpstreamError("RemoteProtocolError", "bad content-length")

            head.length = int(value)
        elif name == b"transfer-encoding":
            head.chunked = value.lower().endswith(b"chunked")
        elif name == b"connection" and b"close" in value.lower():
            head.keep_alive = False

    return head


async def _read_body(reader: asyncio.StreamReader, head: _Head, limit: int) -> bytes:
    """Read the whole response body, and reject one longer than `limit` bytes."""
    try:
        if head.chunked:
            return await _read_chunks(reader, limit)

        if head.length is not None:
            if head.length > limit:
                raise AnswerTooLarge(limit)

            return await reader.readexactly(head.length)

        # Without a length, the body runs to the end of the connection.
        body = await reader.read(limit + 1)

        while not reader.at_eof() and len(body) <= limit:
            body += await reader.read(limit + 1 - len(body))
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        raise UpstreamError("ReadError", type(exc).__name__) from exc
    except ValueError as exc:
        raise UpstreamError("RemoteProtocolError", "malformed chunk") from exc

    if len(body) > limit:
        raise AnswerTooLarge(limit)

    return body


async def _read_chunks(reader: asyncio.StreamReader, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0

    while True:
        size = await _chunk_size(reader)

        if size is None:
            raise UpstreamError("RemoteProtocolError", "malformed chunk size")

        total += size

        if total > limit:
            raise AnswerTooLarge(limit)

        if size == 0:
            await _skip_trailers(reader)
            return b"".join(parts)

        chunk = await reader.readexactly(size + 2)
        parts.append(chunk[:-2])


async def _chunk_size(reader: asyncio.StreamReader) -> int | None:
    size_line = await reader.readline()
    size_text = size_line.split(b";", 1)[0].strip()

    try:
        size = int(size_text, 16)
    except ValueError:
        return None

    return size if size >= 0 else None


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    # Trailers, if any, end with an empty line.
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass


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
        size = await _chunk_size(reader)

        if size is None:
            return False

        total += size

        if total > MAX_ANSWER_BYTES:
            return False

        if size == 0:
            await _skip_trailers(reader)
            return True

        await reader.readexactly(size + 2)
