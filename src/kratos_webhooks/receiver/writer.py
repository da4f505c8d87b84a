"""One writer thread that commits SQLite writes in batches (group commit).

Every write is a job: a function run on the writer's connection. The thread
takes the first job waiting, then every job that arrived meanwhile, runs them
all in one transaction, each inside its own savepoint, and commits once. Jobs
that arrive while a commit (and its fsync) runs wait for the next batch, so one
fsync serves many requests. A job's future is resolved only after its batch
has committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

__all__ = ["BatchWriter", "WriterClosed"]

T = TypeVar("T")

DEFAULT_MAX_BATCH: Final = 1024

logger = logging.getLogger("kratos_webhooks.server")


class WriterClosed(RuntimeError):
    """A write was submitted after the writer was closed."""


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection], Any]
    future: Future[Any] = field(default_factory=Future)


class BatchWriter:
    """Run write jobs on one connection in one thread, committing in batches.

    `connect` makes the connection in the writer thread; it must be in
    autocommit mode (`isolation_level=None`) because the writer issues BEGIN
    and COMMIT itself. `on_commit(size, seconds)` is called after each commit.
    `periodic(connection)` runs in its own transaction every `period` seconds,
    for housekeeping such as expiry.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_commit: Callable[[int, float], None] | None = None,
        periodic: Callable[[sqlite3.Connection], object] | None = None,
        period: float = 60.0,
        name: str = "kratos-webhooks-writer",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")

        self._connect = connect
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._periodic = periodic
        self._period = period
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        self._closed = False
        self._ready: Future[None] = Future()

    def start(self) -> None:
        """Start the thread and wait until its connection is open.

        Raises:
            sqlite3.Error: the connection could not be made.
        """
        self._thread.start()
        self._ready.result()

    def submit(self, run: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue a job; its future resolves once the job's batch is committed.

        Raises:
            WriterClosed: the writer is closed or closing.
        """
        job = _Job(run)

        with self._lock:
            if self._closed:
                raise WriterClosed("the state store is closed")

            self._queue.put(job)

        return job.future

    async def run(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Queue a job and wait, without blocking the event loop, for its commit."""
        result: T = await asyncio.wrap_future(self.submit(run))
        return result

    def close(self) -> None:
        """Commit every queued job, then stop the thread; idempotent."""
        with self._lock:
            if self._closed:
                return

            self._closed = True
            self._queue.put(None)

        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            connection = self._connect()
        except Exception as exc:  # noqa: BLE001 - raised again by start()
            self._ready.set_exception(exc)
            return

        self._ready.set_result(None)
        next_periodic = time.monotonic() + self._period
        stop = False

        try:
            while not stop:
                timeout = None

                if self._periodic is not None:
                    timeout = max(0.0, next_periodic - time.monotonic())

                try:
                    first = self._queue.get(timeout=timeout)
                except queue.Empty:
                    batch: list[_Job] = []
                else:
                    batch, stop = self._gather(first)

                # Housekeeping rides along with a batch, so a writer that never
                # idles still runs it on time.
                if self._periodic is not None and time.monotonic() >= next_periodic:
                    batch.append(self._periodic_job(self._periodic))
                    next_periodic = time.monotonic() + self._period

                if batch:
                    self._commit(connection, batch)
        finally:
            connection.close()

    @staticmethod
    def _periodic_job(run: Callable[[sqlite3.Connection], object]) -> _Job:
        job = _Job(run)
        job.future.add_done_callback(_log_periodic_failure)
        return job

    def _gather(self, first: _Job | None) -> tuple[list[_Job], bool]:
        """Take `first` and every job queued behind it, and whether to stop after."""
        if first is None:
            return [], True

        batch = [first]

        while len(batch) < self._max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break

            if job is None:
                # The stop mark is last in the queue, because `close` refuses
                # new jobs before it puts the mark.
                return batch, True

            batch.append(job)

        return batch, False

    def _commit(self, connection: sqlite3.Connection, batch: list[_Job]) -> None:
        started = time.perf_counter()
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []

        try:
            connection.execute("BEGIN IMMEDIATE")

            for job in batch:
                if not job.future.set_running_or_notify_cancel():
                    continue

                outcomes.append(self._run_job(connection, job))

            connection.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - passed on to every caller
            # Every future must resolve, whatever failed, or its caller waits
            # forever; none of the batch was committed.
            _rollback(connection)
            logger.error("state commit of %d writes failed: %s", len(batch), exc)
            _fail_unresolved(batch, exc)
            return

        if self._on_commit is not None:
            try:
                self._on_commit(len(outcomes), time.perf_counter() - started)
            except Exception:
                logger.exception("state commit callback failed")

        for job, result, error in outcomes:
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)

    @staticmethod
    def _run_job(
        connection: sqlite3.Connection, job: _Job
    ) -> tuple[_Job, Any, BaseException | None]:
        # A savepoint per job lets one failing job roll back alone while the
        # rest of the batch still commits.
        connection.execute("SAVEPOINT job")

        try:
            result = job.run(connection)
        except Exception as exc:  # noqa: BLE001 - raised again by the caller
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            return job, None, exc

        connection.execute("RELEASE job")
        return job, result, None


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("state rollback failed")


def _fail_unresolved(batch: list[_Job], error: BaseException) -> None:
    for job in batch:
        future = job.future

        if future.done():
            continue

        if future.running() or future.set_running_or_notify_cancel():
            future.set_exception(error)


def _log_periodic_failure(future: Future[Any]) -> None:
    error = future.exception()

    if error is not None:
        logger.error("state housekeeping failed: %s", error)
