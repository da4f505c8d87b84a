"""Rate limits per route, per source and overall, and the connection cap."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..receiver.harness import (
    Certificates,
    ServeProcess,
    Upstream,
    base_config,
    serving,
    write_config,
)
from .conftest import (
    ENV,
    Ledger,
    api_headers,
    assert_error,
    event_body,
    route,
    verify_api_key,
)
from .wire import RawConnection, request_bytes

pytestmark = pytest.mark.slow

PER_SOURCE = 10
OVERALL = 25
MAX_CONNECTIONS = 6
CAP_HEADER_TIMEOUT = 1.0
# How long SIGTERM may take with an idle keep-alive client connected.
STOP_SECONDS = 5.0


def _post_from(
    address: str, certificates: Certificates, url: str, count: int
) -> list[httpx.Response]:
    transport = httpx.HTTPTransport(
        local_address=address, verify=certificates.client_context()
    )

    with httpx.Client(transport=transport, timeout=10.0) as client:
        return [
            client.post(url, content=b'{"flow": {}}', headers=api_headers())
            for _ in range(count)
        ]


def _assert_limited(response: httpx.Response) -> None:
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= 5


def test_route_limit_burst(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger
) -> None:
    answers = []

    for _ in range(8):
        body = event_body(ledger)
        answers.append(
            client.post(receiver.url("/limited"), content=body, headers=api_headers())
        )

        if answers[-1].status_code == 202:
            ledger.accept("/limited", answers[-1].json()["webhook_id"], body)
        else:
            ledger.refused(body)

    assert [a.status_code for a in answers] == [202] * 3 + [429] * 5

    for answer in answers[3:]:
        _assert_limited(answer)


def test_route_limit_counts_unauthenticated_too(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    headers = {"content-type": "application/json"}
    response = client.post(receiver.url("/limited"), content=body, headers=headers)

    _assert_limited(response)


@pytest.fixture(scope="module")
def limited_receiver(
    tmp_path_factory: pytest.TempPathFactory,
    certificates: Certificates,
    upstream: Upstream,
) -> Iterator[ServeProcess]:
    tmp_path: Path = tmp_path_factory.mktemp("rate-limited")
    config = base_config(tmp_path, certificates)
    config["server"]["rate_limit"] = {
        "per_source": f"{PER_SOURCE}/day",
        "global": f"{OVERALL}/day",
    }
    config["routes"] = [
        route("/a", upstream, "sync", verify_api_key()),
        route("/b", upstream, "sync", verify_api_key()),
    ]
    config_file = write_config(tmp_path / "receiver.yaml", config)

    with serving(config_file, ENV) as server:
        yield server


def test_per_source_and_overall_limits(
    limited_receiver: ServeProcess, certificates: Certificates
) -> None:
    first = _post_from("127.0.0.1", certificates, limited_receiver.url("/a"), 14)
    # Another route does not reset the per-source count.
    again = _post_from("127.0.0.1", certificates, limited_receiver.url("/b"), 2)
    second = _post_from("127.0.0.3", certificates, limited_receiver.url("/b"), 12)
    third = _post_from("127.0.0.4", certificates, limited_receiver.url("/a"), 8)

    assert [r.status_code for r in first] == [204] * PER_SOURCE + [429] * 4
    assert [r.status_code for r in again] == [429, 429]
    assert [r.status_code for r in second] == [204] * PER_SOURCE + [429] * 2
    admitted = OVERALL - 2 * PER_SOURCE
    assert [r.status_code for r in third] == [204] * admitted + [429] * (8 - admitted)

    for response in first[PER_SOURCE:] + again + second[PER_SOURCE:] + third[admitted:]:
        _assert_limited(response)


def test_spoofed_source_shares_peer_limit(
    limited_receiver: ServeProcess, certificates: Certificates
) -> None:
    transport = httpx.HTTPTransport(
        local_address="127.0.0.1", verify=certificates.client_context()
    )

    with httpx.Client(transport=transport, timeout=10.0) as client:
        for index in range(3):
            headers = {**api_headers(), "x-forwarded-for": f"10.0.0.{index}"}
            response = client.post(
                limited_receiver.url("/a"), content=b"{}", headers=headers
            )
            _assert_limited(response)


@pytest.fixture(scope="module")
def capped_receiver(
    tmp_path_factory: pytest.TempPathFactory,
    certificates: Certificates,
    upstream: Upstream,
) -> Iterator[ServeProcess]:
    tmp_path: Path = tmp_path_factory.mktemp("capped")
    config = base_config(tmp_path, certificates)
    config["server"]["limits"] = {
        "max_connections": MAX_CONNECTIONS,
        "header_timeout": CAP_HEADER_TIMEOUT,
        "body_timeout": 1,
    }
    config["routes"] = [route("/a", upstream, "sync", verify_api_key())]
    config_file = write_config(tmp_path / "receiver.yaml", config)

    with serving(config_file, ENV) as server:
        yield server


def _legit(server: ServeProcess, certificates: Certificates) -> int | None:
    try:
        with httpx.Client(verify=certificates.client_context(), timeout=3.0) as client:
            response = client.post(
                server.url("/a"), content=b"{}", headers=api_headers()
            )
    except httpx.HTTPError:
        return None

    return response.status_code


def test_idle_connections_above_cap(
    capped_receiver: ServeProcess, certificates: Certificates
) -> None:
    assert _legit(capped_receiver, certificates) == 204
    idle: list[RawConnection] = []

    try:
        for _ in range(MAX_CONNECTIONS * 3):
            connection = RawConnection(
                capped_receiver.https_port, certificates.client_context()
            )

            with contextlib.suppress(OSError):
                idle.append(connection.__enter__())

        # The cap holds while the idle connections last.
        assert _legit(capped_receiver, certificates) is None
        time.sleep(CAP_HEADER_TIMEOUT + 1.0)
        assert all(c.closed_by_peer(within=0.5) for c in idle)
        # The timed-out peers stay open and never answer the server's TLS
        # close_notify, yet their slots are free again.
        assert _legit(capped_receiver, certificates) == 204
    finally:
        for connection in idle:
            connection.__exit__(None, None, None)

    assert _legit(capped_receiver, certificates) == 204

    assert capped_receiver.process.poll() is None


def test_handshake_flood_recovers(
    capped_receiver: ServeProcess, certificates: Certificates
) -> None:
    address = ("127.0.0.1", capped_receiver.https_port)
    sockets = [socket.create_connection(address, timeout=5) for _ in range(50)]

    try:
        started = time.monotonic()

        for sock in sockets:
            sock.settimeout(
                max(0.1, CAP_HEADER_TIMEOUT + 2 - (time.monotonic() - started))
            )

            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""

        assert time.monotonic() - started < CAP_HEADER_TIMEOUT + 2
    finally:
        for sock in sockets:
            sock.close()

    assert _legit(capped_receiver, certificates) == 204


def test_idle_keep_alive_does_not_delay_stop(
    tmp_path: Path, certificates: Certificates, upstream: Upstream
) -> None:
    config = base_config(tmp_path, certificates)
    config["server"]["limits"] = {"idle_timeout": 60}
    config["routes"] = [route("/a", upstream, "sync", verify_api_key())]
    config_file = write_config(tmp_path / "receiver.yaml", config)

    request = request_bytes("POST", "/a", list(api_headers().items()), b"{}")

    with serving(config_file, ENV) as server:
        context = certificates.client_context()

        with RawConnection(server.https_port, context) as idle:
            idle.send(request)
            assert idle.read_response().status == 204
            started = time.monotonic()
            code = server.stop(timeout=20.0)
            elapsed = time.monotonic() - started

    assert code == 0
    assert elapsed < STOP_SECONDS
