"""The receiver's durable state: idempotency records and the inbox of async events.

`StateStore` is the interface the pipeline, the delivery worker and the `inbox`
commands use. `StateStore.open(url)` picks the backend from the storage URL;
SQLite (`sqlite:///abs/path.db`) is the only one so far.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..errors import ConfigError
from .inbox import EventState, InboxEvent

if TYPE_CHECKING:
    from ..observability.metrics import StateMetrics

__all__ = [
    "DEFAULT_IDEMPOTENCY_WINDOW",
    "StateStore",
    "StorageError",
    "StorageNotFound",
    "StoredAnswer",
    "body_digest",
]

# Kratos retries a failed web hook within seconds to minutes, and the relay keeps
# the same webhook-id across those retries. A day covers both with a wide margin.
DEFAULT_IDEMPOTENCY_WINDOW: Final = 86400.0

Clock = Callable[[], float]


class StorageError(Exception):
    """The state database cannot be opened, read or written.

    The receiver should respond 503 while this lasts, because nothing may be
    accepted that is not durably stored.
    """


class StorageNotFound(StorageError):
    """The state database does not exist, and the caller may not create it."""


def body_digest(body: bytes) -> bytes:
    """Return the digest kept with an idempotency record: SHA-256 of the body."""
    return hashlib.sha256(body).digest()


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The answer sent to the first request with an idempotency key."""

    status: int
    body: bytes
    content_type: str = "application/json"


class StateStore(ABC):
    """Idempotency records and the inbox, behind one interface per backend.

    Idempotency keys are scoped by route: the same key on two routes names two
    events. Records older than `idempotency_window` seconds are ignored and
    then dropped by `expire`. Each record keeps the digest of its request's
    body. Kratos repeats a call byte for byte, so a request whose key has a
    record with another digest raises `IdempotencyConflict`.
    """

    idempotency_window: float

    @classmethod
    def open(
        cls,
        url: str,
        *,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
        clock: Clock = time.time,
        metrics: StateMetrics | None = None,
    ) -> StateStore:
        """Make the store named by a storage URL; nothing is touched until used.

        Raises:
            ConfigError: the URL names no supported backend, or the window is
                not a positive number of seconds.
        """
        if not isinstance(url, str):
            raise TypeError("the storage URL must be a str")

        scheme, sep, rest = url.partition("://")

        if scheme == "sqlite" and sep:
            from .sqlite_store import SqliteStateStore

            return SqliteStateStore(
                rest,
                idempotency_window=idempotency_window,
                clock=clock,
                metrics=metrics,
            )

        if scheme in ("postgres", "postgresql"):
            raise ConfigError(
                "PostgreSQL storage is not supported yet: use sqlite:///path/state.db"
            )

        raise ConfigError("invalid storage URL: use sqlite:///absolute/path/state.db")

    # Lifecycle.

    @abstractmethod
    async def start(self) -> None:
        """Create the schema if needed and start the writer."""

    @abstractmethod
    async def close(self) -> None:
        """Commit every pending write, stop the writer and close; idempotent."""

    # Idempotency, for the pipeline.

    @abstractmethod
    async def find_answer(
        self, *, route: str, key: str, body_digest: bytes
    ) -> StoredAnswer | None:
        """Return the stored answer for a key within the window, if any.

        Raises:
            IdempotencyConflict: the record was stored for another body.
        """

    @abstractmethod
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
        """Store an async event and its answer in one durable transaction.

        Returns `(answer, True)` once the inbox row and the idempotency record
        are committed to disk. When the key already has an answer within the
        window, nothing is stored and `(stored answer, False)` is returned.
        `body_digest` is that of the request's body, which defaults to the
        digest of `body`; a route that stores a redacted body passes it.

        Raises:
            IdempotencyConflict: the key's record was stored for another body.
            StorageError: the transaction could not be committed.
        """

    @abstractmethod
    async def remember_answer(
        self, *, route: str, key: str, answer: StoredAnswer, body_digest: bytes
    ) -> StoredAnswer:
        """Store the answer of a sync route and return the first stored answer.

        When two requests with the same key race, the first record wins and
        the second caller gets it back.

        Raises:
            IdempotencyConflict: the first record was stored for another body.
        """

    @abstractmethod
    async def expire(self, now: float) -> int:
        """Drop idempotency records and delivered events older than the window.

        Returns the number of rows dropped. Dead letters are kept.
        """

    # The inbox, for the delivery worker.

    @abstractmethod
    async def due_events(
        self,
        now: float,
        limit: int,
        *,
        routes: Collection[str] | None = None,
        exclude: Collection[int] = (),
    ) -> list[InboxEvent]:
        """Return pending events whose next attempt is due, oldest first.

        Events whose id is in `exclude`, such as those in flight, are skipped.
        """

    @abstractmethod
    async def next_attempt_at(
        self, after: float, *, routes: Collection[str] | None = None
    ) -> float | None:
        """Return the earliest next attempt later than `after` of a pending event."""

    @abstractmethod
    async def mark_delivered(self, event_id: int, now: float) -> None:
        """Record a successful attempt."""

    @abstractmethod
    async def mark_failed(
        self, event_id: int, *, error: str, next_attempt_at: float | None
    ) -> None:
        """Record a failed attempt; `next_attempt_at=None` makes a dead letter."""

    # The inbox, for operators and metrics. These block, and work on a store
    # that was never started, so the `inbox` commands can run beside a server.

    @abstractmethod
    def list_events(
        self, *, state: EventState | None = None, limit: int = 100
    ) -> list[InboxEvent]:
        """Return events, newest first, optionally in one state."""

    @abstractmethod
    def get_event(self, event_id: int) -> InboxEvent | None:
        """Return one event with its body, or None."""

    @abstractmethod
    def redrive(self, event_id: int | None) -> int:
        """Make dead letters pending again, due now, with a fresh attempt budget.

        `None` redrives every dead letter. Returns how many were redriven.
        """

    @abstractmethod
    def depth(self) -> dict[EventState, int]:
        """Return the number of events in each state."""
