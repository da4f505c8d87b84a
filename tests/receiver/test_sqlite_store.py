from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from kratos_webhooks.errors import ConfigError, IdempotencyConflict
from kratos_webhooks.observability.metrics import Metrics
from kratos_webhooks.receiver.sqlite_store import SqliteStateStore
from kratos_webhooks.receiver.state import (
    DEFAULT_IDEMPOTENCY_WINDOW,
    StateStore,
    StorageError,
    StorageNotFound,
    StoredAnswer,
    body_digest,
)

from .helpers import ACCEPTED, ROUTE, FakeClock, count_rows, running_store

BODY = b'{"identity": {"id": "9f425a8d-7efc-4768-8f23-7647a74fdf13"}}'
DIGEST = body_digest(BODY)


async def accept(store: StateStore, key: str, *, route: str = ROUTE) -> bool:
    _, created = await store.accept_event(
        route=route,
        key=key,
        body=BODY,
        content_type="application/json",
        answer=ACCEPTED,
    )
    return created


async def find(
    store: StateStore, key: str, *, route: str = ROUTE
) -> StoredAnswer | None:
    return await store.find_answer(route=route, key=key, body_digest=DIGEST)


def test_database_uses_wal_and_full_sync(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            assert store._writer is not None
            synchronous = await store._writer.run(
                lambda c: c.execute("PRAGMA synchronous").fetchone()[0]
            )
            assert synchronous == 2  # FULL

    asyncio.run(scenario())

    with closing(sqlite3.connect(tmp_path / "state.db")) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()

    assert mode == "wal"


def test_accepted_event_is_visible_to_other_connections(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            assert await accept(store, "msg_1")
            assert count_rows(tmp_path / "state.db", "inbox") == 1
            assert count_rows(tmp_path / "state.db", "idempotency") == 1

    asyncio.run(scenario())


def test_accept_returns_only_after_commit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            await accept(store, "msg_warm_up")
            blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")

            try:
                task = asyncio.create_task(accept(store, "msg_blocked"))
                await asyncio.sleep(0.5)
                assert not task.done()
            finally:
                blocker.execute("COMMIT")
                blocker.close()

            assert await asyncio.wait_for(task, timeout=5)
            assert count_rows(tmp_path / "state.db", "inbox") == 2

    asyncio.run(scenario())


def test_concurrent_accepts_share_commits(tmp_path: Path) -> None:
    metrics = Metrics()

    async def scenario() -> None:
        async with running_store(tmp_path, metrics=metrics.state) as store:
            results = await asyncio.gather(
                *(accept(store, f"msg_{n}") for n in range(300))
            )
            assert all(results)

    asyncio.run(scenario())

    registry = metrics.registry
    commits = registry.get_sample_value("kratos_webhooks_state_commit_batch_size_count")
    written = registry.get_sample_value("kratos_webhooks_state_commit_batch_size_sum")
    assert written == 300
    assert commits is not None
    assert commits <= 30
    assert count_rows(tmp_path / "state.db", "inbox") == 300


def test_repeat_gets_first_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            assert await find(store, "msg_1") is None
            assert await accept(store, "msg_1")

            other = StoredAnswer(202, b'{"other": true}')
            answer, created = await store.accept_event(
                route=ROUTE,
                key="msg_1",
                body=BODY,
                content_type="application/json",
                answer=other,
            )
            assert not created
            assert answer == ACCEPTED
            assert await find(store, "msg_1") == ACCEPTED
            assert store.depth()["pending"] == 1

    asyncio.run(scenario())


def test_keys_are_scoped_by_route(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            assert await accept(store, "msg_1", route="/hooks/a")
            assert await accept(store, "msg_1", route="/hooks/b")
            assert not await accept(store, "msg_1", route="/hooks/a")
            assert await find(store, "msg_1", route="/hooks/c") is None
            assert store.depth()["pending"] == 2

    asyncio.run(scenario())


def test_repeat_in_one_batch_is_stored_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            results = await asyncio.gather(
                *(accept(store, "msg_same") for _ in range(50))
            )
            assert results.count(True) == 1
            assert store.depth()["pending"] == 1

    asyncio.run(scenario())


def test_window_defaults_to_a_day(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite://{tmp_path / 'state.db'}")
    assert store.idempotency_window == DEFAULT_IDEMPOTENCY_WINDOW == 86400


def test_records_expire_after_window(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with running_store(tmp_path, clock=clock, idempotency_window=60) as store:
            assert await accept(store, "msg_1")
            clock.advance(59)
            assert not await accept(store, "msg_1")
            assert await find(store, "msg_1") == ACCEPTED

            clock.advance(2)
            assert await find(store, "msg_1") is None
            assert await accept(store, "msg_1")
            assert store.depth()["pending"] == 2

    asyncio.run(scenario())


def test_expire_drops_old_records_and_deliveries(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with running_store(tmp_path, clock=clock, idempotency_window=60) as store:
            for key in ("msg_1", "msg_2", "msg_3"):
                assert await accept(store, key)

            first, second, third = sorted(e.id for e in store.list_events())
            await store.mark_delivered(first, clock())
            await store.mark_failed(
                second, error="upstream returned HTTP 500", next_attempt_at=None
            )
            clock.advance(30)
            assert await store.expire(clock()) == 0

            clock.advance(31)
            # Three records and one delivered event; the dead letter and the
            # pending event stay.
            assert await store.expire(clock()) == 4
            assert count_rows(tmp_path / "state.db", "idempotency") == 0
            assert store.get_event(first) is None
            assert store.get_event(second) is not None
            assert store.get_event(third) is not None

    asyncio.run(scenario())


def test_remember_answer_keeps_the_first(tmp_path: Path) -> None:
    first = StoredAnswer(200, b"{}")
    second = StoredAnswer(400, b'{"messages": []}')

    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            assert (
                await store.remember_answer(
                    route=ROUTE, key="k", answer=first, body_digest=DIGEST
                )
                == first
            )
            assert (
                await store.remember_answer(
                    route=ROUTE, key="k", answer=second, body_digest=DIGEST
                )
                == first
            )
            assert await find(store, "k") == first
            assert store.depth() == {"pending": 0, "delivered": 0, "dead": 0}

    asyncio.run(scenario())


def test_failed_and_dead_events_then_redrive(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with running_store(tmp_path, clock=clock) as store:
            for key in ("msg_1", "msg_2", "msg_3"):
                await accept(store, key)

            first, second, third = sorted(e.id for e in store.list_events())
            await store.mark_failed(
                first, error="timed out", next_attempt_at=clock() + 5
            )
            await store.mark_failed(
                second, error="upstream returned HTTP 500", next_attempt_at=None
            )
            await store.mark_failed(
                third, error="upstream returned HTTP 404", next_attempt_at=None
            )

            retried = store.get_event(first)
            assert retried is not None
            assert retried.state == "pending"
            assert retried.attempts == 1
            assert retried.next_attempt_at == clock() + 5
            assert retried.last_error == "timed out"
            assert [e.id for e in await store.due_events(clock(), 10)] == []
            assert await store.next_attempt_at(clock()) == clock() + 5
            assert store.depth() == {"pending": 1, "delivered": 0, "dead": 2}
            assert [e.id for e in store.list_events(state="dead")] == [third, second]

            clock.advance(100)
            assert store.redrive(first) == 0
            assert store.redrive(second) == 1
            redriven = store.get_event(second)
            assert redriven is not None
            assert redriven.state == "pending"
            assert redriven.attempts == 0
            assert redriven.retry_since == clock()
            assert redriven.next_attempt_at == clock()
            assert store.redrive(None) == 1
            assert store.depth() == {"pending": 3, "delivered": 0, "dead": 0}
            due = await store.due_events(clock(), 10)
            assert [e.id for e in due] == [first, second, third]

    asyncio.run(scenario())


def test_due_events_filter_by_route(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with running_store(tmp_path, clock=clock) as store:
            await accept(store, "msg_1", route="/hooks/a")
            await accept(store, "msg_2", route="/hooks/b")
            due = await store.due_events(clock(), 10, routes=["/hooks/b"])
            assert [e.route for e in due] == ["/hooks/b"]
            assert await store.due_events(clock(), 10, routes=[]) == []

    asyncio.run(scenario())


def test_due_events_skip_excluded_ids(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with running_store(tmp_path, clock=clock) as store:
            for number in range(4):
                await accept(store, f"msg_{number}", route="/hooks/a")

            every = [e.id for e in await store.due_events(clock(), 10)]
            due = await store.due_events(clock(), 2, exclude=every[:2])
            assert [e.id for e in due] == every[2:]
            due = await store.due_events(
                clock(), 10, routes=["/hooks/a"], exclude={every[1]}
            )
            assert [e.id for e in due] == [every[0], *every[2:]]

    asyncio.run(scenario())


def test_event_keeps_body_and_content_type(tmp_path: Path) -> None:
    body = bytes(range(256)) + b"\r\n  {}"

    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            await store.accept_event(
                route=ROUTE,
                key="msg_bytes",
                body=body,
                content_type="application/json; charset=utf-8",
                answer=ACCEPTED,
            )
            (event,) = store.list_events()
            assert event.body == body
            assert event.content_type == "application/json; charset=utf-8"
            assert event.webhook_id == "msg_bytes"
            assert event.attempts == 0

    asyncio.run(scenario())


def test_close_commits_pending_writes(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = StateStore.open(f"sqlite://{tmp_path / 'state.db'}")
        await store.start()
        tasks = [asyncio.create_task(accept(store, f"msg_{n}")) for n in range(100)]
        await asyncio.sleep(0)
        await store.close()
        await store.close()
        assert all(await asyncio.gather(*tasks))

        with pytest.raises(StorageError):
            await accept(store, "msg_late")

    asyncio.run(scenario())
    assert count_rows(tmp_path / "state.db", "inbox") == 100


def test_reading_missing_database_creates_nothing(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite://{tmp_path / 'absent.db'}")

    with pytest.raises(StorageNotFound, match="no state database"):
        store.list_events()

    with pytest.raises(StorageNotFound, match="no state database"):
        store.redrive(None)

    assert not (tmp_path / "absent.db").exists()


def test_newer_schema_is_rejected(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "state.db")) as connection:
        connection.execute("PRAGMA user_version = 99")

    async def scenario() -> None:
        store = StateStore.open(f"sqlite://{tmp_path / 'state.db'}")

        with pytest.raises(StorageError, match="schema version 99"):
            await store.start()

    asyncio.run(scenario())


def test_memory_url_uses_a_temporary_file() -> None:
    async def scenario() -> None:
        store = StateStore.open("sqlite://:memory:")
        assert isinstance(store, SqliteStateStore)
        path = Path(store.path)
        await store.start()
        assert await accept(store, "msg_1")
        assert path.exists()
        await store.close()
        assert not path.parent.exists()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://db/state", "PostgreSQL storage is not supported"),
        ("postgres://db/state", "PostgreSQL storage is not supported"),
        ("redis://localhost", "invalid storage URL"),
        ("state.db", "invalid storage URL"),
        ("sqlite:/state.db", "invalid storage URL"),
        ("sqlite://", "needs a file path"),
    ],
)
def test_open_rejects_unsupported_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StateStore.open(url)


@pytest.mark.parametrize("window", [0, -1, float("nan")])
def test_open_rejects_bad_window(tmp_path: Path, window: float) -> None:
    with pytest.raises(ConfigError, match="idempotency_window"):
        StateStore.open(f"sqlite://{tmp_path / 'state.db'}", idempotency_window=window)


def test_cancelled_accept_is_not_stored(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            assert store._writer is not None
            started = threading.Event()
            gate = threading.Event()

            def hold(connection: sqlite3.Connection) -> None:
                started.set()
                gate.wait(5)

            holding = store._writer.submit(hold)
            assert started.wait(5)
            task = asyncio.create_task(accept(store, "msg_gone"))
            await asyncio.sleep(0.05)
            task.cancel()
            gate.set()
            holding.result(5)

            with pytest.raises(asyncio.CancelledError):
                await task

            assert await accept(store, "msg_next")
            assert [e.webhook_id for e in store.list_events()] == ["msg_next"]

    asyncio.run(scenario())


def test_delivery_clears_last_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            await accept(store, "msg_retried")
            (event,) = store.list_events()
            await store.mark_failed(event.id, error="HTTP 503", next_attempt_at=1.0)

            assert store.list_events()[0].last_error == "HTTP 503"

            await store.mark_delivered(event.id, 2.0)
            delivered = store.get_event(event.id)

            assert delivered is not None
            assert delivered.state == "delivered"
            assert delivered.attempts == 2
            assert delivered.last_error is None

    asyncio.run(scenario())


def test_repeat_key_with_another_body_conflicts(tmp_path: Path) -> None:
    other_body = BODY.replace(b"9f425a8d", b"00000000")

    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            assert await accept(store, "msg_1")

            with pytest.raises(IdempotencyConflict):
                await store.accept_event(
                    route=ROUTE,
                    key="msg_1",
                    body=other_body,
                    content_type="application/json",
                    answer=ACCEPTED,
                )

            with pytest.raises(IdempotencyConflict):
                await store.find_answer(
                    route=ROUTE, key="msg_1", body_digest=body_digest(other_body)
                )

            # The first event stays, alone and unchanged.
            (event,) = store.list_events()
            assert event.body == BODY

    asyncio.run(scenario())


def test_remember_answer_conflicts_on_another_body(tmp_path: Path) -> None:
    answer = StoredAnswer(200, b"{}")

    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            await store.remember_answer(
                route=ROUTE, key="k", answer=answer, body_digest=DIGEST
            )

            with pytest.raises(IdempotencyConflict):
                await store.remember_answer(
                    route=ROUTE, key="k", answer=answer, body_digest=body_digest(b"{}")
                )

    asyncio.run(scenario())


def test_conflict_ends_with_the_window(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with running_store(tmp_path, clock=clock, idempotency_window=60) as store:
            assert await accept(store, "msg_1")
            clock.advance(61)
            _, created = await store.accept_event(
                route=ROUTE,
                key="msg_1",
                body=b"{}",
                content_type="application/json",
                answer=ACCEPTED,
            )
            assert created

    asyncio.run(scenario())


def test_database_of_an_older_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"

    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA user_version = 1")

    async def scenario() -> None:
        store = StateStore.open(f"sqlite://{path}")

        with pytest.raises(StorageError, match="schema version 1"):
            await store.start()

        await store.close()

    asyncio.run(scenario())
