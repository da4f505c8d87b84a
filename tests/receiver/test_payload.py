"""The parse and validate stage: Kratos models, plain JSON, forms, traits schema."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from kratos_webhooks.config import RouteConfig, VerifyConfig
from kratos_webhooks.credentials import jsonnet_envelope, jsonnet_mac
from kratos_webhooks.errors import ConfigError, InvalidJson, InvalidPayload
from kratos_webhooks.kratos.models import RegistrationContext, context_type
from kratos_webhooks.receiver.build import build_parser
from kratos_webhooks.receiver.payload import PayloadParser, load_traits_schema

from .harness import Certificates, kratos_headers, make_certificates
from .inprocess import in_process_receiver, load

DATA = Path(__file__).parent.parent / "data" / "kratos"
HOOK_OF_SAMPLE = {
    "01-registration-before-browser.passthrough.json": "registration.before",
    "02-registration-after-password-prepersist.passthrough.json": "registration.after",
    "03-registration-after-password-postpersist.passthrough.json": "registration.after",
    "04-login-after-password-browser.passthrough.json": "login.after",
    "05-login-before-api.passthrough.json": "login.before",
    "06-settings-after-profile-postpersist-spa.passthrough.json": "settings.after",
    "07-recovery-after-code.passthrough.json": "recovery.after",
}
REGISTRATION_AFTER = "03-registration-after-password-postpersist.passthrough.json"
CUSTOM_TEMPLATES = (
    "08-verification-after-code.custom-template.json",
    "09-login-after-password.kratos-test_body-template.json",
)
FLOW = {"id": str(uuid.uuid4()), "type": "browser"}
IDENTITY = {"id": str(uuid.uuid4()), "schema_id": "default", "traits": {}}
NOT_KRATOS: list[tuple[str, Any]] = [
    ("array", []),
    ("string", "flow"),
    ("number", 42),
    ("null", None),
    ("empty object", {}),
    ("flow missing", {"identity": IDENTITY}),
    ("flow not object", {"flow": "registration"}),
    ("flow id missing", {"flow": {"type": "browser"}}),
    ("flow id not uuid", {"flow": {"id": "flow-1", "type": "browser"}}),
    ("flow type number", {"flow": {"id": FLOW["id"], "type": 5}}),
    ("identity traits missing", {"flow": FLOW, "identity": {"id": IDENTITY["id"]}}),
    ("traits not object", {"flow": FLOW, "identity": {**IDENTITY, "traits": []}}),
    ("bad timestamp", {"flow": {**FLOW, "expires_at": "tomorrow"}}),
    ("cookie not string", {"flow": FLOW, "request_cookies": {"a": 1}}),
    ("header not list", {"flow": FLOW, "request_headers": {"Accept": "*/*"}}),
    ("session id missing", {"flow": FLOW, "session": {"active": True}}),
]
NOT_JSON = [
    b"",
    b"{",
    b"not json",
    b'{"flow": }',
    b'{"a": "\xff"}',
    b"\xef\xbb\xbf{}",
    '{"flow": "é"}'.encode("latin-1"),
]
API_KEY = "payload-api-key-" + uuid.uuid4().hex
ENV = {"PAYLOAD_API_KEY": API_KEY, "PAYLOAD_MAC_KEY": "mac-" + API_KEY}
TRAITS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "name": {"type": "object"},
    },
    "required": ["email"],
}


def _sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _body(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("keep_document", [False, True])
@pytest.mark.parametrize(("name", "hook"), sorted(HOOK_OF_SAMPLE.items()))
def test_samples_fit_their_hook_model(
    name: str, hook: Any, keep_document: bool
) -> None:
    body = _sample(name)

    for point in (hook, None):
        parser = PayloadParser("kratos", hook=point, keep_document=keep_document)
        payload = parser.parse(body)

        assert isinstance(payload.context, context_type(point))
        assert payload.data is body
        assert (payload.document is not None) == keep_document


@pytest.mark.parametrize("name", CUSTOM_TEMPLATES)
def test_custom_templates_fit_json_not_kratos(name: str) -> None:
    body = _sample(name)
    payload = PayloadParser("json").parse(body)

    assert payload.document == json.loads(body)
    assert payload.context is None

    with pytest.raises(InvalidPayload):
        PayloadParser("kratos").parse(body)


@pytest.mark.parametrize("keep_document", [False, True])
@pytest.mark.parametrize(
    ("case", "document"), NOT_KRATOS, ids=[c for c, _ in NOT_KRATOS]
)
def test_not_kratos_shaped_rejected(
    case: str, document: Any, keep_document: bool
) -> None:
    parser = PayloadParser(
        "kratos", hook="registration.after", keep_document=keep_document
    )

    with pytest.raises(InvalidPayload) as caught:
        parser.parse(_body(document))

    assert caught.value.status == 422
    assert caught.value.code == "invalid_payload"


def test_minimal_context_accepted() -> None:
    payload = PayloadParser("kratos", hook="registration.after").parse(
        _body({"flow": FLOW})
    )

    assert isinstance(payload.context, RegistrationContext)
    assert payload.context.identity is None


@pytest.mark.parametrize("kind", ["kratos", "json"])
@pytest.mark.parametrize("keep_document", [False, True])
@pytest.mark.parametrize("body", NOT_JSON)
def test_not_json_rejected(kind: Any, keep_document: bool, body: bytes) -> None:
    parser = PayloadParser(kind, keep_document=keep_document)

    with pytest.raises(InvalidJson) as caught:
        parser.parse(body)

    assert caught.value.status == 400
    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize("document", [[], "x", 1, None])
def test_json_route_needs_object(document: Any) -> None:
    with pytest.raises(InvalidPayload):
        PayloadParser("json").parse(_body(document))


def test_form_payload() -> None:
    payload = PayloadParser("form").parse(b"email=alex%40example.com&flow=1")

    assert payload.document == {"email": "alex@example.com", "flow": "1"}
    assert payload.form

    with pytest.raises(InvalidJson):
        PayloadParser("form").parse(b"email=\xff")

    with pytest.raises(InvalidPayload):
        PayloadParser("form").parse(b"a=1&a=2")


def _schema_file(tmp_path: Path, schema: Any) -> str:
    path = tmp_path / "traits.schema.json"
    path.write_text(json.dumps(schema), encoding="utf-8")
    return str(path)


def test_traits_schema_checks_identity(tmp_path: Path) -> None:
    schema = load_traits_schema(_schema_file(tmp_path, TRAITS_SCHEMA))
    parser = PayloadParser("kratos", hook="registration.after", traits_schema=schema)
    sample = json.loads(_sample(REGISTRATION_AFTER))

    assert parser.parse(_body(sample)).context is not None

    sample["identity"]["traits"]["email"] = "alex.sample-at-example.com"

    with pytest.raises(InvalidPayload) as caught:
        parser.parse(_body(sample))

    assert "'format' at /email" in caught.value.message
    assert "alex.sample" not in caught.value.message

    del sample["identity"]["traits"]["email"]

    with pytest.raises(InvalidPayload, match="'required'"):
        parser.parse(_body(sample))


def test_traits_schema_skips_missing_identity(tmp_path: Path) -> None:
    schema = load_traits_schema(_schema_file(tmp_path, TRAITS_SCHEMA))
    parser = PayloadParser("kratos", hook="login.before", traits_schema=schema)
    body = _sample("05-login-before-api.passthrough.json")

    assert parser.parse(body).context is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ('{"type": 12}', "not a valid JSON Schema"),
        ('{"$schema": "x", "required": "email"}', "not a valid JSON Schema"),
    ],
)
def test_bad_traits_schema_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "schema.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match=message):
        load_traits_schema(str(path))

    with pytest.raises(ConfigError, match="cannot read"):
        load_traits_schema(str(tmp_path / "missing.json"))


def _route(**options: Any) -> RouteConfig:
    verify = VerifyConfig("kratos-api-key", ("env:X",), name="X-Key")
    return RouteConfig(
        path="/p", verify=verify, mode="sync", upstream="http://x", **options
    )


@pytest.mark.parametrize(
    ("options", "kind", "hook"),
    [
        ({}, "json", None),
        ({"handler": "tests.receiver.hook_handlers:no_change"}, "kratos", None),
        ({"hook": "login.after"}, "kratos", "login.after"),
        ({"payload": "kratos"}, "kratos", None),
        ({"payload": "json", "hook": "login.after"}, "json", "login.after"),
        ({"payload": "form"}, "form", None),
    ],
)
def test_payload_defaults(options: dict[str, Any], kind: str, hook: str | None) -> None:
    route = _route(**options)
    parser = build_parser(route)

    assert route.payload_kind == kind
    assert parser.kind == kind
    assert parser.hook == hook


def _api_headers(body: bytes, **extra: str) -> dict[str, str]:
    headers = kratos_headers(body, str(uuid.uuid4()), {"X-Api-Key": API_KEY})
    headers.update(extra)
    return headers


def _api_route(path: str, **extra: Any) -> dict[str, Any]:
    route: dict[str, Any] = {
        "path": path,
        "verify": {
            "scheme": "kratos-api-key",
            "secrets": ["env:PAYLOAD_API_KEY"],
            "name": "X-Api-Key",
        },
        "mode": "sync",
        "handler": "tests.receiver.hook_handlers:no_change",
    }
    route.update(extra)
    return route


def test_pipeline_answers_400_and_422(
    tmp_path: Path, certificates: Certificates
) -> None:
    routes = [
        _api_route("/kratos", hook="registration.after"),
        _api_route("/json", payload="json"),
        _api_route("/form", payload="form"),
    ]
    config = load(tmp_path, certificates, routes)
    sample = _sample(REGISTRATION_AFTER)

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            reply = await receiver.post("/kratos", sample, _api_headers(sample))
            assert reply.status == 200, reply.body

            for name in CUSTOM_TEMPLATES:
                body = _sample(name)
                reply = await receiver.post("/json", body, _api_headers(body))
                assert reply.status == 200, (name, reply.body)

                reply = await receiver.post("/kratos", body, _api_headers(body))
                assert reply.status == 422, name
                assert reply.code == "invalid_payload"

            for case, document in NOT_KRATOS:
                body = _body(document)
                reply = await receiver.post("/kratos", body, _api_headers(body))
                assert reply.status == 422, case
                assert reply.code == "invalid_payload"

            for body in NOT_JSON:
                reply = await receiver.post("/kratos", body, _api_headers(body))
                assert reply.status == 400, body
                assert reply.code == "invalid_json"

            form = b"email=alex%40example.com"
            form_type = {"content-type": "application/x-www-form-urlencoded"}
            reply = await receiver.post("/form", form, _api_headers(form, **form_type))
            assert reply.status == 200, reply.body

            reply = await receiver.post("/form", sample, _api_headers(sample))
            assert reply.status == 415
            assert reply.code == "unsupported_media_type"

    asyncio.run(scenario())


def test_nothing_parsed_before_verification(
    tmp_path: Path, certificates: Certificates
) -> None:
    config = load(tmp_path, certificates, [_api_route("/kratos", hook="login.after")])

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            for body in (b"not json", _body({})):
                headers = kratos_headers(body, str(uuid.uuid4()), {"X-Api-Key": "no"})
                reply = await receiver.post("/kratos", body, headers)

                assert reply.status == 401
                assert reply.code == "credential_mismatch"

    asyncio.run(scenario())


def test_jsonnet_mac_payload_checked(
    tmp_path: Path, certificates: Certificates
) -> None:
    route = _api_route("/mac", hook="settings.after")
    route["verify"] = {
        "scheme": "kratos-jsonnet-mac",
        "secrets": ["env:PAYLOAD_MAC_KEY"],
    }
    config = load(tmp_path, certificates, [route])
    sample = _sample("06-settings-after-profile-postpersist-spa.passthrough.json")

    def envelope(payload: str) -> bytes:
        mac = jsonnet_mac(ENV["PAYLOAD_MAC_KEY"], payload)
        return jsonnet_envelope(payload, mac)

    async def scenario() -> None:
        async with in_process_receiver(config) as receiver:
            body = envelope(sample.decode())
            reply = await receiver.post("/mac", body, _api_headers(body))
            assert reply.status == 200, reply.body

            body = envelope('{"flow": {}}')
            reply = await receiver.post("/mac", body, _api_headers(body))
            assert reply.status == 422
            assert reply.code == "invalid_payload"

    asyncio.run(scenario())


def _nested(depth: int) -> bytes:
    """A Kratos-shaped body whose traits nest `depth` arrays deep."""
    identity = {**IDENTITY, "traits": {"deep": "DEEP"}}
    text = _body({"flow": FLOW, "identity": identity})
    return text.replace(b'"DEEP"', b"[" * depth + b"]" * depth)


@pytest.mark.parametrize("depth", [998, 1000, 100_000])
@pytest.mark.parametrize(
    ("kind", "keep_document"),
    [("kratos", False), ("kratos", True), ("json", False)],
)
def test_deep_nesting_rejected(kind: Any, keep_document: bool, depth: int) -> None:
    parser = PayloadParser(kind, keep_document=keep_document)

    with pytest.raises(InvalidJson) as caught:
        parser.parse(_nested(depth))

    assert caught.value.status == 400
    assert caught.value.code == "invalid_json"


def test_moderate_nesting_accepted() -> None:
    payload = PayloadParser("json").parse(_nested(500))

    assert payload.document is not None


def test_deep_traits_not_recursion_error(tmp_path: Path) -> None:
    # A schema that follows every level of nesting, as a recursive one does.
    recursive = {
        "$defs": {"nested": {"type": "array", "items": {"$ref": "#/$defs/nested"}}},
        "properties": {"deep": {"$ref": "#/$defs/nested"}},
    }
    schema = load_traits_schema(_schema_file(tmp_path, recursive))
    parser = PayloadParser("kratos", traits_schema=schema)

    with pytest.raises(InvalidPayload) as caught:
        parser.parse(_nested(900))

    assert caught.value.status == 422
    assert "nested too deeply" in caught.value.message
