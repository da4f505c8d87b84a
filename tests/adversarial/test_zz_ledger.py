"""Runs last: every accepted event was delivered, no refused body ever was."""

from __future__ import annotations

import time

import pytest

from ..receiver.harness import ServeProcess, Upstream
from .conftest import Ledger, assert_no_leak, assert_nothing_refused_reached

pytestmark = pytest.mark.slow


def test_accepted_delivered_refused_not(
    receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    deadline = time.monotonic() + 15

    def missing() -> list[tuple[str, str]]:
        with upstream.lock:
            seen = {
                (r.path[3:], r.headers.get("webhook-id")) for r in upstream.received
            }

        return [
            (path, webhook_id)
            for path, events in ledger.accepted.items()
            for webhook_id in events
            if (path, webhook_id) not in seen
        ]

    while missing() and time.monotonic() < deadline:
        time.sleep(0.1)

    # Late deliveries of anything refused would show up here too.
    time.sleep(1.0)
    assert missing() == []
    assert_nothing_refused_reached(upstream, ledger)
    assert_no_leak(receiver, ledger)

    with upstream.lock:
        for request in upstream.received:
            events = ledger.accepted.get(request.path[3:], {})
            webhook_id = request.headers.get("webhook-id", "")

            if webhook_id in events:
                assert request.body == events[webhook_id]
