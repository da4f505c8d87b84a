from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from kratos_webhooks.errors import SignatureMismatch
from kratos_webhooks.observability.metrics import Metrics
from kratos_webhooks.receiver.delivery import (
    DeliveryTarget,
    DeliveryWorker,
    RetryPolicy,
)
from kratos_webhooks.receiver.sqlite_store import SqliteStateStore
from kratos_webhooks.receiver.state import StateStore
from kratos_webhooks.secrets import HmacKey, KeySet
from kratos_webhooks.signing import Verifier

from .helpers import ACCEPTED, ROUTE, running_store
from .upstream import Upstream

SAMPLES = Path(__file__).parents[1] / "data" / "kratos"
LOGIN = (SAMPLES / "04-login-after-password-browser.passthrough.json").read_bytes()
UPSTREAM_KEY = HmacKey.generate()
KRATOS_KEY = HmacKey.generate()
FAST = RetryPolicy(initial_backoff=0.02, max_backoff=0.1, jitter=0.0, max_attempts=50)


def target(upstream: Upstream, **options: object) -> DeliveryTarget:
    return DeliveryTarget(upstream.url, KeySet.of(UPSTREAM_KEY), **options)  # type: ignore[arg-type]


async def accept(
    store: StateStore, key: str, body: bytes = LOGIN, *, route: str = ROUTE
) -> int:
    _, created = await store.accept_event(
        route=route,
        key=key,
        body=body,
        content_type="application/json",
        answer=ACCEPTED,
    )
    assert created
    (event,) = [e for e in store.list_events() if e.webhook_id == key]
    return event.id


@asynccontextmanager
async def running_worker(
    store: StateStore, targets: dict[str, DeliveryTarget], **options: object
) -> AsyncIterator[DeliveryWorker]:
    worker = DeliveryWorker(store, targets, **options)  # type: ignore[arg-type]
    await worker.start()

    try:
        yield worker
    finally:
        await worker.stop()


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout

    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_delivery_is_byte_identical_and_signed(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        await upstream.start()

        async with running_store(tmp_path) as store:
            samples = sorted(SAMPLES.glob("0*.json"))

            for number, sample in enumerate(samples):
                await accept(store, f"msg_sample{number}", sample.read_bytes())

            async with running_worker(store, {ROUTE: target(upstream)}) as worker:
                worker.wake()
                await upstream.wait_for(len(samples))
                await wait_until(lambda: store.depth()["delivered"] == len(samples))

        await upstream.stop()
        received = {r.headers["webhook-id"]: r for r in upstream.received}
        verifier = Verifier(KeySet.of(UPSTREAM_KEY))
        library = Webhook(UPSTREAM_KEY.encode())

        for number, sample in enumerate(samples):
            request = received[f"msg_sample{number}"]
            assert request.body == sample.read_bytes()
            assert request.path == "/deliveries"
            assert request.headers["content-type"] == "application/json"
            assert request.headers["webhook-attempt"] == "1"
            assert verifier.verify(request.body, request.headers).msg_id == (
                f"msg_sample{number}"
            )
            library.verify(request.body, request.headers)

            with pytest.raises(SignatureMismatch):
                Verifier(KeySet.of(KRATOS_KEY)).verify(request.body, request.headers)

    asyncio.run(scenario())


def test_original_content_type_is_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        await upstream.start()

        async with running_store(tmp_path) as store:
            await store.accept_event(
                route=ROUTE,
                key="msg_form",
                body=b"a=1&b=2",
                content_type="application/x-www-form-urlencoded",
                answer=ACCEPTED,
            )

            async with running_worker(store, {ROUTE: target(upstream)}) as worker:
                worker.wake()
                await upstream.wait_for(1)

        await upstream.stop()
        (request,) = upstream.received
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.body == b"a=1&b=2"

    asyncio.run(scenario())


def test_wake_delivers_without_waiting_for_poll(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        await upstream.start()

        async with running_store(tmp_path) as store:
            targets = {ROUTE: target(upstream)}

            async with running_worker(store, targets, poll_interval=60.0) as worker:
                await asyncio.sleep(0.1)
                await accept(store, "msg_now")
                started = time.monotonic()
                worker.wake()
                await upstream.wait_for(1, timeout=2.0)
                assert time.monotonic() - started < 1.0

        await upstream.stop()

    asyncio.run(scenario())


def test_outage_backs_off_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "kratos_webhooks.delivery")
    metrics = Metrics()

    async def scenario() -> None:
        upstream = Upstream()
        await upstream.start()
        await upstream.stop()

        async with running_store(tmp_path) as store:
            ids = [await accept(store, f"msg_{n}") for n in range(5)]
            targets = {ROUTE: target(upstream, retry=FAST)}

            async with running_worker(
                store, targets, metrics=metrics.delivery, poll_interval=0.05
            ) as worker:
                worker.wake()
                await wait_until(
                    lambda: all(e.attempts >= 3 for e in store.list_events())
                )

                for event in store.list_events():
                    assert event.state == "pending"
                    assert event.last_error is not None
                    assert event.last_error.startswith("ConnectError")

                await upstream.start()
                await wait_until(lambda: store.depth()["delivered"] == 5)

        await upstream.stop()
        assert sorted(r.headers["webhook-id"] for r in upstream.received) == [
            f"msg_{n}" for n in range(5)
        ]
        assert all(int(r.headers["webhook-attempt"]) > 3 for r in upstream.received)
        failures = [r for r in caplog.records if r.message == "delivery_failed"]
        assert {getattr(r, "event_id", None) for r in failures} == set(ids)
        assert all(r.levelno == logging.WARNING for r in failures)
        assert all(getattr(r, "route", None) == ROUTE for r in failures)
        assert all(getattr(r, "attempt", 0) >= 1 for r in failures)
        assert all(getattr(r, "error", "").startswith("ConnectError") for r in failures)
        assert all(getattr(r, "retry_in_seconds", -1) >= 0 for r in failures)

    asyncio.run(scenario())
    registry = metrics.registry
    unreachable = registry.get_sample_value(
        "kratos_webhooks_delivery_attempts_total",
        {"route": ROUTE, "outcome": "unreachable"},
    )
    delivered = registry.get_sample_value(
        "kratos_webhooks_delivery_attempts_total",
        {"route": ROUTE, "outcome": "delivered"},
    )
    latency = registry.get_sample_value(
        "kratos_webhooks_delivery_latency_seconds_count", {"route": ROUTE}
    )
    assert unreachable is not None
    assert unreachable >= 15
    assert delivered == 5
    assert latency == 5


def test_backoff_spaces_attempts(tmp_path: Path) -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.4, jitter=0.0)

    async def scenario() -> None:
        upstream = Upstream(status=503)
        await upstream.start()

        async with running_store(tmp_path) as store:
            await accept(store, "msg_spaced")
            targets = {ROUTE: target(upstream, retry=policy)}

            async with running_worker(store, targets, poll_interval=0.01) as worker:
                worker.wake()
                await upstream.wait_for(5, timeout=5)

        await upstream.stop()

    started = time.monotonic()
    asyncio.run(scenario())
    # 0.1 + 0.2 + 0.4 + 0.4 seconds between the five attempts.
    assert time.monotonic() - started >= 1.1


def test_dead_letter_after_last_attempt_then_redrive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "kratos_webhooks.delivery")
    metrics = Metrics()
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_attempts=3)

    async def scenario() -> None:
        upstream = Upstream(status=500)
        await upstream.start()

        async with running_store(tmp_path) as store:
            event_id = await accept(store, "msg_doomed")
            targets = {ROUTE: target(upstream, retry=policy)}

            async with running_worker(
                store, targets, metrics=metrics.delivery, poll_interval=0.05
            ) as worker:
                worker.wake()
                await wait_until(lambda: store.depth()["dead"] == 1)
                await asyncio.sleep(0.2)
                assert len(upstream.received) == 3

                dead = store.get_event(event_id)
                assert dead is not None
                assert dead.attempts == 3
                assert dead.last_error == "upstream returned HTTP 500"

                upstream.status = 204
                assert store.redrive(event_id) == 1
                worker.wake()
                await wait_until(lambda: store.depth()["delivered"] == 1)

        await upstream.stop()
        attempts = [r.headers["webhook-attempt"] for r in upstream.received]
        assert attempts == ["1", "2", "3", "1"]
        assert {r.headers["webhook-id"] for r in upstream.received} == {"msg_doomed"}
        (letter,) = [r for r in caplog.records if r.message == "dead_letter"]
        assert letter.levelno == logging.WARNING
        assert getattr(letter, "event_id", None) == event_id
        assert getattr(letter, "webhook_id", None) == "msg_doomed"
        assert getattr(letter, "attempt", None) == 3

    asyncio.run(scenario())
    dead_letters = metrics.registry.get_sample_value(
        "kratos_webhooks_dead_letters_total", {"route": ROUTE}
    )
    rejected = metrics.registry.get_sample_value(
        "kratos_webhooks_delivery_attempts_total",
        {"route": ROUTE, "outcome": "rejected"},
    )
    assert dead_letters == 1
    assert rejected == 3


def test_dead_letter_when_age_runs_out(tmp_path: Path) -> None:
    policy = RetryPolicy(initial_backoff=0.3, max_backoff=0.3, max_age=0.5, jitter=0.0)

    async def scenario() -> None:
        upstream = Upstream(status=502)
        await upstream.start()

        async with running_store(tmp_path) as store:
            await accept(store, "msg_old")
            targets = {ROUTE: target(upstream, retry=policy)}

            async with running_worker(store, targets, poll_interval=0.05) as worker:
                worker.wake()
                await wait_until(lambda: store.depth()["dead"] == 1)

        await upstream.stop()
        # Attempts at 0 and 0.3 s; a third at 0.6 s would pass the 0.5 s age.
        assert len(upstream.received) == 2

    asyncio.run(scenario())


def test_redirect_is_not_followed(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream(status=307)
        await upstream.start()
        upstream.location = f"http://127.0.0.1:{upstream.port}/elsewhere"

        async with running_store(tmp_path) as store:
            event_id = await accept(store, "msg_moved")
            policy = RetryPolicy(max_attempts=1)

            async with running_worker(
                store, {ROUTE: target(upstream, retry=policy)}
            ) as worker:
                worker.wake()
                await wait_until(lambda: store.depth()["dead"] == 1)

            event = store.get_event(event_id)
            assert event is not None
            assert event.last_error == "upstream returned HTTP 307"

        await upstream.stop()
        assert [r.path for r in upstream.received] == ["/deliveries"]

    asyncio.run(scenario())


def test_attempt_timeout_is_bounded(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        upstream.delay = 5.0
        await upstream.start()

        async with running_store(tmp_path) as store:
            event_id = await accept(store, "msg_slow")
            policy = RetryPolicy(max_attempts=1)
            targets = {ROUTE: target(upstream, timeout=0.2, retry=policy)}
            started = time.monotonic()

            async with running_worker(store, targets) as worker:
                worker.wake()
                await wait_until(lambda: store.depth()["dead"] == 1)

            assert time.monotonic() - started < 2.0
            event = store.get_event(event_id)
            assert event is not None
            assert event.last_error == "timed out after 0.2 s"

        await upstream.stop()

    asyncio.run(scenario())


def test_pending_events_resume_after_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        await upstream.start()
        await upstream.stop()
        targets = {ROUTE: target(upstream, retry=FAST)}

        async with running_store(tmp_path) as store:
            for n in range(3):
                await accept(store, f"msg_{n}")

            async with running_worker(store, targets) as worker:
                worker.wake()
                await wait_until(lambda: all(e.attempts for e in store.list_events()))

        await upstream.start()

        async with running_store(tmp_path) as store:
            assert store.depth()["pending"] == 3

            async with running_worker(store, targets):
                await wait_until(lambda: store.depth()["delivered"] == 3)

        await upstream.stop()
        assert sorted(r.headers["webhook-id"] for r in upstream.received) == [
            "msg_0",
            "msg_1",
            "msg_2",
        ]
        assert all(r.headers["webhook-attempt"] != "1" for r in upstream.received)

    asyncio.run(scenario())


def test_each_event_is_delivered_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        upstream.delay = 0.01
        await upstream.start()

        async with running_store(tmp_path) as store:
            targets = {ROUTE: target(upstream)}

            async with running_worker(store, targets, concurrency=4) as worker:
                for n in range(60):
                    await accept(store, f"msg_{n}", b'{"n": %d}' % n)
                    worker.wake()

                await wait_until(lambda: store.depth()["delivered"] == 60)

        await upstream.stop()
        ids = [r.headers["webhook-id"] for r in upstream.received]
        assert len(ids) == 60
        assert len(set(ids)) == 60

    asyncio.run(scenario())


def test_stop_lets_attempt_in_flight_finish(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        upstream.delay = 0.3
        await upstream.start()

        async with running_store(tmp_path) as store:
            await accept(store, "msg_inflight")
            worker = DeliveryWorker(store, {ROUTE: target(upstream)})
            await worker.start()
            worker.wake()
            await upstream.wait_for(1)
            await worker.stop()
            assert store.depth()["delivered"] == 1

        await upstream.stop()

    asyncio.run(scenario())


def test_stop_cancels_attempt_after_grace(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        upstream.delay = 3.0
        await upstream.start()

        async with running_store(tmp_path) as store:
            event_id = await accept(store, "msg_cut")
            worker = DeliveryWorker(store, {ROUTE: target(upstream, timeout=10.0)})
            await worker.start()
            worker.wake()
            await upstream.wait_for(1)
            started = time.monotonic()
            await worker.stop(grace=0.0)
            assert time.monotonic() - started < 2.0
            event = store.get_event(event_id)
            assert event is not None
            assert event.state == "pending"
            assert event.attempts == 0

        await upstream.stop()

    asyncio.run(scenario())


def test_events_of_unknown_routes_stay_pending(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        await upstream.start()

        async with running_store(tmp_path) as store:
            await accept(store, "msg_known")
            await accept(store, "msg_orphan", route="/hooks/removed")

            async with running_worker(store, {ROUTE: target(upstream)}) as worker:
                worker.wake()
                await wait_until(lambda: store.depth()["delivered"] == 1)
                await asyncio.sleep(0.1)

            (orphan,) = store.list_events(state="pending")
            assert orphan.route == "/hooks/removed"
            assert orphan.attempts == 0

        await upstream.stop()

    asyncio.run(scenario())


def test_logs_hold_no_body_secret_or_signature(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.01, max_attempts=2)

    async def scenario() -> None:
        upstream = Upstream(status=400)
        await upstream.start()

        async with running_store(tmp_path) as store:
            await accept(store, "msg_quiet")

            async with running_worker(
                store, {ROUTE: target(upstream, retry=policy)}
            ) as worker:
                worker.wake()
                await wait_until(lambda: store.depth()["dead"] == 1)

        await upstream.stop()
        signatures = {r.headers["webhook-signature"] for r in upstream.received}
        text = "\n".join(
            f"{r.getMessage()} {sorted(vars(r).items())}" for r in caplog.records
        )
        assert "dead_letter" in text
        assert "FAKE" not in text
        assert "ory_kratos_session" not in text
        assert LOGIN.decode()[:40] not in text
        assert UPSTREAM_KEY.encode()[6:] not in text

        for signature in signatures:
            assert signature.split(",", 1)[1] not in text

    asyncio.run(scenario())


class _HeldRecords(SqliteStateStore):
    """A store whose delivery records wait until `release` is set."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.release = asyncio.Event()

    async def mark_delivered(self, event_id: int, now: float) -> None:
        await self.release.wait()
        await super().mark_delivered(event_id, now)


def test_slow_records_do_not_hold_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = Upstream()
        await upstream.start()
        store = _HeldRecords(str(tmp_path / "state.db"))
        await store.start()

        for number in range(40):
            await accept(store, f"msg_held{number}")

        try:
            targets = {ROUTE: target(upstream)}

            async with running_worker(store, targets, concurrency=2) as worker:
                worker.wake()
                # Two slots, yet attempts go on while eight results wait.
                await upstream.wait_for(8)
                await asyncio.sleep(0.3)
                assert len(upstream.received) == 8
                assert store.depth()["delivered"] == 0

                store.release.set()
                await wait_until(lambda: store.depth()["delivered"] == 40)
        finally:
            await store.close()
            await upstream.stop()

        assert len({r.headers["webhook-id"] for r in upstream.received}) == 40

    asyncio.run(scenario())


def test_delivery_lines_are_structured(tmp_path: Path) -> None:
    import io
    import json

    import structlog

    from kratos_webhooks.observability.logging import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    output = io.StringIO()
    configure_logging("info", output)
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_attempts=2)

    async def scenario() -> int:
        upstream = Upstream(status=503)
        await upstream.start()

        async with running_store(tmp_path) as store:
            event_id = await accept(store, "msg_structured")
            targets = {ROUTE: target(upstream, retry=policy)}

            async with running_worker(store, targets, poll_interval=0.05) as worker:
                worker.wake()
                await wait_until(lambda: store.depth()["dead"] == 1)

        await upstream.stop()
        return event_id

    try:
        event_id = asyncio.run(scenario())
    finally:
        root.handlers, level = saved
        root.setLevel(level)
        structlog.reset_defaults()

    records = [json.loads(line) for line in output.getvalue().splitlines()]
    delivery = [r for r in records if r["logger"] == "kratos_webhooks.delivery"]
    expected = {
        "event_id": event_id,
        "route": ROUTE,
        "webhook_id": "msg_structured",
        "error": "upstream returned HTTP 503",
        "level": "warning",
    }

    assert [r["event"] for r in delivery] == ["delivery_failed", "dead_letter"]
    assert [r["attempt"] for r in delivery] == [1, 2]
    assert delivery[0] | expected == delivery[0]
    assert delivery[1] | expected == delivery[1]
    assert delivery[0]["retry_in_seconds"] >= 0
    assert "retry_in_seconds" not in delivery[1]
