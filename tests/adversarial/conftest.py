"""One hardened receiver on loopback with every scheme, and the ledger of attacks.

Every test here attacks the same `serve` process. The ledger records each
secret, signature, cookie and body marker that an attack sends, and after each
test checks that none of them reached a log line, that no refused body reached
the upstream, and that the receiver is still running.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from kratos_webhooks import HmacKey, KeySet, Signer
from kratos_webhooks.credentials import jsonnet_envelope, jsonnet_mac

from ..receiver.harness import (
    Certificates,
    ServeProcess,
    Upstream,
    base_config,
    make_certificates,
    running_upstream,
    serving,
    write_config,
)
from .wire import RawConnection, RawResponse

SW_KEY = HmacKey.generate()
SW_PREVIOUS_KEY = HmacKey.generate()
UPSTREAM_KEY = HmacKey.generate()
API_KEY = "adv-api-key-" + uuid.uuid4().hex
API_KEY_PREVIOUS = "adv-api-key-previous-" + uuid.uuid4().hex
COOKIE_KEY = "adv-cookie-key-" + uuid.uuid4().hex
BASIC_USER = "kratos"
BASIC_PASSWORD = "adv-basic-" + uuid.uuid4().hex
MAC_SECRET = "adv-mac-secret-" + uuid.uuid4().hex
API_KEY_HEADER = "X-Webhook-Secret"
COOKIE_NAME = "hook_key"
TOLERANCE = 60

ENV = {
    "ADV_SW": SW_KEY.encode(),
    "ADV_SW_PREVIOUS": SW_PREVIOUS_KEY.encode(),
    "ADV_UPSTREAM": UPSTREAM_KEY.encode(),
    "ADV_API_KEY": API_KEY,
    "ADV_API_KEY_PREVIOUS": API_KEY_PREVIOUS,
    "ADV_COOKIE_KEY": COOKIE_KEY,
    "ADV_BASIC": f"{BASIC_USER}:{BASIC_PASSWORD}",
    "ADV_MAC": MAC_SECRET,
}
SECRETS = (
    SW_KEY.encode(),
    SW_PREVIOUS_KEY.encode(),
    UPSTREAM_KEY.encode(),
    API_KEY,
    API_KEY_PREVIOUS,
    COOKIE_KEY,
    BASIC_PASSWORD,
    base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode(),
    MAC_SECRET,
)

# Short limits, so that slow clients are cut off within the test's time.
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
MAX_HEADER_BYTES = 8192
MAX_BODY_BYTES = 65536


def verify_sw(*, tolerance: int = TOLERANCE) -> dict[str, Any]:
    secrets = ["env:ADV_SW", "env:ADV_SW_PREVIOUS"]
    return {"scheme": "standard-webhooks", "secrets": secrets, "tolerance": tolerance}


def verify_api_key() -> dict[str, Any]:
    return {
        "scheme": "kratos-api-key",
        "secrets": ["env:ADV_API_KEY", "env:ADV_API_KEY_PREVIOUS"],
        "name": API_KEY_HEADER,
    }


def verify_cookie() -> dict[str, Any]:
    return {
        "scheme": "kratos-api-key",
        "secrets": ["env:ADV_COOKIE_KEY"],
        "name": COOKIE_NAME,
        "in": "cookie",
    }


def verify_basic() -> dict[str, Any]:
    return {"scheme": "kratos-basic", "secrets": ["env:ADV_BASIC"]}


def verify_mac() -> dict[str, Any]:
    return {"scheme": "kratos-jsonnet-mac", "secrets": ["env:ADV_MAC"]}


def route(
    path: str, upstream: Upstream, mode: str, verify: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A route whose upstream path is `/up` followed by its own path."""
    document = {
        "path": path,
        "verify": verify,
        "mode": mode,
        "upstream": upstream.url("/up" + path),
        "upstream_secrets": ["env:ADV_UPSTREAM"],
        "delivery": {"initial_backoff": 0.2, "max_backoff": 1.0},
        "timeout": 3,
    }
    document.update(extra)
    return document


def shared_routes(upstream: Upstream) -> list[dict[str, Any]]:
    sw, api = verify_sw(), verify_api_key()
    return [
        route("/sw/sync", upstream, "sync", sw),
        route("/sw/async", upstream, "async", sw),
        route("/sw/twin", upstream, "async", sw),
        route("/sw/strict", upstream, "sync", verify_sw(tolerance=5)),
        route("/apikey/sync", upstream, "sync", api),
        route("/apikey/async", upstream, "async", api),
        route("/cookie/sync", upstream, "sync", verify_cookie()),
        route("/basic/sync", upstream, "sync", verify_basic()),
        route("/basic/async", upstream, "async", verify_basic()),
        route("/mac/sync", upstream, "sync", verify_mac()),
        route("/mac/async", upstream, "async", verify_mac()),
        route("/gzip", upstream, "async", api, gzip=True, max_inflated_bytes=16384),
        route("/small", upstream, "async", api, max_body_bytes=1000),
        route("/allow/remote", upstream, "sync", api, allow_from=["10.0.0.0/8"]),
        route("/allow/local", upstream, "async", api, allow_from=["127.0.0.1/32"]),
        route("/limited", upstream, "async", api, rate_limit="3/day"),
    ]


@dataclass
class Ledger:
    """What the attacks sent, to check logs, the upstream and the process against."""

    forbidden: set[str] = field(default_factory=lambda: set(SECRETS))
    refused_markers: set[str] = field(default_factory=set)
    accepted: dict[str, dict[str, bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def marker(self) -> str:
        """Return a fresh body marker that must never reach a log line."""
        value = "marker-" + uuid.uuid4().hex
        self.forbidden.add(value)
        return value

    def refused(self, body: bytes) -> None:
        """Record a refused body: none of its markers may reach the upstream."""
        text = body.decode("latin-1")

        with self.lock:
            for value in self.forbidden:
                if value.startswith("marker-") and value in text:
                    self.refused_markers.add(value)

    def accept(self, path: str, webhook_id: str, body: bytes) -> None:
        with self.lock:
            self.accepted.setdefault(path, {})[webhook_id] = body


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("adversarial-tls"))


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    with running_upstream() as server:
        yield server


def limits_config() -> dict[str, Any]:
    return {
        "header_timeout": HEADER_TIMEOUT,
        "body_timeout": BODY_TIMEOUT,
        "idle_timeout": IDLE_TIMEOUT,
        "max_header_bytes": MAX_HEADER_BYTES,
        "max_body_bytes": MAX_BODY_BYTES,
        "max_connections": 200,
    }


@pytest.fixture(scope="session")
def receiver(
    tmp_path_factory: pytest.TempPathFactory,
    certificates: Certificates,
    upstream: Upstream,
) -> Iterator[ServeProcess]:
    tmp_path = tmp_path_factory.mktemp("adversarial-serve")
    config = base_config(tmp_path, certificates)
    config["server"]["limits"] = limits_config()
    config["server"]["trusted_proxies"] = ["127.0.0.2/32"]
    config["routes"] = shared_routes(upstream)
    config_file = write_config(tmp_path / "receiver.yaml", config)

    with serving(config_file, ENV) as server:
        yield server


@pytest.fixture(scope="session")
def client(
    receiver: ServeProcess, certificates: Certificates
) -> Iterator[httpx.Client]:
    with httpx.Client(verify=certificates.client_context(), timeout=10.0) as http:
        yield http


@pytest.fixture(autouse=True)
def _ledger_holds(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test on the shared receiver: still up, no leak, nothing let in."""
    if "receiver" not in request.fixturenames:
        yield
        return

    server: ServeProcess = request.getfixturevalue("receiver")
    book: Ledger = request.getfixturevalue("ledger")
    up: Upstream = request.getfixturevalue("upstream")
    yield
    assert server.process.poll() is None, "the receiver exited"
    assert_no_leak(server, book)
    assert_nothing_refused_reached(up, book)


def assert_no_leak(server: ServeProcess, book: Ledger) -> None:
    output = "\n".join(json.dumps(line) for line in list(server.log_lines))

    with book.lock:
        leaked = [value for value in book.forbidden if value in output]

    assert leaked == [], f"log lines contain {len(leaked)} secret or body values"


def assert_nothing_refused_reached(up: Upstream, book: Ledger) -> None:
    with up.lock:
        bodies = [r.body.decode("latin-1") for r in up.received]

    with book.lock:
        markers = set(book.refused_markers)

    reached = [m for m in markers for body in bodies if m in body]
    assert reached == [], f"refused bodies reached the upstream: {reached}"


# Building requests.


def event_body(book: Ledger, **extra: Any) -> bytes:
    """A small Kratos-like body with a marker and a session cookie value."""
    cookie = book.marker()
    document = {
        "flow": {"id": str(uuid.uuid4())},
        "marker": book.marker(),
        "request_cookies": {"ory_kratos_session": cookie},
        **extra,
    }
    return json.dumps(document, indent=3, sort_keys=True).encode() + b"\n"


def sw_headers(
    book: Ledger, body: bytes, key: HmacKey = SW_KEY, **options: Any
) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    signed = Signer(KeySet((key,))).sign(body, **options)
    book.forbidden.add(signed["webhook-signature"].split(",", 1)[1])
    headers.update(signed)
    return headers


def api_headers(trigger: str | None = None) -> dict[str, str]:
    return {
        "content-type": "application/json",
        API_KEY_HEADER: API_KEY,
        "ory-webhook-trigger-id": trigger or str(uuid.uuid4()),
    }


def basic_value(user: str = BASIC_USER, password: str = BASIC_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def mac_envelope(book: Ledger, payload: bytes, secret: str = MAC_SECRET) -> bytes:
    text = payload.decode()
    mac = jsonnet_mac(secret, text)
    book.forbidden.add(mac)
    return jsonnet_envelope(text, mac)


def error_code(response: httpx.Response | RawResponse) -> str:
    if isinstance(response, RawResponse):
        return response.error_code()

    return str(response.json()["error"]["code"])


def assert_error(
    response: httpx.Response | RawResponse, status: int, code: str
) -> None:
    """Check an error answer's status, reason code and JSON shape."""
    if isinstance(response, RawResponse):
        document = json.loads(response.body)
        status_code = response.status
    else:
        document = response.json()
        status_code = response.status_code

    assert status_code == status, (status_code, document)
    assert document["error"]["code"] == code
    assert set(document["error"]) == {"code", "message"}


def assert_conflict_logged(receiver: ServeProcess, path: str, key: str) -> None:
    """The conflict is a warning that names the route and key, never the body."""
    deadline = time.monotonic() + 5
    found: list[dict[str, object]] = []

    while not found and time.monotonic() < deadline:
        found = [
            line
            for line in list(receiver.log_lines)
            if line.get("event") == "idempotency_conflict" and line.get("key") == key
        ]
        time.sleep(0.05)

    assert found, "no idempotency_conflict line"
    assert found[-1]["level"] == "warning"
    assert found[-1]["route"] == path


def raw(
    receiver: ServeProcess, certificates: Certificates, **options: Any
) -> RawConnection:
    return RawConnection(receiver.https_port, certificates.client_context(), **options)


def wait_delivered(up: Upstream, path: str, webhook_id: str) -> list[Any]:
    """Return the deliveries of one event to `/up<path>`, waiting up to 10 s."""
    deadline = time.monotonic() + 10

    while time.monotonic() < deadline:
        found = [
            r
            for r in up.requests_to("/up" + path)
            if r.headers.get("webhook-id") == webhook_id
        ]

        if found:
            return found

        time.sleep(0.05)

    return []


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent.parent / "data" / "kratos"
