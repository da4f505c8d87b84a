"""Redaction: no cookie, CSRF token or chosen field survives into logs or upstreams."""

from __future__ import annotations

import copy
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from kratos_webhooks import ConfigError, InvalidJson, WebhookError
from kratos_webhooks.hooks import HookRegistry
from kratos_webhooks.kratos.models import decode_context
from kratos_webhooks.kratos.redaction import (
    REDACTED,
    Redactor,
    parse_pointer,
    redact_body,
    redact_payload,
    redacted_json,
)

PHONE = "+1-555-0100-7788"
LEGACY_HEADERS = {
    "Cookie": ["ory_kratos_session=LEGACYcookieSECRET; other=1"],
    "authorization": ["Bearer LEGACYbearerSECRET"],
    "X-Session-Token": ["LEGACYsessionTokenSECRET"],
}


def _secrets_in(document: dict[str, Any]) -> list[str]:
    """Collect every value that must never leave: cookies, CSRF nodes, old headers."""
    found = list(document.get("request_cookies", {}).values())
    nodes = document.get("flow", {}).get("ui", {}).get("nodes", [])

    for node in nodes:
        attributes = node.get("attributes", {})

        if attributes.get("name") == "csrf_token":
            found.append(attributes["value"])

    for name, values in document.get("request_headers", {}).items():
        if name.lower() in ("cookie", "authorization", "x-session-token"):
            found += values

    return [value for value in found if value]


def _with_legacy_headers_and_phone(document: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    changed["request_headers"].update(LEGACY_HEADERS)

    if "identity" in changed:
        changed["identity"]["traits"]["phone"] = PHONE

    return changed


@pytest.fixture(scope="module")
def documents(kratos_samples: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {
        name: _with_legacy_headers_and_phone(json.loads(body))
        for name, body in kratos_samples.items()
        if "passthrough" in name
    }


def test_samples_hold_secrets(documents: dict[str, dict[str, Any]]) -> None:
    # Guards the tests below: each sample must have something to hide.
    for name, document in documents.items():
        assert len(_secrets_in(document)) >= 3, name

    settings = documents["06-settings-after-profile-postpersist-spa.passthrough.json"]
    assert "ory_kratos_session" in settings["request_cookies"]


def test_every_secret_redacted(documents: dict[str, dict[str, Any]]) -> None:
    for name, document in documents.items():
        secrets = _secrets_in(document)
        text = json.dumps(redact_payload(document, ["/identity/traits/phone"]))

        for secret in secrets:
            assert secret not in text, name

        assert PHONE not in text, name
        assert REDACTED in text


def test_structure_kept(documents: dict[str, dict[str, Any]]) -> None:
    document = documents["06-settings-after-profile-postpersist-spa.passthrough.json"]
    redacted = redact_payload(document)

    assert set(redacted["request_cookies"]) == set(document["request_cookies"])
    assert redacted["request_headers"]["Cookie"] == [REDACTED]
    assert redacted["request_headers"]["authorization"] == [REDACTED]
    assert redacted["request_headers"]["X-Session-Token"] == [REDACTED]
    assert (
        redacted["request_headers"]["User-Agent"]
        == document["request_headers"]["User-Agent"]
    )
    assert redacted["identity"]["traits"] == document["identity"]["traits"]


def test_input_unchanged(documents: dict[str, dict[str, Any]]) -> None:
    document = documents["04-login-after-password-browser.passthrough.json"]
    before = copy.deepcopy(document)
    redact_payload(document, ["/identity/traits/email"])

    assert document == before


def test_session_tokens_redacted() -> None:
    document = {
        "flow": {"session_token_exchange_code": "EXCHANGEsecret"},
        "session": {"tokenized": "eyJTOKENIZEDsecret"},
    }
    text = json.dumps(redact_payload(document))

    assert "EXCHANGEsecret" not in text
    assert "TOKENIZEDsecret" not in text


def test_custom_template_cookies_redacted(kratos_samples: dict[str, bytes]) -> None:
    body = kratos_samples["09-login-after-password.kratos-test_body-template.json"]
    cookie = next(iter(json.loads(body)["cookies"].values()))

    assert cookie.encode() in body
    assert cookie not in json.dumps(redact_payload(json.loads(body)))


def test_session_cookie_key_anywhere() -> None:
    document = {
        "custom": {"ory_kratos_session": "S1", "list": [{"csrf_token_ab": "C1"}]}
    }
    document["custom"]["ory_session_myproject"] = "S2"
    text = json.dumps(redact_payload(document))

    for secret in ("S1", "S2", "C1"):
        assert f'"{secret}"' not in text


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("/identity/traits/phone", ("identity", "traits", "phone")),
        ("/a~1b/c~0d", ("a/b", "c~d")),
        ("/list/0", ("list", "0")),
        ("/", ("",)),
    ],
)
def test_pointer_parsed(pointer: str, expected: tuple[str, ...]) -> None:
    assert parse_pointer(pointer) == expected


@pytest.mark.parametrize("pointer", ["", "identity/traits", "#/identity", None])
def test_bad_pointer_refused(pointer: Any) -> None:
    with pytest.raises(ConfigError, match="JSON pointer"):
        Redactor([pointer])


def test_pointer_wildcards_and_indexes() -> None:
    document = {
        "identity": {
            "verifiable_addresses": [{"value": "a@x"}, {"value": "b@x"}],
            "traits": {"a/b": "slash", "keep": "k"},
        },
        "list": ["first", "second"],
    }
    redacted = redact_payload(
        document,
        [
            "/identity/verifiable_addresses/*/value",
            "/identity/traits/a~1b",
            "/list/1",
            "/absent/x",
        ],
    )

    assert [a["value"] for a in redacted["identity"]["verifiable_addresses"]] == [
        REDACTED
    ] * 2
    assert redacted["identity"]["traits"] == {"a/b": REDACTED, "keep": "k"}
    assert redacted["list"] == ["first", REDACTED]
    assert "absent" not in redacted


def test_body_redacted_for_upstream(kratos_samples: dict[str, bytes]) -> None:
    body = kratos_samples["06-settings-after-profile-postpersist-spa.passthrough.json"]
    secrets = _secrets_in(json.loads(body))
    redacted = redact_body(body, ["/identity/traits/email"])

    for secret in secrets:
        assert secret.encode() not in redacted

    assert json.loads(redacted)["identity"]["traits"]["email"] == REDACTED
    assert json.loads(redacted)["flow"]["id"] == json.loads(body)["flow"]["id"]


def test_form_body_redacted() -> None:
    body = b"csrf_token_ab=C1&email=a%40example.com&ory_kratos_session=S1&phone=555"
    redacted = redact_body(body, ["/phone"], form=True)
    fields = dict(parse_qsl(redacted.decode()))

    assert fields == {
        "csrf_token_ab": REDACTED,
        "email": "a@example.com",
        "ory_kratos_session": REDACTED,
        "phone": REDACTED,
    }


def test_jsonnet_envelope_redacted() -> None:
    inner = {"request_cookies": {"ory_kratos_session": "ENVELOPEsecret"}, "flow": {}}
    envelope = {"payload": json.dumps(inner), "mac": "ab" * 64}
    redacted = json.loads(redact_body(json.dumps(envelope).encode()))

    assert "ENVELOPEsecret" not in redacted["payload"]
    assert (
        json.loads(redacted["payload"])["request_cookies"]["ory_kratos_session"]
        == REDACTED
    )


def test_invalid_body_rejected() -> None:
    with pytest.raises(InvalidJson):
        redact_body(b"{not json")


def test_log_lines_hold_no_secret(
    kratos_samples: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(
        _with_legacy_headers_and_phone(
            json.loads(
                kratos_samples[
                    "06-settings-after-profile-postpersist-spa.passthrough.json"
                ]
            )
        )
    ).encode()
    secrets = _secrets_in(json.loads(body))
    hooks = HookRegistry(redact=["/identity/traits/phone"])

    @hooks.on("settings.after")
    def on_settings(event: Any) -> None:
        return None

    event = hooks.handler("settings.after").event(body, delivery_id="msg_1")
    logger = logging.getLogger("tests.redaction")

    with caplog.at_level(logging.DEBUG, logger="tests.redaction"):
        logger.info("event %r", event)
        logger.info("event %s", event)
        logger.info("payload %r", event.payload)
        logger.info("context %s", decode_context(body, "settings.after"))
        logger.info("json %s", redacted_json(event.payload, ["/identity/traits/phone"]))

    assert len(caplog.records) == 5
    text = caplog.text

    for secret in secrets:
        assert secret not in text

    assert "msg_1" in text
    assert PHONE not in text.split("payload ")[0]
    assert PHONE not in text.split("json ")[1]
    assert "settings.after" in text


class _RecordingUpstream(http.server.BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []
    handler = type("Upstream", (_RecordingUpstream,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/kratos", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_upstream_receives_redacted_body(
    kratos_samples: dict[str, bytes], upstream: tuple[str, list[bytes]]
) -> None:
    url, received = upstream
    redactor = Redactor(["/identity/traits/email"])

    for name, body in kratos_samples.items():
        if "passthrough" not in name:
            continue

        response = httpx.post(
            url,
            content=redactor.redact_body(body),
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert response.status_code == 204

        secrets = _secrets_in(json.loads(body))
        assert received[-1]
        assert (
            json.loads(received[-1])["request_url"] == json.loads(body)["request_url"]
        )

        for secret in secrets:
            assert secret.encode() not in received[-1], name

        if b'"identity"' in body:
            forwarded = json.loads(received[-1])
            assert forwarded["identity"]["traits"]["email"] == REDACTED

    assert len(received) == 7


def test_moderately_deep_body_redacted() -> None:
    body = b'{"a": ' + b"[" * 400 + b"]" * 400 + b"}"

    assert json.loads(Redactor().redact_body(body)) == json.loads(body)


@pytest.mark.parametrize("depth", [900, 5000])
def test_deep_body_rejected_not_recursion_error(depth: int) -> None:
    body = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"

    with pytest.raises(WebhookError) as caught:
        Redactor().redact_body(body)

    assert caught.value.status in (400, 422)
    assert "nested too deeply" in caught.value.message
