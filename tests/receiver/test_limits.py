"""The body reader: the size limit and the declared Content-Length."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kratos_webhooks.errors import MalformedRequest, PayloadTooLarge
from kratos_webhooks.receiver.limits import ClientDisconnected, read_body


def messages(*chunks: bytes) -> Any:
    """An ASGI receive callable that sends `chunks` as the request body."""
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if not pending:
            return {"type": "http.disconnect"}

        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    return receive


def read(limit: int, length: int | None, *chunks: bytes) -> bytes:
    return asyncio.run(read_body(messages(*chunks), limit, length))


def test_declared_length_read() -> None:
    assert read(100, 7, b"{}", b"12345") == b"{}12345"


def test_undeclared_length_read() -> None:
    assert read(100, None, b"{", b"}") == b"{}"


@pytest.mark.parametrize("chunks", [(b"",), (b"{}",), (b"{", b"}")])
def test_short_body_rejected(chunks: tuple[bytes, ...]) -> None:
    # uvicorn hands on an upgrade request's body as empty: it must not pass.
    with pytest.raises(MalformedRequest) as caught:
        read(100, 30, *chunks)

    assert caught.value.status == 400
    assert caught.value.code == "malformed_request"


def test_body_over_limit_rejected() -> None:
    with pytest.raises(PayloadTooLarge):
        read(3, None, b"{}", b"{}")


def test_disconnect_reported() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(ClientDisconnected):
        asyncio.run(read_body(receive, 100, 10))
