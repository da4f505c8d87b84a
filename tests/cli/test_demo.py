"""`kratos-webhooks demo`: port checks before anything is written, and a real run."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from kratos_webhooks.cli import main

RUN_SECONDS = 30.0
ACCEPTED_TITLE = "A signed request, accepted (valid for 5 minutes):"
REFUSED_TITLE = "The same signature with another webhook-id, refused:"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_busy_port_exits_3_before_writing(tmp_path: Path) -> None:
    state = tmp_path / "state"

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        arguments = [
            *("demo", "--directory", str(state), "--app-port", str(taken)),
            *("--port", str(free_port()), "--admin-port", str(free_port())),
        ]
        result = CliRunner().invoke(main, arguments)

    assert result.exit_code == 3
    assert f"port {taken} on 127.0.0.1 is not available (in use)" in result.output
    assert "choose another with --app-port" in result.output
    assert not state.exists()


def test_same_port_twice_exits_3(tmp_path: Path) -> None:
    port = str(free_port())
    arguments = [
        *("demo", "--directory", str(tmp_path / "state")),
        *("--port", port, "--admin-port", port, "--app-port", str(free_port())),
    ]
    result = CliRunner().invoke(main, arguments)

    assert result.exit_code == 3
    assert f"--port and --admin-port are both {port}" in result.output


def read_until(
    process: subprocess.Popen[str], marker: str, deadline: float
) -> list[str]:
    """Read output lines until one contains `marker`; fail at the deadline.

    A thread reads, because a selector on the buffered pipe would wait for new
    bytes while complete lines already sit in the file object's buffer.
    """
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        # The test closes the pipe when it is done, which ends this loop.
        try:
            for line in stdout:
                lines.put(line.rstrip("\n"))
        except (OSError, ValueError):
            pass

        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []

    while not any(marker in line for line in seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} line in time: {seen}"

        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue

        assert line is not None, f"demo exited early: {seen}"
        seen.append(line)

    return seen


@pytest.mark.slow
def test_demo_runs_outside_checkout(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("--port", "--admin-port", "--app-port")}
    script = Path(sys.executable).parent / "kratos-webhooks"
    command = [str(script), "demo", *(f"{k}={v}" for k, v in ports.items())]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    try:
        # The receiver logs a JSON line with "event": "started" once it listens.
        lines = read_until(process, '"started"', time.monotonic() + RUN_SECONDS)
        accepted = lines[lines.index(ACCEPTED_TITLE) + 1]
        refused = lines[lines.index(REFUSED_TITLE) + 1]
        fresh = next(line for line in lines if line.startswith("Fresh headers"))
        state = tmp_path / "kratos-webhooks-demo"

        assert accepted.startswith("curl ")
        assert shlex.split(accepted)[3] == " HTTP %{http_code}\\n"
        assert f"{script.name} sign --secret-file {state / 'kratos-secret'}" in fresh
        assert not (tmp_path / "examples").exists()

        for curl, expected in ((accepted, "HTTP 204"), (refused, "HTTP 401")):
            answer = subprocess.run(
                shlex.split(curl), capture_output=True, text=True, timeout=20
            )

            assert answer.returncode == 0, answer.stderr
            assert answer.stdout.endswith(f"{expected}\n"), answer.stdout

        metrics = httpx.get(f"http://127.0.0.1:{ports['--admin-port']}/metrics")

        assert metrics.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)

        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

        assert process.stdout is not None
        process.stdout.close()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", ports["--app-port"]))
