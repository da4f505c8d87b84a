"""Forged, replayed and mangled Standard Webhooks signatures against `serve`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
import pytest

from kratos_webhooks import HmacKey

from ..receiver.harness import Certificates, ServeProcess, Upstream
from .conftest import (
    SW_KEY,
    SW_PREVIOUS_KEY,
    TOLERANCE,
    Ledger,
    assert_conflict_logged,
    assert_error,
    event_body,
    raw,
    sw_headers,
    wait_delivered,
)
from .wire import request_bytes

pytestmark = pytest.mark.slow


def sign_by_hand(key: HmacKey, msg_id: str, timestamp: str, body: bytes) -> str:
    """Sign without the Signer's checks, so invalid ids can be signed too."""
    signed = msg_id.encode("latin-1") + b"." + timestamp.encode() + b"." + body
    digest = hmac.digest(key.key, signed, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode()


def post(
    client: httpx.Client,
    receiver: ServeProcess,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    return client.post(receiver.url(path), content=body, headers=headers)


def test_valid_and_rotated_keys_accepted(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    for key in (SW_KEY, SW_PREVIOUS_KEY):
        body = event_body(ledger)
        headers = sw_headers(ledger, body, key)
        response = post(client, receiver, "/sw/sync", body, headers)

        assert response.status_code == 204, response.text
        assert upstream.requests_to("/up/sw/sync")[-1].body == body


def _mangle(case: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, Any]:
    signature = headers["webhook-signature"]
    encoded = signature.split(",", 1)[1]

    if case == "wrong_key":
        headers["webhook-signature"] = sign_by_hand(
            HmacKey.generate(),
            headers["webhook-id"],
            headers["webhook-timestamp"],
            body,
        )
    elif case == "truncated":
        headers["webhook-signature"] = signature[:-6]
    elif case == "no_padding":
        headers["webhook-signature"] = signature.rstrip("=")
    elif case == "urlsafe_alphabet":
        flipped = encoded.replace("+", "-").replace("/", "_")
        headers["webhook-signature"] = "v1," + (
            flipped if flipped != encoded else "-" + encoded[1:]
        )
    elif case == "other_version":
        headers["webhook-signature"] = "v2," + encoded
    elif case == "upper_version":
        headers["webhook-signature"] = "V1," + encoded
    elif case == "v1a_garbage":
        headers["webhook-signature"] = "v1a," + "A" * 85 + "Q=="
    elif case == "bare_base64":
        headers["webhook-signature"] = encoded
    elif case == "comma_only":
        headers["webhook-signature"] = ","
    elif case == "empty":
        headers["webhook-signature"] = ""
    elif case == "tampered_body":
        body = body.replace(b"flow", b"flaw", 1)
    elif case == "swapped_id":
        headers["webhook-id"] = "msg_someone_else"
    elif case == "shifted_timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    elif case == "huge":
        headers["webhook-signature"] = " ".join([signature[:-6]] * 100)
    elif case == "many_wrong_then_tab":
        headers["webhook-signature"] = signature.replace(" ", "\t") + "\tv1,x"
    else:
        raise AssertionError(case)

    return body, headers


FORGERIES = [
    ("wrong_key", "signature_mismatch"),
    ("truncated", "malformed_header"),
    ("no_padding", "malformed_header"),
    ("urlsafe_alphabet", "malformed_header"),
    ("other_version", "signature_mismatch"),
    ("upper_version", "signature_mismatch"),
    ("v1a_garbage", "signature_mismatch"),
    ("bare_base64", "malformed_header"),
    ("comma_only", "malformed_header"),
    ("empty", "malformed_header"),
    ("tampered_body", "signature_mismatch"),
    ("swapped_id", "signature_mismatch"),
    ("shifted_timestamp", "signature_mismatch"),
    ("huge", "malformed_header"),
]


@pytest.mark.parametrize(("case", "code"), FORGERIES)
def test_forged_signature_rejected(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    case: str,
    code: str,
) -> None:
    body = event_body(ledger)
    headers = sw_headers(ledger, body)
    body, headers = _mangle(case, body, headers)
    ledger.refused(body)
    before = len(upstream.requests_to("/up/sw/sync"))
    response = post(client, receiver, "/sw/sync", body, headers)

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] in (code, "signature_mismatch")
    assert_error(response, 401, response.json()["error"]["code"])
    assert len(upstream.requests_to("/up/sw/sync")) == before


def _raw_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers.items()]


@pytest.mark.parametrize(
    "name", ["webhook-id", "webhook-timestamp", "webhook-signature"]
)
def test_duplicated_header_rejected(
    receiver: ServeProcess,
    certificates: Certificates,
    upstream: Upstream,
    ledger: Ledger,
    name: str,
) -> None:
    body = event_body(ledger)
    headers = sw_headers(ledger, body)
    ledger.refused(body)
    pairs = [*_raw_headers(headers), (name.upper(), headers[name])]
    pairs.append(("Connection", "close"))

    with raw(receiver, certificates) as connection:
        connection.send(request_bytes("POST", "/sw/sync", pairs, body))
        response = connection.read_response()

    assert_error(response, 401, "malformed_header")


def test_header_names_case_insensitive(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    body = event_body(ledger)
    headers = sw_headers(ledger, body)
    pairs = [(name.upper(), value) for name, value in headers.items()]
    pairs.append(("Connection", "close"))

    with raw(receiver, certificates) as connection:
        connection.send(request_bytes("POST", "/sw/sync", pairs, body))
        response = connection.read_response()

    assert response.status == 204


def test_surrounding_whitespace_ignored(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    body = event_body(ledger)
    headers = sw_headers(ledger, body)
    pairs = [(name, f" \t {value} \t") for name, value in headers.items()]
    pairs.append(("Connection", "close"))

    with raw(receiver, certificates) as connection:
        connection.send(request_bytes("POST", "/sw/sync", pairs, body))
        response = connection.read_response()

    assert response.status == 204


def test_non_ascii_signature_rejected(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    body = event_body(ledger)
    headers = sw_headers(ledger, body)
    ledger.refused(body)
    pairs: list[tuple[bytes, bytes]] = [
        (name.encode(), value.encode()) for name, value in headers.items()
    ]
    pairs = [
        (n, v + b" v1,\xe9\xff") if n == b"webhook-signature" else (n, v)
        for n, v in pairs
    ]
    pairs.append((b"Connection", b"close"))

    with raw(receiver, certificates) as connection:
        connection.send(request_bytes("POST", "/sw/sync", pairs, body))
        response = connection.read_response()

    assert_error(response, 401, "malformed_header")


def test_timestamp_inside_tolerance_accepted(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger
) -> None:
    for offset in (-(TOLERANCE - 2), TOLERANCE - 2):
        body = event_body(ledger)
        timestamp = int(time.time()) + offset
        headers = sw_headers(ledger, body, timestamp=timestamp)
        response = post(client, receiver, "/sw/sync", body, headers)

        assert response.status_code == 204, (offset, response.text)


@pytest.mark.parametrize(
    ("timestamp", "code"),
    [
        (lambda now: str(now - TOLERANCE - 2), "timestamp_too_old"),
        (lambda now: str(now + TOLERANCE + 2), "timestamp_in_future"),
        (lambda now: str(now * 1000), "timestamp_in_future"),
        (lambda now: "0", "timestamp_too_old"),
        (lambda now: "9" * 15, "timestamp_in_future"),
        (lambda now: "9" * 16, "malformed_header"),
        (lambda now: f"-{now}", "malformed_header"),
        (lambda now: f"{now}.5", "malformed_header"),
        (lambda now: f"{now / 1e9:.3f}e9", "malformed_header"),
        (lambda now: f"+{now}", "malformed_header"),
        (lambda now: f"0x{now:x}", "malformed_header"),
        (lambda now: "", "malformed_header"),
    ],
)
def test_timestamp_outside_tolerance_rejected(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    timestamp: Any,
    code: str,
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    value = timestamp(int(time.time()))
    headers = sw_headers(ledger, body)
    headers["webhook-timestamp"] = value
    headers["webhook-signature"] = sign_by_hand(
        SW_KEY, headers["webhook-id"], value, body
    )
    ledger.forbidden.add(headers["webhook-signature"].split(",", 1)[1])
    response = post(client, receiver, "/sw/sync", body, headers)

    assert_error(response, 401, code)


def test_strict_tolerance_route(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    headers = sw_headers(ledger, body, timestamp=int(time.time()) - 30)
    response = post(client, receiver, "/sw/strict", body, headers)

    assert_error(response, 401, "timestamp_too_old")


@pytest.mark.parametrize(
    ("msg_id", "accepted"),
    [
        ("m" * 256, True),
        ("msg_!#$%&'()*+,-/:;<=>?@[]^_`{|}~", True),
        ("m" * 257, False),
        ("msg.dotted", False),
        ("msg id", False),
        ("", False),
    ],
)
def test_webhook_id_edges(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    msg_id: str,
    accepted: bool,
) -> None:
    body = event_body(ledger)
    headers = sw_headers(ledger, body)
    headers["webhook-id"] = msg_id
    headers["webhook-signature"] = sign_by_hand(
        SW_KEY, msg_id, headers["webhook-timestamp"], body
    )
    ledger.forbidden.add(headers["webhook-signature"].split(",", 1)[1])

    if not accepted:
        ledger.refused(body)

    response = post(client, receiver, "/sw/async", body, headers)

    if accepted:
        assert response.status_code == 202, response.text
        assert response.json()["webhook_id"] == msg_id
        ledger.accept("/sw/async", msg_id, body)
        delivered = wait_delivered(upstream, "/sw/async", msg_id)
        assert [d.body for d in delivered] == [body]
    else:
        assert_error(response, 401, "malformed_header")


def test_webhook_id_non_ascii_rejected(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    msg_id = "msg_\xe9t\xe9"
    headers = sw_headers(ledger, body)
    headers["webhook-id"] = msg_id
    headers["webhook-signature"] = sign_by_hand(
        SW_KEY, msg_id, headers["webhook-timestamp"], body
    )
    ledger.forbidden.add(headers["webhook-signature"].split(",", 1)[1])
    pairs = [*_raw_headers(headers), ("Connection", "close")]

    with raw(receiver, certificates) as connection:
        connection.send(request_bytes("POST", "/sw/sync", pairs, body))
        response = connection.read_response()

    assert_error(response, 401, "malformed_header")


def test_sync_replay_answered_from_store(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    upstream.answers["/up/sw/sync"] = (200, b'{"identity": {"traits": {}}}')

    try:
        body = event_body(ledger)
        headers = sw_headers(ledger, body)
        before = len(upstream.requests_to("/up/sw/sync"))
        answers = [post(client, receiver, "/sw/sync", body, headers) for _ in range(3)]
    finally:
        del upstream.answers["/up/sw/sync"]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[1].content == answers[0].content == answers[2].content
    assert len(upstream.requests_to("/up/sw/sync")) == before + 1


def test_async_replay_and_other_route(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    body = event_body(ledger)
    headers = sw_headers(ledger, body)
    msg_id = headers["webhook-id"]
    first = [post(client, receiver, "/sw/async", body, headers) for _ in range(3)]
    twin = [post(client, receiver, "/sw/twin", body, headers) for _ in range(3)]

    assert [a.status_code for a in first + twin] == [202] * 6
    ledger.accept("/sw/async", msg_id, body)
    ledger.accept("/sw/twin", msg_id, body)
    assert len(wait_delivered(upstream, "/sw/async", msg_id)) == 1
    assert len(wait_delivered(upstream, "/sw/twin", msg_id)) == 1
    time.sleep(0.5)
    assert len(wait_delivered(upstream, "/sw/async", msg_id)) == 1
    assert len(wait_delivered(upstream, "/sw/twin", msg_id)) == 1


def test_same_body_new_id_needs_new_signature(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    body = event_body(ledger)
    headers = sw_headers(ledger, body)
    assert post(client, receiver, "/sw/sync", body, headers).status_code == 204
    before = len(upstream.requests_to("/up/sw/sync"))
    headers["webhook-id"] = "msg_replayed_under_new_id"
    response = post(client, receiver, "/sw/sync", body, headers)

    assert_error(response, 401, "signature_mismatch")
    assert len(upstream.requests_to("/up/sw/sync")) == before


@pytest.mark.parametrize("path", ["/sw/sync", "/sw/async"])
def test_same_id_other_body_conflicts(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    path: str,
) -> None:
    # Both bodies are signed: a holder of the key who reuses an id within the
    # window gets a conflict, not the first call's response.
    first, second = event_body(ledger), event_body(ledger)
    ledger.refused(second)
    headers = sw_headers(ledger, first)
    msg_id = headers["webhook-id"]
    accepted = post(client, receiver, path, first, headers)

    assert accepted.status_code in (202, 204), accepted.text

    if path.endswith("async"):
        ledger.accept(path, msg_id, first)
        assert len(wait_delivered(upstream, path, msg_id)) == 1

    response = post(
        client, receiver, path, second, sw_headers(ledger, second, msg_id=msg_id)
    )

    assert_error(response, 409, "idempotency_conflict")
    assert_conflict_logged(receiver, path, msg_id)
    # A retry of the first call still gets the first response.
    again = post(
        client, receiver, path, first, sw_headers(ledger, first, msg_id=msg_id)
    )
    assert (again.status_code, again.content) == (
        accepted.status_code,
        accepted.content,
    )
