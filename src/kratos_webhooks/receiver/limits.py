"""Stage 4: body size, content encoding and content type (413, 415).

The declared `Content-Length` is checked before a byte is read, and the stream
is counted as it arrives, so an oversized body is refused before any hashing.
A gzip body is inflated in steps that stop one byte past the limit, so a small
compressed body cannot expand into memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from ..errors import (
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedEncoding,
    UnsupportedMediaType,
)

__all__ = ["BodyLimits", "ClientDisconnected", "RequestHeaders", "read_body"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Header = tuple[bytes, bytes]

# Kratos sends exactly `application/json` unless configured for forms.
_JSON_TYPES: Final = frozenset({b"application/json", b"application/json;charset=utf-8"})
# Kratos' form bodies are ASCII, so any charset label is accepted and ignored.
_FORM_TYPE: Final = b"application/x-www-form-urlencoded"
_INFLATE_STEP: Final = 65_536


class ClientDisconnected(Exception):
    """The client went away before the body was complete."""


@dataclass(frozen=True, slots=True)
class RequestHeaders:
    """The headers the size and encoding stage needs, each taken once."""

    content_length: int | None
    content_type: bytes | None
    content_encoding: bytes | None

    @classmethod
    def read(cls, headers: list[Header]) -> RequestHeaders:
        length: int | None = None
        content_type: bytes | None = None
        encoding: bytes | None = None

        for name, value in headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"content-type":
                content_type = value
            elif name == b"content-encoding":
                encoding = value

        return cls(length, content_type, encoding)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """A route's size limits and whether it accepts gzip."""

    max_body_bytes: int
    gzip: bool = False
    max_inflated_bytes: int | None = None
    form: bool = False

    def check_headers(self, headers: RequestHeaders) -> None:
        """Refuse by the headers alone: declared size, encoding, content type.

        Raises:
            PayloadTooLarge: `Content-Length` is above the limit.
            UnsupportedEncoding: an encoding other than gzip where it is enabled.
            UnsupportedMediaType: the body is not declared as JSON, or as
                form data on a form route.
        """
        length = headers.content_length

        if length is not None and length > self.max_body_bytes:
            raise PayloadTooLarge()

        encoding = (headers.content_encoding or b"identity").strip().lower()

        if encoding != b"identity" and not (encoding == b"gzip" and self.gzip):
            raise UnsupportedEncoding()

        content_type = (headers.content_type or b"").replace(b" ", b"").lower()

        if self.form:
            if content_type.partition(b";")[0] != _FORM_TYPE:
                raise UnsupportedMediaType()
        elif content_type not in _JSON_TYPES:
            raise UnsupportedMediaType()

    def decode(self, body: bytes, headers: RequestHeaders) -> bytes:
        """Return the body with its content encoding removed.

        Raises:
            PayloadTooLarge: the inflated body is above the limit.
            UnsupportedEncoding: the gzip data is corrupt or truncated.
        """
        encoding = (headers.content_encoding or b"identity").strip().lower()

        if encoding != b"gzip":
            return body

        limit = self.max_inflated_bytes or self.max_body_bytes
        return inflate_gzip(body, limit)


def inflate_gzip(data: bytes, limit: int) -> bytes:
    """Inflate one gzip member, refusing output above `limit` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    size = 0
    pending = data

    try:
        while not inflater.eof:
            chunk = inflater.decompress(pending, min(_INFLATE_STEP, limit - size + 1))
            pending = inflater.unconsumed_tail
            size += len(chunk)

            if size > limit:
                raise PayloadTooLarge("The inflated body is larger than allowed.")

            if not chunk and not pending:
                break

            parts.append(chunk)
    except zlib.error as exc:
        raise UnsupportedEncoding("The gzip body is corrupt.") from exc

    if not inflater.eof or inflater.unused_data:
        raise UnsupportedEncoding("The gzip body is truncated or has trailing data.")

    return b"".join(parts)


async def read_body(
    receive: Receive, limit: int, content_length: int | None = None
) -> bytes:
    """Read the request body, refusing it as soon as it passes `limit` bytes.

    `content_length` is the declared length, if any. A body that ends short
    of it is refused: the server dropped part of it, as uvicorn does after an
    `Upgrade` header. The HTTP parser never passes on a longer one.

    Raises:
        PayloadTooLarge: more than `limit` bytes arrived.
        MalformedRequest: the body is shorter than `content_length`.
        ClientDisconnected: the client closed the connection first.
    """
    parts: list[bytes] = []
    size = 0

    while True:
        message = await receive()

        if message["type"] == "http.disconnect":
            raise ClientDisconnected()

        chunk: bytes = message.get("body", b"")
        size += len(chunk)

        if size > limit:
            raise PayloadTooLarge()

        parts.append(chunk)

        if not message.get("more_body", False):
            break

    if content_length is not None and size != content_length:
        raise MalformedRequest(
            f"The body has {size} bytes, not the {content_length} its"
            " Content-Length declares."
        )

    return parts[0] if len(parts) == 1 else b"".join(parts)
