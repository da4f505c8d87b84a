"""Copy the state database's write-ahead log back into the database, off the writer.

In WAL mode SQLite appends each commit to the log, and the connection whose
commit takes the log past 1,000 pages copies the log back into the database
file and fsyncs it, inside that commit. For the receiver that connection is the
writer thread, so every request waiting for that commit (each one holding its
202) also waits for the copy: a few milliseconds each time the log passes 1,000
pages, which is where the slowest responses came from.

The `Checkpointer` copies from a thread and a connection of its own, every few
tens of milliseconds, in SQLite's PASSIVE mode, which never blocks the writer
or a reader. SQLite starts the log over only when a write transaction begins
with every page already copied, which a writer that never pauses rarely gives
it; so the writer keeps its 1,000-page threshold, and when it reaches it,
nearly all pages are copied already: its pass copies the last few and syncs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["WRITER_CHECKPOINT_PAGES", "Checkpointer"]

logger = logging.getLogger(__name__)

# The writer's own threshold in log pages, SQLite's default: 4 MiB of log at
# SQLite's default page size of 4 KiB.
WRITER_CHECKPOINT_PAGES: Final = 1000
# The pause between passes while each pass copies every page.
DEFAULT_PERIOD: Final = 0.05
# The shorter pause after a pass that left pages, for instance appended meanwhile.
_BEHIND_PERIOD: Final = 0.01


class Checkpointer:
    """Run PASSIVE checkpoints from a thread until closed.

    `connect` makes the thread's connection, in the thread. `on_checkpoint`,
    when given, is called after each pass with the pages in the log and the
    pages copied, as SQLite reports them.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        period: float = DEFAULT_PERIOD,
        on_checkpoint: Callable[[int, int], None] | None = None,
        name: str = "kratos-webhooks-checkpoint",
    ) -> None:
        self._connect = connect
        self._period = period
        self._on_checkpoint = on_checkpoint
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop after the pass in progress, if any; idempotent."""
        self._stop.set()

        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            connection = self._connect()
        except sqlite3.Error as exc:
            logger.error("state checkpoints disabled, cannot connect: %s", exc)
            return

        try:
            delay = self._period

            while not self._stop.wait(delay):
                delay = self._period if self._pass(connection) else _BEHIND_PERIOD
        finally:
            connection.close()

    def _pass(self, connection: sqlite3.Connection) -> bool:
        """Copy what it can; return whether the log was copied in full."""
        try:
            row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            # Another connection may be checkpointing, or the disk failed for a
            # moment. The next pass tries again, and the writer's threshold stays.
            logger.warning("state checkpoint failed: %s", exc)
            return True

        busy, log_pages, copied = (int(value) for value in row)

        if self._on_checkpoint is not None:
            self._on_checkpoint(log_pages, copied)

        return busy == 0 and copied >= log_pages
