"""Nothing acknowledged is lost: kill -9 under load, upstream outages, SIGTERM."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from kratos_webhooks.receiver.state import StateStore

from .harness import (
    Certificates,
    Upstream,
    base_config,
    kratos_headers,
    make_certificates,
    running_upstream,
    serving,
    start_serve,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow

API_KEY = "durability-" + uuid.uuid4().hex
ENV = {"DURABILITY_API_KEY": API_KEY, "DURABILITY_UPSTREAM": "whsec_" + "A" * 43 + "="}
LOAD_THREADS = 8
LOAD_SECONDS = 1.5


def _config(
    tmp_path: Path, certificates: Certificates, upstream: Upstream, **delivery: Any
) -> Path:
    config = base_config(tmp_path, certificates)
    config["routes"] = [
        {
            "path": "/events",
            "verify": {
                "scheme": "kratos-api-key",
                "secrets": ["env:DURABILITY_API_KEY"],
                "name": "X-Webhook-Secret",
            },
            "mode": "async",
            "upstream": upstream.url("/app"),
            "upstream_secrets": ["env:DURABILITY_UPSTREAM"],
            "delivery": {"initial_backoff": 0.2, "max_backoff": 0.5, **delivery},
        }
    ]
    return write_config(tmp_path / "receiver.yaml", config)


def _event(index: int) -> tuple[str, bytes, dict[str, str]]:
    trigger = str(uuid.uuid4())
    body = b'{\n   "flow": {\n      "id": "%s",\n      "n": %d\n   }\n}\n' % (
        trigger.encode(),
        index,
    )
    headers = kratos_headers(body, trigger, {"X-Webhook-Secret": API_KEY})
    return trigger, body, headers


def test_kill_during_load_loses_nothing(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    accepted: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    with running_upstream() as upstream:
        config_file = _config(tmp_path, certificates, upstream)
        server = start_serve(config_file, ENV)
        url = server.url("/events")

        def load(worker: int) -> None:
            context = certificates.client_context()

            with httpx.Client(verify=context, timeout=5.0) as client:
                index = 0

                while not stop.is_set():
                    index += 1
                    _, body, headers = _event(worker * 1_000_000 + index)

                    try:
                        response = client.post(url, content=body, headers=headers)
                    except httpx.HTTPError:
                        continue

                    if response.status_code == 202:
                        with lock:
                            accepted[response.json()["webhook_id"]] = body

        threads = [
            threading.Thread(target=load, args=(n,)) for n in range(LOAD_THREADS)
        ]

        for thread in threads:
            thread.start()

        time.sleep(LOAD_SECONDS)
        server.kill()
        stop.set()

        for thread in threads:
            thread.join(10)

        server.close()
        assert len(accepted) > 50

        with serving(config_file, ENV) as restarted:
            delivered = wait_until(
                lambda: (
                    set(accepted)
                    <= {r.headers["webhook-id"] for r in upstream.requests_to("/app")}
                ),
                timeout=60,
            )
            exit_code = restarted.stop()

        received = upstream.requests_to("/app")

    missing = set(accepted) - {r.headers["webhook-id"] for r in received}
    assert delivered, f"{len(missing)} of {len(accepted)} accepted events missing"
    assert exit_code == 0

    for request in received:
        webhook_id = request.headers["webhook-id"]

        # Events whose 202 was lost in the kill may arrive too; they carry
        # their own id, and a repeat carries the same id and body.
        if webhook_id in accepted:
            assert request.body == accepted[webhook_id]


def test_outage_backs_off_dead_letters_and_redrives(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)

    with running_upstream() as upstream:
        port = upstream.port
        config_file = _config(tmp_path, certificates, upstream, max_attempts=3)
        upstream.stop()

        with serving(config_file, ENV) as server:
            context = certificates.client_context()

            with httpx.Client(verify=context, timeout=5.0) as client:
                _, body, headers = _event(1)
                response = client.post(
                    server.url("/events"), content=body, headers=headers
                )

            assert response.status_code == 202
            webhook_id = response.json()["webhook_id"]
            store = StateStore.open(f"sqlite://{tmp_path / 'state.db'}")
            dead = wait_until(lambda: bool(store.list_events(state="dead")), timeout=30)
            assert dead
            (event,) = store.list_events(state="dead")
            assert event.webhook_id == webhook_id
            assert event.attempts == 3

            upstream.start(port)
            time.sleep(1.0)
            assert upstream.requests_to("/app") == []
            assert store.redrive(None) == 1

            received = upstream.wait_for("/app", 1, timeout=30)
            assert [r.headers["webhook-id"] for r in received] == [webhook_id]
            assert received[0].body == body
            assert wait_until(lambda: bool(store.list_events(state="delivered")))


def test_outage_resumes_when_upstream_returns(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)

    with running_upstream() as upstream:
        port = upstream.port
        config_file = _config(tmp_path, certificates, upstream, max_attempts=50)
        upstream.stop()

        with serving(config_file, ENV) as server:
            with httpx.Client(
                verify=certificates.client_context(), timeout=5.0
            ) as client:
                _, body, headers = _event(2)
                response = client.post(
                    server.url("/events"), content=body, headers=headers
                )

            assert response.status_code == 202
            webhook_id = response.json()["webhook_id"]
            store = StateStore.open(f"sqlite://{tmp_path / 'state.db'}")
            assert wait_until(
                lambda: any(
                    e.attempts >= 2 for e in store.list_events(state="pending")
                ),
                timeout=20,
            )

            upstream.start(port)
            received = upstream.wait_for("/app", 1, timeout=30)

    assert [r.headers["webhook-id"] for r in received] == [webhook_id]
    assert int(received[0].headers["webhook-attempt"]) >= 2
