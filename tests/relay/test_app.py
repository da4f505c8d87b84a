"""The relay's ASGI application in process: every rejection, the outbox, the guard."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from kratos_webhooks import HmacKey
from kratos_webhooks.relay.config import parse_relay_config
from kratos_webhooks.relay.server import build_relay
from kratos_webhooks.relay.target import Address

SIGNING = "literal:" + HmacKey.generate().encode()
KEY = "relay-app-test-key"
TRIGGER = "5f0c2f7e-0a4b-4c3e-9a55-1d2e3f4a5b6c"
BODY = b'{\n   "flow": {\n      "id": "1"\n   }\n}\n'


def document(tmp_path: Path, **route: Any) -> dict[str, Any]:
    return {
        "storage": f"sqlite://{tmp_path / 'relay.db'}",
        "outbound": {"allow_loopback_targets": True},
        "routes": [
            {
                "path": "/kratos/a",
                "target": "http://127.0.0.1:9/kratos/a",
                "mode": "async",
                "kratos_auth": {
                    "type": "api_key",
                    "name": "X-Webhook-Key",
                    "secrets": [f"literal:{KEY}", "literal:previous-key"],
                },
                "signing": {"secrets": [SIGNING]},
                **route,
            }
        ],
    }


Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


def run_app(
    tmp_path: Path,
    scenario: Scenario,
    *,
    resolver: Callable[[str, int], Awaitable[list[Address]]] | None = None,
    **route: Any,
) -> None:
    config = parse_relay_config(document(tmp_path, **route), environ={})
    options = {"resolver": resolver} if resolver else {}

    async def main() -> None:
        app, client, store, _worker = build_relay(config, **options)

        if store is not None:
            await store.start()

        transport = httpx.ASGITransport(app=app)

        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://relay"
            ) as http:
                await scenario(http)
        finally:
            if store is not None:
                await store.close()

            await client.aclose()

    asyncio.run(main())


def headers(**extra: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-webhook-key": KEY,
        "ory-webhook-trigger-id": TRIGGER,
        **extra,
    }


def count_events(tmp_path: Path) -> int:
    with closing(sqlite3.connect(tmp_path / "relay.db")) as connection:
        (count,) = connection.execute("SELECT count(*) FROM inbox").fetchone()

    return int(count)


REJECTIONS = [
    ("POST", "/other", headers(), 404, "not_found"),
    ("GET", "/kratos/a", headers(), 405, "method_not_allowed"),
    ("POST", "/kratos/a", headers(**{"content-type": "text/plain"}), 415, None),
    ("POST", "/kratos/a", headers(**{"x-webhook-key": "nope"}), 401, None),
    ("POST", "/kratos/a", headers(**{"ory-webhook-trigger-id": "a.b"}), 401, None),
]


@pytest.mark.parametrize(("method", "path", "sent", "status", "code"), REJECTIONS)
def test_rejections(
    tmp_path: Path,
    method: str,
    path: str,
    sent: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    results: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        results.append(await http.request(method, path, content=BODY, headers=sent))

    run_app(tmp_path, scenario)
    (response,) = results

    if status == 401 and "a.b" in sent["ory-webhook-trigger-id"]:
        # A malformed trigger id is a malformed header, a 401 like credentials.
        assert response.json()["error"]["code"] == "malformed_header"
    elif code is not None:
        assert response.json()["error"]["code"] == code

    assert response.status_code == status
    assert count_events(tmp_path) == 0


def test_wrong_method_lists_allowed(tmp_path: Path) -> None:
    results: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        results.append(await http.put("/kratos/a", content=BODY, headers=headers()))

    run_app(tmp_path, scenario)

    assert results[0].headers["allow"] == "POST"


def test_oversized_body_rejected(tmp_path: Path) -> None:
    results: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        big = b"{" + b" " * 2048 + b"}"
        results.append(await http.post("/kratos/a", content=big, headers=headers()))

    run_app(tmp_path, scenario, max_body_bytes=1024)

    assert results[0].status_code == 413
    assert results[0].json()["error"]["code"] == "payload_too_large"


def test_previous_key_accepted(tmp_path: Path) -> None:
    results: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        sent = headers(**{"x-webhook-key": "previous-key"})
        results.append(await http.post("/kratos/a", content=BODY, headers=sent))

    run_app(tmp_path, scenario)

    assert results[0].status_code == 202


def test_async_committed_before_202(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        first = await http.post("/kratos/a", content=BODY, headers=headers())
        # Read through a connection of its own, as another process would.
        seen.append((first.status_code, count_events(tmp_path)))
        again = await http.post("/kratos/a", content=BODY, headers=headers())
        seen.append((again.status_code, count_events(tmp_path)))
        assert again.json() == first.json()
        assert first.json()["webhook_id"] == f"msg_{TRIGGER}"

    run_app(tmp_path, scenario)

    assert seen == [(202, 1), (202, 1)]


def test_cookie_credential(tmp_path: Path) -> None:
    results: list[int] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        sent = headers()
        del sent["x-webhook-key"]
        sent["cookie"] = f"X-Webhook-Key={KEY}"
        results.append(
            (await http.post("/kratos/a", content=BODY, headers=sent)).status_code
        )
        sent["cookie"] = "X-Webhook-Key=wrong"
        results.append(
            (await http.post("/kratos/a", content=BODY, headers=sent)).status_code
        )

    auth = {
        "type": "api_key",
        "name": "X-Webhook-Key",
        "in": "cookie",
        "secrets": [f"literal:{KEY}"],
    }
    run_app(tmp_path, scenario, kratos_auth=auth)

    assert results == [202, 401]


def test_basic_credential_with_user(tmp_path: Path) -> None:
    results: list[int] = []

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def scenario(http: httpx.AsyncClient) -> None:
        for value in (basic("kratos", KEY), basic("other", KEY), basic("kratos", "x")):
            sent = headers(authorization=value)
            response = await http.post("/kratos/a", content=BODY, headers=sent)
            results.append(response.status_code)

    auth = {"type": "basic_auth", "user": "kratos", "secrets": [f"literal:{KEY}"]}
    run_app(tmp_path, scenario, kratos_auth=auth)

    assert results == [202, 401, 401]


def test_storage_failure_is_503(tmp_path: Path) -> None:
    config = parse_relay_config(document(tmp_path), environ={})
    results: list[httpx.Response] = []

    async def main() -> None:
        app, client, store, _worker = build_relay(config)
        assert store is not None
        await store.start()
        await store.close()
        transport = httpx.ASGITransport(app=app)

        async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:
            results.append(
                await http.post("/kratos/a", content=BODY, headers=headers())
            )

        await client.aclose()

    asyncio.run(main())

    assert results[0].status_code == 503
    assert results[0].json()["error"]["code"] in (
        "storage_unavailable",
        "internal_error",
    )


def test_dns_to_metadata_is_502(tmp_path: Path) -> None:
    async def resolve(host: str, port: int) -> list[Address]:
        return [ipaddress.ip_address("169.254.169.254")]

    results: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        results.append(await http.post("/kratos/a", content=BODY, headers=headers()))

    run_app(
        tmp_path,
        scenario,
        resolver=resolve,
        mode="sync",
        target="http://receiver.internal/kratos/a",
    )

    assert results[0].status_code == 502
    assert results[0].json()["error"]["code"] == "upstream_unavailable"


def test_outbox_delivery_uses_target_guard(tmp_path: Path) -> None:
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[Address]:
        lookups.append(host)
        return [ipaddress.ip_address("169.254.169.254")]

    config = parse_relay_config(
        document(tmp_path, target="http://receiver.internal/kratos/a"), environ={}
    )
    accepted: list[int] = []

    async def main() -> None:
        app, client, store, worker = build_relay(config, resolver=resolve)
        assert store is not None
        assert worker is not None
        await store.start()
        await worker.start()
        transport = httpx.ASGITransport(app=app)

        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://relay"
            ) as http:
                response = await http.post("/kratos/a", content=BODY, headers=headers())
                accepted.append(response.status_code)

            for _ in range(100):
                if lookups:
                    break

                await asyncio.sleep(0.05)

            await worker.stop(grace=2.0)
        finally:
            await store.close()
            await client.aclose()

    asyncio.run(main())

    with closing(sqlite3.connect(tmp_path / "relay.db")) as connection:
        state, attempts, error = connection.execute(
            "SELECT state, attempts, last_error FROM inbox"
        ).fetchone()

    assert accepted == [202]
    assert lookups[0] == "receiver.internal"
    # The event is kept for a later attempt, never sent to the metadata address.
    assert state == "pending"
    assert attempts >= 1
    assert "rejected: metadata address" in error


def test_body_shorter_than_declared_not_stored(tmp_path: Path) -> None:
    # What uvicorn hands on after an `Upgrade` header: the headers, no body.
    config = parse_relay_config(document(tmp_path), environ={})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        app, client, store, _worker = build_relay(config)
        assert store is not None
        await store.start()
        pairs = {**headers(), "content-length": str(len(BODY))}
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/kratos/a",
            "raw_path": b"/kratos/a",
            "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in pairs.items()],
        }

        try:
            await app(scope, receive, send)
        finally:
            await store.close()
            await client.aclose()

    asyncio.run(main())

    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["code"] == "malformed_request"
    assert count_events(tmp_path) == 0
