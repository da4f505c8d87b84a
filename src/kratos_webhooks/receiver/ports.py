"""What the pipeline needs from the durable state and the delivery worker."""

from __future__ import annotations

from typing import Protocol

__all__ = ["EventStore", "ManagedStore", "StoredAnswerLike", "Wakeable", "Worker"]


class StoredAnswerLike(Protocol):
    """An answer as stored for a key: status, body and content type."""

    @property
    def status(self) -> int: ...

    @property
    def body(self) -> bytes: ...

    @property
    def content_type(self) -> str: ...


class EventStore(Protocol):
    """The inbox and the idempotency records."""

    async def find_answer(self, key: str) -> StoredAnswerLike | None: ...

    async def accept_event(
        self,
        *,
        route: str,
        key: str,
        body: bytes,
        content_type: str,
        answer: StoredAnswerLike,
    ) -> tuple[StoredAnswerLike, bool]: ...

    async def remember_answer(
        self, key: str, route: str, answer: StoredAnswerLike
    ) -> None: ...


class Wakeable(Protocol):
    """The delivery worker, woken after each newly stored event."""

    def wake(self) -> None: ...


class ManagedStore(EventStore, Protocol):
    """A store that the server opens before serving and closes after."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Worker(Wakeable, Protocol):
    """The delivery worker, started after the store and stopped before it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
