"""`forward_redacted`: what reaches an application that asked for redaction.

A real upstream on loopback records what the receiver forwards, sync and
async. Where the route asked for redaction, no cookie value, CSRF token or
configured pointer arrives; elsewhere the body arrives byte-identical.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kratos_webhooks import HmacKey, KeySet, Verifier
from kratos_webhooks.credentials import jsonnet_envelope, jsonnet_mac
from kratos_webhooks.errors import ConfigError
from kratos_webhooks.kratos.redaction import REDACTED

from .harness import (
    Certificates,
    Upstream,
    kratos_headers,
    make_certificates,
    running_upstream,
)
from .inprocess import in_process_receiver, load, receiver_document

DATA = Path(__file__).parent.parent / "data" / "kratos"
UPSTREAM_KEY = HmacKey.generate()
API_KEY = "redact-api-key-" + uuid.uuid4().hex
ENV = {"REDACT_API_KEY": API_KEY, "REDACT_UPSTREAM_KEY": UPSTREAM_KEY.encode()}
POINTERS = ["/identity/traits/name/last", "/identity/verifiable_addresses/*/value"]
CSRF_TOKEN = "FAKEcsrfTokenValue+ForSamplesOnly"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as server:
        yield server


def _samples() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(DATA.glob("0*.json"))}


def _route(path: str, upstream: Upstream, mode: str, **extra: Any) -> dict[str, Any]:
    route: dict[str, Any] = {
        "path": path,
        "verify": {
            "scheme": "kratos-api-key",
            "secrets": ["env:REDACT_API_KEY"],
            "name": "X-Webhook-Secret",
        },
        "mode": mode,
        "upstream": upstream.url("/up" + path),
        "upstream_secrets": ["env:REDACT_UPSTREAM_KEY"],
        "delivery": {"initial_backoff": 0.2, "max_backoff": 1.0},
    }
    route.update(extra)
    return route


def _cookie_values(document: dict[str, Any]) -> list[str]:
    values: list[str] = []

    for key in ("request_cookies", "cookies"):
        values += list(document.get(key, {}).values())

    return values


def _resolve(document: Any, pointer: str) -> list[Any]:
    found = [document]

    for token in pointer.strip("/").split("/"):
        following: list[Any] = []

        for node in found:
            if isinstance(node, dict) and token in node:
                following.append(node[token])
            elif isinstance(node, list) and token == "*":
                following.extend(node)

        found = following

    return found


def _send_all(
    upstream: Upstream,
    config_routes: list[dict[str, Any]],
    tmp_path: Path,
    certificates: Certificates,
) -> None:
    config = load(tmp_path, certificates, config_routes)

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            for route in config_routes:
                for name, body in _samples().items():
                    headers = kratos_headers(
                        body, str(uuid.uuid4()), {"X-Webhook-Secret": API_KEY}
                    )
                    reply = await receiver.post(route["path"], body, headers)

                    assert reply.status in (202, 204), (route["path"], name, reply.body)

            for route in config_routes:
                if route["mode"] == "async":
                    await asyncio.to_thread(
                        upstream.wait_for, "/up" + route["path"], len(_samples())
                    )

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_redacted_forwarding(
    tmp_path: Path, certificates: Certificates, upstream: Upstream, mode: str
) -> None:
    routes = [
        _route("/redacted", upstream, mode, forward_redacted=True, redact=POINTERS),
        _route("/plain", upstream, mode),
    ]
    _send_all(upstream, routes, tmp_path, certificates)
    samples = list(_samples().values())
    redacted = upstream.requests_to("/up/redacted")
    plain = upstream.requests_to("/up/plain")
    verifier = Verifier(KeySet((UPSTREAM_KEY,)))

    assert len(redacted) == len(samples)
    assert sorted(r.body for r in plain) == sorted(samples)

    for received in redacted:
        document = json.loads(received.body)
        verifier.verify(received.body, received.headers)

        assert CSRF_TOKEN.encode() not in received.body
        assert b"FAKE_ory_kratos_session" not in received.body

        for value in _cookie_values(document):
            assert value == REDACTED

        for pointer in POINTERS:
            for value in _resolve(document, pointer):
                assert value == REDACTED, pointer

    originals = [json.loads(body) for body in samples]
    secrets = [v for original in originals for v in _cookie_values(original)]
    configured = [
        value
        for original in originals
        for pointer in POINTERS
        for value in _resolve(original, pointer)
    ]
    everything = b"".join(r.body for r in redacted)

    assert secrets, "the samples carry cookies"
    assert configured, "the samples carry the configured fields"

    # A configured field's value may also appear elsewhere (a UI node echoes
    # the traits), so only its own place is checked, above.
    for value in secrets:
        assert value.encode() not in everything


def test_redaction_keys_checked(tmp_path: Path, certificates: Certificates) -> None:
    with running_upstream() as upstream:
        routes = [
            _route("/a", upstream, "sync", redact=["/identity/traits/phone"]),
            _route("/b", upstream, "sync", forward_redacted=True, redact=["phone"]),
        ]
        handler_route = _route("/c", upstream, "sync", forward_redacted=True)
        del handler_route["upstream"]
        handler_route["handler"] = "tests.receiver.hook_handlers:no_change"
        routes.append(handler_route)

        with pytest.raises(ConfigError) as caught:
            load(tmp_path, certificates, routes)

    problems = dict(caught.value.problems)
    assert "forward_redacted" in problems["routes[0].redact"]
    assert "JSON pointer" in problems["routes[1].redact[0]"]
    assert "upstream" in problems["routes[2].forward_redacted"]
    assert receiver_document(tmp_path, certificates, routes)["routes"] == routes


def test_jsonnet_mac_envelope_redacted(
    tmp_path: Path, certificates: Certificates, upstream: Upstream
) -> None:
    route = _route("/mac", upstream, "sync", forward_redacted=True)
    route["verify"] = {
        "scheme": "kratos-jsonnet-mac",
        "secrets": ["env:REDACT_API_KEY"],
    }
    config = load(tmp_path, certificates, [route])
    sample = DATA / "03-registration-after-password-postpersist.passthrough.json"
    payload = sample.read_text(encoding="utf-8")
    body = jsonnet_envelope(payload, jsonnet_mac(API_KEY, payload)).decode()

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            headers = kratos_headers(body.encode(), str(uuid.uuid4()), {})
            reply = await receiver.post("/mac", body.encode(), headers)

            assert reply.status == 204, reply.body

    asyncio.run(scenario())
    (received,) = upstream.requests_to("/up/mac")
    inner = json.loads(json.loads(received.body)["payload"])

    assert CSRF_TOKEN.encode() not in received.body
    assert set(inner["request_cookies"].values()) == {REDACTED}
    assert inner["identity"] == json.loads(payload)["identity"]
