"""Attacks with bodies: sizes, framing, encodings and content types at the relay."""

from __future__ import annotations

import contextlib
import gzip
import json
import time

import httpx
import pytest

from .conftest import (
    DATA,
    HEADER_ASYNC,
    HEADER_SYNC,
    MAX_BODY_BYTES,
    SMALL,
    Chain,
    Wire,
    assert_error,
    exchange,
    kratos,
    request_bytes,
)

pytestmark = pytest.mark.slow

DATA_SAMPLE = "04-login-after-password-browser.passthrough.json"


def _reached(chain: Chain, path: str, body: bytes) -> bool:
    return any(r.body == body for r in chain.upstream_for(path))


def _wait_reached(chain: Chain, path: str, body: bytes) -> bool:
    deadline = time.monotonic() + 10

    while not _reached(chain, path, body) and time.monotonic() < deadline:
        time.sleep(0.05)

    return _reached(chain, path, body)


@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC])
def test_oversized_declared_refused(chain: Chain, path: str) -> None:
    body = chain.body(pad="x" * MAX_BODY_BYTES)
    answer = exchange(chain.port, request_bytes("POST", path, kratos(), body))

    assert_error(answer.status, answer.body, 413, "payload_too_large")
    assert not _reached(chain, path, body)


def test_route_limit_below_listener_limit(chain: Chain) -> None:
    body = chain.body(pad="x" * 1200)
    answer = exchange(chain.port, request_bytes("POST", SMALL, kratos(), body))
    assert_error(answer.status, answer.body, 413, "payload_too_large")


@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC])
def test_oversized_chunked_refused(chain: Chain, path: str) -> None:
    body = chain.body(pad="y" * (MAX_BODY_BYTES + 10))
    chunks = b"".join(
        f"{len(body[i : i + 4096]):x}\r\n".encode() + body[i : i + 4096] + b"\r\n"
        for i in range(0, len(body), 4096)
    )
    headers = {**kratos(), "Transfer-Encoding": "chunked"}
    data = request_bytes(
        "POST", path, headers, chunks + b"0\r\n\r\n", content_length=False
    )

    with Wire(chain.port) as wire:
        with contextlib.suppress(OSError):
            wire.send(data)

        answer = wire.response()

    assert_error(answer.status, answer.body, 413, "payload_too_large")
    assert not _reached(chain, path, body)


@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC])
def test_chunked_body_forwarded_identical(chain: Chain, path: str) -> None:
    body = chain.body()
    chunks = b"".join(
        f"{len(body[i : i + 7]):x}\r\n".encode() + body[i : i + 7] + b"\r\n"
        for i in range(0, len(body), 7)
    )
    headers = {**kratos(), "Transfer-Encoding": "chunked"}
    data = request_bytes(
        "POST", path, headers, chunks + b"0\r\n\r\n", content_length=False
    )
    answer = exchange(chain.port, data)

    assert answer.status in (200, 202), answer.body
    assert _wait_reached(chain, path, body)


def test_content_length_short_cut_off(chain: Chain) -> None:
    """A body shorter than declared: the relay waits its body timeout, then hangs up."""
    body = chain.body()
    data = request_bytes(
        "POST", HEADER_SYNC, {**kratos(), "Content-Length": str(len(body) + 50)}, body
    )

    with Wire(chain.port) as wire:
        started = time.monotonic()
        wire.send(data)
        closed = wire.closed_within(5.0)
        elapsed = time.monotonic() - started

    assert closed
    assert elapsed < 4.0
    assert not _reached(chain, HEADER_SYNC, body)


def test_content_length_long_extra_is_next_request(chain: Chain) -> None:
    """Bytes past Content-Length are a second request, never part of the body."""
    body = chain.body()
    trailing = b"GET /k/unknown HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    data = request_bytes("POST", HEADER_SYNC, kratos(), body) + trailing

    with Wire(chain.port) as wire:
        wire.send(data)
        first = wire.response()
        second = wire.response()

    assert first.status == 200
    assert_error(second.status, second.body, 404, "not_found")
    assert _wait_reached(chain, HEADER_SYNC, body)


@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC])
def test_gzip_refused(chain: Chain, path: str) -> None:
    body = chain.body()
    packed = gzip.compress(body)
    headers = {**kratos(), "Content-Encoding": "gzip"}
    answer = exchange(chain.port, request_bytes("POST", path, headers, packed))

    assert 400 <= answer.status < 500, answer.body
    assert_error(answer.status, answer.body, answer.status, "unsupported_encoding")
    time.sleep(0.3)
    assert not _reached(chain, path, body)
    assert not _reached(chain, path, packed)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "nonsense"],
)
def test_wrong_content_type_refused(chain: Chain, content_type: str) -> None:
    body = chain.body()
    headers = {**kratos(), "content-type": content_type}
    answer = exchange(chain.port, request_bytes("POST", HEADER_SYNC, headers, body))

    assert_error(answer.status, answer.body, 415, "unsupported_media_type")
    assert not _reached(chain, HEADER_SYNC, body)


@pytest.mark.parametrize(
    "payload",
    [b"not json at all", b'{"a":', b"\xff\xfe{}", b"[]", b"null"],
    ids=["text", "truncated", "not_utf8", "array", "null"],
)
def test_non_json_clear_answer(chain: Chain, payload: bytes) -> None:
    """The relay does not parse; the receiver refuses what it cannot read, as 4xx."""
    response = httpx.post(chain.url(HEADER_SYNC), content=payload, headers=kratos())

    assert response.status_code < 500, response.text

    if response.status_code >= 400:
        document = response.json()
        assert set(document["error"]) == {"code", "message"}


@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC])
def test_sample_forwarded_byte_identical(chain: Chain, path: str) -> None:
    body = (DATA / DATA_SAMPLE).read_bytes()
    trailing = body + b"\r\n \t"
    for payload in (body, trailing):
        response = httpx.post(chain.url(path), content=payload, headers=kratos())
        assert response.status_code in (200, 202), response.text
        assert _wait_reached(chain, path, payload)


def test_json_with_odd_bytes_forwarded_identical(chain: Chain) -> None:
    document = {"s": "\u2028\u0000\ud7ff", "f": 0.1 + 0.2, "big": 10**30}
    body = json.dumps(document, ensure_ascii=False).encode() + b"  \n"
    response = httpx.post(chain.url(HEADER_ASYNC), content=body, headers=kratos())

    assert response.status_code == 202
    assert _wait_reached(chain, HEADER_ASYNC, body)
