"""Nothing the store acknowledged is lost when its process dies by SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

ACCEPTOR = Path(__file__).with_name("acceptor_process.py")


def run_until_killed(url: str, *, concurrency: int, acknowledged: int) -> list[str]:
    """Start an acceptor, SIGKILL it after `acknowledged` acks, return every key."""
    environment = dict(os.environ, PYTHONPATH=str(ACCEPTOR.parents[2] / "src"))
    keys: list[str] = []
    deadline = time.monotonic() + 60

    with subprocess.Popen(
        [sys.executable, str(ACCEPTOR), url, str(concurrency)],
        stdout=subprocess.PIPE,
        env=environment,
    ) as process:
        try:
            _read_acknowledgements(process, keys, acknowledged, deadline)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)

            process.wait(10)

    assert process.returncode == -signal.SIGKILL
    return keys


def _read_acknowledgements(
    process: subprocess.Popen[bytes], keys: list[str], count: int, deadline: float
) -> None:
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"

    while len(keys) < count and time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, "the acceptor stopped before it was killed"
        keys.append(line.decode().strip())

    os.kill(process.pid, signal.SIGKILL)
    # Keys printed before the kill are acknowledgements too.
    keys += [line.decode().strip() for line in process.stdout]


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [1, 32])
def test_acknowledged_events_survive_sigkill(tmp_path: Path, concurrency: int) -> None:
    path = tmp_path / "state.db"
    keys = run_until_killed(
        f"sqlite://{path}", concurrency=concurrency, acknowledged=2000
    )
    assert len(keys) >= 2000
    assert len(set(keys)) == len(keys)

    with closing(sqlite3.connect(path)) as connection:
        (check,) = connection.execute("PRAGMA integrity_check").fetchone()
        stored = {key for (key,) in connection.execute("SELECT webhook_id FROM inbox")}
        answers = {key for (key,) in connection.execute("SELECT key FROM idempotency")}

    assert check == "ok"
    missing = set(keys) - stored
    assert not missing, f"{len(missing)} of {len(keys)} acknowledged events are lost"
    assert set(keys) <= answers
