"""Durable accepts per second: the batching inbox against one commit per insert.

Run: python benchmarks/inbox.py [--seconds S] [--rounds N]

Both sides store the same rows per event in the same schema, durably (WAL,
synchronous=FULL): an inbox row with a 2 KB body and an idempotency record, in
one transaction.
- baseline: each acceptor is a thread with its own sqlite3 connection that
  commits every event on its own, which is what a hand-written receiver does;
- inbox: each acceptor is an asyncio task awaiting `StateStore.accept_event`,
  whose one writer thread commits everything queued in one transaction.
Each run uses a fresh database in a temporary directory under --dir, which
must be on the disk under test: a tmpfs makes fsync free. The two sides run in
interleaved rounds, and the median of the rounds is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from kratos_webhooks.receiver.sqlite_store import SCHEMA
from kratos_webhooks.receiver.state import StateStore, StoredAnswer

CONCURRENCY = (1, 10, 50)
# Alone, an acceptor pays a thread hand-off on top of the same fsync; once
# acceptors overlap, one fsync serves a whole batch. The targets leave room for
# this machine's fsync time, which varied threefold between runs.
TARGET_RATIO = {1: 0.5, 10: 2.0, 50: 3.0}
ANSWER = StoredAnswer(202, b'{"status":"accepted"}')
BODY = (b'{\n   "identity": {\n      "traits": {\n         "pad": "' + b"x" * 1980)[
    :2040
] + b'"\n}}\n'


def baseline(path: Path, acceptors: int, seconds: float) -> float:
    """Run threads that each commit every event alone; return events per second."""
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.executescript(SCHEMA)
    setup.close()
    counts = [0] * acceptors
    deadline = time.monotonic() + seconds

    def accept_until_deadline(number: int) -> None:
        connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        connection.execute("PRAGMA synchronous = FULL")
        sequence = 0

        while time.monotonic() < deadline:
            key = f"msg_{number}_{sequence}"
            sequence += 1
            now = time.time()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO idempotency VALUES ('/hooks/a', ?, 202, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (key, ANSWER.body, ANSWER.content_type, now),
            )
            connection.execute(
                "INSERT INTO inbox (route, webhook_id, body, content_type,"
                " received_at, next_attempt_at, state, retry_since)"
                " VALUES ('/hooks/a', ?, ?, 'application/json', ?, ?, 'pending', ?)",
                (key, BODY, now, now, now),
            )
            connection.execute("COMMIT")
            counts[number] += 1

        connection.close()

    threads = [
        threading.Thread(target=accept_until_deadline, args=(n,))
        for n in range(acceptors)
    ]
    started = time.monotonic()

    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join()

    return sum(counts) / (time.monotonic() - started)


def inbox(path: Path, acceptors: int, seconds: float) -> float:
    """Run asyncio tasks that await `accept_event`; return events per second."""

    async def run() -> float:
        store = StateStore.open(f"sqlite://{path}")
        await store.start()
        counts = [0] * acceptors
        deadline = time.monotonic() + seconds

        async def accept_until_deadline(number: int) -> None:
            sequence = 0

            while time.monotonic() < deadline:
                await store.accept_event(
                    route="/hooks/a",
                    key=f"msg_{number}_{sequence}",
                    body=BODY,
                    content_type="application/json",
                    answer=ANSWER,
                )
                sequence += 1
                counts[number] += 1

        started = time.monotonic()
        await asyncio.gather(*(accept_until_deadline(n) for n in range(acceptors)))
        elapsed = time.monotonic() - started
        await store.close()
        return sum(counts) / elapsed

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="Seconds per run.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds.")
    parser.add_argument(
        "--dir", default=".", help="Directory for the databases (default: here)."
    )
    args = parser.parse_args()
    missed = False

    print(f"{'acceptors':>9} {'baseline/s':>11} {'inbox/s':>9} {'ratio':>6}  target")

    for acceptors in CONCURRENCY:
        results: dict[str, list[float]] = {"baseline": [], "inbox": []}

        for _ in range(args.rounds):
            for name, candidate in (("baseline", baseline), ("inbox", inbox)):
                with tempfile.TemporaryDirectory(dir=args.dir) as directory:
                    rate = candidate(
                        Path(directory) / "state.db", acceptors, args.seconds
                    )
                    results[name].append(rate)

        base = statistics.median(results["baseline"])
        ours = statistics.median(results["inbox"])
        ratio = ours / base
        target = TARGET_RATIO[acceptors]
        met = ratio >= target
        missed |= not met
        print(
            f"{acceptors:>9} {base:>11.0f} {ours:>9.0f} {ratio:>5.1f}x"
            f"  >= {target:.1f}x {'met' if met else 'MISSED'}"
        )

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
