"""A `kratos-webhooks relay` child process for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_SECONDS = 20.0


@dataclass
class RelayProcess:
    process: subprocess.Popen[bytes]
    address: str
    log_lines: list[dict[str, Any]]
    reader: threading.Thread

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise

    def close(self) -> None:
        self.reader.join(5)

        if self.process.stdout is not None:
            self.process.stdout.close()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in list(self.log_lines) if line.get("event") == name]


def start_relay(config_file: Path, env: dict[str, str]) -> RelayProcess:
    """Start `relay` and wait for its `started` line; fail on exit or timeout."""
    code = "from kratos_webhooks.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "relay", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    lines: list[dict[str, Any]] = []
    found: dict[str, str] = {}
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None

        for raw in process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": "raw", "text": raw.decode(errors="replace")}

            lines.append(line)

            if line.get("event") == "listening":
                found["address"] = line["address"]
            elif line.get("event") == "started":
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    if not started.wait(START_SECONDS):
        process.kill()
        process.wait(5)
        reader.join(5)
        assert process.stdout is not None
        process.stdout.close()
        raise RuntimeError(f"relay did not start: {lines}")

    return RelayProcess(process, found["address"], lines, reader)


@contextmanager
def relaying(config_file: Path, env: dict[str, str]) -> Iterator[RelayProcess]:
    relay = start_relay(config_file, env)

    try:
        yield relay
    finally:
        if relay.process.poll() is None:
            relay.stop()

        relay.close()
