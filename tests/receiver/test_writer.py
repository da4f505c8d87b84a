from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from kratos_webhooks.receiver.writer import BatchWriter, WriterClosed


def connect_to(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER UNIQUE)")
    return connection


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[BatchWriter]:
    writer = BatchWriter(lambda: connect_to(tmp_path / "w.db"))
    writer.start()
    yield writer
    writer.close()


def insert(value: int) -> object:
    def run(connection: sqlite3.Connection) -> int:
        connection.execute("INSERT INTO t VALUES (?)", (value,))
        return value

    return run


def hold(writer: BatchWriter) -> tuple[threading.Event, Future[bool]]:
    """Occupy the writer with a job until the returned gate is set."""
    started = threading.Event()
    gate = threading.Event()

    def wait(connection: sqlite3.Connection) -> bool:
        started.set()
        return gate.wait(5)

    blocker = writer.submit(wait)
    assert started.wait(5)
    return gate, blocker


def values(path: Path) -> list[int]:
    connection = sqlite3.connect(path)

    try:
        return [v for (v,) in connection.execute("SELECT v FROM t ORDER BY v")]
    finally:
        connection.close()


def test_failing_job_rolls_back_alone(tmp_path: Path, writer: BatchWriter) -> None:
    # The first job occupies the writer, so the next three land in one batch.
    gate, blocker = hold(writer)
    futures = [writer.submit(insert(v)) for v in (1, 1, 2)]  # type: ignore[arg-type]
    gate.set()
    assert blocker.result(5) is True
    assert futures[0].result(5) == 1

    with pytest.raises(sqlite3.IntegrityError):
        futures[1].result(5)

    assert futures[2].result(5) == 2
    assert values(tmp_path / "w.db") == [1, 2]


def test_failed_commit_fails_every_job(tmp_path: Path, writer: BatchWriter) -> None:
    gate, blocker = hold(writer)
    # COMMIT inside a job ends the writer's transaction, so its own COMMIT fails.
    futures = [
        writer.submit(insert(7)),  # type: ignore[arg-type]
        writer.submit(lambda c: c.execute("COMMIT")),
        writer.submit(insert(8)),  # type: ignore[arg-type]
    ]
    gate.set()
    assert blocker.result(5) is True

    for future in futures:
        with pytest.raises(sqlite3.Error):
            future.result(5)

    assert writer.submit(insert(9)).result(5) == 9  # type: ignore[arg-type]


def test_cancelled_job_is_skipped(tmp_path: Path, writer: BatchWriter) -> None:
    gate, blocker = hold(writer)
    cancelled = writer.submit(insert(1))  # type: ignore[arg-type]
    remaining = writer.submit(insert(2))  # type: ignore[arg-type]
    assert cancelled.cancel()
    gate.set()
    blocker.result(5)
    assert remaining.result(5) == 2
    assert values(tmp_path / "w.db") == [2]


def test_submit_after_close_raises(tmp_path: Path) -> None:
    writer = BatchWriter(lambda: connect_to(tmp_path / "w.db"))
    writer.start()
    pending = [writer.submit(insert(v)) for v in range(50)]  # type: ignore[arg-type]
    writer.close()
    writer.close()
    assert [f.result(0) for f in pending] == list(range(50))

    with pytest.raises(WriterClosed):
        writer.submit(insert(99))  # type: ignore[arg-type]


def test_start_raises_connection_error(tmp_path: Path) -> None:
    def fail_to_connect() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    writer = BatchWriter(fail_to_connect)

    with pytest.raises(sqlite3.OperationalError):
        writer.start()


def test_periodic_job_runs_while_busy(tmp_path: Path) -> None:
    runs: list[float] = []
    writer = BatchWriter(
        lambda: connect_to(tmp_path / "w.db"),
        periodic=lambda c: runs.append(time.monotonic()),
        period=0.05,
    )
    writer.start()

    try:
        deadline = time.monotonic() + 0.5

        while time.monotonic() < deadline:
            writer.submit(lambda c: None).result(5)

        assert len(runs) >= 3
    finally:
        writer.close()


def test_commit_callback_gets_batch_sizes(tmp_path: Path) -> None:
    sizes: list[int] = []
    writer = BatchWriter(
        lambda: connect_to(tmp_path / "w.db"),
        on_commit=lambda size, seconds: sizes.append(size),
    )
    writer.start()

    try:
        gate, _ = hold(writer)
        futures = [writer.submit(insert(v)) for v in range(10)]  # type: ignore[arg-type]
        gate.set()

        for future in futures:
            future.result(5)
    finally:
        writer.close()

    assert sizes == [1, 10]
