"""`kratos-webhooks serve` as a real process on loopback with real TLS.

Kratos' sample bodies are sent as Kratos sends them; bad requests are refused
with their status and reason code and reach no one; sync answers come back
unchanged or are refused when Kratos would reject them.
"""

from __future__ import annotations

import gzip
import json
import select
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kratos_webhooks import HmacKey, KeySet, Signer, Verifier

from .harness import (
    Certificates,
    ServeProcess,
    Upstream,
    base_config,
    kratos_headers,
    make_certificates,
    running_upstream,
    serving,
    write_config,
)

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent.parent / "data" / "kratos"
SW_KEY = HmacKey.generate()
UPSTREAM_KEY = HmacKey.generate()
API_KEY = "e2e-api-key-" + uuid.uuid4().hex
ENV = {
    "E2E_SW_SECRET": SW_KEY.encode(),
    "E2E_UPSTREAM_SECRET": UPSTREAM_KEY.encode(),
    "E2E_API_KEY": API_KEY,
}
API_KEY_HEADER = "X-Webhook-Secret"
INTERRUPT = (DATA / "response-400-interrupt-with-messages.json").read_bytes()
IDENTITY = (DATA / "response-200-modify-identity-traits-metadata.json").read_bytes()


def _api_key_verify() -> dict[str, Any]:
    return {
        "scheme": "kratos-api-key",
        "secrets": ["env:E2E_API_KEY"],
        "name": API_KEY_HEADER,
    }


def _sw_verify() -> dict[str, Any]:
    return {"scheme": "standard-webhooks", "secrets": ["env:E2E_SW_SECRET"]}


def _route(
    path: str, upstream: Upstream, mode: str, verify: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    route = {
        "path": path,
        "verify": verify,
        "mode": mode,
        "upstream": upstream.url("/up" + path),
        "upstream_secrets": ["env:E2E_UPSTREAM_SECRET"],
        "delivery": {"initial_backoff": 0.2, "max_backoff": 1.0},
    }
    route.update(extra)
    return route


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with running_upstream() as server:
        server.answers["/up/answers/interrupt"] = (400, INTERRUPT)
        server.answers["/up/answers/identity"] = (200, IDENTITY)
        server.answers["/up/answers/server-error"] = (500, b'{"oops": true}')
        server.answers["/up/answers/too-many"] = (429, b"{}")
        server.answers["/up/answers/not-json"] = (200, b"ok")
        server.answers["/up/answers/bare-400"] = (400, b'{"error": "no"}')
        server.delay["/up/answers/slow"] = 3.0
        yield server


@pytest.fixture(scope="module")
def receiver(
    tmp_path_factory: pytest.TempPathFactory,
    certificates: Certificates,
    upstream: Upstream,
) -> Iterator[ServeProcess]:
    tmp_path = tmp_path_factory.mktemp("serve")
    config = base_config(tmp_path, certificates)
    config["server"]["trusted_proxies"] = ["127.0.0.2/32"]
    api, sw = _api_key_verify(), _sw_verify()
    routes = [
        _route("/apikey/async", upstream, "async", api),
        _route("/sw/async", upstream, "async", sw),
        _route("/apikey/sync", upstream, "sync", api),
        _route("/sw/sync", upstream, "sync", sw),
        _route("/gzip", upstream, "async", api, gzip=True, max_body_bytes=65536),
        _route("/small", upstream, "async", api, max_body_bytes=1000),
        _route("/allow", upstream, "async", api, allow_from=["10.0.0.0/8"]),
        _route("/answers/slow", upstream, "sync", api, timeout=1),
    ]

    for name in (
        "interrupt",
        "identity",
        "server-error",
        "too-many",
        "not-json",
        "bare-400",
    ):
        routes.append(_route(f"/answers/{name}", upstream, "sync", api))

    unreachable = _route("/answers/unreachable", upstream, "sync", api)
    unreachable["upstream"] = f"http://127.0.0.1:{_closed_port()}/nowhere"
    routes.append(unreachable)
    config["routes"] = routes
    config_file = write_config(tmp_path / "receiver.yaml", config)

    with serving(config_file, ENV) as server:
        yield server


@pytest.fixture(scope="module")
def client(
    receiver: ServeProcess, certificates: Certificates
) -> Iterator[httpx.Client]:
    with httpx.Client(verify=certificates.client_context(), timeout=15.0) as http:
        yield http


def _samples() -> list[Path]:
    return sorted(DATA.glob("0*.json"))


def _api_headers(body: bytes, trigger: str | None = None) -> dict[str, str]:
    trigger = trigger or str(uuid.uuid4())
    return kratos_headers(body, trigger, {API_KEY_HEADER: API_KEY})


def _signed_headers(body: bytes, **options: Any) -> dict[str, str]:
    headers = kratos_headers(body, str(uuid.uuid4()), {})
    headers.update(Signer(KeySet((SW_KEY,))).sign(body, **options))
    return headers


def _error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@pytest.mark.parametrize("route", ["/apikey/async", "/sw/async"])
def test_samples_reach_upstream_byte_identical(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, route: str
) -> None:
    sent: dict[str, bytes] = {}

    for sample in _samples():
        body = sample.read_bytes()
        headers = _api_headers(body) if "apikey" in route else _signed_headers(body)
        response = client.post(receiver.url(route), content=body, headers=headers)

        assert response.status_code == 202, (sample.name, response.text)
        assert response.headers["strict-transport-security"].startswith("max-age=")
        sent[response.json()["webhook_id"]] = body

    received = upstream.wait_for("/up" + route, len(sent))
    assert len(received) == len(sent)
    verifier = Verifier(KeySet((UPSTREAM_KEY,)))

    for delivery in received:
        webhook_id = delivery.headers["webhook-id"]
        assert delivery.body == sent[webhook_id]
        assert delivery.headers["content-type"] == "application/json"
        assert verifier.verify(delivery.body, delivery.headers).msg_id == webhook_id
        assert delivery.headers["webhook-attempt"] == "1"


@pytest.mark.parametrize("route", ["/apikey/sync", "/sw/sync"])
def test_samples_reach_sync_upstream(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, route: str
) -> None:
    for sample in _samples():
        body = sample.read_bytes()
        headers = _api_headers(body) if "apikey" in route else _signed_headers(body)
        before = len(upstream.requests_to("/up" + route))
        response = client.post(receiver.url(route), content=body, headers=headers)

        assert response.status_code == 204, (sample.name, response.text)
        calls = upstream.requests_to("/up" + route)
        assert len(calls) == before + 1
        assert calls[-1].body == body


def _assert_refused(
    response: httpx.Response, status: int, code: str, upstream: Upstream, path: str
) -> None:
    assert response.status_code == status, response.text
    assert _error_code(response) == code
    assert set(response.json()["error"]) == {"code", "message"}
    time.sleep(0.3)
    assert upstream.requests_to("/up" + path) == []


def _fresh_route_body() -> bytes:
    return (DATA / "05-login-before-api.passthrough.json").read_bytes()


BAD_SIGNATURES = [
    ("tampered", 401, "signature_mismatch"),
    ("wrong_key", 401, "signature_mismatch"),
    ("stale", 401, "timestamp_too_old"),
    ("future", 401, "timestamp_in_future"),
    ("unsigned", 401, "missing_header"),
]


@pytest.mark.parametrize(("case", "status", "code"), BAD_SIGNATURES)
def test_bad_signatures_refused(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    case: str,
    status: int,
    code: str,
) -> None:
    body = _fresh_route_body()
    now = int(time.time())
    headers = _signed_headers(body)

    if case == "tampered":
        body = body[:100] + bytes([body[100] ^ 1]) + body[101:]
    elif case == "wrong_key":
        headers.update(Signer(HmacKey.generate()).sign(body))
    elif case == "stale":
        headers.update(Signer(KeySet((SW_KEY,))).sign(body, timestamp=now - 600))
    elif case == "future":
        headers.update(Signer(KeySet((SW_KEY,))).sign(body, timestamp=now + 600))
    else:
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            del headers[name]

    response = client.post(receiver.url("/sw/sync"), content=body, headers=headers)
    assert response.status_code == status, response.text
    assert _error_code(response) == code


def test_wrong_api_key_refused(client: httpx.Client, receiver: ServeProcess) -> None:
    body = _fresh_route_body()
    headers = _api_headers(body)
    headers[API_KEY_HEADER] = "not-the-key"
    response = client.post(receiver.url("/apikey/sync"), content=body, headers=headers)

    assert response.status_code == 401
    assert _error_code(response) == "credential_mismatch"


def test_replay_gets_first_answer(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    body = (
        DATA / "02-registration-after-password-prepersist.passthrough.json"
    ).read_bytes()
    headers = _signed_headers(body)
    before = len(upstream.requests_to("/up/sw/sync"))

    first = client.post(receiver.url("/sw/sync"), content=body, headers=headers)
    second = client.post(receiver.url("/sw/sync"), content=body, headers=headers)

    assert first.status_code == 204
    assert second.status_code == first.status_code
    assert second.content == first.content
    assert len(upstream.requests_to("/up/sw/sync")) == before + 1


def test_async_replay_stored_once(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    body = (DATA / "07-recovery-after-code.passthrough.json").read_bytes()
    trigger = str(uuid.uuid4())
    answers = [
        client.post(
            receiver.url("/apikey/async"),
            content=body,
            headers=_api_headers(body, trigger),
        )
        for _ in range(3)
    ]

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert answers[1].content == answers[0].content
    webhook_id = answers[0].json()["webhook_id"]
    assert webhook_id == trigger
    upstream.wait_for("/up/apikey/async", 1)
    time.sleep(0.5)
    matching = [
        r
        for r in upstream.requests_to("/up/apikey/async")
        if r.headers["webhook-id"] == webhook_id
    ]
    assert len(matching) == 1


def test_oversized_body_refused(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    body = _fresh_route_body()
    response = client.post(
        receiver.url("/small"), content=body, headers=_api_headers(body)
    )
    _assert_refused(response, 413, "payload_too_large", upstream, "/small")


def test_oversized_chunked_body_refused(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    body = _fresh_route_body()
    headers = _api_headers(body)
    del headers["content-length"]

    def chunks() -> Iterator[bytes]:
        yield body[:500]
        yield body[500:]

    response = client.post(receiver.url("/small"), content=chunks(), headers=headers)
    _assert_refused(response, 413, "payload_too_large", upstream, "/small")


def test_gzip_bomb_refused(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    bomb = gzip.compress(b'{"a": "' + b"0" * 10_000_000 + b'"}')
    headers = _api_headers(bomb)
    headers["content-encoding"] = "gzip"

    assert len(bomb) < 65536
    response = client.post(receiver.url("/gzip"), content=bomb, headers=headers)
    _assert_refused(response, 413, "payload_too_large", upstream, "/gzip")


def test_gzip_body_accepted_where_enabled(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    body = _fresh_route_body()
    headers = _api_headers(gzip.compress(body))
    headers["content-encoding"] = "gzip"
    response = client.post(
        receiver.url("/gzip"), content=gzip.compress(body), headers=headers
    )

    assert response.status_code == 202
    assert upstream.wait_for("/up/gzip", 1)[0].body == body


def test_gzip_refused_where_not_enabled(
    client: httpx.Client, receiver: ServeProcess
) -> None:
    body = gzip.compress(_fresh_route_body())
    headers = _api_headers(body)
    headers["content-encoding"] = "gzip"
    response = client.post(receiver.url("/apikey/sync"), content=body, headers=headers)

    assert response.status_code == 415
    assert _error_code(response) == "unsupported_encoding"


def test_wrong_content_type_refused(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    body = b'{"flow": {}}'
    headers = _api_headers(body)
    headers["content-type"] = "text/plain"
    response = client.post(receiver.url("/small"), content=body, headers=headers)
    _assert_refused(response, 415, "unsupported_media_type", upstream, "/small")


def _client_from(address: str, certificates: Certificates) -> httpx.Client:
    transport = httpx.HTTPTransport(
        local_address=address, verify=certificates.client_context()
    )
    return httpx.Client(transport=transport, timeout=10.0)


def test_source_outside_allow_list_refused(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    body = _fresh_route_body()
    response = client.post(
        receiver.url("/allow"), content=body, headers=_api_headers(body)
    )
    _assert_refused(response, 403, "forbidden_source", upstream, "/allow")


def test_spoofed_forwarded_for_refused(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream
) -> None:
    body = _fresh_route_body()
    headers = _api_headers(body)
    headers["x-forwarded-for"] = "10.1.2.3"
    response = client.post(receiver.url("/allow"), content=body, headers=headers)
    _assert_refused(response, 403, "forbidden_source", upstream, "/allow")


def test_forwarded_for_believed_from_trusted_proxy(
    receiver: ServeProcess, upstream: Upstream, certificates: Certificates
) -> None:
    body = _fresh_route_body()
    headers = _api_headers(body)
    headers["x-forwarded-for"] = "192.0.2.9, 10.1.2.3"

    with _client_from("127.0.0.2", certificates) as proxy:
        response = proxy.post(receiver.url("/allow"), content=body, headers=headers)

    assert response.status_code == 202, response.text
    assert upstream.wait_for("/up/allow", 1)[0].body == body


def test_slow_headers_connection_closed(
    receiver: ServeProcess, upstream: Upstream, certificates: Certificates
) -> None:
    body = _fresh_route_body()
    head = (
        f"POST /apikey/sync HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"{API_KEY_HEADER}: {API_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    context = certificates.client_context()
    before = len(upstream.requests_to("/up/apikey/sync"))
    started = time.monotonic()
    sent = 0
    closed = False

    address = ("127.0.0.1", receiver.https_port)

    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        # The limit is 2 s; the headers alone would take over a minute.
        while not closed and time.monotonic() - started < 10:
            try:
                tls.sendall(head[sent : sent + 1])
                sent += 1
            except OSError:
                closed = True
                break

            readable, _, _ = select.select([tls], [], [], 1.0)

            if readable:
                try:
                    closed = tls.recv(1) == b""
                except (OSError, ssl.SSLError):
                    closed = True

    assert closed
    assert sent < 10
    assert time.monotonic() - started < 10
    assert len(upstream.requests_to("/up/apikey/sync")) == before


def _post_answer(
    client: httpx.Client, receiver: ServeProcess, name: str
) -> httpx.Response:
    body = (
        DATA / "02-registration-after-password-prepersist.passthrough.json"
    ).read_bytes()
    return client.post(
        receiver.url(f"/answers/{name}"), content=body, headers=_api_headers(body)
    )


@pytest.mark.parametrize(
    ("name", "status", "expected"),
    [("interrupt", 400, INTERRUPT), ("identity", 200, IDENTITY)],
)
def test_sync_answers_returned_unchanged(
    client: httpx.Client,
    receiver: ServeProcess,
    name: str,
    status: int,
    expected: bytes,
) -> None:
    response = _post_answer(client, receiver, name)

    assert response.status_code == status
    assert response.content == expected


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("server-error", 502, "invalid_upstream_answer"),
        ("too-many", 502, "invalid_upstream_answer"),
        ("not-json", 502, "invalid_upstream_answer"),
        ("bare-400", 502, "invalid_upstream_answer"),
        ("unreachable", 502, "upstream_unavailable"),
        ("slow", 504, "upstream_timeout"),
    ],
)
def test_sync_answers_kratos_rejects(
    client: httpx.Client, receiver: ServeProcess, name: str, status: int, code: str
) -> None:
    response = _post_answer(client, receiver, name)

    assert response.status_code == status, response.text
    assert _error_code(response) == code


def test_unknown_path_and_method(client: httpx.Client, receiver: ServeProcess) -> None:
    missing = client.post(receiver.url("/nowhere"), content=b"{}")
    wrong_method = client.get(receiver.url("/apikey/sync"))

    assert missing.status_code == 404
    assert _error_code(missing) == "not_found"
    assert wrong_method.status_code == 405
    assert _error_code(wrong_method) == "method_not_allowed"
    assert wrong_method.headers["allow"] == "POST"


def test_admin_metrics_and_probes(client: httpx.Client, receiver: ServeProcess) -> None:
    client.post(receiver.url("/nowhere"), content=b"{}")
    metrics = httpx.get(receiver.admin_url("/metrics")).text

    assert httpx.get(receiver.admin_url("/healthz")).status_code == 200
    assert httpx.get(receiver.admin_url("/readyz")).status_code == 200
    assert (
        'kratos_webhooks_requests_total{reason="not_found",route="-",status="404"}'
        in metrics
    )
    assert "kratos_webhooks_request_duration_seconds_bucket" in metrics
    assert "kratos_webhooks_inbox_depth" in metrics


def test_logs_hold_no_secret_or_body(
    client: httpx.Client, receiver: ServeProcess
) -> None:
    body = (
        DATA / "06-settings-after-profile-postpersist-spa.passthrough.json"
    ).read_bytes()
    signed = _signed_headers(body)
    client.post(receiver.url("/sw/sync"), content=body, headers=signed)
    client.post(receiver.url("/apikey/sync"), content=body, headers=_api_headers(body))
    time.sleep(0.5)
    output = "\n".join(json.dumps(line) for line in list(receiver.log_lines))
    document = json.loads(body)
    cookies = document["request_cookies"]

    assert '"event": "request"' in output
    assert API_KEY not in output
    assert SW_KEY.encode() not in output
    assert signed["webhook-signature"].split(",", 1)[1] not in output

    for value in cookies.values():
        assert value not in output

    assert document["identity"]["traits"]["email"] not in output
