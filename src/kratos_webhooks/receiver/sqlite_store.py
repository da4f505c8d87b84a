"""The SQLite state store: WAL, `synchronous=FULL`, one batching writer thread.

Writes go through `BatchWriter`, so an accepted event is fsynced before its
caller hears of it. Reads use one connection per thread, and in WAL mode they do
not wait for the writer. The async read methods run on the event loop's thread,
because an indexed lookup costs less than a hop to a worker thread.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

from ..errors import ConfigError, IdempotencyConflict
from .checkpoint import WRITER_CHECKPOINT_PAGES, Checkpointer
from .inbox import EVENT_STATES, EventState, InboxEvent, shorten_error
from .state import (
    DEFAULT_IDEMPOTENCY_WINDOW,
    Clock,
    StateStore,
    StorageError,
    StorageNotFound,
    StoredAnswer,
)
from .state import body_digest as digest_of
from .writer import BatchWriter, WriterClosed

if TYPE_CHECKING:
    from ..observability.metrics import StateMetrics

__all__ = ["SCHEMA", "SqliteStateStore"]

T = TypeVar("T")

# Version 2 keeps a body digest with each idempotency record. No release wrote
# version 1, so an older database is refused rather than migrated.
SCHEMA_VERSION: Final = 2
# How long a connection waits for another process's write lock, such as an
# `inbox redrive` run beside the server, before it reports a failure.
BUSY_TIMEOUT: Final = 5.0
EXPIRY_PERIOD: Final = 60.0

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS idempotency (
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    body_digest BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (route, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    last_error TEXT,
    retry_since REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS inbox_state_due ON inbox (state, next_attempt_at);
"""

_EVENT_COLUMNS: Final = (
    "id, route, webhook_id, body, content_type, received_at, attempts, "
    "next_attempt_at, state, last_error, retry_since, delivered_at"
)


class SqliteStateStore(StateStore):
    """State in one SQLite file; `path` is a file path or `:memory:`.

    `:memory:` makes a private database file in a temporary directory that is
    removed on close, so it behaves like a file but keeps nothing: use it only
    in tests.
    """

    def __init__(
        self,
        path: str,
        *,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
        clock: Clock = time.time,
        metrics: StateMetrics | None = None,
    ) -> None:
        if not path:
            raise ConfigError("invalid storage URL: sqlite:// needs a file path")

        if not idempotency_window > 0:
            raise ConfigError("idempotency_window must be a positive number of seconds")

        self._temporary_dir: str | None = None

        if path == ":memory:":
            self._temporary_dir = tempfile.mkdtemp(prefix="kratos-webhooks-")
            path = str(Path(self._temporary_dir) / "state.db")

        self.path = path
        self.idempotency_window = float(idempotency_window)
        self._clock = clock
        self._metrics = metrics
        self._writer: BatchWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteStateStore({self.path!r})"

    # Lifecycle.

    async def start(self) -> None:
        if self._writer is not None:
            return

        if self._closed:
            raise StorageError("the state store is closed")

        on_commit = None if self._metrics is None else self._metrics.observe_commit
        writer = BatchWriter(
            self._open_writer,
            on_commit=on_commit,
            periodic=self._expire_job,
            period=EXPIRY_PERIOD,
        )

        try:
            await asyncio.to_thread(writer.start)
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot open the state database {self.path}: {exc}"
            ) from exc

        self._writer = writer
        self._checkpointer = Checkpointer(self._open_checkpointer)
        self._checkpointer.start()

    async def close(self) -> None:
        if self._closed:
            return

        self._closed = True

        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)

        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.close)

        with self._readers_lock:
            for connection in self._readers:
                connection.close()

            self._readers.clear()

        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)

    # Idempotency.

    async def find_answer(
        self, *, route: str, key: str, body_digest: bytes
    ) -> StoredAnswer | None:
        oldest = self._clock() - self.idempotency_window
        row = self._read_one(
            "SELECT status, body, content_type, body_digest FROM idempotency"
            " WHERE route = ? AND key = ? AND created_at > ?",
            (route, key, oldest),
        )
        return None if row is None else _stored(row, body_digest)

    async def accept_event(
        self,
        *,
        route: str,
        key: str,
        body: bytes,
        content_type: str,
        answer: StoredAnswer,
        body_digest: bytes | None = None,
    ) -> tuple[StoredAnswer, bool]:
        body = bytes(body)
        digest = digest_of(body) if body_digest is None else body_digest

        def accept(connection: sqlite3.Connection) -> tuple[StoredAnswer, bool]:
            now = self._clock()
            stored = self._claim_key(connection, route, key, answer, digest, now)

            if stored is not None:
                return stored, False

            connection.execute(
                "INSERT INTO inbox (route, webhook_id, body, content_type,"
                " received_at, next_attempt_at, state, retry_since)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                (route, key, body, content_type, now, now, now),
            )
            return answer, True

        return await self._write(accept)

    async def remember_answer(
        self, *, route: str, key: str, answer: StoredAnswer, body_digest: bytes
    ) -> StoredAnswer:
        def remember(connection: sqlite3.Connection) -> StoredAnswer:
            now = self._clock()
            stored = self._claim_key(connection, route, key, answer, body_digest, now)
            return answer if stored is None else stored

        return await self._write(remember)

    async def expire(self, now: float) -> int:
        return await self._write(lambda connection: self._expire(connection, now))

    def _claim_key(
        self,
        connection: sqlite3.Connection,
        route: str,
        key: str,
        answer: StoredAnswer,
        digest: bytes,
        now: float,
    ) -> StoredAnswer | None:
        """Store `answer` under the key unless a record within the window exists.

        Returns None when the key was claimed, else the answer stored before.

        Raises:
            IdempotencyConflict: the record before was stored for another body.
        """
        # One statement in the common case: the insert, or the overwrite of a
        # record that is past the window but not yet expired.
        claimed = connection.execute(
            "INSERT INTO idempotency"
            " (route, key, status, body, content_type, body_digest, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (route, key) DO UPDATE SET status = excluded.status,"
            " body = excluded.body, content_type = excluded.content_type,"
            " body_digest = excluded.body_digest, created_at = excluded.created_at"
            " WHERE idempotency.created_at <= ?",
            (
                route,
                key,
                answer.status,
                bytes(answer.body),
                answer.content_type,
                digest,
                now,
                now - self.idempotency_window,
            ),
        ).rowcount

        if claimed:
            return None

        row = connection.execute(
            "SELECT status, body, content_type, body_digest FROM idempotency"
            " WHERE route = ? AND key = ?",
            (route, key),
        ).fetchone()
        return _stored(row, digest)

    def _expire(self, connection: sqlite3.Connection, now: float) -> int:
        oldest = now - self.idempotency_window
        records = connection.execute(
            "DELETE FROM idempotency WHERE created_at <= ?", (oldest,)
        ).rowcount
        delivered = connection.execute(
            "DELETE FROM inbox WHERE state = 'delivered' AND delivered_at <= ?",
            (oldest,),
        ).rowcount
        return records + delivered

    def _expire_job(self, connection: sqlite3.Connection) -> int:
        return self._expire(connection, self._clock())

    # The inbox, for the delivery worker.

    async def due_events(
        self,
        now: float,
        limit: int,
        *,
        routes: Collection[str] | None = None,
        exclude: Collection[int] = (),
    ) -> list[InboxEvent]:
        where, names = _route_filter(routes)
        parameters: list[object] = [*names]

        if exclude:
            # Skipped in the index, so their bodies are never read.
            where += f" AND id NOT IN ({', '.join('?' * len(exclude))})"
            parameters += exclude

        # Only constants and placeholders are formatted into these statements.
        rows = self._read_all(
            f"SELECT {_EVENT_COLUMNS} FROM inbox"  # noqa: S608
            f" WHERE state = 'pending' AND next_attempt_at <= ?{where}"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (now, *parameters, limit),
        )
        return [_event(row) for row in rows]

    async def next_attempt_at(
        self, after: float, *, routes: Collection[str] | None = None
    ) -> float | None:
        where, parameters = _route_filter(routes)
        row = self._read_one(
            "SELECT min(next_attempt_at) FROM inbox"  # noqa: S608
            f" WHERE state = 'pending' AND next_attempt_at > ?{where}",
            (after, *parameters),
        )
        return None if row is None or row[0] is None else float(row[0])

    async def mark_delivered(self, event_id: int, now: float) -> None:
        # The error of an earlier attempt no longer describes a delivered event.
        await self._write(
            lambda connection: connection.execute(
                "UPDATE inbox SET state = 'delivered', attempts = attempts + 1,"
                " delivered_at = ?, last_error = NULL"
                " WHERE id = ? AND state = 'pending'",
                (now, event_id),
            )
        )

    async def mark_failed(
        self, event_id: int, *, error: str, next_attempt_at: float | None
    ) -> None:
        state: EventState = "dead" if next_attempt_at is None else "pending"
        await self._write(
            lambda connection: connection.execute(
                "UPDATE inbox SET state = ?, attempts = attempts + 1,"
                " last_error = ?, next_attempt_at = coalesce(?, next_attempt_at)"
                " WHERE id = ? AND state = 'pending'",
                (state, shorten_error(error), next_attempt_at, event_id),
            )
        )

    # The inbox, for operators and metrics.

    def list_events(
        self, *, state: EventState | None = None, limit: int = 100
    ) -> list[InboxEvent]:
        if state is not None and state not in EVENT_STATES:
            raise ValueError(f"unknown event state {state!r}")

        where = "" if state is None else " WHERE state = ?"
        parameters: tuple[Any, ...] = () if state is None else (state,)
        rows = self._read_all(
            f"SELECT {_EVENT_COLUMNS} FROM inbox{where}"  # noqa: S608
            " ORDER BY id DESC LIMIT ?",
            (*parameters, limit),
        )
        return [_event(row) for row in rows]

    def get_event(self, event_id: int) -> InboxEvent | None:
        row = self._read_one(
            f"SELECT {_EVENT_COLUMNS} FROM inbox WHERE id = ?",  # noqa: S608
            (event_id,),
        )
        return None if row is None else _event(row)

    def redrive(self, event_id: int | None) -> int:
        now = self._clock()
        statement = (
            "UPDATE inbox SET state = 'pending', attempts = 0,"
            " next_attempt_at = ?, retry_since = ? WHERE state = 'dead'"
        )
        parameters: tuple[Any, ...] = (now, now)

        if event_id is not None:
            statement += " AND id = ?"
            parameters += (event_id,)

        # A connection of its own, because this may run in another process
        # than the server's writer; SQLite serialises the two.
        try:
            connection = self._connect(create=False)
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot open the state database {self.path}: {exc}"
            ) from exc

        try:
            connection.execute("BEGIN IMMEDIATE")
            count = connection.execute(statement, parameters).rowcount
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"redrive failed: {exc}") from exc
        finally:
            connection.close()

        return int(count)

    def depth(self) -> dict[EventState, int]:
        counts: dict[EventState, int] = dict.fromkeys(EVENT_STATES, 0)

        for state, count in self._read_all(
            "SELECT state, count(*) FROM inbox GROUP BY state", ()
        ):
            counts[state] = int(count)

        return counts

    # Connections.

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        if create:
            connection = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            # mode=rw: reading a database that does not exist is an error, not
            # a reason to make an empty one.
            if not Path(self.path).is_file():
                raise StorageNotFound(f"no state database at {self.path}")

            uri = "file:" + quote(self.path) + "?mode=rw"
            connection = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )

        try:
            _configure(connection)
        except BaseException:
            connection.close()
            raise

        return connection

    def _open_writer(self) -> sqlite3.Connection:
        connection = self._connect(create=True)

        try:
            _migrate(connection)
            # The checkpoint thread copies most of the log before the writer
            # reaches this threshold.
            connection.execute(f"PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}")
        except BaseException:
            connection.close()
            raise

        return connection

    def _open_checkpointer(self) -> sqlite3.Connection:
        return self._connect(create=False)

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)

        if connection is not None:
            return connection

        if self._closed:
            raise StorageError("the state store is closed")

        try:
            connection = self._connect(create=False)
            connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot open the state database {self.path}: {exc}"
            ) from exc

        with self._readers_lock:
            self._readers.append(connection)

        self._local.connection = connection
        return connection

    def _read_one(self, sql: str, parameters: tuple[Any, ...]) -> Any:
        try:
            return self._reader().execute(sql, parameters).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"state read failed: {exc}") from exc

    def _read_all(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        try:
            return self._reader().execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"state read failed: {exc}") from exc

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StorageError("the state store is not started")

        try:
            return await self._writer.run(job)
        except WriterClosed as exc:
            raise StorageError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StorageError(f"state write failed: {exc}") from exc


def _configure(connection: sqlite3.Connection) -> None:
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]

    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"WAL mode is not available (got {mode})")

    # FULL: the WAL is fsynced at every commit, so a committed event survives a
    # crash of the process and, on a disk that honours fsync, a power loss.
    connection.execute("PRAGMA synchronous = FULL")


def _migrate(connection: sqlite3.Connection) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]

    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"the state database has schema version {version}, newer than"
            f" {SCHEMA_VERSION}: upgrade kratos-webhooks"
        )

    if 0 < version < SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"the state database has schema version {version}, written by a"
            " pre-release: move it away to start with a new one"
        )

    connection.executescript(
        f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    )


def _stored(row: Any, digest: bytes) -> StoredAnswer:
    """Return the stored response of an idempotency row with digest `digest`.

    Raises:
        IdempotencyConflict: the row was stored for another body.
    """
    if bytes(row[3]) != digest:
        raise IdempotencyConflict()

    return StoredAnswer(row[0], row[1], row[2])


def _route_filter(routes: Collection[str] | None) -> tuple[str, list[str]]:
    if routes is None:
        return "", []

    names = sorted(routes)

    if not names:
        return " AND 0", []

    return f" AND route IN ({', '.join('?' * len(names))})", names


def _event(row: Any) -> InboxEvent:
    return InboxEvent(
        id=row[0],
        route=row[1],
        webhook_id=row[2],
        body=bytes(row[3]),
        content_type=row[4],
        received_at=row[5],
        attempts=row[6],
        next_attempt_at=row[7],
        state=row[8],
        last_error=row[9],
        retry_since=row[10],
        delivered_at=row[11],
    )
