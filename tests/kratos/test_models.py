"""Kratos payload models against the samples, byte for byte as Kratos sends them."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import msgspec
import pytest

from kratos_webhooks import InvalidJson, InvalidPayload
from kratos_webhooks.kratos.models import (
    HOOK_POINTS,
    NIL_UUID,
    KratosContext,
    LoginContext,
    LoginFlow,
    RecoveryFlow,
    RegistrationFlow,
    SettingsFlow,
    context_to_builtins,
    context_type,
    decode_as,
    decode_context,
    decode_form,
    decode_json,
    unknown_fields,
)

HOOK_OF_SAMPLE = {
    "01-registration-before-browser.passthrough.json": "registration.before",
    "02-registration-after-password-prepersist.passthrough.json": "registration.after",
    "03-registration-after-password-postpersist.passthrough.json": "registration.after",
    "04-login-after-password-browser.passthrough.json": "login.after",
    "05-login-before-api.passthrough.json": "login.before",
    "06-settings-after-profile-postpersist-spa.passthrough.json": "settings.after",
    "07-recovery-after-code.passthrough.json": "recovery.after",
}
FLOW_CLASS = {
    "registration": RegistrationFlow,
    "login": LoginFlow,
    "settings": SettingsFlow,
    "recovery": RecoveryFlow,
}
YEAR_ONE = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def samples(kratos_samples: dict[str, bytes]) -> dict[str, bytes]:
    return kratos_samples


@pytest.mark.parametrize(("name", "hook"), sorted(HOOK_OF_SAMPLE.items()))
def test_sample_decodes_per_hook(
    samples: dict[str, bytes], name: str, hook: Any
) -> None:
    context = decode_context(samples[name], hook)

    assert type(context) is context_type(hook)
    assert type(context.flow) is FLOW_CLASS[hook.partition(".")[0]]
    assert context.flow.type in ("browser", "api")
    assert context.request_method in ("GET", "POST")


@pytest.mark.parametrize("name", sorted(HOOK_OF_SAMPLE))
def test_sample_round_trip_is_exact(samples: dict[str, bytes], name: str) -> None:
    original = json.loads(samples[name])

    for hook in (None, HOOK_OF_SAMPLE[name]):
        context = decode_context(samples[name], hook)
        assert context_to_builtins(context) == original


def test_prepersist_registration_tolerated(samples: dict[str, bytes]) -> None:
    body = samples["02-registration-after-password-prepersist.passthrough.json"]
    context = decode_context(body, "registration.after")
    identity = context.identity

    assert identity is not None
    assert identity.id == NIL_UUID
    assert not identity.is_stored
    assert identity.created_at == YEAR_ONE
    assert identity.updated_at == YEAR_ONE
    assert identity.metadata_public is None
    assert identity.organization_id is None
    assert identity.verifiable_addresses[0].id == NIL_UUID
    assert identity.recovery_addresses[0].created_at == YEAR_ONE
    assert context.session is None


def test_transient_payload_under_flow(samples: dict[str, bytes]) -> None:
    body = samples["02-registration-after-password-prepersist.passthrough.json"]
    # The sample prints 3.14152 as Go's %.17g does.
    assert b"3.1415199999999999" in body

    flow = decode_context(body, "registration.after").flow

    assert flow.transient_payload is not None
    assert flow.transient_payload["numbers"] == [42, 3.14152]
    assert flow.transient_payload["consent"]["accepted"] is True
    assert isinstance(flow, RegistrationFlow)
    assert flow.organization_id is None


def test_fresh_login_session_tolerated(samples: dict[str, bytes]) -> None:
    body = samples["04-login-after-password-browser.passthrough.json"]
    context = decode_context(body, "login.after")

    assert isinstance(context, LoginContext)
    assert context.session is not None
    assert context.session.id == NIL_UUID
    assert not context.session.is_stored
    assert context.session.devices[0].id == NIL_UUID
    assert context.session.authentication_methods[0].method == "password"
    assert context.identity is not None
    assert context.identity.is_stored
    assert context.flow.organization_id is None
    assert context.flow.refresh is False


def test_before_hooks_have_no_identity(samples: dict[str, bytes]) -> None:
    for name in (
        "01-registration-before-browser.passthrough.json",
        "05-login-before-api.passthrough.json",
    ):
        context = decode_context(samples[name], HOOK_OF_SAMPLE[name])  # type: ignore[arg-type]

        assert context.identity is None
        assert context.session is None
        assert "identity" not in context_to_builtins(context)
        assert "session" not in context_to_builtins(context)


def test_unstored_login_flow_timestamps(samples: dict[str, bytes]) -> None:
    flow = decode_context(
        samples["05-login-before-api.passthrough.json"], "login.before"
    )

    assert isinstance(flow.flow, LoginFlow)
    assert flow.flow.created_at == YEAR_ONE


def test_settings_flow_carries_identity(samples: dict[str, bytes]) -> None:
    body = samples["06-settings-after-profile-postpersist-spa.passthrough.json"]
    context = decode_context(body, "settings.after")

    assert isinstance(context.flow, SettingsFlow)
    assert context.flow.identity is not None
    assert context.request_cookies["ory_kratos_session"].startswith("FAKE")


def _with_unknown_fields(document: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    changed["future_top"] = {"nested": [1, 2.5]}
    changed["flow"]["future_flow"] = "x"
    changed["flow"]["ui"]["future_ui"] = True
    changed["flow"]["ui"]["nodes"][0]["future_node"] = None
    changed["identity"]["future_identity"] = [{"a": 1}]
    changed["identity"]["verifiable_addresses"][0]["future_address"] = 7
    changed["session"]["future_session"] = "s"
    changed["session"]["devices"][0]["future_device"] = {"k": "v"}
    changed["session"]["identity"]["future_identity"] = "inner"
    return changed


def test_round_trip_keeps_unknown_fields(samples: dict[str, bytes]) -> None:
    original = json.loads(samples["04-login-after-password-browser.passthrough.json"])
    changed = _with_unknown_fields(original)
    body = json.dumps(changed).encode()

    for hook in (None, "login.after"):
        context = decode_context(body, hook)  # type: ignore[arg-type]
        assert context_to_builtins(context) == changed

    context = decode_context(body, "login.after")
    assert unknown_fields(context) == {"future_top": {"nested": [1, 2.5]}}
    assert unknown_fields(context.flow) == {"future_flow": "x"}
    assert context.session is not None
    assert unknown_fields(context.session.devices[0]) == {"future_device": {"k": "v"}}
    assert (
        msgspec.json.decode(msgspec.json.encode(context_to_builtins(context)))
        == changed
    )


def test_round_trip_applies_changes(samples: dict[str, bytes]) -> None:
    body = samples["02-registration-after-password-prepersist.passthrough.json"]
    context = decode_context(body, "registration.after")
    assert context.identity is not None
    assert "external_id" not in context_to_builtins(context)["identity"]

    context.identity.traits["email"] = "changed@example.com"
    context.identity.external_id = "ext-1"
    new_id = uuid.uuid4()
    context.identity.id = new_id
    out = context_to_builtins(context)

    assert out["identity"]["traits"]["email"] == "changed@example.com"
    assert out["identity"]["external_id"] == "ext-1"
    assert out["identity"]["id"] == str(new_id)
    assert out["identity"]["created_at"] == "0001-01-01T00:00:00Z"


def test_changed_timestamp_is_written_anew(samples: dict[str, bytes]) -> None:
    body = samples["04-login-after-password-browser.passthrough.json"]
    context = decode_context(body, "login.after")
    assert context.session is not None
    # Nanoseconds are kept as sent while the value is unchanged.
    sent = context_to_builtins(context)["session"]["authenticated_at"]
    assert sent == "2026-07-29T11:06:12.903417226Z"

    context.session.authenticated_at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    written = context_to_builtins(context)["session"]["authenticated_at"]

    assert written == "2030-01-02T03:04:05Z"


def test_models_built_in_code_encode() -> None:
    context = KratosContext(
        flow=RegistrationFlow(id=uuid.UUID(int=1), type="api"),
        request_cookies={"a": "b"},
    )
    out = context_to_builtins(context)

    assert out["flow"]["id"] == "00000000-0000-0000-0000-000000000001"
    assert out["request_cookies"] == {"a": "b"}
    assert out["identity"] is None


class VerificationDigest(msgspec.Struct):
    event: str
    flow_id: uuid.UUID
    identity_id: uuid.UUID
    email: str
    verified_addresses: list[str]
    transient_payload: dict[str, Any] | None = None


@dataclasses.dataclass
class LoginDigest:
    flow_id: str
    identity_id: str
    session_id: str
    method: str
    url: str
    cookies: dict[str, str]
    headers: dict[str, list[str]]


def test_custom_template_as_plain_json(samples: dict[str, bytes]) -> None:
    body = samples["08-verification-after-code.custom-template.json"]
    value = decode_json(body)

    assert value == json.loads(body)
    assert value["event"] == "verification.after"


def test_custom_template_into_user_types(samples: dict[str, bytes]) -> None:
    digest = decode_as(
        samples["08-verification-after-code.custom-template.json"], VerificationDigest
    )

    assert digest.event == "verification.after"
    assert digest.verified_addresses == ["alex.sample@example.com"]
    assert digest.transient_payload == {"source": "welcome-email"}

    login = decode_as(
        samples["09-login-after-password.kratos-test_body-template.json"], LoginDigest
    )

    assert login.session_id == str(NIL_UUID)
    assert login.method == "POST"


def test_custom_template_mismatch_rejected(samples: dict[str, bytes]) -> None:
    with pytest.raises(InvalidPayload, match="VerificationDigest") as caught:
        decode_as(
            samples["09-login-after-password.kratos-test_body-template.json"],
            VerificationDigest,
        )

    assert caught.value.code == "invalid_payload"
    assert caught.value.status == 422


MALFORMED_JSON = [
    b"",
    b"{",
    b"\xff\xfe{}",
    b'{"flow": "\xc3"}',
    b"{} trailing",
]


@pytest.mark.parametrize("body", MALFORMED_JSON)
def test_malformed_json_rejected(body: bytes) -> None:
    with pytest.raises(InvalidJson) as caught:
        decode_context(body)

    assert caught.value.code == "invalid_json"
    assert caught.value.status == 400


NOT_KRATOS = [
    b"[]",
    b'"text"',
    b"{}",
    b'{"flow": {}}',
    b'{"flow": {"id": "not-a-uuid", "type": "browser"}}',
    b'{"flow": {"id": 5, "type": "browser"}}',
    b'{"flow": {"id": "00000000-0000-0000-0000-000000000000", "type": "api"},'
    b' "identity": {"id": "00000000-0000-0000-0000-000000000000",'
    b' "schema_id": "default", "traits": "not an object"}}',
    b'{"flow": {"id": "00000000-0000-0000-0000-000000000000", "type": "api"},'
    b' "request_cookies": {"a": 1}}',
    b'{"flow": {"id": "00000000-0000-0000-0000-000000000000", "type": "api",'
    b' "expires_at": "yesterday"}}',
]


@pytest.mark.parametrize("body", NOT_KRATOS)
def test_non_kratos_json_rejected(body: bytes) -> None:
    with pytest.raises(InvalidPayload) as caught:
        decode_context(body, "login.after")

    assert caught.value.code == "invalid_payload"
    assert caught.value.status == 422


def test_minimal_context_decodes() -> None:
    body = b'{"flow": {"id": "00000000-0000-0000-0000-000000000000", "type": "api"}}'
    context = decode_context(body)

    assert context.identity is None
    assert context.request_cookies == {}
    assert context_to_builtins(context) == json.loads(body)


def test_str_body_refused() -> None:
    with pytest.raises(TypeError):
        decode_json('{"a": 1}')  # type: ignore[arg-type]


def test_unknown_hook_point_refused() -> None:
    with pytest.raises(ValueError, match="unknown hook point"):
        context_type("registration.during")  # type: ignore[arg-type]

    assert len(HOOK_POINTS) == 10


def test_form_body_decodes() -> None:
    # Go's url.Values.Encode: sorted keys, QueryEscape, no trailing newline.
    body = b"email=alex%2Bsample%40example.com&flow_id=6f1d&name=Zo%C3%AB+Sample"

    assert decode_form(body) == {
        "email": "alex+sample@example.com",
        "flow_id": "6f1d",
        "name": "Zoë Sample",
    }
    assert decode_form(b"") == {}
    assert decode_form(b"empty=") == {"empty": ""}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"a=1&a=2", InvalidPayload),
        ("name=Zoë".encode(), InvalidJson),
        (b"a=%ff", InvalidJson),
        (b"novalue&&", InvalidJson),
    ],
)
def test_malformed_form_rejected(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_form(body)


def test_context_repr_is_redacted(samples: dict[str, bytes]) -> None:
    body = samples["06-settings-after-profile-postpersist-spa.passthrough.json"]
    shown = repr(decode_context(body, "settings.after"))

    assert shown.startswith("SettingsContext(")
    assert "FAKE_ory_kratos_session" not in shown
    assert "FAKEcsrf" not in shown
    assert "alex.sample@example.com" in shown
