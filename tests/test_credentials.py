from __future__ import annotations

import base64
import hashlib
import json

import pytest

from kratos_webhooks import (
    ApiKeyCheck,
    BasicAuthCheck,
    ConfigError,
    CredentialError,
    CredentialMismatch,
    InvalidJson,
    JsonnetMacCheck,
    MalformedCredential,
    MissingCredential,
    Secret,
    jsonnet_mac,
)
from kratos_webhooks.credentials import jsonnet_envelope

CURRENT = Secret.literal("current-key-0123456789")
PREVIOUS = Secret.literal("previous-key-9876543210")


def basic(user_password: bytes) -> str:
    return "Basic " + base64.b64encode(user_password).decode()


# API key in a header.


@pytest.mark.parametrize("value", ["current-key-0123456789", "previous-key-9876543210"])
def test_api_key_header_accepts_each_active_value(value: str) -> None:
    check = ApiKeyCheck("X-Webhook-Secret", [CURRENT, PREVIOUS])

    check.verify({"x-webhook-secret": value})


def test_api_key_header_asgi_pairs() -> None:
    check = ApiKeyCheck("X-Webhook-Secret", [CURRENT])

    check.verify([(b"X-Webhook-Secret", b"current-key-0123456789")])


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, MissingCredential),
        ({"x-webhook-secret": "wrong"}, CredentialMismatch),
        ({"x-webhook-secret": ""}, CredentialMismatch),
        ({"x-webhook-secret": "current-key-012345678"}, CredentialMismatch),
        ({"x-webhook-secret": "current-key-0123456789 "}, CredentialMismatch),
        ({"x-webhook-secret": "clé"}, CredentialMismatch),
        (
            {"X-Webhook-Secret": "current-key-0123456789", "x-webhook-secret": "x"},
            MalformedCredential,
        ),
    ],
)
def test_api_key_header_refused(
    headers: dict[str, str], error: type[CredentialError]
) -> None:
    check = ApiKeyCheck("X-Webhook-Secret", [CURRENT, PREVIOUS])

    with pytest.raises(error) as caught:
        check.verify(headers)

    assert type(caught.value) is error
    assert caught.value.status == 401


def test_api_key_non_ascii_header_bytes_refused() -> None:
    check = ApiKeyCheck("X-Webhook-Secret", [CURRENT])

    with pytest.raises(MalformedCredential):
        check.verify([(b"x-webhook-secret", b"\xff\xfe")])


# API key in a cookie.


@pytest.mark.parametrize(
    "cookie",
    [
        "kratos_hook=current-key-0123456789",
        "a=1; kratos_hook=previous-key-9876543210; b=2",
        'kratos_hook="current-key-0123456789"',
        "  kratos_hook=current-key-0123456789;",
    ],
)
def test_api_key_cookie_accepted(cookie: str) -> None:
    check = ApiKeyCheck("kratos_hook", [CURRENT, PREVIOUS], location="cookie")

    check.verify({"cookie": cookie})


@pytest.mark.parametrize(
    ("cookie", "error"),
    [
        (None, MissingCredential),
        ("other=1", MissingCredential),
        ("kratos_hook=wrong", CredentialMismatch),
        ("kratos_hook", MalformedCredential),
        ("=value", MalformedCredential),
        ("kratos hook=current-key-0123456789", MalformedCredential),
        ("kratos_hook=a; kratos_hook=current-key-0123456789", MalformedCredential),
        (";;;", MissingCredential),
    ],
)
def test_api_key_cookie_refused(
    cookie: str | None, error: type[CredentialError]
) -> None:
    check = ApiKeyCheck("kratos_hook", [CURRENT], location="cookie")
    headers = {} if cookie is None else {"Cookie": cookie}

    with pytest.raises(error) as caught:
        check.verify(headers)

    assert type(caught.value) is error


def test_api_key_config_errors() -> None:
    with pytest.raises(ConfigError):
        ApiKeyCheck("bad name", [CURRENT])

    with pytest.raises(ConfigError):
        ApiKeyCheck("X-Key", [])

    with pytest.raises(ConfigError):
        ApiKeyCheck("X-Key", [CURRENT], location="query")  # type: ignore[arg-type]

    with pytest.raises(TypeError):
        ApiKeyCheck("X-Key", ["plain string"])  # type: ignore[list-item]


def test_api_key_repr_hides_values() -> None:
    check = ApiKeyCheck("X-Webhook-Secret", [CURRENT])

    assert "current-key" not in repr(check)


# HTTP Basic.

BASIC = BasicAuthCheck(
    [Secret.literal("kratos:pa55word"), Secret.literal("kratos:n3w-pässword")]
)


@pytest.mark.parametrize(
    "header",
    [
        basic(b"kratos:pa55word"),
        basic("kratos:n3w-pässword".encode()),
        "basic " + base64.b64encode(b"kratos:pa55word").decode(),
    ],
)
def test_basic_accepted(header: str) -> None:
    BASIC.verify({"Authorization": header})


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, MissingCredential),
        (basic(b"kratos:wrong"), CredentialMismatch),
        (basic(b"other:pa55word"), CredentialMismatch),
        ("Bearer abc", MalformedCredential),
        ("Basic", MalformedCredential),
        ("Basic !!!not-base64!!!", MalformedCredential),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), MalformedCredential),
        ("Basic " + base64.b64encode(b"no-colon").decode(), MalformedCredential),
        ("Basic a", MalformedCredential),
    ],
)
def test_basic_refused(header: str | None, error: type[CredentialError]) -> None:
    headers = {} if header is None else {"authorization": header}

    with pytest.raises(error) as caught:
        BASIC.verify(headers)

    assert type(caught.value) is error


def test_basic_secret_needs_colon() -> None:
    with pytest.raises(ConfigError, match="user:password"):
        BasicAuthCheck([Secret.literal("no-colon")])


# The Jsonnet body MAC.

MAC_SECRET = Secret.literal("jsonnet-mac-secret-0123456789")


def envelope(payload: str, secret: str = MAC_SECRET.reveal()) -> bytes:
    mac = hashlib.sha3_512((secret + payload).encode()).hexdigest()
    return jsonnet_envelope(payload, mac)


def test_jsonnet_mac_matches_sha3_512() -> None:
    payload = '{"flow":{"id":"x"},"name":"Zoë"}'
    expected = hashlib.sha3_512(b"s" + payload.encode("utf-8")).hexdigest()

    assert jsonnet_mac("s", payload) == expected


def test_jsonnet_mac_accepted_returns_exact_payload() -> None:
    payload = '{"b":1,"a":"Zoë \\u00e9","f":3.1415199999999999}'
    check = JsonnetMacCheck([Secret.literal("old-secret-0000"), MAC_SECRET])

    assert check.verify_body(envelope(payload)) == payload


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", InvalidJson),
        (b"\xff\xfe", InvalidJson),
        (b"[]", MalformedCredential),
        (b'{"payload": "x"}', MalformedCredential),
        (b'{"payload": "x", "mac": "00", "extra": 1}', MalformedCredential),
        (b'{"payload": 1, "mac": "' + b"0" * 128 + b'"}', MalformedCredential),
        (b'{"payload": "x", "mac": "' + b"A" * 128 + b'"}', MalformedCredential),
        (b'{"payload": "\\ud800", "mac": "' + b"0" * 128 + b'"}', MalformedCredential),
        (b'{"payload": "x", "mac": "' + b"0" * 128 + b'"}', CredentialMismatch),
    ],
)
def test_jsonnet_mac_refused(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        JsonnetMacCheck([MAC_SECRET]).verify_body(body)

    assert type(caught.value) is error


def test_jsonnet_mac_wrong_secret() -> None:
    with pytest.raises(CredentialMismatch):
        JsonnetMacCheck([MAC_SECRET]).verify_body(envelope("{}", secret="other"))


def test_jsonnet_mac_any_changed_byte_fails() -> None:
    body = envelope('{"identity":{"traits":{"email":"a@example.com"}}}')
    check = JsonnetMacCheck([MAC_SECRET])

    for index in range(len(body)):
        changed = bytearray(body)
        changed[index] ^= 0x01

        with pytest.raises((CredentialError, InvalidJson)):
            check.verify_body(bytes(changed))


def test_jsonnet_mac_refuses_str_body() -> None:
    with pytest.raises(TypeError):
        JsonnetMacCheck([MAC_SECRET]).verify_body("{}")  # type: ignore[arg-type]


def test_jsonnet_envelope_matches_go_jsonnet() -> None:
    gojsonnet = pytest.importorskip("_gojsonnet")
    payload = 'q" b\\ \n\r\t\b\f \x00\x1f\x7f\x85\x9f\xa0 é \u2028 \U0001f600 / < &'
    rendered = gojsonnet.evaluate_snippet(
        "envelope",
        "function(p) {payload: p, mac: 'ab'}",
        tla_codes={"p": json.dumps(payload)},
    )

    assert jsonnet_envelope(payload, "ab") == rendered.encode()


def test_jsonnet_mac_whitespace_change_refused() -> None:
    body = envelope('{"identity":{"traits":{"email":"a@example.com"}}}')
    check = JsonnetMacCheck([MAC_SECRET])
    whitespace = [i for i, byte in enumerate(body) if byte in b" \n"]

    for index in whitespace:
        for replacement in (b"\t", b"\r", b" ", b"\n"):
            if body[index : index + 1] == replacement:
                continue

            changed = body[:index] + replacement + body[index + 1 :]

            with pytest.raises((CredentialError, InvalidJson)):
                check.verify_body(changed)


def test_jsonnet_mac_compact_layout() -> None:
    payload = '{"flow":{"id":"x"}}'
    mac = hashlib.sha3_512((MAC_SECRET.reveal() + payload).encode()).hexdigest()
    compact = json.dumps({"payload": payload, "mac": mac}).encode()

    with pytest.raises(MalformedCredential, match="laid out"):
        JsonnetMacCheck([MAC_SECRET]).verify_body(compact)

    loose = JsonnetMacCheck([MAC_SECRET], exact_layout=False)

    assert loose.verify_body(compact) == payload
