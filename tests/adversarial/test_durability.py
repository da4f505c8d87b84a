"""Kill -9 in the middle of an async burst: every 2xx is delivered after a restart."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from kratos_webhooks import KeySet, Signer

from ..receiver.harness import (
    Certificates,
    Upstream,
    base_config,
    make_certificates,
    running_upstream,
    serving,
    start_serve,
    wait_until,
    write_config,
)
from .conftest import ENV, SW_KEY, api_headers, route, verify_api_key, verify_sw

pytestmark = pytest.mark.slow

THREADS = 6
BURST_SECONDS = 1.0


def _config(tmp_path: Path, upstream: Upstream, certificates: Certificates) -> Path:
    config = base_config(tmp_path, certificates)
    config["routes"] = [
        route("/sw", upstream, "async", verify_sw()),
        route("/key", upstream, "async", verify_api_key()),
    ]
    return write_config(tmp_path / "receiver.yaml", config)


def _request(index: int) -> tuple[str, str, bytes, dict[str, str]]:
    body = b'{\n   "flow": {\n      "id": "%s",\n      "n": %d\n   }\n}\n' % (
        str(uuid.uuid4()).encode(),
        index,
    )

    if index % 2:
        headers = api_headers()
        return "/key", headers["ory-webhook-trigger-id"], body, headers

    signed = Signer(KeySet((SW_KEY,))).sign(body)
    return (
        "/sw",
        signed["webhook-id"],
        body,
        {"content-type": "application/json", **signed},
    )


def test_kill_during_burst_loses_nothing(tmp_path: Path) -> None:
    accepted: dict[tuple[str, str], bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    with running_upstream() as upstream:
        upstream.delay["/up/sw"] = 0.05
        certificates = make_certificates(tmp_path)
        config_file = _config(tmp_path, upstream, certificates)
        server = start_serve(config_file, ENV)

        def burst(worker: int) -> None:
            context = certificates.client_context()

            with httpx.Client(verify=context, timeout=5.0) as client:
                index = worker * 1_000_000

                while not stop.is_set():
                    index += 1
                    path, webhook_id, body, headers = _request(index)

                    try:
                        response = client.post(
                            server.url(path), content=body, headers=headers
                        )
                    except httpx.HTTPError:
                        continue

                    if response.status_code == 202:
                        # The key of an API key route is a hash of its body.
                        stored_id = response.json()["webhook_id"]

                        if path == "/sw":
                            assert stored_id == webhook_id

                        with lock:
                            accepted[(path, stored_id)] = body

        threads = [threading.Thread(target=burst, args=(n,)) for n in range(THREADS)]

        for thread in threads:
            thread.start()

        time.sleep(BURST_SECONDS)
        server.kill()
        stop.set()

        for thread in threads:
            thread.join(10)

        server.close()
        assert len(accepted) > 20

        def delivered() -> set[tuple[str, str]]:
            with upstream.lock:
                return {
                    (r.path[3:], r.headers["webhook-id"]) for r in upstream.received
                }

        with serving(config_file, ENV) as restarted:
            complete = wait_until(lambda: set(accepted) <= delivered(), timeout=30)
            exit_code = restarted.stop()

    missing = set(accepted) - delivered()
    assert complete, f"{len(missing)} of {len(accepted)} accepted events missing"
    assert exit_code == 0

    with upstream.lock:
        received = list(upstream.received)

    for request in received:
        key = (request.path[3:], request.headers["webhook-id"])

        # A repeat of an accepted event carries its id and its exact body.
        if key in accepted:
            assert request.body == accepted[key]
