"""Signed requests to the example applications, and what each must answer.

Every framework test sends the same cases, through the framework's own test
client and through a real server on loopback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kratos_webhooks import HmacKey, KeySet, Signer, jsonnet_mac
from kratos_webhooks.credentials import jsonnet_envelope

SAMPLES = Path(__file__).parent.parent / "data" / "kratos"
EXAMPLES = Path(__file__).parent.parent.parent / "examples" / "handlers"

SIGNING_KEY = HmacKey.generate()
API_KEY = "api-key-for-tests-0123456789"
BASIC = "kratos:basic-password-for-tests"
MAC_SECRET = "mac-secret-for-tests-0123456789"
ENVIRONMENT = {
    "KRATOS_WEBHOOKS_SECRET": SIGNING_KEY.encode(),
    "KRATOS_WEBHOOKS_API_KEY": API_KEY,
    "KRATOS_WEBHOOKS_BASIC": BASIC,
    "KRATOS_WEBHOOKS_MAC_SECRET": MAC_SECRET,
}
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

Response = tuple[int, bytes, dict[str, str]]
Send = Callable[[str, bytes, dict[str, str]], Response]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def standard_webhooks(body: bytes, content_type: str = JSON) -> dict[str, str]:
    headers = Signer(KeySet.of(SIGNING_KEY)).sign(body)
    headers["Content-Type"] = content_type
    return headers


def api_key(value: str = API_KEY) -> dict[str, str]:
    return {
        "X-Webhook-Secret": value,
        "Content-Type": JSON,
        "Ory-Webhook-Trigger-Id": "0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f",
    }


def basic(credential: str = BASIC) -> dict[str, str]:
    token = base64.b64encode(credential.encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": JSON}


def mac_envelope(payload: bytes, secret: str = MAC_SECRET) -> bytes:
    text = payload.decode()
    return jsonnet_envelope(text, jsonnet_mac(secret, text))


def tamper(body: bytes) -> bytes:
    """Change one character of the body, keeping it valid JSON."""
    index = body.index(b"example.com")
    return body[:index] + b"exbmple.com" + body[index + len(b"example.com") :]


@dataclass
class Case:
    name: str
    path: str
    body: bytes
    headers: dict[str, str]
    status: int
    check: Callable[[bytes], None] = field(default=lambda body: None)


def _json_equals(expected: Any) -> Callable[[bytes], None]:
    def check(body: bytes) -> None:
        assert json.loads(body) == expected

    return check


def _empty(body: bytes) -> None:
    assert body == b""


def _error(code: str) -> Callable[[bytes], None]:
    def check(body: bytes) -> None:
        document = json.loads(body)
        assert set(document) == {"error"}
        assert document["error"]["code"] == code
        assert document["error"]["message"]

    return check


def accepted_cases() -> list[Case]:
    """Every sample, signed as its route expects, with the answer it must get."""
    registration = sample("02-registration-after-password-prepersist.passthrough.json")
    postpersist = sample("03-registration-after-password-postpersist.passthrough.json")
    login = sample("04-login-after-password-browser.passthrough.json")
    settings = sample("06-settings-after-profile-postpersist-spa.passthrough.json")
    digest = sample("08-verification-after-code.custom-template.json")
    settings_flow = json.loads(settings)["flow"]["id"]
    stored_email = {
        "identity": {"metadata_public": {"email": "alex.sample@example.com"}}
    }

    cases = [
        Case(
            "registration",
            "/hooks/registration",
            registration,
            standard_webhooks(registration),
            200,
            _json_equals(stored_email),
        ),
        Case(
            "registration-postpersist",
            "/hooks/registration",
            postpersist,
            standard_webhooks(postpersist),
            200,
            _json_equals(stored_email),
        ),
        Case("login-api-key", "/hooks/login", login, api_key(), 200, _json_equals({})),
        Case(
            "settings-basic",
            "/hooks/settings",
            settings,
            basic(),
            200,
            _json_equals(
                {"identity": {"metadata_public": {"last_settings_flow": settings_flow}}}
            ),
        ),
        Case(
            "verification-mac",
            "/hooks/verification",
            mac_envelope(digest),
            {"Content-Type": JSON},
            204,
            _empty,
        ),
    ]

    for path in sorted(SAMPLES.glob("0*.json")):
        body = path.read_bytes()
        cases.append(
            Case(
                f"audit-{path.name[:2]}",
                "/hooks/audit",
                body,
                standard_webhooks(body),
                204,
                _empty,
            )
        )

    return cases


def rejected_cases() -> list[Case]:
    """Each accepted case once tampered: the body, or the credential where the
    scheme does not cover the body."""
    cases = []

    for case in accepted_cases():
        if case.path == "/hooks/login":
            cases.append(
                Case(
                    f"{case.name}-tampered",
                    case.path,
                    case.body,
                    api_key("wrong-api-key"),
                    401,
                    _error("credential_mismatch"),
                )
            )
        elif case.path == "/hooks/settings":
            cases.append(
                Case(
                    f"{case.name}-tampered",
                    case.path,
                    case.body,
                    basic("kratos:wrong"),
                    401,
                    _error("credential_mismatch"),
                )
            )
        elif case.path == "/hooks/verification":
            envelope = json.loads(case.body)
            envelope["payload"] = envelope["payload"].replace("alex", "mallory")
            cases.append(
                Case(
                    f"{case.name}-tampered",
                    case.path,
                    json.dumps(envelope).encode(),
                    case.headers,
                    401,
                    _error("credential_mismatch"),
                )
            )
        else:
            cases.append(
                Case(
                    f"{case.name}-tampered",
                    case.path,
                    tamper(case.body),
                    case.headers,
                    401,
                    _error("signature_mismatch"),
                )
            )

    registration = sample("02-registration-after-password-prepersist.passthrough.json")
    cases.append(
        Case(
            "unsigned",
            "/hooks/registration",
            registration,
            {"Content-Type": JSON},
            401,
            _error("missing_header"),
        )
    )
    return cases


def encoding_cases() -> list[Case]:
    """Form bodies and lying charset labels: bodies decode as Kratos sent them."""
    registration = sample("02-registration-after-password-prepersist.passthrough.json")
    non_ascii = registration.replace(b"alex.sample@", "zoë.sample@".encode())
    allowed = b"email=zo%C3%AB%40example.com&flow_id=6f1d2c3b"
    blocked = b"email=zo%C3%AB%40blocked.example.com&flow_id=6f1d2c3b"
    stored = {"identity": {"metadata_public": {"email": "zoë@example.com"}}}
    stored_json = {"identity": {"metadata_public": {"email": "zoë.sample@example.com"}}}
    interrupt = {
        "messages": [
            {
                "instance_ptr": "#/traits/email",
                "messages": [
                    {
                        "id": 4000001,
                        "text": "Sign-ups from this e-mail domain are not allowed.",
                        "type": "error",
                    }
                ],
            }
        ]
    }
    cases = [
        Case(
            f"json-charset-{label}",
            "/hooks/registration",
            non_ascii,
            standard_webhooks(non_ascii, f"{JSON}; charset={label}"),
            200,
            _json_equals(stored_json),
        )
        for label in ("iso-8859-1", "utf-16", "us-ascii")
    ]
    cases += [
        Case(
            "form",
            "/hooks/registration",
            allowed,
            standard_webhooks(allowed, FORM),
            200,
            _json_equals(stored),
        ),
        Case(
            "form-charset-latin1",
            "/hooks/registration",
            allowed,
            standard_webhooks(allowed, f"{FORM}; charset=iso-8859-1"),
            200,
            _json_equals(stored),
        ),
        Case(
            "form-interrupt",
            "/hooks/registration",
            blocked,
            standard_webhooks(blocked, FORM),
            422,
            _json_equals(interrupt),
        ),
        Case(
            "form-tampered",
            "/hooks/registration",
            blocked.replace(b"blocked.", b""),
            standard_webhooks(blocked, FORM),
            401,
            _error("signature_mismatch"),
        ),
        Case(
            "other-media-type",
            "/hooks/registration",
            registration,
            standard_webhooks(registration, "text/plain"),
            415,
            _error("unsupported_media_type"),
        ),
        Case(
            "gzip",
            "/hooks/registration",
            registration,
            {**standard_webhooks(registration), "Content-Encoding": "gzip"},
            415,
            _error("unsupported_encoding"),
        ),
    ]
    return cases


def all_cases() -> list[Case]:
    return accepted_cases() + rejected_cases() + encoding_cases()


def run_cases(send: Send, cases: list[Case] | None = None) -> int:
    """Send each case and check its answer; return how many were sent."""
    cases = all_cases() if cases is None else cases

    for case in cases:
        status, body, headers = send(case.path, case.body, case.headers)
        assert status == case.status, (case.name, status, body[:200])
        case.check(body)

        if status == 204:
            assert "content-type" not in headers, case.name

        if status >= 400 and status != 422:
            assert headers.get("content-type", "").startswith(JSON), case.name

    return len(cases)
