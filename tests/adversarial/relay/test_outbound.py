"""Attacks from the receiver's side: redirects, long Retry-After, hangs, bad TLS."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import (
    HANG_BUDGET,
    HANGING,
    IDENTITY,
    INTERRUPT,
    INTERRUPTING,
    SCRIPTED,
    SILENT,
    SLACK,
    UPDATING,
    WRONG_CERT,
    Chain,
    assert_error,
    kratos,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def script(chain: Chain) -> Iterator[Chain]:
    chain.script.status, chain.script.body, chain.script.headers = 200, b"{}", []
    yield chain
    chain.script.status, chain.script.body, chain.script.headers = 200, b"{}", []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_never_followed(script: Chain, status: int) -> None:
    script.script.status = status
    script.script.body = b""
    script.script.headers = [(b"location", b"http://127.0.0.1:1/elsewhere")]
    before = len(script.script.received)
    response = httpx.post(
        script.url(SCRIPTED), content=script.body(), headers=kratos(), timeout=10
    )

    assert_error(response.status_code, response.content, 502, "invalid_upstream_answer")
    assert len(script.script.received) == before + 1
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        (429, "3600", "5"),
        (429, "86400000000000000000000", "5"),
        (429, "Wed, 21 Oct 2099 07:28:00 GMT", "5"),
        (429, "-1", "5"),
        (429, "  2 ", "2"),
        (503, "3600", "5"),
        (503, "1.5", "5"),
    ],
)
def test_retry_after_capped(
    script: Chain, status: int, value: str, expected: str
) -> None:
    script.script.status = status
    script.script.body = b'{"error":"busy"}'
    script.script.headers = [(b"retry-after", value.encode())]
    response = httpx.post(script.url(SCRIPTED), content=b"{}", headers=kratos())

    assert response.status_code == status
    assert response.headers.get_list("retry-after") == [expected]
    assert int(response.headers["retry-after"]) <= 5


def test_retry_after_twice_capped(script: Chain) -> None:
    script.script.status = 429
    script.script.headers = [(b"retry-after", b"1"), (b"retry-after", b"3600")]
    response = httpx.post(script.url(SCRIPTED), content=b"{}", headers=kratos())

    assert response.status_code == 429
    values = response.headers.get_list("retry-after")
    assert len(values) == 1
    assert int(values[0]) <= 5


def test_other_receiver_headers_not_passed(script: Chain) -> None:
    script.script.headers = [
        (b"set-cookie", b"stolen=1"),
        (b"location", b"http://127.0.0.1:1/"),
        (b"x-internal", b"secret"),
    ]
    response = httpx.post(script.url(SCRIPTED), content=b"{}", headers=kratos())

    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert "x-internal" not in response.headers


def test_hanging_receiver_gets_504_in_budget(chain: Chain) -> None:
    started = time.monotonic()
    response = httpx.post(
        chain.url(HANGING), content=b"{}", headers=kratos(), timeout=30
    )
    elapsed = time.monotonic() - started

    assert_error(response.status_code, response.content, 504, "upstream_timeout")
    assert HANG_BUDGET - 0.1 <= elapsed <= HANG_BUDGET + SLACK


def test_wrong_certificate_gets_502(chain: Chain) -> None:
    response = httpx.post(chain.url(WRONG_CERT), content=b"{}", headers=kratos())

    assert_error(response.status_code, response.content, 502, "upstream_unavailable")
    time.sleep(0.2)
    lines = [
        line
        for line in chain.relay.events("request")
        if line.get("route") == WRONG_CERT and line.get("status") == 502
    ]
    assert lines
    assert "detail" in lines[-1]


def test_interrupt_passes_unchanged(chain: Chain) -> None:
    response = httpx.post(
        chain.url(INTERRUPTING), content=chain.body(), headers=kratos()
    )

    assert response.status_code == 400
    assert response.content == INTERRUPT
    assert response.headers["content-type"].startswith("application/json")


def test_identity_update_passes_unchanged(chain: Chain) -> None:
    response = httpx.post(chain.url(UPDATING), content=chain.body(), headers=kratos())

    assert response.status_code == 200
    assert response.content == IDENTITY


def test_no_content_passes_unchanged(chain: Chain) -> None:
    response = httpx.post(chain.url(SILENT), content=chain.body(), headers=kratos())

    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize("status", [200, 400, 403, 409, 422])
def test_scripted_status_and_body_unchanged(script: Chain, status: int) -> None:
    body = b'{"messages":[{"instance_ptr":"#/traits/email","messages":[]}]}\n  '
    script.script.status, script.script.body = status, body
    response = httpx.post(script.url(SCRIPTED), content=b"{}", headers=kratos())

    assert response.status_code == status
    assert response.content == body


def test_oversized_answer_refused(script: Chain) -> None:
    script.script.body = b"[" + b"0," * (3 * 1024 * 1024) + b"0]"
    response = httpx.post(
        script.url(SCRIPTED), content=b"{}", headers=kratos(), timeout=20
    )

    assert_error(response.status_code, response.content, 502, "invalid_upstream_answer")
