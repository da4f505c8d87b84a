"""Attacks on the `webhook-id` the relay derives from `Ory-Webhook-Trigger-Id`."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from .conftest import (
    BASIC_ASYNC,
    HEADER_ASYNC,
    HEADER_SYNC,
    KEY_HEADER,
    Chain,
    assert_error,
    basic_value,
    exchange,
    kratos,
    request_bytes,
)

pytestmark = pytest.mark.slow

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

BAD_TRIGGERS = {
    "empty": b"",
    "blank": b"   ",
    "huge": b"a" * 201,
    "very_huge": b"b" * 7000,
    "dot": b"abc.def",
    "space": b"abc def",
    "tab": b"abc\tdef",
    "slash": b"abc/def",
    "comma": b"abc,def",
    "non_ascii": "abc\u00e9".encode("latin-1"),
    "utf8": "abc\u2603".encode(),
    "control": b"abc\x01def",
    "delete": b"abc\x7fdef",
    # Only Kratos' UUID form is a trigger id: a token could take the id of a
    # call sent without one, `msg_` and 40 hex digits.
    "token": b"abc-def_123",
    "hex40": b"0123456789abcdef0123456789abcdef01234567",
    "uuid_no_hyphens": b"9f425a8d7efc47688f237647a74fdf13",
    "braced_uuid": b"{9f425a8d-7efc-4768-8f23-7647a74fdf13}",
    "uuid_with_suffix": b"9f425a8d-7efc-4768-8f23-7647a74fdf13-x",
}


@pytest.mark.parametrize("case", sorted(BAD_TRIGGERS))
@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC])
def test_bad_trigger_refused(chain: Chain, case: str, path: str) -> None:
    headers = kratos()
    del headers["ory-webhook-trigger-id"]
    head = request_bytes("POST", path, headers, b"")
    # The value is put in as bytes, so that no client library cleans it up.
    line = b"Ory-Webhook-Trigger-Id: " + BAD_TRIGGERS[case] + b"\r\n"
    body = chain.body()
    data = head.replace(b"Content-Length: 0\r\n", line)
    data = data.replace(
        b"\r\n\r\n", f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    before = len(chain.upstream.received)
    answer = exchange(chain.port, data + body)

    # A control character fails HTTP parsing first (400 malformed_request);
    # any other bad trigger id is an authenticity failure (401).
    if case in ("control", "delete"):
        assert_error(answer.status, answer.body, 400, "malformed_request")
    else:
        assert_error(answer.status, answer.body, 401, "malformed_header")

    time.sleep(0.2)
    assert len(chain.upstream.received) == before


def test_trigger_sent_twice_refused(chain: Chain) -> None:
    headers = [*kratos().items(), ("Ory-Webhook-Trigger-Id", str(uuid.uuid4()))]
    answer = exchange(chain.port, request_bytes("POST", HEADER_SYNC, headers, b"{}"))
    assert_error(answer.status, answer.body, 401, "malformed_header")


def _wait_count(chain: Chain, path: str, webhook_id: str, count: int) -> int:
    deadline = time.monotonic() + 10

    def found() -> int:
        return sum(
            1
            for r in chain.upstream_for(path)
            if r.headers.get("webhook-id") == webhook_id
        )

    while found() < count and time.monotonic() < deadline:
        time.sleep(0.05)

    # Leave a later duplicate the time to show up.
    time.sleep(0.8)
    return found()


@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC])
def test_kratos_retry_processed_once(chain: Chain, path: str) -> None:
    body = chain.body()
    trigger = str(uuid.uuid4())
    answers = [
        httpx.post(chain.url(path), content=body, headers=kratos(trigger))
        for _ in range(3)
    ]

    assert len({(a.status_code, a.content) for a in answers}) == 1
    assert answers[0].status_code in (200, 202)
    assert _wait_count(chain, path, "msg_" + trigger, 1) == 1


@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC])
def test_retry_without_trigger_processed_once(chain: Chain, path: str) -> None:
    body = chain.body()
    headers = kratos()
    del headers["ory-webhook-trigger-id"]
    answers = [
        httpx.post(chain.url(path), content=body, headers=headers) for _ in range(2)
    ]

    assert answers[0].status_code == answers[1].status_code
    assert answers[0].status_code in (200, 202)
    matching = [r for r in chain.upstream_for(path) if r.body == body]
    deadline = time.monotonic() + 10

    while not matching and time.monotonic() < deadline:
        time.sleep(0.05)
        matching = [r for r in chain.upstream_for(path) if r.body == body]

    time.sleep(0.8)
    matching = [r for r in chain.upstream_for(path) if r.body == body]
    assert len(matching) == 1
    assert matching[0].headers["webhook-id"].startswith("msg_")


def test_trigger_cannot_take_a_body_hash_id(chain: Chain) -> None:
    # Without a trigger id the id is `msg_` and 40 hex digits of the body hash.
    headers = kratos()
    del headers["ory-webhook-trigger-id"]
    plain = chain.body()
    answer = httpx.post(chain.url(HEADER_ASYNC), content=plain, headers=headers)
    assert answer.status_code == 202
    webhook_id = answer.json()["webhook_id"]
    assert re.fullmatch(r"msg_[0-9a-f]{40}", webhook_id)
    assert not UUID.fullmatch(webhook_id.removeprefix("msg_"))

    other = chain.body()
    answer = httpx.post(
        chain.url(HEADER_ASYNC),
        content=other,
        headers=kratos(webhook_id.removeprefix("msg_")),
    )
    assert_error(answer.status_code, answer.content, 401, "malformed_header")


def test_trigger_case_normalised(chain: Chain) -> None:
    trigger = str(uuid.uuid4())
    body = chain.body()
    answers = [
        httpx.post(chain.url(HEADER_ASYNC), content=body, headers=kratos(value))
        for value in (trigger.upper(), trigger)
    ]

    assert [a.status_code for a in answers] == [202, 202]
    assert {a.json()["webhook_id"] for a in answers} == {"msg_" + trigger}
    assert _wait_count(chain, HEADER_ASYNC, "msg_" + trigger, 1) == 1


@pytest.mark.parametrize("path", [HEADER_SYNC, HEADER_ASYNC, BASIC_ASYNC])
def test_same_trigger_other_body_conflicts(chain: Chain, path: str) -> None:
    # Kratos' retries are byte for byte: another body under a used trigger id
    # is a fault or a forgery, refused and never acknowledged as delivered.
    trigger = str(uuid.uuid4())
    headers = kratos(trigger)

    if path == BASIC_ASYNC:
        del headers[KEY_HEADER]
        headers["authorization"] = basic_value()

    first, second = chain.body(), chain.body()
    accepted = httpx.post(chain.url(path), content=first, headers=headers)
    assert accepted.status_code in (200, 202), accepted.text
    assert _wait_count(chain, path, "msg_" + trigger, 1) == 1

    answer = httpx.post(chain.url(path), content=second, headers=headers)

    assert_error(answer.status_code, answer.content, 409, "idempotency_conflict")
    assert not any(r.body == second for r in chain.upstream_for(path))
    # The access line is written after the response, so it may lag behind.
    deadline = time.monotonic() + 5
    lines: list[dict[str, object]] = []

    while not lines and time.monotonic() < deadline:
        time.sleep(0.05)
        lines = [
            line
            for line in chain.relay.events("request")
            if line.get("reason") == "idempotency_conflict"
            and line.get("webhook_id") == "msg_" + trigger
        ]

    assert lines
    assert lines[-1]["level"] == "warning"
    assert lines[-1]["route"] == path
    # A retry of the first call still gets the first response.
    again = httpx.post(chain.url(path), content=first, headers=headers)
    assert (again.status_code, again.content) == (
        accepted.status_code,
        accepted.content,
    )
