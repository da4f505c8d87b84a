"""No secret, signature, cookie, token, credential or body fragment in any log.

Every sample goes through the in-process pipeline on every kind of route,
accepted and rejected, with logging configured as `serve` configures it.
Each log record is then searched: its message, its structlog event dict and
the JSON line it renders to.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from kratos_webhooks import HmacKey, KeySet, Signer
from kratos_webhooks.observability.logging import configure_logging

from .harness import (
    Certificates,
    Upstream,
    kratos_headers,
    make_certificates,
    running_upstream,
)
from .inprocess import in_process_receiver, load

DATA = Path(__file__).parent.parent / "data" / "kratos"
SW_KEY = HmacKey.generate()
UPSTREAM_KEY = HmacKey.generate()
API_KEY = "log-api-key-" + uuid.uuid4().hex
BASIC = ("kratos", "log-password-" + uuid.uuid4().hex)
ENV = {
    "LOG_SW_SECRET": SW_KEY.encode(),
    "LOG_UPSTREAM_SECRET": UPSTREAM_KEY.encode(),
    "LOG_API_KEY": API_KEY,
    "LOG_BASIC": ":".join(BASIC),
}
INTERRUPT = (DATA / "response-400-interrupt-with-messages.json").read_bytes()
FAKE_TOKEN = re.compile(r"FAKE[\w+/=.-]*")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NIL_UUID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def rendered(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Configure logging as `serve` does, keeping caplog's handler on the root."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging("debug", stream)
    root.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)

    try:
        yield stream
    finally:
        root.handlers, level = saved
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _samples() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(DATA.glob("0*.json"))}


def _verify(scheme: str) -> dict[str, Any]:
    if scheme == "standard-webhooks":
        return {"scheme": scheme, "secrets": ["env:LOG_SW_SECRET"]}

    if scheme == "kratos-basic":
        return {"scheme": scheme, "secrets": ["env:LOG_BASIC"]}

    return {"scheme": scheme, "secrets": ["env:LOG_API_KEY"], "name": "X-Api-Key"}


def _routes(upstream: Upstream) -> list[dict[str, Any]]:
    def route(path: str, scheme: str, mode: str, **extra: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": path, "verify": _verify(scheme), "mode": mode}

        if "handler" not in extra:
            entry["upstream"] = upstream.url("/up" + path)
            entry["upstream_secrets"] = ["env:LOG_UPSTREAM_SECRET"]

        entry.update(extra)
        return entry

    handler = "tests.receiver.hook_handlers:"
    return [
        route("/sw/async", "standard-webhooks", "async"),
        route("/sw/kratos", "standard-webhooks", "sync", payload="kratos"),
        route("/key/sync", "kratos-api-key", "sync", forward_redacted=True),
        route("/basic/interrupt", "kratos-basic", "sync"),
        route("/key/bad-answer", "kratos-api-key", "sync"),
        route("/key/failing", "kratos-api-key", "sync", handler=handler + "failing"),
        route("/key/dict", "kratos-api-key", "sync", handler=handler + "plain_dict"),
    ]


def _headers(path: str, body: bytes, *, valid: bool) -> dict[str, str]:
    if path.startswith("/sw/"):
        headers = kratos_headers(body, str(uuid.uuid4()), {})
        headers.update(Signer(KeySet((SW_KEY,))).sign(body))

        if not valid:
            headers["webhook-id"] += "x"

        return headers

    if path.startswith("/basic/"):
        password = BASIC[1] if valid else BASIC[1] + "x"
        token = base64.b64encode(f"{BASIC[0]}:{password}".encode()).decode()
        return kratos_headers(
            body, str(uuid.uuid4()), {"Authorization": f"Basic {token}"}
        )

    key = API_KEY if valid else API_KEY + "x"
    return kratos_headers(body, str(uuid.uuid4()), {"X-Api-Key": key})


def _forbidden_strings(sent_headers: list[dict[str, str]]) -> set[str]:
    forbidden = {
        SW_KEY.encode(),
        UPSTREAM_KEY.encode(),
        API_KEY,
        BASIC[1],
        ENV["LOG_BASIC"],
    }

    for headers in sent_headers:
        for name, value in headers.items():
            if name in ("webhook-signature", "authorization", "x-api-key"):
                forbidden.add(value)
                forbidden.add(value.split(",", 1)[-1].split(" ", 1)[-1])

    for body in _samples().values():
        text = body.decode()
        forbidden.update(FAKE_TOKEN.findall(text))
        forbidden.update(EMAIL.findall(text))
        forbidden.update(set(UUID.findall(text)) - {NIL_UUID})
        forbidden.add(text[:40])

        document = json.loads(body)

        for key in ("request_cookies", "cookies"):
            forbidden.update(document.get(key, {}).values())

    return {value for value in forbidden if value}


def _record_texts(record: logging.LogRecord) -> list[str]:
    texts = [record.getMessage()]

    if isinstance(record.msg, dict):
        texts.append(json.dumps(record.msg, default=str))
        texts.extend(str(value) for value in record.msg.values())

    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))

    return texts


def test_no_secret_reaches_a_log(
    tmp_path: Path,
    certificates: Certificates,
    caplog: pytest.LogCaptureFixture,
    rendered: io.StringIO,
) -> None:
    with running_upstream() as upstream:
        upstream.answers["/up/basic/interrupt"] = (400, INTERRUPT)
        upstream.answers["/up/key/bad-answer"] = (500, b'{"oops": "FAKE-oops"}')
        routes = _routes(upstream)
        config = load(tmp_path, certificates, routes)
        sent: list[dict[str, str]] = []
        statuses: set[int] = set()

        async def scenario() -> None:
            async with in_process_receiver(config) as receiver:
                for route in routes:
                    path = route["path"]

                    for body in _samples().values():
                        for valid in (True, False):
                            headers = _headers(path, body, valid=valid)
                            sent.append(headers)
                            reply = await receiver.post(path, body, headers)
                            statuses.add(reply.status)

                    for body in (b"{not json " + API_KEY.encode(), b"[1, 2]"):
                        headers = _headers(path, body, valid=True)
                        sent.append(headers)
                        reply = await receiver.post(path, body, headers)
                        statuses.add(reply.status)

                await asyncio.to_thread(upstream.wait_for, "/up/sw/async", 9)

        asyncio.run(scenario())

    assert {202, 204, 400, 401, 422, 502} <= statuses
    records = caplog.records
    codes = {
        record.msg.get("reason") for record in records if isinstance(record.msg, dict)
    }
    assert {"signature_mismatch", "credential_mismatch", "invalid_payload"} <= codes
    assert {"invalid_json", "upstream_unavailable", "invalid_upstream_answer"} <= codes
    output = rendered.getvalue()
    assert output.count("\n") >= len(records) > 0

    forbidden = _forbidden_strings(sent)

    for value in forbidden:
        assert value not in output, value

        for record in records:
            for text in _record_texts(record):
                assert value not in text, (value, record.msg)
