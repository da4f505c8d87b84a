"""The write-ahead log is copied back by a thread of its own, not by the writer."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from kratos_webhooks.receiver.checkpoint import WRITER_CHECKPOINT_PAGES, Checkpointer

from .helpers import ACCEPTED, ROUTE, count_rows, running_store

BODY = b'{"transient_payload": "' + b"x" * 2000 + b'"}'


def wal_database(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    connection.execute("CREATE TABLE t (body BLOB)")
    return connection


def test_checkpointer_copies_the_whole_log(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    passes: list[tuple[int, int]] = []
    copied_all = threading.Event()

    def record(log_pages: int, copied: int) -> None:
        passes.append((log_pages, copied))

        if log_pages > 0 and copied == log_pages:
            copied_all.set()

    with closing(wal_database(path)) as writer:
        for _ in range(200):
            writer.execute("INSERT INTO t VALUES (?)", (BODY,))

        checkpointer = Checkpointer(
            lambda: sqlite3.connect(path, check_same_thread=False),
            period=0.01,
            on_checkpoint=record,
        )
        checkpointer.start()

        try:
            assert copied_all.wait(10)
        finally:
            checkpointer.close()

    assert passes[-1][0] >= 200
    assert not checkpointer._thread.is_alive()


def test_close_stops_a_waiting_checkpointer_at_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"

    with closing(wal_database(path)):
        checkpointer = Checkpointer(
            lambda: sqlite3.connect(path, check_same_thread=False), period=60.0
        )
        checkpointer.start()
        started = time.monotonic()
        checkpointer.close()

    assert time.monotonic() - started < 5
    assert not checkpointer._thread.is_alive()


def test_unusable_database_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def connect() -> sqlite3.Connection:
        uri = f"file:{tmp_path / 'missing.db'}?mode=rw"
        return sqlite3.connect(uri, uri=True)

    checkpointer = Checkpointer(connect, period=0.01)

    with caplog.at_level(logging.ERROR):
        checkpointer.start()
        checkpointer._thread.join(10)

    assert not checkpointer._thread.is_alive()
    assert "state checkpoints disabled" in caplog.text


def test_writer_keeps_only_a_backstop_threshold(tmp_path: Path) -> None:
    async def scenario() -> int:
        async with running_store(tmp_path) as store:
            assert store._writer is not None
            return int(
                await store._writer.run(
                    lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
                )
            )

    assert asyncio.run(scenario()) == WRITER_CHECKPOINT_PAGES


def test_log_stays_short_under_constant_accepts(tmp_path: Path) -> None:
    """6,000 events of 2 KB, 50 at a time: about 12 MB through the log."""
    passes: list[tuple[int, int]] = []

    async def scenario() -> None:
        async with running_store(tmp_path) as store:
            assert store._checkpointer is not None
            store._checkpointer._on_checkpoint = lambda log, copied: passes.append(
                (log, copied)
            )

            for start in range(0, 6000, 50):
                await asyncio.gather(
                    *(
                        store.accept_event(
                            route=ROUTE,
                            key=f"event-{index}",
                            body=BODY,
                            content_type="application/json",
                            answer=ACCEPTED,
                        )
                        for index in range(start, start + 50)
                    )
                )

    asyncio.run(scenario())

    assert count_rows(tmp_path / "state.db", "inbox") == 6000
    copying = [(log, copied) for log, copied in passes if copied > 0]
    assert len(copying) >= 3
    # The log restarts at the writer's threshold: never much beyond it.
    assert max(log for log, _ in passes) < 2 * WRITER_CHECKPOINT_PAGES
