"""One relay in front of one receiver, both real processes on loopback, to attack.

Kratos' side is plain HTTP to a `kratos-webhooks relay` process. Its routes
forward over TLS to a `kratos-webhooks serve` process that verifies the relay's
signatures and forwards to a recording upstream, or, for the outbound attacks,
straight to a scripted application. After each test the relay and the receiver
must still run, and no credential, signing key or body marker may be in a log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from kratos_webhooks import HmacKey

from ...receiver.harness import (
    Certificates,
    ServeProcess,
    Upstream,
    base_config,
    make_certificates,
    running_upstream,
    serving,
    write_config,
)
from ...relay.harness import RelayProcess, relaying
from ...relay.servers import Receive, Scope, Send, free_port, serve_asgi

RELAY_KEY = HmacKey.generate().encode()
UPSTREAM_KEY = HmacKey.generate().encode()
HEADER_KEY = "relay-header-key-" + uuid.uuid4().hex
HEADER_KEY_PREVIOUS = "relay-header-old-" + uuid.uuid4().hex
COOKIE_KEY = "relay-cookie-key-" + uuid.uuid4().hex
BASIC_USER = "kratos"
BASIC_PASSWORD = "relay-basic-" + uuid.uuid4().hex
KEY_HEADER = "X-Webhook-Key"
COOKIE_NAME = "hook_key"
ENV = {
    "RA_RELAY": RELAY_KEY,
    "RA_UPSTREAM": UPSTREAM_KEY,
    "RA_HEADER": HEADER_KEY,
    "RA_HEADER_PREVIOUS": HEADER_KEY_PREVIOUS,
    "RA_COOKIE": COOKIE_KEY,
    "RA_BASIC": BASIC_PASSWORD,
}
SECRETS = (
    RELAY_KEY,
    UPSTREAM_KEY,
    HEADER_KEY,
    HEADER_KEY_PREVIOUS,
    COOKIE_KEY,
    BASIC_PASSWORD,
    base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode(),
)

DATA = Path(__file__).parent.parent.parent / "data" / "kratos"
INTERRUPT = (DATA / "response-400-interrupt-with-messages.json").read_bytes()
IDENTITY = (DATA / "response-200-modify-identity-traits-metadata.json").read_bytes()

MAX_BODY_BYTES = 65536
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
HANG_BUDGET = 1.5
# What a timeout may take beyond its setting on a loaded two-core machine.
SLACK = 1.5

# Relay paths: each name says which credential the route expects.
HEADER_SYNC = "/k/header/sync"
HEADER_ASYNC = "/k/header/async"
COOKIE_SYNC = "/k/cookie/sync"
BASIC_SYNC = "/k/basic/sync"
BASIC_ASYNC = "/k/basic/async"
SMALL = "/k/header/small"
INTERRUPTING = "/k/header/interrupt"
UPDATING = "/k/header/identity"
SILENT = "/k/header/nocontent"
# Straight to the scripted application, without the receiver.
SCRIPTED = "/k/scripted"
HANGING = "/k/hanging"
WRONG_CERT = "/k/wrongcert"

RECEIVER_ROUTES = {
    HEADER_SYNC: "sync",
    HEADER_ASYNC: "async",
    COOKIE_SYNC: "sync",
    BASIC_SYNC: "sync",
    BASIC_ASYNC: "async",
    SMALL: "sync",
    INTERRUPTING: "sync",
    UPDATING: "sync",
    SILENT: "sync",
}


@dataclass
class Script:
    """The scripted application: its response and the requests it received."""

    status: int = 200
    body: bytes = b"{}"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    delay: float = 0.0
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return

        chunks = []

        while True:
            message = await receive()
            chunks.append(message.get("body", b""))

            if not message.get("more_body"):
                break

        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
        }
        self.received.append((scope["path"], headers, b"".join(chunks)))

        if self.delay:
            await asyncio.sleep(self.delay)

        response_headers = [(b"content-type", b"application/json"), *self.headers]
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": response_headers,
            }
        )
        await send({"type": "http.response.body", "body": self.body})


@dataclass
class Chain:
    relay: RelayProcess
    receiver: ServeProcess
    upstream: Upstream
    script: Script
    hang: Script
    forbidden: set[str]
    relay_file: Path
    receiver_port: int

    def marker(self) -> str:
        value = "marker-" + uuid.uuid4().hex
        self.forbidden.add(value)
        return value

    def body(self, **extra: Any) -> bytes:
        """A small Kratos-like body, with markers that must never reach a log."""
        document = {
            "flow": {"id": str(uuid.uuid4())},
            "marker": self.marker(),
            "request_cookies": {"ory_kratos_session": self.marker()},
            **extra,
        }
        return json.dumps(document, indent=3, sort_keys=True).encode() + b"\n"

    @property
    def port(self) -> int:
        return int(self.relay.address.rpartition(":")[2])

    def url(self, path: str) -> str:
        return self.relay.url(path)

    def upstream_for(self, path: str) -> list[Any]:
        return self.upstream.requests_to("/up" + path)


def receiver_document(
    tmp_path: Path, certificates: Certificates, upstream: Upstream, port: int
) -> dict[str, Any]:
    document = base_config(tmp_path, certificates)
    document["server"]["listen"] = f"127.0.0.1:{port}"
    document["routes"] = [
        {
            "path": path,
            "mode": mode,
            "verify": {"scheme": "standard-webhooks", "secrets": ["env:RA_RELAY"]},
            "upstream": upstream.url("/up" + path),
            "upstream_secrets": ["env:RA_UPSTREAM"],
            "delivery": {"initial_backoff": 0.2, "max_backoff": 1.0},
            "timeout": 5,
        }
        for path, mode in RECEIVER_ROUTES.items()
    ]
    return document


def header_auth() -> dict[str, Any]:
    return {
        "type": "api_key",
        "name": KEY_HEADER,
        "secrets": ["env:RA_HEADER", "env:RA_HEADER_PREVIOUS"],
    }


def relay_document(
    tmp_path: Path,
    ca_file: Path,
    receiver_port: int,
    script_base: str,
    hang_base: str,
    wrong_base: str,
) -> dict[str, Any]:
    cookie = {"type": "api_key", "name": COOKIE_NAME, "in": "cookie"}
    cookie["secrets"] = ["env:RA_COOKIE"]
    basic = {"type": "basic_auth", "user": BASIC_USER, "secrets": ["env:RA_BASIC"]}
    auth = {
        HEADER_SYNC: header_auth(),
        HEADER_ASYNC: header_auth(),
        COOKIE_SYNC: cookie,
        BASIC_SYNC: basic,
        BASIC_ASYNC: basic,
        SMALL: header_auth(),
        INTERRUPTING: header_auth(),
        UPDATING: header_auth(),
        SILENT: header_auth(),
    }
    signing = {"secrets": ["env:RA_RELAY"]}
    routes: list[dict[str, Any]] = []

    for path, mode in RECEIVER_ROUTES.items():
        route: dict[str, Any] = {
            "path": path,
            "target": f"https://127.0.0.1:{receiver_port}{path}",
            "mode": mode,
            "kratos_auth": auth[path],
            "signing": signing,
            "timeout": 8,
        }

        if mode == "async":
            route["delivery"] = {"schedule": [0.2, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]}

        if path == SMALL:
            route["max_body_bytes"] = 1000

        routes.append(route)

    for path, base, timeout in (
        (SCRIPTED, script_base, 5.0),
        (HANGING, hang_base, HANG_BUDGET),
        (WRONG_CERT, wrong_base, 5.0),
    ):
        routes.append(
            {
                "path": path,
                "target": base + "/app" + path,
                "mode": "sync",
                "kratos_auth": header_auth(),
                "signing": signing,
                "timeout": timeout,
            }
        )

    return {
        "relay": {
            "listen": "127.0.0.1:0",
            "limits": {
                "header_timeout": HEADER_TIMEOUT,
                "body_timeout": BODY_TIMEOUT,
                "idle_timeout": IDLE_TIMEOUT,
                "max_header_bytes": 8192,
                "max_body_bytes": MAX_BODY_BYTES,
                "max_connections": 200,
            },
        },
        "outbound": {
            "ca_file": str(ca_file),
            "allow_loopback_targets": True,
            "connect_timeout": 2,
        },
        "storage": f"sqlite://{tmp_path / 'relay.db'}",
        "routes": routes,
    }


def _wrong_context() -> ssl.SSLContext:
    """A server context whose certificate comes from a CA the relay does not trust."""
    other = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    tmp_path = tmp_path_factory.mktemp("relay-attack")
    certificates = make_certificates(tmp_path)
    ca_file = tmp_path / "ca.pem"
    certificates.ca.cert_pem.write_to_path(ca_file)
    answers = {
        "/up" + INTERRUPTING: (400, INTERRUPT),
        "/up" + UPDATING: (200, IDENTITY),
        "/up" + HEADER_SYNC: (200, b"{}"),
        "/up" + COOKIE_SYNC: (200, b"{}"),
        "/up" + BASIC_SYNC: (200, b"{}"),
        "/up" + SMALL: (200, b"{}"),
    }
    script = Script()
    hang = Script(delay=HANG_BUDGET + 5)

    with (
        running_upstream(answers=answers) as upstream,
        serve_asgi(script) as script_base,
        serve_asgi(hang) as hang_base,
        serve_asgi(Script(), context=_wrong_context()) as wrong_base,
    ):
        port = free_port()
        receiver_file = write_config(
            tmp_path / "receiver.yaml",
            receiver_document(tmp_path, certificates, upstream, port),
        )
        relay_file = write_config(
            tmp_path / "relay.yaml",
            relay_document(tmp_path, ca_file, port, script_base, hang_base, wrong_base),
        )

        with (
            serving(receiver_file, ENV) as receiver,
            relaying(relay_file, ENV) as relay,
        ):
            yield Chain(
                relay, receiver, upstream, script, hang, set(SECRETS), relay_file, port
            )


@pytest.fixture(autouse=True)
def _chain_holds(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each attack on the shared chain: both processes up, nothing leaked."""
    if "chain" not in request.fixturenames:
        yield
        return

    current: Chain = request.getfixturevalue("chain")
    yield
    assert current.relay.process.poll() is None, "the relay exited"
    assert current.receiver.process.poll() is None, "the receiver exited"
    assert_no_leak(current.relay.log_lines, current.forbidden)
    assert_no_leak(current.receiver.log_lines, current.forbidden)


def assert_no_leak(lines: list[dict[str, Any]], forbidden: set[str]) -> None:
    output = "\n".join(json.dumps(line) for line in list(lines))
    leaked = [value for value in set(forbidden) if value in output]
    assert leaked == [], f"log lines contain {len(leaked)} secret or body values"


def assert_error(status: int, body: bytes, expected: int, code: str) -> None:
    """Check an error answer's status, reason code and JSON shape."""
    document = json.loads(body)
    assert status == expected, (status, document)
    assert document["error"]["code"] == code, document
    assert set(document["error"]) == {"code", "message"}


def kratos(trigger: str | None = None, **extra: str) -> dict[str, str]:
    """Kratos' headers with the header api key."""
    return {
        "user-agent": "Go-http-client/1.1",
        "content-type": "application/json",
        "ory-webhook-trigger-id": trigger or str(uuid.uuid4()),
        "ory-webhook-request-id": str(uuid.uuid4()),
        KEY_HEADER: HEADER_KEY,
        **extra,
    }


def basic_value(user: str = BASIC_USER, password: str = BASIC_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# Raw HTTP/1.1 over plain TCP, for requests no client library sends.


@dataclass
class Raw:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class Wire:
    """A plain TCP connection to the relay."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))

        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False

        self.buffer += chunk
        return bool(chunk)

    def response(self) -> Raw:
        deadline = time.monotonic() + self.timeout

        while b"\r\n\r\n" not in self.buffer:
            if not self._fill(deadline):
                raise EOFError(f"closed before a response: {self.buffer[:200]!r}")

        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]
        length = next((int(v) for k, v in headers if k == "content-length"), 0)

        while len(self.buffer) < length:
            if not self._fill(deadline):
                raise EOFError("closed in the middle of a response body")

        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Raw(status, headers, body)

    def closed_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds

        while time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True

            if chunk == b"":
                return True

            self.buffer += chunk

        return False


def request_bytes(
    method: str,
    target: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    names = {name.lower() for name, _ in items}
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in items)]

    if "host" not in names:
        lines.append("Host: 127.0.0.1")

    if content_length and "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")

    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def exchange(port: int, data: bytes) -> Raw:
    with Wire(port) as wire:
        wire.send(data)
        return wire.response()
