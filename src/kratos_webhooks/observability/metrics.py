"""Prometheus metrics of the services, each set in its own registry.

A registry per server keeps tests and several servers in one process apart;
the admin listener exposes the registry of its server.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["LATENCY_BUCKETS", "HttpMetrics"]

# Seconds; fine-grained below 50 ms, where an async route should answer.
LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
)


class HttpMetrics:
    """Requests by route, status and reason code, and their latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "kratos_webhooks_requests",
            "Requests answered, by route, status and reason code.",
            ["route", "status", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "kratos_webhooks_request_duration_seconds",
            "Time from the request to the end of the answer, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, route: str, status: int, reason: str, seconds: float) -> None:
        self.requests.labels(route, str(status), reason).inc()
        self.latency.labels(route).observe(seconds)
