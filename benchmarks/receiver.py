"""Load the receiver over HTTPS keep-alive and compare it with two baselines.

Run: python benchmarks/receiver.py [--seconds S] [--connections N]

Three servers are loaded in the same run, each in its own process, with the
same certificate, the same load generator and the same signed bodies:

- ours: `kratos-webhooks serve` with a Standard Webhooks async route, each
  event committed to the SQLite inbox before the 202, then delivered to a bare
  local upstream by the delivery worker;
- (a) a bare uvicorn ASGI app (uvloop, httptools) that answers 204;
- (b) a FastAPI endpoint that verifies with the `standardwebhooks` library;
- (c) a floor: bare uvicorn that checks the signature with `hmac` and forwards
  each body to the same upstream before it responds, storing nothing;
- (d) a durable floor: (c) plus the one thing that lets a receiver answer
  before delivering, committing the event to SQLite first (WAL,
  `synchronous=FULL`, one thread committing what is queued together).

(c) and (d) do the least work a receiver must do for an event it delivers,
with none of the checks, records or logs, so their rates bound what a
receiver can reach on this machine.

Each request carries a fresh webhook-id and a ~2 KB Kratos-like JSON body, so
the receiver stores every one. The load generator is a plain asyncio HTTP/1.1
client over TLS, spread over processes, keeping N connections busy. Reported:
requests per second, p50 and p99 latency, and the server's peak RSS. Exits 1
when a target is missed: at least 50% of (a)'s rate, at least 2x (b)'s, p99 at
most 20 ms and peak RSS at most 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + "S2VlcCB0aGlzIHNlY3JldCBzZWNyZXQsIHBsZWFzZSE="
UPSTREAM_SECRET = "whsec_" + "VXBzdHJlYW0gc2VjcmV0IGZvciBkZWxpdmVyaWVzIQ=="
PATH = "/hooks/login/after"
BODY_BYTES = 2048
LOAD_PROCESSES = 2
START_SECONDS = 20.0


def kratos_body(flow_id: str) -> bytes:
    """Return a ~2 KB body printed the way Kratos' Jsonnet prints JSON."""
    head = (
        '{\n   "flow": {\n      "id": "' + flow_id + '",\n      "type": "browser"\n'
        '   },\n   "request_headers": {\n      "User-Agent": [\n'
        '         "Mozilla/5.0"\n      ]\n   },\n   "request_method": "POST",\n'
        '   "transient_payload": "'
    )
    tail = '"\n}\n'
    return (head + "x" * (BODY_BYTES - len(head) - len(tail)) + tail).encode()


# Server roles, each run in a process of its own.


def run_bare(port: int, cert: str, key: str) -> None:
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        more = True

        while more:
            message = await receive()
            more = message.get("more_body", False)

        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=cert or None,
        ssl_keyfile=key or None,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


def run_fastapi(port: int, cert: str, key: str) -> None:
    import standardwebhooks
    import uvicorn
    from fastapi import FastAPI, HTTPException, Request, Response

    # The endpoint's annotations are strings here (postponed evaluation), so
    # FastAPI resolves them in this module's globals.
    globals().update(Request=Request, Response=Response)
    app = FastAPI()
    webhook = standardwebhooks.Webhook(SECRET)

    @app.post(PATH, status_code=202)
    async def receive(request: Request) -> Response:
        body = await request.body()

        try:
            webhook.verify(body, dict(request.headers))
        except standardwebhooks.WebhookVerificationError as exc:
            raise HTTPException(401) from exc

        return Response(status_code=202)

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


class FloorInbox:
    """Commit bodies to SQLite from one thread, all that is queued at once."""

    def __init__(self, path: str) -> None:
        import queue
        import sqlite3
        import threading

        self._queue: queue.SimpleQueue[tuple[bytes, Any]] = queue.SimpleQueue()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("CREATE TABLE inbox (id INTEGER PRIMARY KEY, body BLOB)")
        threading.Thread(target=self._run, daemon=True).start()

    async def commit(self, body: bytes) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._queue.put((body, waiter))
        await waiter

    def _run(self) -> None:
        import queue

        while True:
            batch = [self._queue.get()]

            with contextlib.suppress(queue.Empty):
                while len(batch) < 256:
                    batch.append(self._queue.get_nowait())

            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO inbox (body) VALUES (?)", [(b,) for b, _ in batch]
            )
            self._db.execute("COMMIT")
            loop = batch[0][1].get_loop()
            loop.call_soon_threadsafe(FloorInbox._settle, [w for _, w in batch])

    @staticmethod
    def _settle(waiters: list[Any]) -> None:
        for waiter in waiters:
            waiter.set_result(None)


def run_floor(
    port: int, cert: str, key: str, upstream: int, inbox_file: str = ""
) -> None:
    import base64
    import hashlib
    import hmac

    import uvicorn

    from kratos_webhooks.receiver.upstream_client import UpstreamClient

    secret = base64.b64decode(SECRET.removeprefix("whsec_"))
    client = UpstreamClient(f"http://127.0.0.1:{upstream}/hook", max_idle=64)
    accepted = [(b"content-length", b"0")]
    inbox = FloorInbox(inbox_file) if inbox_file else None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        chunks = []
        more = True

        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)

        body = b"".join(chunks)
        headers = dict(scope["headers"])
        signed = headers[b"webhook-id"] + b"." + headers[b"webhook-timestamp"]
        mac = hmac.new(secret, signed + b"." + body, hashlib.sha256).digest()
        presented = headers[b"webhook-signature"].partition(b",")[2]
        status = 401

        if hmac.compare_digest(presented, base64.b64encode(mac)):
            if inbox is not None:
                await inbox.commit(body)

            await client.post(body, {"content-type": "application/json"})
            status = 202

        start = {"type": "http.response.start", "status": status, "headers": accepted}
        await send(start)
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


# The load generator.


async def load_connection(
    host: str,
    port: int,
    context: ssl.SSLContext,
    until: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    from kratos_webhooks import HmacKey, Signer

    signer = Signer(HmacKey.parse(SECRET))
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="127.0.0.1"
    )

    try:
        while time.monotonic() < until:
            body = kratos_body(str(uuid.uuid4()))
            signed = signer.sign(body)
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "User-Agent: Go-http-client/1.1\r\n"
                f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
                f"Webhook-Id: {signed['webhook-id']}\r\n"
                f"Webhook-Timestamp: {signed['webhook-timestamp']}\r\n"
                f"Webhook-Signature: {signed['webhook-signature']}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0

            while True:
                line = await reader.readline()

                if line in (b"\r\n", b""):
                    break

                name, _, value = line.partition(b":")

                if name.strip().lower() == b"content-length":
                    length = int(value)

            if length:
                await reader.readexactly(length)

            latencies.append(time.perf_counter() - started)
            status = status_line.split(b" ", 2)[1] if status_line else b"EOF"

            if status not in (b"202", b"204"):
                errors.append(status.decode())

                if not status_line:
                    return
    finally:
        writer.close()


def run_load(port: int, connections: int, seconds: float, ca_file: str) -> None:
    import uvloop

    context = ssl.create_default_context(cafile=ca_file)
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(
                load_connection("127.0.0.1", port, context, until, latencies, errors)
                for _ in range(connections)
            )
        )

    started = time.monotonic()
    uvloop.run(main())
    elapsed = time.monotonic() - started
    result = {
        "latencies": latencies,
        "errors": errors,
        "elapsed": elapsed,
        "cpu": time.process_time(),
    }
    json.dump(result, sys.stdout)


# Orchestration.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = START_SECONDS) -> None:
    deadline = time.monotonic() + timeout

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)

    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    """Return the user and system CPU time a process has used, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpus() -> tuple[float, float]:
    """Return the machine's busy and total CPU time so far, in seconds."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

    return float("nan")


def spawn_role(role: str, *arguments: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "--role", role, *arguments]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def measure(
    port: int,
    connections: int,
    seconds: float,
    ca_file: str,
    watched: tuple[int, ...] = (),
) -> dict[str, float]:
    """Load a server; the `watched` processes count as the server's CPU time."""
    cpu_before = sum(cpu_seconds(pid) for pid in watched)
    busy_before, total_before = busy_cpus()
    per_process = [connections // LOAD_PROCESSES] * LOAD_PROCESSES
    per_process[0] += connections - sum(per_process)
    loaders = [
        subprocess.Popen(
            [
                sys.executable, __file__, "--role", "load", "--port", str(port),
                "--connections", str(count), "--seconds", str(seconds),
                "--ca", ca_file,
            ],
            stdout=subprocess.PIPE,
        )
        for count in per_process
    ]  # fmt: skip
    latencies: list[float] = []
    errors: list[str] = []
    elapsed = 0.0
    load_cpu = 0.0

    for loader in loaders:
        output, _ = loader.communicate(timeout=seconds + 60)
        result = json.loads(output)
        latencies += result["latencies"]
        errors += result["errors"]
        elapsed = max(elapsed, result["elapsed"])
        load_cpu += result["cpu"]

    server_cpu = sum(cpu_seconds(pid) for pid in watched) - cpu_before
    busy_after, total_after = busy_cpus()
    latencies.sort()
    count = len(latencies)
    per_request = 1e6 / count if count else float("nan")
    return {
        "requests": count,
        "rps": count / elapsed,
        "p50_ms": latencies[count // 2] * 1000 if count else float("nan"),
        "p99_ms": latencies[int(count * 0.99)] * 1000 if count else float("nan"),
        "errors": len(errors),
        "server_us": server_cpu * per_request,
        "load_us": load_cpu * per_request,
        "busy": (busy_after - busy_before) / (total_after - total_before),
    }


def write_receiver_config(directory: Path, cert: str, key: str, upstream: int) -> Path:
    import yaml

    config = {
        "server": {
            "listen": f"127.0.0.1:{free_port()}",
            "tls": {"cert_file": cert, "key_file": key},
        },
        "admin": {"listen": f"127.0.0.1:{free_port()}"},
        "storage": f"sqlite://{directory / 'state.db'}",
        "routes": [
            {
                "path": PATH,
                "verify": {
                    "scheme": "standard-webhooks",
                    "secrets": ["env:BENCH_SECRET"],
                },
                "mode": "async",
                "upstream": f"http://127.0.0.1:{upstream}/hook",
                "upstream_secrets": ["env:BENCH_UPSTREAM_SECRET"],
            }
        ],
    }
    path = directory / "receiver.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_ours(
    directory: Path, cert: str, key: str, upstream: int
) -> tuple[subprocess.Popen[bytes], int]:
    config_file = write_receiver_config(directory, cert, key, upstream)
    port = int(
        __import__("yaml")
        .safe_load(config_file.read_text())["server"]["listen"]
        .rpartition(":")[2]
    )
    code = "from kratos_webhooks.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--config", str(config_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "BENCH_SECRET": SECRET,
            "BENCH_UPSTREAM_SECRET": UPSTREAM_SECRET,
        },
    )
    return process, port


def pending_events(directory: Path) -> int:
    """Count the accepted events not yet delivered when the load ends."""
    import sqlite3

    uri = f"file:{directory / 'state.db'}?mode=ro"

    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
        row = db.execute("SELECT count(*) FROM inbox WHERE state = 'pending'")
        return int(row.fetchone()[0])


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()

    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def orchestrate(seconds: float, connections: int, only: list[str]) -> int:
    import trustme

    results: dict[str, dict[str, float]] = {}

    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1")
        cert, key, ca_file = (
            str(directory / n) for n in ("tls.crt", "tls.key", "ca.pem")
        )
        issued.cert_chain_pems[0].write_to_path(cert)
        issued.private_key_pem.write_to_path(key)
        ca.cert_pem.write_to_path(ca_file)

        upstream_port = free_port()
        upstream = spawn_role("bare", "--port", str(upstream_port))
        wait_for_port(upstream_port)

        try:
            for name in only:
                if name == "ours":
                    server, port = start_ours(directory, cert, key, upstream_port)
                else:
                    port = free_port()
                    durable = name == "durable"
                    server = spawn_role(
                        "floor" if durable else name,
                        "--port", str(port), "--cert", cert, "--key", key,
                        "--upstream", str(upstream_port),
                        "--inbox", str(directory / "floor.db") if durable else "",
                    )  # fmt: skip

                try:
                    wait_for_port(port)
                    measure(port, connections, 1.0, ca_file)
                    watched = (server.pid, upstream.pid)
                    results[name] = measure(
                        port, connections, seconds, ca_file, watched
                    )
                    results[name]["rss_mb"] = peak_rss_mb(server.pid)

                    if name == "ours":
                        results[name]["backlog"] = pending_events(directory)
                finally:
                    stop(server)
                    # The next server starts on a disk that has written back
                    # what this one left, not behind its flush.
                    os.sync()
        finally:
            stop(upstream)

    return report(results, seconds, connections)


def report(
    results: dict[str, dict[str, float]], seconds: float, connections: int
) -> int:
    print(
        f"{connections} HTTPS keep-alive connections, {seconds:g} s each, "
        f"{BODY_BYTES}-byte signed bodies, {os.cpu_count()} CPUs"
    )
    columns = ("req/s", "p50 ms", "p99 ms", "RSS MB", "errors", "srv us", "load us")
    print(f"{'server':<12}" + "".join(f"{name:>9}" for name in columns) + "  busy")
    labels = {
        "ours": "ours",
        "bare": "(a) bare",
        "fastapi": "(b) fastapi",
        "floor": "(c) floor",
        "durable": "(d) durable",
    }

    for name, row in results.items():
        print(
            f"{labels[name]:<12}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}"
            f"{row['p99_ms']:>9.2f}{row['rss_mb']:>9.1f}{row['errors']:>9.0f}"
            f"{row['server_us']:>9.0f}{row['load_us']:>9.0f}{row['busy']:>6.0%}"
        )

    print(
        "srv us: CPU time per request of the server and its upstream; load us:"
        " of the load generator; busy: share of all CPUs in use"
    )

    if "backlog" in results.get("ours", {}):
        print(
            f"ours: {results['ours']['backlog']:.0f} accepted events were still"
            " waiting for delivery when the load ended"
        )

    if not {"ours", "bare", "fastapi"} <= set(results):
        return 0

    ours = results["ours"]
    checks = {
        "ours / (a) >= 0.5": ours["rps"] / results["bare"]["rps"] >= 0.5,
        "ours / (b) >= 2": ours["rps"] / results["fastapi"]["rps"] >= 2.0,
        "p99 <= 20 ms": ours["p99_ms"] <= 20.0,
        "RSS <= 150 MB": ours["rss_mb"] <= 150.0,
        "no errors": ours["errors"] == 0,
    }
    print(
        f"ours / (a) = {ours['rps'] / results['bare']['rps']:.2f}, "
        f"ours / (b) = {ours['rps'] / results['fastapi']['rps']:.2f}"
    )

    floors = (
        ("floor", "verifies and forwards"),
        ("durable", "verifies, commits and forwards"),
    )

    for name, does in floors:
        if name in results:
            rate = results[name]["rps"]
            print(
                f"{labels[name][:3]} / (a) = {rate / results['bare']['rps']:.2f}, "
                f"{labels[name][:3]} / (b) = {rate / results['fastapi']['rps']:.2f}:"
                f" a receiver that only {does}"
            )

    for name, passed in checks.items():
        print(f"{'ok  ' if passed else 'MISS'} {name}")

    return 0 if all(checks.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["bare", "fastapi", "floor", "durable", "ours"],
        default=["bare", "fastapi", "floor", "durable", "ours"],
        help="Load only these servers; the ratios need bare, fastapi and ours.",
    )
    parser.add_argument(
        "--role", choices=["bare", "fastapi", "floor", "load"], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--ca", default="", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--inbox", default="", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.role == "bare":
        run_bare(arguments.port, arguments.cert, arguments.key)
    elif arguments.role == "fastapi":
        run_fastapi(arguments.port, arguments.cert, arguments.key)
    elif arguments.role == "floor":
        run_floor(
            arguments.port,
            arguments.cert,
            arguments.key,
            arguments.upstream,
            arguments.inbox,
        )
    elif arguments.role == "load":
        run_load(arguments.port, arguments.connections, arguments.seconds, arguments.ca)
    else:
        return orchestrate(arguments.seconds, arguments.connections, arguments.only)

    return 0


if __name__ == "__main__":
    sys.exit(main())
