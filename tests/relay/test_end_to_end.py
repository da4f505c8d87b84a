"""Kratos → relay → receiver → application, each a real process or server on loopback.

The test plays Kratos: it sends the sample bodies with Kratos' exact headers
and credential to a `kratos-webhooks relay` process, which signs and forwards
them over TLS to a `kratos-webhooks serve` process, which forwards them to a
recording application.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from kratos_webhooks import HmacKey

from ..receiver.harness import (
    Certificates,
    ServeProcess,
    Upstream,
    base_config,
    kratos_headers,
    make_certificates,
    running_upstream,
    serving,
    wait_until,
    write_config,
)
from .harness import RelayProcess, relaying
from .servers import RecordingApp, free_port, serve_asgi

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent.parent / "data" / "kratos"
SAMPLES = sorted(DATA.glob("0*.json"))
RELAY_KEY = HmacKey.generate().encode()
UPSTREAM_KEY = HmacKey.generate().encode()
KRATOS_KEY = "kratos-e2e-" + uuid.uuid4().hex
ENV = {
    "E2E_RELAY_SECRET": RELAY_KEY,
    "E2E_UPSTREAM_SECRET": UPSTREAM_KEY,
    "E2E_KRATOS_KEY": KRATOS_KEY,
}
KEY_HEADER = "X-Webhook-Key"
SYNC = "/kratos/registration/after"
ASYNC = "/kratos/login/after"
SLOW = "/kratos/settings/after"
INTERRUPT = (DATA / "response-400-interrupt-with-messages.json").read_bytes()
IDENTITY = (DATA / "response-200-modify-identity-traits-metadata.json").read_bytes()


def receiver_document(
    tmp_path: Path, certificates: Certificates, upstream: Upstream, port: int
) -> dict[str, Any]:
    document = base_config(tmp_path, certificates)
    document["server"]["listen"] = f"127.0.0.1:{port}"
    verify = {"scheme": "standard-webhooks", "secrets": ["env:E2E_RELAY_SECRET"]}
    common = {"verify": verify, "upstream_secrets": ["env:E2E_UPSTREAM_SECRET"]}
    document["routes"] = [
        {
            "path": SYNC,
            "mode": "sync",
            "upstream": upstream.url("/app" + SYNC),
            **common,
        },
        {
            "path": ASYNC,
            "mode": "async",
            "upstream": upstream.url("/app" + ASYNC),
            "delivery": {"initial_backoff": 0.2, "max_backoff": 1.0},
            **common,
        },
        {
            "path": SLOW,
            "mode": "sync",
            "upstream": upstream.url("/app" + SLOW),
            "timeout": 5,
            **common,
        },
    ]
    return document


def relay_document(
    tmp_path: Path, ca_file: Path, receiver_port: int, **outbound: Any
) -> dict[str, Any]:
    auth = {
        "type": "api_key",
        "name": KEY_HEADER,
        "secrets": ["env:E2E_KRATOS_KEY"],
    }
    signing = {"secrets": ["env:E2E_RELAY_SECRET"]}
    base = f"https://127.0.0.1:{receiver_port}"

    def route(path: str, mode: str, **extra: Any) -> dict[str, Any]:
        return {
            "path": path,
            "target": base + path,
            "mode": mode,
            "kratos_auth": auth,
            "signing": signing,
            **extra,
        }

    return {
        "relay": {"listen": "127.0.0.1:0"},
        "outbound": {
            "ca_file": str(ca_file),
            "allow_loopback_targets": True,
            "connect_timeout": 2,
            **outbound,
        },
        "storage": f"sqlite://{tmp_path / 'relay.db'}",
        "routes": [
            route(SYNC, "sync"),
            route(
                ASYNC,
                "async",
                delivery={"schedule": [0.2, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]},
            ),
            route(SLOW, "sync", timeout=1.0),
        ],
    }


@dataclass
class Chain:
    relay: RelayProcess
    receiver: ServeProcess
    upstream: Upstream
    tmp_path: Path
    receiver_config: Path
    receiver_port: int

    def send(
        self,
        path: str,
        body: bytes,
        *,
        trigger: str | None = None,
        key: str | None = KRATOS_KEY,
        timeout: float = 30.0,
    ) -> httpx.Response:
        extra = {KEY_HEADER: key} if key is not None else {}
        headers = kratos_headers(body, trigger or str(uuid.uuid4()), extra)
        return httpx.post(
            self.relay.url(path), content=body, headers=headers, timeout=timeout
        )


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    certificates = make_certificates(tmp_path)
    ca_file = tmp_path / "ca.pem"
    certificates.ca.cert_pem.write_to_path(ca_file)
    answers = {"/app" + SYNC: (200, IDENTITY)}

    with running_upstream(answers=answers, delay={"/app" + SLOW: 3.0}) as upstream:
        port = free_port()
        receiver_file = write_config(
            tmp_path / "receiver.yaml",
            receiver_document(tmp_path, certificates, upstream, port),
        )
        relay_file = write_config(
            tmp_path / "relay.yaml", relay_document(tmp_path, ca_file, port)
        )

        with (
            serving(receiver_file, ENV) as receiver,
            relaying(relay_file, ENV) as relay,
        ):
            yield Chain(relay, receiver, upstream, tmp_path, receiver_file, port)


def test_samples_arrive_byte_identical(chain: Chain) -> None:
    for sample in SAMPLES:
        body = sample.read_bytes()
        sync = chain.send(SYNC, body)
        background = chain.send(ASYNC, body)

        assert sync.status_code == 200, (sample.name, sync.text)
        assert sync.content == IDENTITY
        assert background.status_code == 202, (sample.name, background.text)

    synced = chain.upstream.requests_to("/app" + SYNC)
    delivered = chain.upstream.wait_for("/app" + ASYNC, len(SAMPLES))

    assert [r.body for r in synced] == [s.read_bytes() for s in SAMPLES]
    assert sorted(r.body for r in delivered) == sorted(s.read_bytes() for s in SAMPLES)


def test_interrupt_passes_unchanged(chain: Chain) -> None:
    chain.upstream.answers["/app" + SYNC] = (400, INTERRUPT)
    response = chain.send(SYNC, SAMPLES[1].read_bytes())

    assert response.status_code == 400
    assert response.content == INTERRUPT


@pytest.mark.parametrize(
    ("key", "reason"),
    [("wrong-" + KRATOS_KEY, "credential_mismatch"), (None, "missing_header")],
)
def test_bad_credential_rejected_at_relay(
    chain: Chain, key: str | None, reason: str
) -> None:
    body = SAMPLES[0].read_bytes()
    sync = chain.send(SYNC, body, key=key)
    background = chain.send(ASYNC, body, key=key)

    assert sync.status_code == 401
    assert sync.json()["error"]["code"] == reason
    assert background.status_code == 401
    assert chain.upstream.received == []

    def rejections() -> list[dict[str, Any]]:
        lines = chain.relay.events("request")
        return [line for line in lines if line.get("status") == 401]

    # The relay writes its log line after the response, so it may lag a little.
    wait_until(lambda: len(rejections()) == 2, 5.0)
    assert [line["reason"] for line in rejections()] == [reason, reason]
    assert all(line["level"] == "warning" for line in rejections())
    assert KRATOS_KEY not in "".join(str(line) for line in chain.relay.log_lines)


def test_kratos_retry_processed_once(chain: Chain) -> None:
    body = SAMPLES[3].read_bytes()
    trigger = str(uuid.uuid4())
    other = str(uuid.uuid4())
    first = chain.send(SYNC, body, trigger=trigger)
    retried = chain.send(SYNC, body, trigger=trigger)
    queued = chain.send(ASYNC, body, trigger=other)
    queued_again = chain.send(ASYNC, body, trigger=other)

    assert first.status_code == retried.status_code == 200
    assert first.content == retried.content
    assert queued.status_code == queued_again.status_code == 202
    chain.upstream.wait_for("/app" + ASYNC, 1)
    # Give a second delivery the time to show up, if there were one.
    wait_until(lambda: len(chain.upstream.requests_to("/app" + ASYNC)) > 1, 2.0)

    assert len(chain.upstream.requests_to("/app" + SYNC)) == 1
    assert len(chain.upstream.requests_to("/app" + ASYNC)) == 1


def test_slow_receiver_gets_504(chain: Chain) -> None:
    response = chain.send(SLOW, SAMPLES[0].read_bytes())

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_receiver_down_keeps_async(chain: Chain) -> None:
    chain.receiver.stop()
    bodies = [sample.read_bytes() for sample in SAMPLES]

    for body in bodies:
        assert chain.send(ASYNC, body).status_code == 202

    down = chain.send(SYNC, bodies[0])

    assert down.status_code == 502
    assert down.json()["error"]["code"] == "upstream_unavailable"
    assert chain.upstream.requests_to("/app" + ASYNC) == []

    with serving(chain.receiver_config, ENV):
        delivered = chain.upstream.wait_for("/app" + ASYNC, len(bodies), timeout=30)

        assert sorted(r.body for r in delivered) == sorted(bodies)
        wait_until(lambda: len(chain.upstream.requests_to("/app" + ASYNC)) > 9, 2.0)
        assert len(chain.upstream.requests_to("/app" + ASYNC)) == len(bodies)
        # The relay closes its keep-alive connections first, so the receiver
        # does not wait for them when it stops.
        chain.relay.stop()


def test_signatures_verify_with_standardwebhooks(tmp_path: Path) -> None:
    app = RecordingApp(body=b"{}")

    with serve_asgi(app) as base:
        port = int(base.rpartition(":")[2])
        document = relay_document(tmp_path, tmp_path / "unused.pem", port)
        del document["outbound"]["ca_file"]

        for route in document["routes"]:
            route["target"] = base + "/recorded" + route["path"]

        relay_file = write_config(tmp_path / "relay.yaml", document)

        with relaying(relay_file, ENV) as relay:
            for sample in SAMPLES:
                body = sample.read_bytes()
                headers = kratos_headers(
                    body, str(uuid.uuid4()), {KEY_HEADER: KRATOS_KEY}
                )
                response = httpx.post(relay.url(SYNC), content=body, headers=headers)
                assert response.status_code == 200

    assert len(app.requests) == len(SAMPLES)

    for received, sample in zip(app.requests, SAMPLES, strict=True):
        assert received.body == sample.read_bytes()
        assert received.headers["webhook-id"].startswith("msg_")
        assert KEY_HEADER.lower() not in received.headers
        Webhook(RELAY_KEY).verify(received.body, received.headers)


def test_mutual_tls_to_receiver(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    ca_file = tmp_path / "ca.pem"
    certificates.ca.cert_pem.write_to_path(ca_file)
    client = certificates.ca.issue_cert("relay.internal")
    cert_file, key_file = tmp_path / "relay.crt", tmp_path / "relay.key"
    client.cert_chain_pems[0].write_to_path(cert_file)
    client.private_key_pem.write_to_path(key_file)

    with running_upstream(answers={"/app" + SYNC: (200, b"{}")}) as upstream:
        port = free_port()
        document = receiver_document(tmp_path, certificates, upstream, port)
        document["server"]["tls"]["client_auth"] = "required"
        document["server"]["tls"]["client_ca_file"] = str(ca_file)
        receiver_file = write_config(tmp_path / "receiver.yaml", document)
        with_certificate = write_config(
            tmp_path / "relay-mtls.yaml",
            relay_document(
                tmp_path,
                ca_file,
                port,
                client_cert_file=str(cert_file),
                client_key_file=str(key_file),
            ),
        )
        without = write_config(
            tmp_path / "relay-plain.yaml", relay_document(tmp_path, ca_file, port)
        )
        body = SAMPLES[0].read_bytes()

        with serving(receiver_file, ENV):
            with relaying(with_certificate, ENV) as relay:
                headers = kratos_headers(
                    body, str(uuid.uuid4()), {KEY_HEADER: KRATOS_KEY}
                )
                accepted = httpx.post(relay.url(SYNC), content=body, headers=headers)

            with relaying(without, ENV) as relay:
                headers = kratos_headers(
                    body, str(uuid.uuid4()), {KEY_HEADER: KRATOS_KEY}
                )
                rejected = httpx.post(relay.url(SYNC), content=body, headers=headers)

    assert accepted.status_code == 200
    assert rejected.status_code == 502
    assert len(upstream.requests_to("/app" + SYNC)) == 1
