"""Time one verification against a bare HMAC floor and the reference libraries.

Run: python benchmarks/verify.py [--rounds N]

Every candidate verifies the same signed body in interleaved rounds, and the
median of the rounds is compared with the floor (`hmac.new` + `compare_digest`
over the signed content built in advance), so machine noise hits all alike.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import statistics
import sys
import time
from collections.abc import Callable

import standardwebhooks
import svix.webhooks

from kratos_webhooks import HmacKey, Signer, Verifier

SIZES = {"2 KB": 2048, "64 KB": 65536}
TARGETS = {"2 KB": 1.30, "64 KB": 1.05}


def json_body(size: int) -> bytes:
    """Return a JSON object of exactly `size` bytes: the references parse it."""
    filler = base64.b64encode(os.urandom(size)).decode()
    head = (
        '{\n   "flow": {\n      "id": "6f1d2c3b-4a59-4e68-9c7d-8e9fa0b1c2d3"\n'
        '   },\n   "pad": "'
    )
    tail = '"\n}\n'
    return (head + filler[: size - len(head) - len(tail)] + tail).encode()


def candidates(size: int) -> dict[str, Callable[[], object]]:
    key = HmacKey.generate()
    body = json_body(size)
    headers = Signer(key).sign(body)
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    digest = hmac.new(key.key, signed, hashlib.sha256).digest()
    ours = Verifier(key)
    standard = standardwebhooks.Webhook(key.encode())
    svix_verifier = svix.webhooks.Webhook(key.encode())
    svix_headers = {
        "svix-id": headers["webhook-id"],
        "svix-timestamp": headers["webhook-timestamp"],
        "svix-signature": headers["webhook-signature"],
    }

    def floor() -> bool:
        return hmac.compare_digest(
            hmac.new(key.key, signed, hashlib.sha256).digest(), digest
        )

    return {
        "floor": floor,
        "kratos-webhooks": lambda: ours.verify(body, headers),
        "standardwebhooks": lambda: standard.verify(body, headers),
        "svix": lambda: svix_verifier.verify(body, svix_headers),
    }


def time_batch(func: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()

    for _ in range(calls):
        func()

    return (time.perf_counter_ns() - start) / calls / 1000


def measure(size: int, rounds: int) -> dict[str, float]:
    funcs = candidates(size)
    calls = max(200, 4_000_000 // (size + 500))
    samples: dict[str, list[float]] = {name: [] for name in funcs}

    for func in funcs.values():
        time_batch(func, calls)

    for _ in range(rounds):
        for name, func in funcs.items():
            samples[name].append(time_batch(func, calls))

    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="Interleaved rounds.")
    args = parser.parse_args()
    missed = False

    print(f"{'size':<6} {'candidate':<18} {'us/verify':>10} {'x floor':>8}")

    for label, size in SIZES.items():
        medians = measure(size, args.rounds)
        floor = medians["floor"]

        for name, micros in medians.items():
            print(f"{label:<6} {name:<18} {micros:>10.2f} {micros / floor:>8.2f}")

        ratio = medians["kratos-webhooks"] / floor
        met = ratio <= TARGETS[label]
        missed |= not met
        verdict = "met" if met else "MISSED"
        print(
            f"{label:<6} target <= {TARGETS[label]:.2f}x floor: {ratio:.2f}x {verdict}"
        )

    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
