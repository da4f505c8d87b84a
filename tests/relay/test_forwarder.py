from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from kratos_webhooks import KeySet, Signer
from kratos_webhooks.errors import (
    InvalidUpstreamAnswer,
    MalformedHeader,
    UpstreamTimeout,
)
from kratos_webhooks.relay.forwarder import (
    MAX_ANSWER_BYTES,
    ForwardedResponse,
    Forwarder,
    ForwardFailed,
    client_context,
    passed_headers,
    relay_client,
    webhook_id_for,
)
from kratos_webhooks.relay.target import TargetPolicy

from .servers import RecordingApp, free_port, serve_asgi

KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_KEY = "whsec_dGhlIG9sZGVyIGtleSBvZiB0aGUgcm90YXRpb24="
TRIGGER = "0d5a7f57-6d4e-4d24-9b8e-7a4c7f0a8c11"
LOOPBACK = TargetPolicy(allow_loopback=True)


def forward(
    app: RecordingApp,
    body: bytes,
    *,
    signer: Signer | None = None,
    budget: float = 5.0,
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "POST",
) -> ForwardedResponse:
    with serve_asgi(app) as base:
        return asyncio.run(
            _forward(base + "/hooks/a", body, signer, budget, headers or [], method)
        )


async def _forward(
    url: str,
    body: bytes,
    signer: Signer | None,
    budget: float,
    headers: list[tuple[bytes, bytes]],
    method: str,
) -> ForwardedResponse:
    async with relay_client(ssl.create_default_context(), LOOPBACK) as client:
        forwarder = Forwarder(
            url, signer or Signer(KeySet.of(KEY)), client, budget=budget
        )
        return await forwarder.forward(
            method,
            body,
            webhook_id=webhook_id_for("/k", headers, body),
            content_type="application/json",
            passed=passed_headers(headers),
        )


def test_forward_signs_verifiable_body(kratos_samples: dict[str, bytes]) -> None:
    for name, body in kratos_samples.items():
        app = RecordingApp(body=b'{"ok":true}')
        headers = [(b"ory-webhook-trigger-id", TRIGGER.encode())]
        answer = forward(app, body, headers=headers)

        assert answer.status == 200, name
        assert answer.body == b'{"ok":true}'
        (received,) = app.requests
        assert received.body == body, name
        assert received.headers["webhook-id"] == f"msg_{TRIGGER}"
        # The reference implementation of Standard Webhooks accepts the signature.
        Webhook(KEY).verify(received.body, received.headers)


def test_forward_passes_trace_not_credential() -> None:
    app = RecordingApp()
    headers = [
        (b"ory-webhook-trigger-id", TRIGGER.encode()),
        (b"ory-webhook-request-id", b"2b7b8e0a-33f4-4b43-9c43-0d1f5b1f2b3c"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"x-webhook-key", b"kratos-credential"),
        (b"cookie", b"webhook_key=kratos-credential"),
        (b"authorization", b"Basic a3JhdG9zOnNlY3JldA=="),
    ]
    forward(app, b"{}\n", headers=headers)
    received = app.requests[0].headers

    assert received["traceparent"].startswith("00-0af7651916cd43dd")
    assert received["ory-webhook-request-id"].startswith("2b7b8e0a")
    assert "x-webhook-key" not in received
    assert "cookie" not in received
    assert "authorization" not in received
    assert received["accept-encoding"] == "identity"
    assert received["content-type"] == "application/json"


def test_forward_keeps_method_and_body() -> None:
    app = RecordingApp()
    forward(app, b'{"a": 1}\n', method="PUT")

    assert app.requests[0].method == "PUT"
    assert app.requests[0].body == b'{"a": 1}\n'


def test_fresh_timestamp_each_attempt() -> None:
    clock = iter([1_700_000_000.0, 1_700_000_007.0])
    signer = Signer(KeySet.of(KEY), clock=lambda: next(clock))
    app = RecordingApp()
    headers = [(b"ory-webhook-trigger-id", TRIGGER.encode())]

    with serve_asgi(app) as base:
        for _ in range(2):
            asyncio.run(_forward(base, b"{}\n", signer, 5.0, headers, "POST"))

    first, second = app.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.headers["webhook-timestamp"] == "1700000000"
    assert second.headers["webhook-timestamp"] == "1700000007"
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]


def test_rollover_signs_with_every_key() -> None:
    app = RecordingApp()
    forward(app, b"{}\n", signer=Signer(KeySet.of(KEY, OLD_KEY), all_keys=True))
    received = app.requests[0]

    assert len(received.headers["webhook-signature"].split(" ")) == 2
    Webhook(KEY).verify(received.body, received.headers)
    Webhook(OLD_KEY).verify(received.body, received.headers)


def test_newest_key_signs_by_default() -> None:
    app = RecordingApp()
    forward(app, b"{}\n", signer=Signer(KeySet.of(KEY, OLD_KEY)))
    received = app.requests[0]

    assert len(received.headers["webhook-signature"].split(" ")) == 1
    Webhook(KEY).verify(received.body, received.headers)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, "2", "2"),
        (429, "5", "5"),
        (429, "3600", "5"),
        (503, "86400", "5"),
        (503, "Wed, 21 Oct 2099 07:28:00 GMT", "5"),
        (429, None, None),
        (500, "3600", None),
        (200, "3600", None),
    ],
)
def test_retry_after_is_capped(
    status: int, retry_after: str | None, expected: str | None
) -> None:
    extra = [(b"retry-after", retry_after.encode())] if retry_after else []
    app = RecordingApp(status=status, body=b'{"error":{}}', headers=extra)
    answer = forward(app, b"{}\n")

    assert answer.status == status
    assert answer.retry_after == expected


@pytest.mark.parametrize("status", [400, 409, 422, 500, 502, 503])
def test_status_and_body_pass_unchanged(status: int) -> None:
    body = b'{"messages":[{"instance_ptr":"#/traits/email","messages":[]}]}'
    answer = forward(RecordingApp(status=status, body=body), b"{}\n")

    assert answer.status == status
    assert answer.body == body


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_failure(status: int) -> None:
    app = RecordingApp(status=status, headers=[(b"location", b"http://127.0.0.1:1/")])

    with pytest.raises(InvalidUpstreamAnswer):
        forward(app, b"{}\n")

    assert len(app.requests) == 1


def test_slow_receiver_times_out() -> None:
    with pytest.raises(UpstreamTimeout):
        forward(RecordingApp(delay=2.0), b"{}\n", budget=0.3)


def test_unreachable_receiver_fails() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/a"

    with pytest.raises(ForwardFailed) as caught:
        asyncio.run(_forward(url, b"{}\n", None, 5.0, [], "POST"))

    assert caught.value.status == 502
    assert caught.value.code == "upstream_unavailable"


def test_guard_rejection_fails_forward() -> None:
    async def scenario() -> None:
        async with relay_client(ssl.create_default_context(), TargetPolicy()) as client:
            forwarder = Forwarder(
                "http://169.254.169.254/latest/meta-data/",
                Signer(KeySet.of(KEY)),
                client,
                budget=2.0,
            )
            await forwarder.forward(
                "POST", b"{}", webhook_id="msg_1", content_type="application/json"
            )

    with pytest.raises(ForwardFailed) as caught:
        asyncio.run(scenario())

    assert caught.value.detail == "target rejected: metadata address"


def test_oversized_answer_is_rejected() -> None:
    app = RecordingApp(body=b" " * (MAX_ANSWER_BYTES + 1))

    with pytest.raises(InvalidUpstreamAnswer):
        forward(app, b"{}\n")


def test_webhook_id_from_trigger() -> None:
    headers = [(b"Ory-Webhook-Trigger-Id", TRIGGER.encode())]

    assert webhook_id_for("/a", headers, b"x") == f"msg_{TRIGGER}"
    assert webhook_id_for("/b", headers, b"y") == f"msg_{TRIGGER}"


def test_webhook_id_hash_without_trigger() -> None:
    first = webhook_id_for("/a", [], b'{"x":1}')

    assert first == webhook_id_for("/a", [], b'{"x":1}')
    assert first != webhook_id_for("/b", [], b'{"x":1}')
    assert first != webhook_id_for("/a", [], b'{"x":2}')
    assert first.startswith("msg_")
    assert len(first) == 44


@pytest.mark.parametrize(
    "headers",
    [
        [(b"ory-webhook-trigger-id", b"a.b")],
        [(b"ory-webhook-trigger-id", b"")],
        [(b"ory-webhook-trigger-id", b"x" * 201)],
        [(b"ory-webhook-trigger-id", "é".encode())],
        [(b"ory-webhook-trigger-id", b"a"), (b"ory-webhook-trigger-id", b"b")],
    ],
)
def test_webhook_id_rejects_bad_trigger(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(MalformedHeader):
        webhook_id_for("/a", headers, b"{}")


def test_client_context_minimum_tls() -> None:
    context = client_context()

    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_client_context_rejects_missing_files(tmp_path: Path) -> None:
    from kratos_webhooks.errors import ConfigError

    with pytest.raises(ConfigError):
        client_context(ca_file=str(tmp_path / "missing.pem"))

    with pytest.raises(ConfigError):
        client_context(client_cert_file=str(tmp_path / "missing.pem"))


def _mtls_server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    authority.configure_trust(context)
    return context


def test_mutual_tls_presents_certificate(tmp_path: Path) -> None:
    authority = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(ca_file)
    client = authority.issue_cert("relay.internal")
    cert_file = tmp_path / "client.pem"
    key_file = tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(cert_file)
    client.private_key_pem.write_to_path(key_file)
    app = RecordingApp()

    async def call(url: str, context: ssl.SSLContext) -> int:
        async with relay_client(context, LOOPBACK) as http:
            forwarder = Forwarder(url, Signer(KeySet.of(KEY)), http, budget=5.0)
            answer = await forwarder.forward(
                "POST", b"{}\n", webhook_id="msg_1", content_type="application/json"
            )
            return answer.status

    with serve_asgi(app, context=_mtls_server_context(authority)) as base:
        with_certificate = client_context(
            ca_file=str(ca_file),
            client_cert_file=str(cert_file),
            client_key_file=str(key_file),
        )
        status = asyncio.run(call(base + "/hooks/a", with_certificate))

        without = client_context(ca_file=str(ca_file))

        with pytest.raises(ForwardFailed):
            asyncio.run(call(base + "/hooks/a", without))

        # The system roots do not know the test authority.
        with pytest.raises(ForwardFailed):
            asyncio.run(call(base + "/hooks/a", client_context()))

    assert status == 200
    assert len(app.requests) == 1


def test_connect_timeout_is_upstream_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(
        _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # The server accepts TCP but never replies to the TLS ClientHello.
        accepted.append(writer)

    async def scenario() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with relay_client(
                client_context(), LOOPBACK, connect_timeout=0.3
            ) as client:
                forwarder = Forwarder(
                    f"https://127.0.0.1:{port}/hooks/a",
                    Signer(KeySet.of(KEY)),
                    client,
                    budget=5.0,
                )
                await forwarder.forward(
                    "POST", b"{}", webhook_id="msg_1", content_type="application/json"
                )
        finally:
            for writer in accepted:
                writer.close()

            server.close()
            await server.wait_closed()

    started = time.monotonic()

    with pytest.raises(UpstreamTimeout) as caught:
        asyncio.run(scenario())

    assert caught.value.status == 504
    # The connect timeout fired, well before the 5 s budget.
    assert time.monotonic() - started < 2.0


def test_forwards_reuse_one_connection() -> None:
    clients: list[tuple[str, int]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        clients.append(scope["client"])

        while (await receive()).get("more_body"):
            pass

        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def scenario(url: str) -> list[int]:
        async with relay_client(client_context(), LOOPBACK) as client:
            forwarder = Forwarder(url, Signer(KeySet.of(KEY)), client, budget=5.0)
            statuses = []

            for number in range(3):
                answer = await forwarder.forward(
                    "POST",
                    b"{}",
                    webhook_id=f"msg_{number}",
                    content_type="application/json",
                )
                statuses.append(answer.status)

            return statuses

    with serve_asgi(app) as base:
        statuses = asyncio.run(scenario(base + "/hooks/a"))

    assert statuses == [200, 200, 200]
    assert len(clients) == 3
    assert len(set(clients)) == 1


def test_max_connections_is_shared_by_routes() -> None:
    in_flight: list[int] = [0]
    most: list[int] = [0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])

        while (await receive()).get("more_body"):
            pass

        await asyncio.sleep(0.05)
        in_flight[0] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def scenario(base: str) -> list[int]:
        async with relay_client(client_context(), LOOPBACK, max_connections=1) as c:
            forwarders = [
                Forwarder(base + path, Signer(KeySet.of(KEY)), c, budget=5.0)
                for path in ("/hooks/a", "/hooks/b")
            ]
            answers = await asyncio.gather(
                *(
                    forwarder.forward(
                        "POST", b"{}", webhook_id="msg_1", content_type="text/plain"
                    )
                    for forwarder in forwarders * 2
                )
            )
            return [answer.status for answer in answers]

    with serve_asgi(app) as base:
        statuses = asyncio.run(scenario(base))

    assert statuses == [200] * 4
    assert most[0] == 1
