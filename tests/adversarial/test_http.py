"""HTTP-level attacks: slow clients, smuggling, pipelining, paths and methods."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from ..receiver.harness import Certificates, ServeProcess, Upstream
from .conftest import (
    API_KEY_HEADER,
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_HEADER_BYTES,
    Ledger,
    api_headers,
    assert_error,
    event_body,
    raw,
)
from .wire import RawResponse, request_bytes

pytestmark = pytest.mark.slow

# What a timeout may take beyond its setting on a loaded two-core machine.
SLACK = 1.5


def _api_request(
    ledger: Ledger,
    *,
    method: str = "POST",
    target: str = "/apikey/sync",
    extra: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    version: str = "HTTP/1.1",
    close: bool = True,
) -> bytes:
    body = event_body(ledger) if body is None else body
    headers = list(api_headers().items()) + (extra or [])

    if close:
        headers.append(("Connection", "close"))

    return request_bytes(method, target, headers, body, version=version)


def _exchange(
    receiver: ServeProcess,
    certificates: Certificates,
    data: bytes,
    *,
    head: bool = False,
) -> RawResponse:
    with raw(receiver, certificates) as connection:
        connection.send(data)
        return connection.read_response(head=head)


@pytest.mark.parametrize(
    "method", ["GET", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "PROPFIND"]
)
def test_other_methods_rejected(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger, method: str
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    data = _api_request(ledger, method=method, body=body)
    response = _exchange(receiver, certificates, data)

    assert_error(response, 405, "method_not_allowed")
    assert response.header("allow") == "POST"


def test_head_refused_without_body(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    data = _api_request(ledger, method="HEAD", body=b"")
    response = _exchange(receiver, certificates, data, head=True)

    assert response.status == 405
    assert response.header("allow") == "POST"


@pytest.mark.parametrize(
    "target",
    [
        "//apikey/sync",
        "/apikey/sync/",
        "/apikey//sync",
        "/apikey/./sync",
        "/x/../apikey/sync",
        "/x/%2e%2e/apikey/sync",
        "/apikey/sync%00",
        "/apikey/sync%20",
        "/APIKEY/SYNC",
        "/apikey/sync.json",
        "*",
        "/apikey%2Fsync",
        "/apikey%2fsync",
        "/apikey%2Fsync/",
        "/%61pikey/sync",
        "/apikey/syn%63",
        "https://127.0.0.1/apikey%2Fsync",
    ],
)
def test_path_tricks_not_found(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger, target: str
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    data = _api_request(ledger, target=target, body=body)
    response = _exchange(receiver, certificates, data)

    assert_error(response, 404, "not_found")


def test_query_string_ignored_and_not_logged(
    receiver: ServeProcess,
    certificates: Certificates,
    upstream: Upstream,
    ledger: Ledger,
) -> None:
    token = ledger.marker()
    body = event_body(ledger)
    target = f"/apikey/sync?api_key={token}&x=%00"
    response = _exchange(
        receiver, certificates, _api_request(ledger, target=target, body=body)
    )

    assert response.status == 204
    assert upstream.requests_to("/up/apikey/sync")[-1].body == body


def test_absolute_form_routed_by_path(
    receiver: ServeProcess,
    certificates: Certificates,
    upstream: Upstream,
    ledger: Ledger,
) -> None:
    body = event_body(ledger)
    target = "https://127.0.0.1/apikey/sync"
    response = _exchange(
        receiver, certificates, _api_request(ledger, target=target, body=body)
    )

    assert response.status == 204
    assert upstream.requests_to("/up/apikey/sync")[-1].body == body


def test_http_1_0_accepted(
    receiver: ServeProcess,
    certificates: Certificates,
    upstream: Upstream,
    ledger: Ledger,
) -> None:
    body = event_body(ledger)
    data = _api_request(ledger, body=body, version="HTTP/1.0", close=False)

    with raw(receiver, certificates) as connection:
        connection.send(data)
        response = connection.read_response()
        closed = connection.closed_by_peer(within=1.0)

    assert response.status == 204
    assert closed
    assert upstream.requests_to("/up/apikey/sync")[-1].body == body


def test_pipelined_requests_answered_in_order(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    good = _api_request(ledger, close=False)
    bad_body = event_body(ledger)
    ledger.refused(bad_body)
    bad = request_bytes(
        "POST",
        "/apikey/sync",
        [("Content-Type", "application/json"), (API_KEY_HEADER, "wrong")],
        bad_body,
    )
    missing = _api_request(ledger, target="/nowhere", close=False)
    last = _api_request(ledger)

    with raw(receiver, certificates) as connection:
        connection.send(good + bad + missing + last)
        statuses = [connection.read_response().status for _ in range(4)]

    assert statuses == [204, 401, 404, 204]


SMUGGLING = {
    "content_length_and_chunked": [("Transfer-Encoding", "chunked")],
    "two_content_lengths": [("Content-Length", "5"), ("Content-Length", "6")],
    "obs_fold": [("X-Folded", "a\r\n  b")],
    "nul_in_value": [("X-Nul", "a\x00b")],
    "control_in_value": [("X-Control", "a\x01b")],
    "space_before_colon": [("X-Space ", "a")],
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_malformed_framing_rejected(
    receiver: ServeProcess,
    certificates: Certificates,
    upstream: Upstream,
    ledger: Ledger,
    case: str,
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    data = _api_request(ledger, extra=SMUGGLING[case], body=body, close=False)

    with raw(receiver, certificates) as connection:
        connection.send(data)
        response = connection.read_response()
        closed = connection.closed_by_peer(within=1.0)

    assert_error(response, 400, "malformed_request")
    assert closed


@pytest.mark.parametrize(
    "request_line",
    [
        b"FOO /apikey/sync HTTP/1.1",
        b"P0ST /apikey/sync HTTP/1.1",
        b"CONNECT 127.0.0.1:443 HTTP/1.1",
        b"PRI * HTTP/2.0",
        b"POST /apikey/sync HTTP/9.9",
        b"POST /apikey/sync",
    ],
)
def test_malformed_request_line_rejected(
    receiver: ServeProcess, certificates: Certificates, request_line: bytes
) -> None:
    data = request_line + b"\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"

    if request_line.startswith(b"PRI"):
        data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    response = _exchange(receiver, certificates, data)

    assert 400 <= response.status < 500
    assert_error(response, response.status, response.error_code())


def test_malformed_request_logged_and_counted(
    receiver: ServeProcess, certificates: Certificates
) -> None:
    data = b"FOO /apikey/sync HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    before = _rejections_counted(receiver, "400", "malformed_request")
    response = _exchange(receiver, certificates, data)

    assert_error(response, 400, "malformed_request")
    assert _rejections_counted(receiver, "400", "malformed_request") == before + 1
    lines = [
        line
        for line in list(receiver.log_lines)
        if line.get("event") == "request" and line.get("reason") == "malformed_request"
    ]
    assert lines
    assert lines[-1]["status"] == 400
    assert lines[-1]["route"] == "-"
    assert lines[-1]["source"] == "127.0.0.1"


def _rejections_counted(receiver: ServeProcess, status: str, reason: str) -> float:
    text = httpx.get(receiver.admin_url("/metrics"), timeout=5.0).text
    labels = f'{{reason="{reason}",route="-",status="{status}"}}'

    for line in text.splitlines():
        if line.startswith("kratos_webhooks_requests_total" + labels):
            return float(line.rpartition(" ")[2])

    return 0.0


@pytest.mark.parametrize(
    ("codings", "status", "code"),
    [
        (["gzip, chunked"], 415, "unsupported_encoding"),
        (["deflate", "chunked"], 415, "unsupported_encoding"),
        (["identity"], 415, "unsupported_encoding"),
        (["gzip"], 415, "unsupported_encoding"),
        # llhttp itself rejects chunked followed by another coding.
        (["chunked, chunked"], 400, "malformed_request"),
        (["chunked", "chunked"], 400, "malformed_request"),
    ],
)
def test_other_transfer_codings_rejected(
    receiver: ServeProcess,
    certificates: Certificates,
    ledger: Ledger,
    codings: list[str],
    status: int,
    code: str,
) -> None:
    marker = ledger.marker()
    ledger.refused_markers.add(marker)
    payload = b'{"marker": "' + marker.encode() + b'"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    headers = [*list(api_headers().items())]
    headers += [("Transfer-Encoding", coding) for coding in codings]
    data = request_bytes(
        "POST", "/apikey/async", headers, chunked, content_length=False
    )

    with raw(receiver, certificates) as connection:
        connection.send(data)
        response = connection.read_response()
        closed = connection.closed_by_peer(within=1.0)

    assert_error(response, status, code)
    assert closed


def test_bad_chunk_size_rejected(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    marker = ledger.marker()
    ledger.refused_markers.add(marker)
    chunked = b"zz\r\n" + marker.encode() + b"\r\n0\r\n\r\n"
    headers = [*list(api_headers().items()), ("Transfer-Encoding", "chunked")]
    data = request_bytes("POST", "/apikey/sync", headers, chunked, content_length=False)

    with raw(receiver, certificates) as connection:
        connection.send(data)
        response = connection.read_response()

    assert_error(response, 400, "malformed_request")


def test_smuggled_request_not_processed(
    receiver: ServeProcess,
    certificates: Certificates,
    upstream: Upstream,
    ledger: Ledger,
) -> None:
    inner_body = event_body(ledger)
    ledger.refused(inner_body)
    inner = _api_request(ledger, body=inner_body, close=False)
    outer = b"0\r\n\r\n" + inner
    headers = [
        *list(api_headers().items()),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", str(len(outer))),
    ]
    data = request_bytes("POST", "/apikey/sync", headers, outer, content_length=False)

    with raw(receiver, certificates) as connection:
        connection.send(data)
        first = connection.read_response()
        closed = connection.closed_by_peer(within=1.0)

    assert_error(first, 400, "malformed_request")
    assert closed
    assert b"HTTP/1.1" not in connection.buffer


@pytest.mark.parametrize(
    "extra",
    [
        [(f"X-Header-{i}", "v" * 8) for i in range(30_000)],
        [("X-Big", "a" * 600_000)],
        [("X-Big", "a" * (MAX_HEADER_BYTES + 1))],
        [(f"X-Header-{i}", "v" * 100) for i in range(MAX_HEADER_BYTES // 100)],
    ],
    ids=["many_headers", "one_huge_header", "just_over", "many_just_over"],
)
def test_oversized_headers_rejected(
    receiver: ServeProcess,
    certificates: Certificates,
    ledger: Ledger,
    extra: list[tuple[str, str]],
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    data = _api_request(ledger, extra=extra, body=body)
    response = _exchange(receiver, certificates, data)

    assert_error(response, 431, "payload_too_large")


def test_long_request_line_rejected(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    target = "/apikey/sync?" + "a" * 600_000
    response = _exchange(receiver, certificates, _api_request(ledger, target=target))

    assert_error(response, 431, "payload_too_large")


def test_expect_continue_oversized_rejected_unread(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    headers = [
        *list(api_headers().items()),
        ("Expect", "100-continue"),
        ("Content-Length", "50000000"),
    ]
    data = request_bytes("POST", "/apikey/async", headers, content_length=False)

    with raw(receiver, certificates) as connection:
        connection.send(data)
        response = connection.read_response()

    assert_error(response, 413, "payload_too_large")


def test_slow_headers_cut_off(
    receiver: ServeProcess,
    certificates: Certificates,
    upstream: Upstream,
    ledger: Ledger,
) -> None:
    data = _api_request(ledger)
    ledger.refused(data)
    started = time.monotonic()

    with raw(receiver, certificates) as connection:
        sent = 0

        while time.monotonic() - started < HEADER_TIMEOUT + SLACK + 2:
            try:
                connection.send(data[sent : sent + 1])
            except OSError:
                break

            sent += 1

            if connection.closed_by_peer(within=0.5):
                break

        elapsed = time.monotonic() - started

    assert elapsed < HEADER_TIMEOUT + SLACK
    assert connection.buffer == b""


def test_slow_body_cut_off(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    data = _api_request(ledger, body=body)
    head_length = data.index(b"\r\n\r\n") + 4

    with raw(receiver, certificates) as connection:
        connection.send(data[:head_length])
        started = time.monotonic()
        sent = head_length

        while time.monotonic() - started < BODY_TIMEOUT + SLACK + 2:
            try:
                connection.send(data[sent : sent + 1])
            except OSError:
                break

            sent += 1

            if connection.closed_by_peer(within=0.3):
                break

        elapsed = time.monotonic() - started

    assert elapsed < BODY_TIMEOUT + SLACK
    assert sent < len(data)


def test_silent_connection_closed(
    receiver: ServeProcess, certificates: Certificates
) -> None:
    started = time.monotonic()

    with raw(receiver, certificates) as connection:
        closed = connection.closed_by_peer(within=HEADER_TIMEOUT + SLACK)

    assert closed
    assert time.monotonic() - started < HEADER_TIMEOUT + SLACK


def test_idle_keep_alive_closed(
    receiver: ServeProcess, certificates: Certificates, ledger: Ledger
) -> None:
    with raw(receiver, certificates) as connection:
        connection.send(_api_request(ledger, close=False))
        assert connection.read_response().status == 204
        started = time.monotonic()
        closed = connection.closed_by_peer(within=IDLE_TIMEOUT + SLACK + 1)

    assert closed
    assert time.monotonic() - started < IDLE_TIMEOUT + SLACK + 1


def test_no_tls_handshake_closed(receiver: ServeProcess) -> None:
    address = ("127.0.0.1", receiver.https_port)
    started = time.monotonic()

    with socket.create_connection(address, timeout=HEADER_TIMEOUT + SLACK + 2) as sock:
        try:
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False

    assert closed
    assert time.monotonic() - started < HEADER_TIMEOUT + SLACK


def test_plain_http_on_tls_port_closed(receiver: ServeProcess, ledger: Ledger) -> None:
    data = _api_request(ledger)
    ledger.refused(data)
    address = ("127.0.0.1", receiver.https_port)
    started = time.monotonic()

    with socket.create_connection(address, timeout=HEADER_TIMEOUT + SLACK + 2) as sock:
        sock.sendall(data)
        received = b""

        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass

    assert b"HTTP/1.1" not in received
    assert time.monotonic() - started < HEADER_TIMEOUT + SLACK


UPGRADES = {
    "websocket": [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ],
    "h2c": [
        ("Connection", "Upgrade, HTTP2-Settings"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    ],
}


@pytest.mark.parametrize("target", ["/apikey/sync", "/apikey/async"])
@pytest.mark.parametrize("case", sorted(UPGRADES))
def test_upgrade_refused_before_the_body(
    receiver: ServeProcess,
    certificates: Certificates,
    ledger: Ledger,
    case: str,
    target: str,
) -> None:
    # uvicorn stops parsing at an upgrade request's headers and hands on an
    # empty body, which a valid credential would get accepted and stored.
    body = event_body(ledger)
    ledger.refused(body)
    data = _api_request(ledger, target=target, extra=UPGRADES[case], body=body)
    before = _rejections_counted(receiver, "400", "malformed_request")
    response = _exchange(receiver, certificates, data)

    assert_error(response, 400, "malformed_request")
    assert _rejections_counted(receiver, "400", "malformed_request") == before + 1
