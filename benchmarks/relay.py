"""Measure the latency the relay hop adds, against calling the receiver directly.

Run: python benchmarks/relay.py [--requests N]

Three processes run on loopback: a bare uvicorn application that returns `{}`,
`kratos-webhooks serve` with a sync Standard Webhooks route forwarding to it
over HTTP, and `kratos-webhooks relay` with a sync route forwarding to the
receiver over HTTPS. One client, on one keep-alive connection per path, sends
the same ~2 KB Kratos-like body, alternating in blocks between:

- direct: client → receiver (HTTPS), signed by the client;
- relayed: client → relay (HTTP, Kratos' API key) → receiver (HTTPS).

Each request has a fresh trigger id, so nothing is answered from the
idempotency store. Reported: p50 and p99 of both paths and the difference.
Exits 1 when the p50 difference is above 1 ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import trustme
import yaml

from kratos_webhooks import KeySet, Signer

RELAY_SECRET = "whsec_" + "UmVsYXkgYmVuY2htYXJrIHNpZ25pbmcga2V5IQ=="
UPSTREAM_SECRET = "whsec_" + "VXBzdHJlYW0gc2VjcmV0IGZvciBkZWxpdmVyaWVzIQ=="
KRATOS_KEY = "relay-benchmark-kratos-key"
PATH = "/kratos/registration/after"
BODY_BYTES = 2048
BLOCK = 100
TARGET_ADDED_P50_MS = 1.0
START_SECONDS = 30.0

UPSTREAM_CODE = """
import socket, sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(
    sockets=[sock])
"""


def kratos_body() -> bytes:
    """Return a ~2 KB body printed the way Kratos' Jsonnet prints JSON."""
    head = '{\n   "flow": {\n      "id": "' + str(uuid.uuid4()) + '"\n   },\n'
    head += '   "transient_payload": "'
    tail = '"\n}\n'
    return (head + "x" * (BODY_BYTES - len(head) - len(tail)) + tail).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + START_SECONDS

    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return

        time.sleep(0.05)

    raise SystemExit(f"nothing listens on port {port}")


def configs(directory: Path, ports: dict[str, int], ca_file: Path) -> tuple[Path, Path]:
    authority_files = {
        "cert_file": str(directory / "tls.crt"),
        "key_file": str(directory / "tls.key"),
    }
    receiver = {
        "server": {"listen": f"127.0.0.1:{ports['receiver']}", "tls": authority_files},
        "admin": {"listen": f"127.0.0.1:{ports['admin']}"},
        "storage": f"sqlite://{directory / 'receiver.db'}",
        "logging": {"level": "warning"},
        "routes": [
            {
                "path": PATH,
                "verify": {"scheme": "standard-webhooks", "secrets": ["env:B_RELAY"]},
                "mode": "sync",
                "upstream": f"http://127.0.0.1:{ports['upstream']}{PATH}",
                "upstream_secrets": ["env:B_UPSTREAM"],
            }
        ],
    }
    relay = {
        "relay": {"listen": f"127.0.0.1:{ports['relay']}"},
        "outbound": {"ca_file": str(ca_file), "allow_loopback_targets": True},
        "storage": f"sqlite://{directory / 'relay.db'}",
        "logging": {"level": "warning"},
        "routes": [
            {
                "path": PATH,
                "target": f"https://127.0.0.1:{ports['receiver']}{PATH}",
                "mode": "sync",
                "kratos_auth": {
                    "type": "api_key",
                    "name": "X-Webhook-Key",
                    "secrets": ["env:B_KRATOS"],
                },
                "signing": {"secrets": ["env:B_RELAY"]},
            }
        ],
    }
    receiver_file = directory / "receiver.yaml"
    relay_file = directory / "relay.yaml"
    receiver_file.write_text(yaml.safe_dump(receiver))
    relay_file.write_text(yaml.safe_dump(relay))
    return receiver_file, relay_file


def measure(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str]
) -> float:
    started = time.perf_counter()
    response = client.post(url, content=body, headers=headers)
    elapsed = time.perf_counter() - started

    if response.status_code != 200:
        raise SystemExit(f"{url} responded {response.status_code}: {response.text}")

    return elapsed * 1000


def kratos_headers(body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "Go-http-client/1.1",
        "ory-webhook-trigger-id": str(uuid.uuid4()),
        "x-webhook-key": KRATOS_KEY,
    }


def run(requests: int, warmup: int) -> dict[str, Any]:
    ports = {name: free_port() for name in ("upstream", "receiver", "admin", "relay")}
    env = {
        **os.environ,
        "B_RELAY": RELAY_SECRET,
        "B_UPSTREAM": UPSTREAM_SECRET,
        "B_KRATOS": KRATOS_KEY,
    }
    code = "from kratos_webhooks.cli import main; main()"
    processes: list[subprocess.Popen[bytes]] = []

    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1")
        issued.cert_chain_pems[0].write_to_path(directory / "tls.crt")
        issued.private_key_pem.write_to_path(directory / "tls.key")
        ca_file = directory / "ca.pem"
        authority.cert_pem.write_to_path(ca_file)
        receiver_file, relay_file = configs(directory, ports, ca_file)

        try:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", UPSTREAM_CODE, str(ports["upstream"])]
                )
            )
            wait_for_port(ports["upstream"])
            # The services log at warning, so a port that accepts connections is
            # the sign that a service is ready.
            for arguments, port in (
                (["serve", "--config", str(receiver_file)], ports["receiver"]),
                (["relay", "--config", str(relay_file)], ports["relay"]),
            ):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-c", code, *arguments],
                        env=env,
                        stdout=subprocess.DEVNULL,
                    )
                )
                wait_for_port(port)

            return _load(ports, ca_file, requests, warmup)
        finally:
            for process in processes:
                process.terminate()

            for process in processes:
                try:
                    process.wait(40)
                except subprocess.TimeoutExpired:
                    process.kill()


def _load(
    ports: dict[str, int], ca_file: Path, requests: int, warmup: int
) -> dict[str, Any]:
    signer = Signer(KeySet.of(RELAY_SECRET))
    direct_url = f"https://127.0.0.1:{ports['receiver']}{PATH}"
    relay_url = f"http://127.0.0.1:{ports['relay']}{PATH}"
    direct: list[float] = []
    relayed: list[float] = []

    with (
        httpx.Client(verify=str(ca_file), trust_env=False) as to_receiver,
        httpx.Client(trust_env=False) as to_relay,
    ):
        for index in range(warmup + requests):
            block_is_direct = (index // BLOCK) % 2 == 0
            body = kratos_body()

            if block_is_direct:
                headers = {"content-type": "application/json"}
                headers |= signer.sign(body, msg_id=f"msg_{uuid.uuid4()}")
                sample = measure(to_receiver, direct_url, body, headers)
                target = direct
            else:
                sample = measure(to_relay, relay_url, body, kratos_headers(body))
                target = relayed

            if index >= warmup:
                target.append(sample)

    return {"direct": direct, "relayed": relayed}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=4000, help="Measured requests, both paths."
    )
    parser.add_argument(
        "--warmup", type=int, default=400, help="Requests sent before measuring."
    )
    options = parser.parse_args()
    samples = run(options.requests, options.warmup)
    rows = {}

    for name, values in samples.items():
        rows[name] = {
            "p50": statistics.median(values),
            "p99": percentile(values, 0.99),
            "n": len(values),
        }

    added_p50 = rows["relayed"]["p50"] - rows["direct"]["p50"]
    added_p99 = rows["relayed"]["p99"] - rows["direct"]["p99"]

    for name, row in rows.items():
        print(
            f"{name:8} n={row['n']:5}  p50 {row['p50']:.3f} ms  p99 {row['p99']:.3f} ms"
        )

    print(f"added    p50 {added_p50:+.3f} ms  p99 {added_p99:+.3f} ms")
    ok = added_p50 <= TARGET_ADDED_P50_MS
    print(f"target p50 added <= {TARGET_ADDED_P50_MS} ms: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
