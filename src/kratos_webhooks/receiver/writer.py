"""One writer thread that commits SQLite writes in batches (group commit).

Every write is a job: a function run on the writer's connection. The thread
takes the first job waiting, then every job that arrived meanwhile, runs them
all in one transaction and commits once. Jobs that arrive while a commit (and
its fsync) runs wait for the next batch, so one fsync serves many requests. A
job's caller is resolved only after its batch has committed.
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
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = ["BatchWriter", "WriterClosed"]

T = TypeVar("T")

DEFAULT_MAX_BATCH: Final = 1024

logger = logging.getLogger("kratos_webhooks.server")


class WriterClosed(RuntimeError):
    """A write was submitted after the writer was closed."""


@dataclass(slots=True)
class _Job:
    """A write and the one caller waiting for it: a thread or an event loop."""

    run: Callable[[sqlite3.Connection], Any]
    future: Future[Any] | None = None
    waiter: asyncio.Future[Any] | None = None
    result: Any = None
    error: BaseException | None = None

    def start(self) -> bool:
        """Return False when the caller has given up, so the job can be skipped."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()

        # Read from another thread: a cancellation that races with this check
        # only means the write is committed for a caller that no longer waits.
        return self.waiter is None or not self.waiter.cancelled()


Outcome = tuple[_Job, Any, BaseException | None]


class BatchWriter:
    """Run write jobs on one connection in one thread, committing in batches.

    `connect` makes the connection in the writer thread; it must be in
    autocommit mode (`isolation_level=None`) because the writer issues BEGIN
    and COMMIT itself. `on_commit(size, seconds)` is called after each commit.
    `periodic(connection)` runs in a batch every `period` seconds, for
    housekeeping such as expiry.
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
        """Queue a job; the future resolves once the job's batch is committed.

        Raises:
            WriterClosed: the writer is closed or closing.
        """
        future: Future[T] = Future()
        self._put(_Job(run, future=future))
        return future

    async def run(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Queue a job and wait, without blocking the event loop, for its commit.

        Raises:
            WriterClosed: the writer is closed or closing.
        """
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._put(_Job(run, waiter=waiter))
        return await waiter

    def close(self) -> None:
        """Commit every queued job, then stop the thread; idempotent."""
        with self._lock:
            if self._closed:
                return

            self._closed = True
            self._queue.put(None)

        if self._thread.is_alive():
            self._thread.join()

    def _put(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise WriterClosed("the state store is closed")

            self._queue.put(job)

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
                    batch.append(_periodic_job(self._periodic))
                    next_periodic = time.monotonic() + self._period

                if batch:
                    self._commit(connection, batch)
        finally:
            connection.close()

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
        jobs = [job for job in batch if job.start()]

        try:
            if not _run_together(connection, jobs):
                _run_apart(connection, jobs)

            connection.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - passed on to every caller
            # Every caller must hear back, whatever failed, or it waits
            # forever; none of the batch was committed.
            _rollback(connection)
            logger.error("state commit of %d writes failed: %s", len(jobs), exc)

            for job in jobs:
                job.result, job.error = None, exc

            _settle(jobs)
            return

        if self._on_commit is not None:
            try:
                self._on_commit(len(jobs), time.perf_counter() - started)
            except Exception:
                logger.exception("state commit callback failed")

        _settle(jobs)


def _run_together(connection: sqlite3.Connection, jobs: list[_Job]) -> bool:
    """Run every job in one transaction; False, rolled back, if any job raised."""
    connection.execute("BEGIN IMMEDIATE")

    for job in jobs:
        try:
            job.result, job.error = job.run(connection), None
        except Exception:  # noqa: BLE001 - the batch runs again, job by job
            _rollback(connection)
            return False

    return True


def _run_apart(connection: sqlite3.Connection, jobs: list[_Job]) -> None:
    """Run every job in its own savepoint, so a failing job rolls back alone.

    This slower path runs only after a job of the batch raised, so the common
    batch pays for no savepoints.
    """
    connection.execute("BEGIN IMMEDIATE")

    for job in jobs:
        connection.execute("SAVEPOINT job")

        try:
            job.result, job.error = job.run(connection), None
        except Exception as exc:  # noqa: BLE001 - raised again by the caller
            connection.execute("ROLLBACK TO job")
            job.result, job.error = None, exc

        connection.execute("RELEASE job")


def _settle(jobs: list[_Job]) -> None:
    """Hand each caller its result: threads at once, each event loop in one call."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}

    for job in jobs:
        if job.future is not None:
            if job.error is None:
                job.future.set_result(job.result)
            else:
                job.future.set_exception(job.error)
        elif job.waiter is not None:
            by_loop.setdefault(job.waiter.get_loop(), []).append(job)

    for loop, waiting in by_loop.items():
        # One wake-up of the loop per batch, not one per job.
        try:
            loop.call_soon_threadsafe(_settle_waiters, waiting)
        except RuntimeError:
            logger.warning(
                "an event loop closed before %d writes settled", len(waiting)
            )


def _settle_waiters(jobs: list[_Job]) -> None:
    for job in jobs:
        waiter = job.waiter

        if waiter is None or waiter.done():
            continue

        if job.error is None:
            waiter.set_result(job.result)
        else:
            waiter.set_exception(job.error)


def _periodic_job(run: Callable[[sqlite3.Connection], object]) -> _Job:
    future: Future[object] = Future()
    future.add_done_callback(_log_periodic_failure)
    return _Job(run, future=future)


def _log_periodic_failure(future: Future[Any]) -> None:
    error = future.exception()

    if error is not None:
        logger.error("state housekeeping failed: %s", error)


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("state rollback failed")
