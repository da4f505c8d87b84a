"""Generated Kratos templates, rendered by go-jsonnet exactly as Kratos runs them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import _gojsonnet
import pytest

from kratos_webhooks import JsonnetMacCheck, Secret
from kratos_webhooks.errors import InvalidJson, VerificationError
from kratos_webhooks.kratos.templates import (
    PASSTHROUGH_TEMPLATE,
    HookPoint,
    base64_uri,
    fill_placeholder,
    kratos_env_variable,
    kratos_hooks,
    mac_template,
    parse_hook_point,
    placeholder,
    web_hook_entry,
)

SAMPLES = Path(__file__).parent.parent / "data" / "kratos"
PASSTHROUGH_SAMPLES = sorted(SAMPLES.glob("*.passthrough.json"))
MAC_ENV = "KRATOS_WEBHOOKS_MAC_SECRET"
MAC_SECRET = "whsec_Zm9yIHRoZSBKc29ubmV0IE1BQyB0ZXN0cyBvbmx5+/="
# Bytes JSON allows between tokens; swapping one for another changes nothing
# that the MAC covers.
JSON_WHITESPACE = frozenset(b" \t\n\r")


def kratos_ctx(sample: Path) -> str:
    """Encode a ctx as Kratos does: Go's json.Encoder without HTML escaping."""
    return json.dumps(
        json.loads(sample.read_bytes()), ensure_ascii=False, separators=(",", ":")
    )


def render(template: str, ctx: str) -> bytes:
    """Evaluate a template as Kratos does: ctx is a top-level code argument."""
    output = _gojsonnet.evaluate_snippet(
        "body.jsonnet", template, tla_codes={"ctx": ctx}
    )
    return str(output).encode("utf-8")


@pytest.mark.parametrize("sample", PASSTHROUGH_SAMPLES, ids=lambda p: p.name)
def test_passthrough_reproduces_sample(sample: Path) -> None:
    assert render(PASSTHROUGH_TEMPLATE, kratos_ctx(sample)) == sample.read_bytes()


def test_passthrough_base64_uri_decodes() -> None:
    uri = base64_uri(PASSTHROUGH_TEMPLATE)

    assert uri.startswith("base64://")
    assert (
        base64.b64decode(uri.removeprefix("base64://")) == PASSTHROUGH_TEMPLATE.encode()
    )


def mac_body(sample: Path) -> bytes:
    template = fill_placeholder(mac_template(MAC_ENV), MAC_ENV, MAC_SECRET)
    return render(template, kratos_ctx(sample))


@pytest.mark.parametrize("sample", PASSTHROUGH_SAMPLES, ids=lambda p: p.name)
def test_mac_template_verifies(sample: Path) -> None:
    body = mac_body(sample)
    payload = JsonnetMacCheck([Secret.literal(MAC_SECRET)]).verify_body(body)

    assert json.loads(payload) == json.loads(sample.read_bytes())
    assert payload == kratos_ctx(sample)


@pytest.mark.parametrize("sample", PASSTHROUGH_SAMPLES, ids=lambda p: p.name)
def test_mac_body_keeps_kratos_format(sample: Path) -> None:
    text = mac_body(sample).decode("utf-8")
    document = json.loads(text)

    assert text.startswith('{\n   "mac": "')
    assert '",\n   "payload": "' in text
    assert text.endswith('"\n}\n')
    assert list(document) == ["mac", "payload"]
    assert len(document["mac"]) == 128


def test_mac_rejects_wrong_secret() -> None:
    body = mac_body(PASSTHROUGH_SAMPLES[0])

    with pytest.raises(VerificationError):
        JsonnetMacCheck([Secret.literal(MAC_SECRET + "x")]).verify_body(body)


def _is_rejected(check: JsonnetMacCheck, body: bytes) -> bool:
    try:
        check.verify_body(body)
    except (VerificationError, InvalidJson):
        return True

    return False


@pytest.mark.parametrize("sample", PASSTHROUGH_SAMPLES[:3], ids=lambda p: p.name)
def test_mac_rejects_every_changed_byte(sample: Path) -> None:
    body = mac_body(sample)
    check = JsonnetMacCheck([Secret.literal(MAC_SECRET)])
    accepted = []

    for index, byte in enumerate(body):
        for replacement in (byte ^ 0x01, byte ^ 0x20, byte ^ 0x80):
            changed = body[:index] + bytes([replacement]) + body[index + 1 :]

            if not _is_rejected(check, changed):
                accepted.append((index, byte, replacement))

        if not _is_rejected(check, body[:index] + body[index + 1 :]):
            accepted.append((index, byte, None))

    # Only whitespace between JSON tokens can change without a rejection, and
    # then the payload and MAC that were verified are the same.
    for index, byte, replacement in accepted:
        assert byte in JSON_WHITESPACE, (index, byte, replacement)
        assert replacement is None or replacement in JSON_WHITESPACE

    assert len(accepted) < 20


def test_fill_placeholder_rejects_line_break() -> None:
    with pytest.raises(ValueError, match="line break"):
        fill_placeholder(mac_template(MAC_ENV), MAC_ENV, "abc\ndef")


def test_fill_placeholder_needs_placeholder() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        fill_placeholder(PASSTHROUGH_TEMPLATE, MAC_ENV, "secret")


def test_mac_template_holds_no_secret() -> None:
    template = mac_template(MAC_ENV)

    assert placeholder(MAC_ENV) in template
    assert template.count(placeholder(MAC_ENV)) == 1


@pytest.mark.parametrize("name", ["lower", "1ABC", "A-B", "", "A B"])
def test_placeholder_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="environment variable"):
        placeholder(name)


@pytest.mark.parametrize(
    ("text", "flow", "stage", "method", "mode"),
    [
        ("registration.before", "registration", "before", None, "sync"),
        ("registration.after", "registration", "after", None, "sync"),
        ("registration.after.password", "registration", "after", "password", "sync"),
        ("registration.after.oidc:async", "registration", "after", "oidc", "async"),
        ("login.after", "login", "after", None, "async"),
        ("login.after.totp:sync", "login", "after", "totp", "sync"),
        ("settings.after.profile", "settings", "after", "profile", "sync"),
        ("recovery.after", "recovery", "after", None, "async"),
        ("verification.before", "verification", "before", None, "sync"),
    ],
)
def test_parse_hook_point(
    text: str, flow: str, stage: str, method: str | None, mode: str
) -> None:
    point = parse_hook_point(text)

    assert point == HookPoint(flow, stage, method, mode)  # type: ignore[arg-type]
    assert point.name == text.partition(":")[0]


@pytest.mark.parametrize(
    "text",
    [
        "signup.after",
        "registration.during",
        "registration.after.magic",
        "registration.before.password",
        "recovery.after.code",
        "login.after:later",
        "login",
        "login.after.password.extra",
    ],
)
def test_parse_hook_point_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"login|registration|signup|recovery"):
        parse_hook_point(text)


def test_hook_point_paths_and_keys() -> None:
    point = parse_hook_point("registration.after.password")

    assert point.path == "/kratos/registration/after/password"
    assert point.config_keys == (
        "selfservice",
        "flows",
        "registration",
        "after",
        "password",
        "hooks",
    )
    assert kratos_env_variable(point) == (
        "SELFSERVICE_FLOWS_REGISTRATION_AFTER_PASSWORD_HOOKS"
    )


def test_web_hook_entry_modes() -> None:
    sync = web_hook_entry(
        parse_hook_point("registration.after:sync"), url="u", body="b", auth=None
    )
    background = web_hook_entry(
        parse_hook_point("login.after:async"), url="u", body="b", auth=None
    )

    assert sync == {
        "hook": "web_hook",
        "config": {
            "url": "u",
            "method": "POST",
            "body": "b",
            "response": {"parse": True},
        },
    }
    assert background["config"]["response"] == {"ignore": True}
    assert "auth" not in background["config"]


def test_kratos_hooks_nesting() -> None:
    first = parse_hook_point("login.after")
    second = parse_hook_point("login.after.password")
    document = kratos_hooks([(first, {"n": 1}), (second, {"n": 2}), (first, {"n": 3})])
    login = document["selfservice"]["flows"]["login"]["after"]

    assert login["hooks"] == [{"n": 1}, {"n": 3}]
    assert login["password"]["hooks"] == [{"n": 2}]
