"""Real parts for end-to-end tests: certificates, an upstream, a `serve` process."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
import yaml

SERVE_START_SECONDS = 20.0
GO_USER_AGENT = "Go-http-client/1.1"


@dataclass
class Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""

    cert_file: Path
    key_file: Path
    ca: trustme.CA

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def make_certificates(directory: Path) -> Certificates:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert_file = directory / "tls.crt"
    key_file = directory / "tls.key"
    issued.cert_chain_pems[0].write_to_path(cert_file)

    for pem in issued.cert_chain_pems[1:]:
        pem.write_to_path(cert_file, append=True)

    issued.private_key_pem.write_to_path(key_file)
    return Certificates(cert_file, key_file, ca)


@dataclass
class Received:
    """One request as the upstream received it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    """A real HTTP server that records requests and answers per path.

    `answers` maps a path to `(status, body)` or to a callable returning it;
    other paths get 204. `delay` holds seconds to wait before answering a path.
    """

    answers: dict[str, Any] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout

        while time.monotonic() < deadline:
            found = self.requests_to(path)

            if len(found) >= count:
                return found

            time.sleep(0.05)

        return self.requests_to(path)

    def start(self, port: int = 0) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}

                with upstream.lock:
                    upstream.received.append(Received(self.path, headers, body))

                time.sleep(upstream.delay.get(self.path, 0.0))
                answer = upstream.answers.get(self.path, (204, b""))

                if callable(answer):
                    answer = answer()

                status, payload = answer
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@contextmanager
def running_upstream(**options: Any) -> Iterator[Upstream]:
    upstream = Upstream(**options)
    upstream.start()

    try:
        yield upstream
    finally:
        upstream.stop()


def write_config(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def base_config(tmp_path: Path, certificates: Certificates) -> dict[str, Any]:
    """A configuration on loopback with free ports and state in `tmp_path`."""
    return {
        "server": {
            "listen": "127.0.0.1:0",
            "tls": {
                "cert_file": str(certificates.cert_file),
                "key_file": str(certificates.key_file),
            },
            "limits": {"header_timeout": 2, "body_timeout": 2},
        },
        "admin": {"listen": "127.0.0.1:0"},
        "storage": f"sqlite://{tmp_path / 'state.db'}",
        "routes": [],
    }


@dataclass
class ServeProcess:
    """A `kratos-webhooks serve` child process and the addresses it listens on."""

    process: subprocess.Popen[bytes]
    addresses: dict[str, str]
    log_lines: list[dict[str, Any]]
    reader: threading.Thread

    @property
    def https_port(self) -> int:
        return int(self.addresses["https"].rpartition(":")[2])

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"

    def admin_url(self, path: str) -> str:
        return f"http://{self.addresses['admin']}{path}"

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
        """Release the output pipe once the process has ended."""
        self.reader.join(5)

        if self.process.stdout is not None:
            self.process.stdout.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self.reader.join(5)

    def output_text(self) -> str:
        self.reader.join(5)
        return "\n".join(json.dumps(line) for line in self.log_lines)


def serve_command(config_file: Path) -> list[str]:
    code = "from kratos_webhooks.cli import main; main()"
    return [sys.executable, "-c", code, "serve", "--config", str(config_file)]


def start_serve(
    config_file: Path, env: dict[str, str], *, timeout: float = SERVE_START_SECONDS
) -> ServeProcess:
    """Start `serve` and wait for its `started` line; fail on exit or timeout."""
    process = subprocess.Popen(
        serve_command(config_file),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    lines: list[dict[str, Any]] = []
    addresses: dict[str, str] = {}
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
                addresses[line["listener"]] = line["address"]
            elif line.get("event") == "started":
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    if not started.wait(timeout):
        process.kill()
        process.wait(5)
        reader.join(5)
        assert process.stdout is not None
        process.stdout.close()
        raise RuntimeError(f"serve did not start: {lines}")

    return ServeProcess(process, addresses, lines, reader)


@contextmanager
def serving(config_file: Path, env: dict[str, str]) -> Iterator[ServeProcess]:
    server = start_serve(config_file, env)

    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()

        server.close()


def kratos_headers(
    body: bytes, trigger_id: str, extra: dict[str, str]
) -> dict[str, str]:
    """The headers Kratos' Go client sends with a web hook body."""
    return {
        "user-agent": GO_USER_AGENT,
        "content-type": "application/json",
        "content-length": str(len(body)),
        "ory-webhook-request-id": f"req-{trigger_id}",
        "ory-webhook-trigger-id": trigger_id,
        "accept-encoding": "gzip",
        **extra,
    }


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout

    while time.monotonic() < deadline:
        if predicate():
            return True

        time.sleep(0.05)

    return predicate()
