"""Hook handlers: registration, sync and async calls, answers, loading by name."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kratos_webhooks import (
    ConfigError,
    InvalidJson,
    InvalidPayload,
    UnsupportedMediaType,
)
from kratos_webhooks.hooks import (
    Handler,
    HookEvent,
    HookRegistry,
    decode_payload,
    load_handler,
    payload_format,
)
from kratos_webhooks.kratos.answers import (
    Answer,
    IgnoredUpdateWarning,
    Interrupt,
    InvalidAnswer,
    InvalidAnswerType,
    NoChange,
    UpdateIdentity,
)
from kratos_webhooks.kratos.models import RegistrationContext

REGISTRATION = "02-registration-after-password-prepersist.passthrough.json"
CERTIFICATE = {
    "client_cert_chain": ["-----BEGIN CERTIFICATE-----"],
    "client_cert_name": "CN=relay",
}


def test_on_registers_and_returns_function() -> None:
    hooks = HookRegistry()

    def on_registration(event: HookEvent[Any]) -> Answer:
        return NoChange()

    assert hooks.on("registration.after")(on_registration) is on_registration
    assert "registration.after" in hooks
    assert list(hooks) == ["registration.after"]
    assert hooks.handler("registration.after").function is on_registration


def test_duplicate_hook_refused() -> None:
    hooks = HookRegistry()
    hooks.on("login.after")(lambda event: None)

    with pytest.raises(ConfigError, match="already has a handler"):
        hooks.on("login.after")


def test_unknown_hook_refused() -> None:
    with pytest.raises(ConfigError, match="unknown hook point"):
        HookRegistry().on("login.during")  # type: ignore[arg-type]


def test_missing_handler_named() -> None:
    with pytest.raises(KeyError, match=r"no handler is registered for login\.before"):
        HookRegistry().handler("login.before")


def test_sync_and_async_handlers(kratos_samples: dict[str, bytes]) -> None:
    hooks = HookRegistry()
    seen: dict[str, Any] = {}

    @hooks.on("registration.after")
    def sync_handler(event: HookEvent[RegistrationContext]) -> Answer:
        seen["sync_thread"] = threading.current_thread()
        seen["event"] = event
        assert event.identity is not None
        return UpdateIdentity(metadata_public={"email": event.identity.traits["email"]})

    @hooks.on("registration.before")
    async def async_handler(event: HookEvent[RegistrationContext]) -> Answer:
        seen["async_thread"] = threading.current_thread()
        return Interrupt().error("Closed.", id=4000001)

    body = kratos_samples[REGISTRATION]
    event = hooks.handler("registration.after").event(
        body, delivery_id="msg_abc", client_certificate=CERTIFICATE
    )
    answer = asyncio.run(hooks.dispatch(event))

    assert answer.to_http() == (
        200,
        b'{"identity":{"metadata_public":{"email":"alex.sample@example.com"}}}',
    )
    assert seen["sync_thread"] is not threading.current_thread()
    assert seen["event"].delivery_id == "msg_abc"
    assert seen["event"].client_certificate == CERTIFICATE
    assert isinstance(seen["event"].payload, RegistrationContext)
    assert seen["event"].body == body

    before = hooks.handler("registration.before").event(
        kratos_samples["01-registration-before-browser.passthrough.json"]
    )
    assert asyncio.run(hooks.dispatch(before)).status == 400
    assert seen["async_thread"] is threading.current_thread()


def test_call_sync_runs_both_kinds(kratos_samples: dict[str, bytes]) -> None:
    async def async_handler(event: HookEvent[Any]) -> Answer:
        await asyncio.sleep(0)
        return NoChange(status=204)

    def sync_handler(event: HookEvent[Any]) -> Answer:
        return NoChange()

    body = kratos_samples[REGISTRATION]

    for function, status in ((async_handler, 204), (sync_handler, 200)):
        handler = Handler(function, hook="registration.after")
        assert handler.call_sync(handler.event(body)).status == status


def test_none_means_no_change(kratos_samples: dict[str, bytes]) -> None:
    handler = Handler(lambda event: None, hook="login.after")
    event = handler.event(
        kratos_samples["04-login-after-password-browser.passthrough.json"]
    )

    assert asyncio.run(handler(event)).to_http() == (200, b"{}")


def test_wrong_result_type_refused(kratos_samples: dict[str, bytes]) -> None:
    handler = Handler(lambda event: {"identity": {}}, hook="login.after")  # type: ignore[arg-type,return-value]
    event = handler.event(
        kratos_samples["04-login-after-password-browser.passthrough.json"]
    )

    with pytest.raises(InvalidAnswerType, match="returned dict"):
        asyncio.run(handler(event))


def test_update_from_before_hook_refused(kratos_samples: dict[str, bytes]) -> None:
    handler = Handler(
        lambda event: UpdateIdentity(traits={"email": "a@example.com"}),
        hook="login.before",
    )
    event = handler.event(kratos_samples["05-login-before-api.passthrough.json"])

    with pytest.raises(InvalidAnswer, match="crashes"):
        asyncio.run(handler(event))


def test_ignored_update_warns(kratos_samples: dict[str, bytes]) -> None:
    handler = Handler(
        lambda event: UpdateIdentity(state="inactive"), hook="login.after"
    )
    event = handler.event(
        kratos_samples["04-login-after-password-browser.passthrough.json"]
    )

    with pytest.warns(IgnoredUpdateWarning):
        handler.call_sync(event)


class Digest(msgspec.Struct):
    event: str
    email: str


def test_payload_types(kratos_samples: dict[str, bytes]) -> None:
    body = kratos_samples["08-verification-after-code.custom-template.json"]
    hooks = HookRegistry()
    hooks.on("verification.after", payload_type=Digest)(lambda event: None)
    hooks.on("recovery.after", payload_type=dict)(lambda event: None)

    digest = hooks.handler("verification.after").event(body).payload
    plain = hooks.handler("recovery.after").event(body).payload

    assert digest == Digest(event="verification.after", email="alex.sample@example.com")
    assert plain["flow_type"] == "browser"
    assert hooks.handler("recovery.after").event(body).identity is None


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("application/json", "json"),
        ("application/json; charset=latin-1", "json"),
        ("Application/JSON;charset=utf-16", "json"),
        ("application/vnd.kratos+json", "json"),
        ("application/x-www-form-urlencoded", "form"),
        ("application/x-www-form-urlencoded; charset=iso-8859-1", "form"),
    ],
)
def test_payload_format(content_type: str | None, expected: str) -> None:
    assert payload_format(content_type) == expected


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x"]
)
def test_other_media_types_rejected(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        payload_format(content_type)

    assert caught.value.status == 415


def test_form_payloads() -> None:
    body = b"email=zo%C3%AB%40example.com&event=registration"
    form = "application/x-www-form-urlencoded; charset=latin-1"

    assert decode_payload(body, content_type=form) == {
        "email": "zoë@example.com",
        "event": "registration",
    }
    assert decode_payload(body, content_type=form, payload_type=Digest) == Digest(
        event="registration", email="zoë@example.com"
    )

    with pytest.raises(InvalidPayload):
        decode_payload(b"other=1", content_type=form, payload_type=Digest)


def test_lying_charset_ignored() -> None:
    body = (
        '{"flow": {"id": "00000000-0000-0000-0000-000000000000", "type": "api"},'
        ' "request_url": "https://zoë.example.com/"}'
    )
    for label in ("latin-1", "utf-16", "ascii"):
        context = decode_payload(
            body.encode(), content_type=f"application/json; charset={label}"
        )
        assert context.request_url == "https://zoë.example.com/"

    with pytest.raises(InvalidJson):
        decode_payload(
            body.encode("latin-1"), content_type="application/json; charset=latin-1"
        )


def test_event_repr_redacted(kratos_samples: dict[str, bytes]) -> None:
    hooks = HookRegistry(redact=["/identity/traits/email"])
    hooks.on("settings.after")(lambda event: None)
    body = kratos_samples["06-settings-after-profile-postpersist-spa.passthrough.json"]
    shown = repr(hooks.handler("settings.after").event(body, delivery_id="msg_9"))

    assert "FAKE_ory_kratos_session" not in shown
    assert "FAKEcsrf" not in shown
    assert '"email": "[redacted]"' in shown
    assert "msg_9" in shown


HANDLER_MODULE = """
from kratos_webhooks.hooks import HookRegistry
from kratos_webhooks.kratos.answers import Interrupt, NoChange

hooks = HookRegistry()
not_callable = 42


@hooks.on("registration.before")
def closed(event):
    return Interrupt(status=403).error("Sign-ups are closed.", id=4000001)


async def plain(event):
    return NoChange(status=204)


class Holder:
    @staticmethod
    def nested(event):
        return None
"""


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "sample_kratos_handlers.py").write_text(textwrap.dedent(HANDLER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "sample_kratos_handlers"


def test_load_registered_handler(
    handler_module: str, kratos_samples: dict[str, bytes]
) -> None:
    handler = load_handler(f"{handler_module}:closed")
    event = handler.event(
        kratos_samples["01-registration-before-browser.passthrough.json"],
        content_type="application/json",
        delivery_id="msg_1",
    )
    status, body = asyncio.run(handler(event)).to_http()

    assert handler.hook == "registration.before"
    assert isinstance(event.payload, RegistrationContext)
    assert status == 403
    assert b"Sign-ups are closed." in body


def test_load_plain_handler(
    handler_module: str, kratos_samples: dict[str, bytes]
) -> None:
    handler = load_handler(f"{handler_module}:plain")
    event = handler.event(kratos_samples["07-recovery-after-code.passthrough.json"])

    assert handler.hook is None
    assert asyncio.run(handler(event)).to_http() == (204, b"")
    assert load_handler(f"{handler_module}:Holder.nested").hook is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "expected 'module:function'"),
        (":closed", "expected 'module:function'"),
        ("module:", "expected 'module:function'"),
        ("kratos_webhooks_missing_module:f", "cannot be imported"),
        ("{module}:missing", "no attribute 'missing'"),
        ("{module}:not_callable", "not callable"),
        ("{module}:hooks", "is a HookRegistry"),
    ],
)
def test_bad_handler_spec_refused(handler_module: str, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_handler(spec.format(module=handler_module))


def test_missing_handler_module_hints_pythonpath() -> None:
    with pytest.raises(ConfigError) as caught:
        load_handler("kratos_webhooks_missing_module.hooks:on_login")

    message = str(caught.value)

    assert "'kratos_webhooks_missing_module.hooks' cannot be imported" in message
    assert "'kratos_webhooks_missing_module' on PYTHONPATH?" in message


def test_handler_missing_dependency_not_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_absent_package.py").write_text(
        "import kratos_webhooks_absent_dependency\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ConfigError) as caught:
        load_handler("needs_absent_package:on_login")

    message = str(caught.value)

    assert "No module named 'kratos_webhooks_absent_dependency'" in message
    assert "PYTHONPATH" not in message


def test_non_callable_handler_refused() -> None:
    with pytest.raises(ConfigError, match="must be callable"):
        Handler(42)  # type: ignore[arg-type]
