"""Kill -9 the relay during a burst of async events: every 202 must be delivered."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from ...receiver.harness import write_config
from ...relay.harness import relaying, start_relay
from .conftest import ENV, HEADER_ASYNC, Chain, assert_no_leak, kratos

pytestmark = pytest.mark.slow

WORKERS = 8
BURST_SECONDS = 1.0


def _own_relay(chain: Chain, tmp_path: Path) -> Path:
    document = yaml.safe_load(chain.relay_file.read_text(encoding="utf-8"))
    document["storage"] = f"sqlite://{tmp_path / 'burst.db'}"
    document["routes"] = [r for r in document["routes"] if r["path"] == HEADER_ASYNC]
    return write_config(tmp_path / "burst.yaml", document)


def test_kill_during_burst_loses_nothing(chain: Chain, tmp_path: Path) -> None:
    config_file = _own_relay(chain, tmp_path)
    relay = start_relay(config_file, ENV)
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def burst() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                trigger = str(uuid.uuid4())
                body = chain.body(trigger=trigger)

                try:
                    response = client.post(
                        relay.url(HEADER_ASYNC), content=body, headers=kratos(trigger)
                    )
                except httpx.HTTPError:
                    continue

                if response.status_code == 202:
                    with lock:
                        acknowledged[trigger] = body

    threads = [threading.Thread(target=burst) for _ in range(WORKERS)]

    try:
        for thread in threads:
            thread.start()

        time.sleep(BURST_SECONDS)
        relay.process.kill()
        relay.process.wait(10)
    finally:
        stop.set()

        for thread in threads:
            thread.join(10)

        relay.close()

    assert len(acknowledged) > 10

    def missing() -> list[str]:
        seen = {r.headers.get("webhook-id") for r in chain.upstream_for(HEADER_ASYNC)}
        return [t for t in acknowledged if "msg_" + t not in seen]

    with relaying(config_file, ENV) as again:
        deadline = time.monotonic() + 20

        while missing() and time.monotonic() < deadline:
            time.sleep(0.1)

        assert missing() == []
        assert again.process.poll() is None

    by_id: dict[str, list[bytes]] = {}

    for received in chain.upstream_for(HEADER_ASYNC):
        by_id.setdefault(received.headers.get("webhook-id", ""), []).append(
            received.body
        )

    for trigger, body in acknowledged.items():
        # Repeats are allowed (at least once), and all carry the same body.
        assert set(by_id["msg_" + trigger]) == {body}

    assert_no_leak(relay.log_lines, chain.forbidden)
    assert_no_leak(again.log_lines, chain.forbidden)
