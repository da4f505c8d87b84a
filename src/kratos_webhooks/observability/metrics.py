"""Prometheus metrics of the receiver, in a registry per `Metrics` instance.

Each receiver (and each test) makes its own `Metrics`, so nothing is shared
through prometheus_client's global default registry. Every name starts with
`kratos_webhooks_`; route labels are route paths, outcome labels are the words
listed on each metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..receiver.state import StateStore

__all__ = [
    "DeliveryMetrics",
    "DeliveryOutcome",
    "HttpMetrics",
    "InboxCollector",
    "Metrics",
    "StateMetrics",
    "TlsMetrics",
]

PREFIX: Final = "kratos_webhooks_"

DeliveryOutcome = Literal["delivered", "rejected", "unreachable", "timeout", "error"]

# Attempts take milliseconds to the per-attempt timeout (seconds); the time to
# delivery includes retries, so it reaches hours while an upstream is down.
_ATTEMPT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LATENCY_BUCKETS: Final = (
    0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400,
)  # fmt: skip
# Request latency in seconds; fine-grained below 50 ms, where answers should be.
_REQUEST_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25,
)  # fmt: skip
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_COMMIT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

logger = logging.getLogger("kratos_webhooks.server")


class HttpMetrics:
    """Requests answered by the receiver: by route, status and reason code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            PREFIX + "requests",
            "Requests answered, by route, status and reason code. The route is"
            " '-' for a path that matches no route.",
            ["route", "status", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            PREFIX + "request_duration_seconds",
            "Time from the start of a request to the end of its answer, by route.",
            ["route"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )

        # Label children by (route, status, reason), looked up once each: routes
        # come from the configuration and statuses and reasons from fixed sets.
        self._children: dict[tuple[str, int, str], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, status: int, reason: str, seconds: float) -> None:
        """Record one answered request."""
        key = (route, status, reason)
        children = self._children.get(key)

        if children is None:
            children = (
                self.requests.labels(route, str(status), reason),
                self.latency.labels(route),
            )
            self._children[key] = children

        children[0].inc()
        children[1].observe(seconds)


class StateMetrics:
    """Commits of the state store's writer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commit_batch_size = Histogram(
            PREFIX + "state_commit_batch_size",
            "Writes committed together in one transaction (group commit).",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_duration = Histogram(
            PREFIX + "state_commit_duration_seconds",
            "Time to run and commit one batch of writes, fsync included.",
            buckets=_COMMIT_BUCKETS,
            registry=registry,
        )

    def observe_commit(self, size: int, seconds: float) -> None:
        """Record one committed batch of `size` writes."""
        self.commit_batch_size.observe(size)
        self.commit_duration.observe(seconds)


class DeliveryMetrics:
    """Attempts to deliver inbox events to the application, and dead letters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            PREFIX + "delivery_attempts",
            "Delivery attempts by route and outcome: delivered (2xx), rejected"
            " (any other status), unreachable (connection failed), timeout, or"
            " error (the event could not be sent).",
            ["route", "outcome"],
            registry=registry,
        )
        self.attempt_duration = Histogram(
            PREFIX + "delivery_attempt_duration_seconds",
            "Duration of one delivery attempt, by route.",
            ["route"],
            buckets=_ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            PREFIX + "delivery_latency_seconds",
            "Time from accepting an event to delivering it, retries included.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            PREFIX + "dead_letters",
            "Events that became dead letters after their last attempt, by route.",
            ["route"],
            registry=registry,
        )

    def observe_attempt(
        self, route: str, outcome: DeliveryOutcome, seconds: float
    ) -> None:
        """Record one attempt and how long it took."""
        self.attempts.labels(route, outcome).inc()
        self.attempt_duration.labels(route).observe(seconds)

    def observe_delivered(self, route: str, seconds_since_accepted: float) -> None:
        """Record the time an event took from acceptance to delivery."""
        self.latency.labels(route).observe(max(0.0, seconds_since_accepted))

    def observe_dead_letter(self, route: str) -> None:
        """Count one new dead letter."""
        self.dead_letters.labels(route).inc()


class TlsMetrics:
    """Handshake failures, certificate reloads and the server certificate's expiry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handshake_failures = Counter(
            PREFIX + "tls_handshake_failures",
            "Failed TLS handshakes by listener and reason: client_certificate_missing,"
            " client_certificate_untrusted, client_certificate_expired,"
            " client_certificate_not_yet_valid or tls_handshake_failed.",
            ["listener", "reason"],
            registry=registry,
        )
        self.reloads = Counter(
            PREFIX + "tls_reloads",
            "Reloads of a listener's certificate, key and client CA files, by"
            " outcome: loaded, or failed (the previous files stay in use).",
            ["listener", "outcome"],
            registry=registry,
        )
        self.expiry = Gauge(
            PREFIX + "tls_certificate_expiry_seconds",
            "Seconds until the listener's server certificate expires; negative"
            " once expired.",
            ["listener"],
            registry=registry,
        )

    def watch_expiry(self, listener: str, seconds_left: Callable[[], float]) -> None:
        """Report `seconds_left()` for a listener at each scrape."""
        self.expiry.labels(listener).set_function(seconds_left)


class InboxCollector(Collector):
    """Inbox depth by state, read from the store at each scrape."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        from ..receiver.state import StorageError

        try:
            depth = self._store.depth()
        except StorageError as exc:
            # A scrape must not fail because of the store; the missing series
            # and the log line show the problem.
            logger.warning("inbox depth unavailable: %s", exc)
            return []

        family = GaugeMetricFamily(
            PREFIX + "inbox_depth",
            "Events in the inbox by state: pending, delivered (kept for the"
            " idempotency window) or dead (dead letters awaiting a redrive).",
            labels=["state"],
        )

        for state, count in depth.items():
            family.add_metric([state], count)

        return [family]

    def describe(self) -> Iterable[Metric]:
        # Describing without collecting keeps registration from reading the store.
        return [GaugeMetricFamily(PREFIX + "inbox_depth", "", labels=["state"])]


class Metrics:
    """Every metric of one receiver, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpMetrics(self.registry)
        self.state = StateMetrics(self.registry)
        self.delivery = DeliveryMetrics(self.registry)
        self.tls = TlsMetrics(self.registry)
        self._inbox: InboxCollector | None = None

    def watch_inbox(self, store: StateStore) -> None:
        """Report the depth of `store`'s inbox at each scrape."""
        if self._inbox is not None:
            self.registry.unregister(self._inbox)

        self._inbox = InboxCollector(store)
        self.registry.register(self._inbox)

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)
