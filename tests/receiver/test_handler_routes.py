"""Routes answered by Python hook handlers named as `module:function`.

The handlers live in `tests.receiver.hook_handlers`; the in-process tests read
the events they recorded, and one test runs them under a real `serve`.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kratos_webhooks import HmacKey, KeySet, Signer
from kratos_webhooks.config import parse_config
from kratos_webhooks.errors import ConfigError
from kratos_webhooks.kratos.models import (
    KratosContext,
    RegistrationContext,
)

from . import hook_handlers
from .harness import (
    Certificates,
    base_config,
    kratos_headers,
    make_certificates,
    serving,
    write_config,
)
from .inprocess import in_process_receiver, load, receiver_document

DATA = Path(__file__).parent.parent / "data" / "kratos"
MODULE = "tests.receiver.hook_handlers"
REPOSITORY = Path(__file__).resolve().parents[2]
SW_KEY = HmacKey.generate()
API_KEY = "handler-api-key-" + uuid.uuid4().hex
ENV = {"HANDLER_SW_SECRET": SW_KEY.encode(), "HANDLER_API_KEY": API_KEY}
BEFORE = (DATA / "01-registration-before-browser.passthrough.json").read_bytes()
AFTER = (
    DATA / "03-registration-after-password-postpersist.passthrough.json"
).read_bytes()
CLIENT_TLS = {
    "server_cert": None,
    "client_cert_chain": [
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    ],
    "client_cert_name": "CN=kratos-relay",
    "client_cert_error": None,
    "tls_version": 0x0304,
    "cipher_suite": 0x1301,
}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

    hook_handlers.EVENTS.clear()
    yield
    hook_handlers.EVENTS.clear()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _sw_route(path: str, handler: str, **extra: Any) -> dict[str, Any]:
    route: dict[str, Any] = {
        "path": path,
        "verify": {"scheme": "standard-webhooks", "secrets": ["env:HANDLER_SW_SECRET"]},
        "mode": "sync",
        "handler": f"{MODULE}:{handler}",
    }
    route.update(extra)
    return route


def _api_route(path: str, handler: str, **extra: Any) -> dict[str, Any]:
    route = _sw_route(path, handler, **extra)
    route["verify"] = {
        "scheme": "kratos-api-key",
        "secrets": ["env:HANDLER_API_KEY"],
        "name": "X-Webhook-Secret",
    }
    return route


def _signed(body: bytes) -> dict[str, str]:
    headers = kratos_headers(body, str(uuid.uuid4()), {})
    headers.update(Signer(KeySet((SW_KEY,))).sign(body))
    return headers


def _api(body: bytes, trigger: str) -> dict[str, str]:
    return kratos_headers(body, trigger, {"X-Webhook-Secret": API_KEY})


def test_sync_and_async_handlers(tmp_path: Path, certificates: Certificates) -> None:
    routes = [
        _sw_route("/after", "tag_new_user"),
        _sw_route("/before", "close_sign_ups"),
    ]
    config = load(tmp_path, certificates, routes)

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            headers = _signed(AFTER)
            reply = await receiver.post("/after", AFTER, headers)

            assert reply.status == 200, reply.body
            assert reply.json() == {
                "identity": {"metadata_public": {"delivery": headers["webhook-id"]}}
            }

            headers = _signed(BEFORE)
            reply = await receiver.post("/before", BEFORE, headers)

            assert reply.status == 403, reply.body
            messages = reply.json()["messages"][0]["messages"]
            assert messages[0]["id"] == 4000001
            assert headers["webhook-id"] in messages[0]["text"]

    asyncio.run(scenario())
    after, before = hook_handlers.EVENTS

    assert after.hook == "registration.after"
    assert isinstance(after.payload, RegistrationContext)
    assert after.body == AFTER
    assert before.hook == "registration.before"
    assert isinstance(before.payload, RegistrationContext)
    assert after.client_certificate is None


def test_client_certificate_passed(tmp_path: Path, certificates: Certificates) -> None:
    config = load(tmp_path, certificates, [_sw_route("/after", "tag_new_user")])

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            for extensions in (
                {"tls": CLIENT_TLS},
                {"tls": {**CLIENT_TLS, "client_cert_chain": []}},
                {},
            ):
                reply = await receiver.post(
                    "/after", AFTER, _signed(AFTER), extensions=extensions
                )
                assert reply.status == 200, reply.body

    asyncio.run(scenario())
    with_chain, empty_chain, without = hook_handlers.EVENTS

    assert with_chain.client_certificate == CLIENT_TLS
    assert empty_chain.client_certificate is None
    assert without.client_certificate is None


def test_trigger_id_is_delivery_id(tmp_path: Path, certificates: Certificates) -> None:
    routes = [_api_route("/plain", "no_change", hook="login.after")]
    config = load(tmp_path, certificates, routes)
    body = (DATA / "04-login-after-password-browser.passthrough.json").read_bytes()
    trigger = str(uuid.uuid4())

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            reply = await receiver.post("/plain", body, _api(body, trigger))

            assert reply.status == 200, reply.body
            assert reply.json() == {}

            headers = _api(body, trigger)
            del headers["ory-webhook-trigger-id"]
            other = body.replace(b'"password"', b'"passkey"', 1)
            headers["content-length"] = str(len(other))
            reply = await receiver.post("/plain", other, headers)
            assert reply.status == 200, reply.body

    asyncio.run(scenario())
    first, second = hook_handlers.EVENTS

    assert first.delivery_id == trigger
    assert first.hook == "login.after"
    assert type(first.payload).__name__ == "LoginContext"
    assert second.delivery_id is None


@pytest.mark.parametrize(
    ("handler", "extra", "status", "code"),
    [
        ("plain_dict", {}, 502, "invalid_upstream_answer"),
        (
            "update_on_before",
            {"hook": "registration.before"},
            502,
            "invalid_upstream_answer",
        ),
        ("failing", {}, 502, "upstream_unavailable"),
        ("slow", {"timeout": 0.5}, 504, "upstream_timeout"),
    ],
)
def test_bad_handler_answers_refused(
    tmp_path: Path,
    certificates: Certificates,
    handler: str,
    extra: dict[str, Any],
    status: int,
    code: str,
) -> None:
    config = load(tmp_path, certificates, [_sw_route("/h", handler, **extra)])

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            reply = await receiver.post("/h", BEFORE, _signed(BEFORE))

            assert reply.status == status, reply.body
            assert reply.code == code

    asyncio.run(scenario())


def test_payload_kinds_reach_handler(
    tmp_path: Path, certificates: Certificates
) -> None:
    routes = [
        _sw_route("/generic", "no_change"),
        _sw_route("/json", "no_change", payload="json"),
        _sw_route("/kratos", "tag_new_user", payload="kratos"),
    ]
    config = load(tmp_path, certificates, routes)
    custom = (DATA / "08-verification-after-code.custom-template.json").read_bytes()

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            for path, body in (("/generic", AFTER), ("/json", custom)):
                reply = await receiver.post(path, body, _signed(body))
                assert reply.status == 200, (path, reply.body)

            count = len(hook_handlers.EVENTS)

            for path in ("/generic", "/kratos"):
                reply = await receiver.post(path, custom, _signed(custom))
                assert reply.status == 422, (path, reply.body)

            assert len(hook_handlers.EVENTS) == count

    asyncio.run(scenario())
    generic, plain = hook_handlers.EVENTS

    assert type(generic.payload) is KratosContext
    assert plain.payload == json.loads(custom)


def test_handler_payload_type(tmp_path: Path, certificates: Certificates) -> None:
    config = load(tmp_path, certificates, [_sw_route("/digest", "digest")])
    custom = (DATA / "08-verification-after-code.custom-template.json").read_bytes()
    missing = json.dumps({"event": "verification.after"}).encode()

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            reply = await receiver.post("/digest", custom, _signed(custom))
            assert reply.status == 200, reply.body

            reply = await receiver.post("/digest", missing, _signed(missing))
            assert reply.status == 422, reply.body
            assert "VerificationDigest" in reply.json()["error"]["message"]

    asyncio.run(scenario())
    (event,) = hook_handlers.EVENTS

    assert isinstance(event.payload, hook_handlers.VerificationDigest)
    assert event.payload.email == "alex.sample@example.com"
    assert event.hook == "verification.after"


def test_handler_hook_must_match_route(
    tmp_path: Path, certificates: Certificates
) -> None:
    routes = [_sw_route("/after", "tag_new_user", hook="login.after")]

    with pytest.raises(ConfigError) as caught:
        parse_config(receiver_document(tmp_path, certificates, routes))

    ((path, message),) = caught.value.problems
    assert path == "routes[0].handler"
    assert "registered for registration.after, not login.after" in message


@pytest.mark.slow
def test_handlers_under_serve(tmp_path: Path, certificates: Certificates) -> None:
    config = base_config(tmp_path, certificates)
    config["routes"] = [
        _sw_route("/after", "tag_new_user"),
        _sw_route("/before", "close_sign_ups"),
        _sw_route("/bad", "plain_dict"),
    ]
    config_file = write_config(tmp_path / "receiver.yaml", config)
    path = os.pathsep.join(
        filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])
    )
    env = {**ENV, "PYTHONPATH": path}

    with (
        serving(config_file, env) as server,
        httpx.Client(verify=certificates.client_context(), timeout=15.0) as client,
    ):
        headers = _signed(AFTER)
        response = client.post(server.url("/after"), content=AFTER, headers=headers)

        assert response.status_code == 200, response.text
        assert response.json()["identity"]["metadata_public"] == {
            "delivery": headers["webhook-id"]
        }

        headers = _signed(BEFORE)
        response = client.post(server.url("/before"), content=BEFORE, headers=headers)

        assert response.status_code == 403, response.text
        assert headers["webhook-id"] in response.text

        response = client.post(
            server.url("/bad"), content=BEFORE, headers=_signed(BEFORE)
        )

        assert response.status_code == 502
        assert response.json()["error"]["code"] == "invalid_upstream_answer"
