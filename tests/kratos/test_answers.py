"""Answer builders: the sample answers, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kratos_webhooks.kratos.answers import (
    IgnoredUpdateWarning,
    Interrupt,
    InvalidAnswer,
    InvalidAnswerType,
    NoChange,
    UpdateIdentity,
    field_pointer,
)
from kratos_webhooks.kratos.models import HOOK_POINTS, decode_context

SAMPLES = Path(__file__).parent.parent / "data" / "kratos"


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_bytes())


def test_interrupt_sample_built() -> None:
    answer = (
        Interrupt(status=400)
        .error(
            "Sign-ups from this e-mail domain are not allowed.",
            id=10000001,
            field="traits.email",
            context={"domain": "blocked.example.com"},
        )
        .error("Registration is currently invite-only.", id=10000002)
    )
    status, body = answer.to_http()

    assert status == 400
    assert json.loads(body) == _sample("response-400-interrupt-with-messages.json")
    assert answer.media_type == "application/json"


def test_traits_metadata_sample_built() -> None:
    expected = _sample("response-200-modify-identity-traits-metadata.json")
    answer = UpdateIdentity(
        traits={
            "email": "alex.sample@example.com",
            "name": {"first": "Alex", "last": "Sample"},
        },
        metadata_public={"plan": "free", "onboarding_step": 1},
        metadata_admin={"crm_contact_id": "FAKE-CRM-000123", "risk_score": 12},
        hook="registration.after",
    )
    status, body = answer.to_http()

    assert status == 200
    assert json.loads(body) == expected


def test_external_id_addresses_sample_built() -> None:
    expected = _sample("response-200-modify-identity-external-id-addresses-state.json")
    answer = UpdateIdentity(
        external_id="legacy-user-000123",
        state="active",
        verifiable_addresses=[
            {
                "value": "alex.sample@example.com",
                "via": "email",
                "verified": True,
                "status": "completed",
            }
        ],
        recovery_addresses=[{"value": "alex.sample@example.com", "via": "email"}],
        hook="settings.after",
    )

    assert answer.to_http() == (
        200,
        json.dumps(expected, separators=(",", ":")).encode(),
    )


def test_update_from_decoded_models(kratos_samples: dict[str, bytes]) -> None:
    body = kratos_samples["02-registration-after-password-prepersist.passthrough.json"]
    identity = decode_context(body, "registration.after").identity
    assert identity is not None

    answer = UpdateIdentity(verifiable_addresses=identity.verifiable_addresses)
    sent = json.loads(answer.body())["identity"]["verifiable_addresses"][0]

    assert sent["value"] == "alex.sample@example.com"
    assert sent["via"] == "email"


def test_empty_external_id_unsets() -> None:
    assert json.loads(UpdateIdentity(external_id="").body()) == {
        "identity": {"external_id": ""}
    }


def test_null_metadata_is_sent() -> None:
    body = json.loads(UpdateIdentity(metadata_public=None).body())

    assert body == {"identity": {"metadata_public": None}}


@pytest.mark.parametrize(
    ("field", "pointer"),
    [
        ("traits.email", "#/traits/email"),
        ("traits.name.first", "#/traits/name/first"),
        ("password", "#/password"),
        (None, "#/"),
        ("", "#/"),
        ("#/", "#/"),
        ("#/traits/email", "#/traits/email"),
        ("traits.a/b", "#/traits/a~1b"),
        ("traits.a~b", "#/traits/a~0b"),
    ],
)
def test_field_pointer(field: str | None, pointer: str) -> None:
    assert field_pointer(field) == pointer


def test_info_and_error_types() -> None:
    answer = Interrupt(status=409).info("Check your inbox.", id=1, field="traits.email")
    answer.error("Taken.", id=2, field="traits.email")
    document = json.loads(answer.body())

    assert answer.status == 409
    assert len(document["messages"]) == 1
    entries = document["messages"][0]["messages"]
    assert [e["type"] for e in entries] == ["info", "error"]
    assert "context" not in entries[0]


def test_empty_interrupt_refused() -> None:
    answer = Interrupt()

    with pytest.raises(InvalidAnswer, match="at least one message"):
        answer.to_http()


@pytest.mark.parametrize("bad_id", ["1", 1.0, True, None, [1]])
def test_non_integer_id_refused(bad_id: Any) -> None:
    with pytest.raises(InvalidAnswerType, match="message id must be an int"):
        Interrupt().error("No.", id=bad_id)


@pytest.mark.parametrize("bad_id", [2**63, -(2**63) - 1])
def test_out_of_range_id_refused(bad_id: int) -> None:
    with pytest.raises(InvalidAnswer, match="64-bit"):
        Interrupt().error("No.", id=bad_id)


@pytest.mark.parametrize("status", [429, 500, 501, 502, 503, 504, 599])
def test_retried_status_refused(status: int) -> None:
    with pytest.raises(InvalidAnswer, match="retries"):
        Interrupt(status=status)


@pytest.mark.parametrize("status", [200, 204, 302, 399, 600])
def test_non_4xx_interrupt_refused(status: int) -> None:
    with pytest.raises(InvalidAnswer):
        Interrupt(status=status)


@pytest.mark.parametrize("status", [400, 403, 409, 422, 499])
def test_4xx_interrupt_accepted(status: int) -> None:
    assert Interrupt(status=status).error("No.", id=1).to_http()[0] == status


def test_interrupt_status_type_refused() -> None:
    with pytest.raises(InvalidAnswerType):
        Interrupt(status="400")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": ""}, InvalidAnswer),
        ({"text": "   "}, InvalidAnswer),
        ({"text": 5}, InvalidAnswerType),
        ({"type": "success"}, InvalidAnswer),
        ({"field": "traits..email"}, InvalidAnswer),
        ({"context": ["not", "a", "mapping"]}, InvalidAnswerType),
        ({"context": {"when": object()}}, InvalidAnswerType),
        ({"context": {"nan": float("nan")}}, InvalidAnswerType),
    ],
)
def test_bad_message_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    arguments: dict[str, Any] = {"text": "No.", "id": 1, "type": "error", **kwargs}
    text = arguments.pop("text")

    with pytest.raises(error):
        Interrupt().message(text, **arguments)


@pytest.mark.parametrize("hook", [h for h in HOOK_POINTS if h.endswith(".before")])
def test_update_from_before_hook_refused(hook: Any) -> None:
    with pytest.raises(InvalidAnswer, match="crashes the Kratos request"):
        UpdateIdentity(traits={"email": "a@example.com"}, hook=hook)

    answer = UpdateIdentity(traits={"email": "a@example.com"})

    with pytest.raises(InvalidAnswer, match="crashes"):
        answer.check_hook(hook)


@pytest.mark.parametrize(
    "hook", ["login.after", "recovery.after", "verification.after"]
)
def test_update_where_ignored_warns(hook: Any) -> None:
    with pytest.warns(
        IgnoredUpdateWarning, match=f"ignores an identity update at {hook}"
    ):
        UpdateIdentity(metadata_public={"a": 1}, hook=hook)


@pytest.mark.parametrize("hook", ["registration.after", "settings.after"])
def test_update_where_saved_is_silent(hook: Any) -> None:
    # Warnings are errors in this suite, so a warning here fails the test.
    answer = UpdateIdentity(metadata_public={"a": 1}, hook=hook)
    answer.check_hook(hook)


def test_other_answers_suit_every_hook() -> None:
    for hook in HOOK_POINTS:
        NoChange().check_hook(hook)
        Interrupt().error("No.", id=1).check_hook(hook)


def test_unknown_hook_refused() -> None:
    with pytest.raises(InvalidAnswer, match="unknown hook point"):
        NoChange().check_hook("login.during")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, InvalidAnswer),
        ({"traits": ["a"]}, InvalidAnswerType),
        ({"traits": {"when": object()}}, InvalidAnswerType),
        ({"metadata_admin": "text"}, InvalidAnswerType),
        ({"state": "deleted"}, InvalidAnswer),
        ({"external_id": 5}, InvalidAnswerType),
        ({"schema_id": ""}, InvalidAnswer),
        ({"verifiable_addresses": {"value": "a", "via": "email"}}, InvalidAnswerType),
        ({"verifiable_addresses": "a@example.com"}, InvalidAnswerType),
        ({"recovery_addresses": [{"value": "a@example.com"}]}, InvalidAnswer),
        ({"recovery_addresses": [{"value": "", "via": "email"}]}, InvalidAnswer),
    ],
)
def test_bad_update_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        UpdateIdentity(**kwargs)


def test_misuse_errors_are_not_rejections() -> None:
    from kratos_webhooks import WebhookError

    assert issubclass(InvalidAnswer, ValueError)
    assert issubclass(InvalidAnswerType, TypeError)
    assert not issubclass(InvalidAnswer, WebhookError)
    assert not issubclass(InvalidAnswerType, WebhookError)


def test_no_change_answers() -> None:
    assert NoChange().to_http() == (200, b"{}")
    assert NoChange(status=204).to_http() == (204, b"")
    assert NoChange(status=204).media_type is None
    assert NoChange().media_type == "application/json"


@pytest.mark.parametrize("status", [201, 202, 400, 500, "200"])
def test_no_change_other_status_refused(status: Any) -> None:
    with pytest.raises(InvalidAnswer):
        NoChange(status=status)


def test_non_ascii_text_sent_as_utf8() -> None:
    body = Interrupt().error("Zoë is taken.", id=1).body()

    assert "Zoë".encode() in body
    assert json.loads(body)["messages"][0]["messages"][0]["text"] == "Zoë is taken."
