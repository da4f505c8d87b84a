"""Shared pieces of the state and delivery tests: a settable clock, a store."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

from kratos_webhooks.receiver.sqlite_store import SqliteStateStore
from kratos_webhooks.receiver.state import StateStore, StoredAnswer

ACCEPTED = StoredAnswer(202, b'{"status":"accepted"}')
ROUTE = "/hooks/registration/after"


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def storage_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'state.db'}"


@asynccontextmanager
async def running_store(
    tmp_path: Path, **options: object
) -> AsyncIterator[SqliteStateStore]:
    store = StateStore.open(storage_url(tmp_path), **options)  # type: ignore[arg-type]
    assert isinstance(store, SqliteStateStore)
    await store.start()

    try:
        yield store
    finally:
        await store.close()


def count_rows(path: Path, table: str) -> int:
    """Count rows through a connection of its own, as another process would."""
    with closing(sqlite3.connect(path)) as connection:
        sql = f"SELECT count(*) FROM {table}"  # noqa: S608
        (count,) = connection.execute(sql).fetchone()

    return int(count)
