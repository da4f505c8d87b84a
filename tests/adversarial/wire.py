"""Raw HTTP/1.1 over TLS: requests that no well-behaved client library sends."""

from __future__ import annotations

import json
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawResponse:
    """One HTTP response as read off the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value

        return None

    def error_code(self) -> str:
        return str(json.loads(self.body)["error"]["code"])


@dataclass
class RawConnection:
    """A TLS connection to the receiver that sends and reads bytes as given."""

    port: int
    context: ssl.SSLContext
    timeout: float = 5.0
    host: str = "127.0.0.1"
    source: str | None = None
    sock: ssl.SSLSocket | None = None
    buffer: bytes = field(default=b"")

    def __enter__(self) -> RawConnection:
        source = (self.source, 0) if self.source else None
        raw = socket.create_connection(
            (self.host, self.port), timeout=self.timeout, source_address=source
        )
        self.sock = self.context.wrap_socket(raw, server_hostname="127.0.0.1")
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self.sock is not None:
            self.sock.close()

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into the buffer; return False at end of stream."""
        assert self.sock is not None
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))

        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return False

        self.buffer += chunk
        return bool(chunk)

    def read_response(self, *, head: bool = False) -> RawResponse:
        """Read one response; raise TimeoutError when none arrives in time."""
        deadline = time.monotonic() + self.timeout

        while b"\r\n\r\n" not in self.buffer:
            if not self._fill(deadline):
                raise EOFError(f"closed before a response: {self.buffer!r}")

        head_bytes, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]
        length = next((int(v) for k, v in headers if k == "content-length"), None)

        if head or status in (204, 304) or length == 0:
            return RawResponse(status, headers, b"")

        if length is None:
            while self._fill(deadline):
                pass

            body, self.buffer = self.buffer, b""
            return RawResponse(status, headers, body)

        while len(self.buffer) < length:
            if not self._fill(deadline):
                raise EOFError("closed in the middle of a response body")

        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return RawResponse(status, headers, body)

    def closed_by_peer(self, within: float) -> bool:
        """Wait up to `within` seconds for the server to close the connection."""
        assert self.sock is not None
        deadline = time.monotonic() + within

        while time.monotonic() < deadline:
            if self.sock.pending() == 0:
                left = deadline - time.monotonic()
                readable, _, _ = select.select([self.sock], [], [], max(0.0, left))

                if not readable:
                    continue

            try:
                self.sock.settimeout(0.5)
                chunk = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError):
                return True

            if chunk == b"":
                return True

            self.buffer += chunk

        return False


def pump(
    connection: RawConnection, chunk: bytes, *, max_bytes: int, seconds: float
) -> tuple[int, bool]:
    """Send `chunk` over and over until the server answers or hangs up.

    Returns the bytes sent and whether the server answered or closed before
    `max_bytes` or `seconds` ran out; what it sent is left in the buffer.
    """
    sock = connection.sock
    assert sock is not None
    sent = 0
    deadline = time.monotonic() + seconds

    while sent < max_bytes and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock], [], 0.5)

        if readable:
            sock.setblocking(False)

            try:
                data = sock.recv(65536)
            except ssl.SSLWantReadError:
                data = None
            except OSError:
                return sent, True
            finally:
                sock.setblocking(True)

            if data == b"":
                return sent, True

            if data:
                connection.buffer += data
                return sent, True

        if writable:
            try:
                sock.sendall(chunk)
            except OSError:
                return sent, True

            sent += len(chunk)

    return sent, False


def request_bytes(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    version: str = "HTTP/1.1",
    content_length: bool = True,
) -> bytes:
    """Build a request exactly as given; `Content-Length` added unless told not to."""
    lines = [f"{method} {target} {version}".encode()]
    names = set()

    for name, value in headers:
        raw_name = name.encode("latin-1") if isinstance(name, str) else name
        raw_value = value.encode("latin-1") if isinstance(value, str) else value
        names.add(raw_name.lower())
        lines.append(raw_name + b": " + raw_value)

    if b"host" not in names:
        lines.append(b"Host: 127.0.0.1")

    if content_length and b"content-length" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())

    return b"\r\n".join(lines) + b"\r\n\r\n" + body
