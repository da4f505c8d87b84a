"""The delivery worker: forwards inbox events to the application, with retries.

Each delivery POSTs the original body, byte for byte, with its original
Content-Type and the Standard Webhooks headers made with the route's upstream
key set, plus `webhook-attempt`. A 2xx response delivers the event. Any other
status (redirects are never followed), a connection failure or a timeout is
retried with exponential backoff and jitter until the attempts or the age run
out, and the event then becomes a dead letter. Events survive restarts in the
store, so a new worker on the same database picks up where the last one left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

from ..errors import ConfigError, InvalidWebhookId
from ..secrets import KeySet
from ..signing import Signer
from .inbox import InboxEvent
from .state import StateStore, StorageError
from .upstream_client import AddressResolver, UpstreamClient, UpstreamError

if TYPE_CHECKING:
    from ..observability.metrics import DeliveryMetrics, DeliveryOutcome

__all__ = ["ATTEMPT_HEADER", "DeliveryTarget", "DeliveryWorker", "RetryPolicy"]

ATTEMPT_HEADER: Final = "webhook-attempt"
DEFAULT_TIMEOUT: Final = 10.0
# The worker shares the event loop with the listener, so under load each
# attempt waits several loop turns; 8 slots then delivered about half as many
# events per second as the listener accepted on two cores, 32 kept up.
DEFAULT_CONCURRENCY: Final = 32
# Events whose attempt is over but whose result is not committed yet may number
# this many times `concurrency`, so slow commits do not hold up new attempts.
_RECORDING_FACTOR: Final = 4
# How often an idle worker looks for due events it was not woken for, such as
# events redriven by `kratos-webhooks inbox redrive` from another process.
DEFAULT_POLL_INTERVAL: Final = 2.0

logger = logging.getLogger("kratos_webhooks.delivery")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to retry a failed delivery, and when to give up.

    The delay before retry n (n = 1 after the first failure) is
    `initial_backoff * 2 ** (n - 1)`, capped at `max_backoff` seconds, then
    jittered. `jitter` is a fraction for proportional jitter (0.2 spreads each
    delay uniformly over ±20 %) or `"full"` for a uniform delay between zero and
    the capped delay. An event becomes a dead letter after `max_attempts`
    attempts, or when the next attempt would start more than `max_age` seconds
    after the event arrived or was redriven.
    """

    max_attempts: int = 12
    max_age: float = 86400.0
    initial_backoff: float = 1.0
    max_backoff: float = 600.0
    jitter: float | Literal["full"] = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("delivery max_attempts must be at least 1")

        if not self.max_age > 0:
            raise ConfigError("delivery max_age must be a positive number of seconds")

        if not self.initial_backoff > 0:
            raise ConfigError("delivery initial_backoff must be positive")

        if not self.max_backoff >= self.initial_backoff:
            raise ConfigError("delivery max_backoff must be at least initial_backoff")

        if self.jitter != "full" and not (
            isinstance(self.jitter, int | float) and 0 <= self.jitter <= 1
        ):
            raise ConfigError('delivery jitter must be between 0 and 1, or "full"')

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Return the delay in seconds after the `failures`-th failed attempt."""
        exponent = min(failures - 1, 64)
        delay = min(self.max_backoff, self.initial_backoff * 2.0**exponent)

        if self.jitter == "full":
            return rng.uniform(0.0, delay)

        spread = delay * self.jitter
        return min(self.max_backoff, rng.uniform(delay - spread, delay + spread))

    def next_attempt_at(
        self, event: InboxEvent, now: float, rng: random.Random
    ) -> float | None:
        """Return when to retry after a failed attempt, or None for a dead letter."""
        failures = event.attempts + 1

        if failures >= self.max_attempts:
            return None

        retry_at = now + self.backoff(failures, rng)

        if retry_at - event.retry_since > self.max_age:
            return None

        return retry_at


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """The upstream URL, keys, timeout and retry policy of one route's deliveries.

    `keys` is the upstream key set, apart from the secrets Kratos or the relay
    use, so the application can tell that a call came from the receiver.
    `ssl_context` verifies an https upstream; None means the system's default.
    `all_keys` signs with every key of the set, for a rollover. `resolver`,
    when set, chooses the addresses to connect to, as the relay's target guard
    does; `connect_timeout` bounds each new connection within `timeout`.
    """

    url: str
    keys: KeySet
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ssl_context: ssl.SSLContext | None = None
    all_keys: bool = False
    resolver: AddressResolver | None = None
    connect_timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError("upstream URL must start with http:// or https://")

        if not self.timeout > 0:
            raise ConfigError("delivery timeout must be a positive number of seconds")


class _AttemptFailed(Exception):
    def __init__(self, outcome: DeliveryOutcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome: DeliveryOutcome = outcome
        self.reason = reason


class DeliveryWorker:
    """Deliver due inbox events, up to `concurrency` at a time.

    Events of routes missing from `targets` stay pending, untouched, until a
    configuration that names their route is loaded.
    """

    def __init__(
        self,
        store: StateStore,
        targets: Mapping[str, DeliveryTarget],
        *,
        metrics: DeliveryMetrics | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError("delivery concurrency must be at least 1")

        self._store = store
        self._targets = dict(targets)
        self._metrics = metrics
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._signers = {
            route: Signer(t.keys, all_keys=t.all_keys, clock=clock)
            for route, t in targets.items()
        }
        self._clients: dict[str, _Poster] = {}
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        # The events of `_in_flight` still waiting for the upstream; the others
        # are recording their result.
        self._attempting: set[int] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start delivering in the running event loop."""
        if self._loop_task is not None:
            return

        for route, target in self._targets.items():
            self._clients[route] = _make_poster(target, self._concurrency)

        self._loop_task = asyncio.create_task(self._run(), name="delivery-worker")

    def wake(self) -> None:
        """Look for due events now, for instance right after one was accepted."""
        self._wake.set()

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop taking events and let attempts in flight finish, for `grace` seconds.

        `grace` defaults to the longest per-attempt timeout plus one second. An
        attempt still running after it is cancelled; its event stays pending and
        is delivered again after a restart, with the same webhook-id.
        """
        if self._loop_task is None or self._stopping:
            return

        self._stopping = True
        self._wake.set()
        await self._loop_task

        if grace is None:
            # One second past the longest timeout leaves time to record results.
            longest = max((t.timeout for t in self._targets.values()), default=0.0)
            grace = longest + 1.0

        in_flight = list(self._in_flight.values())

        if in_flight:
            _, still_running = await asyncio.wait(in_flight, timeout=grace)

            for task in still_running:
                task.cancel()

            await asyncio.gather(*still_running, return_exceptions=True)

        for client in self._clients.values():
            await client.aclose()

        self._clients.clear()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()

            try:
                delay = await self._dispatch_due()
            except StorageError as exc:
                logger.error("delivery_inbox_unreadable", extra={"error": str(exc)})
                delay = self._poll_interval
            except Exception:
                # A bug must not stop deliveries for good: log it, try again.
                logger.exception("delivery_worker_failed")
                delay = self._poll_interval

            if delay > 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _dispatch_due(self) -> float:
        """Start attempts for due events; return how long to sleep until the next."""
        now = self._clock()
        free = min(
            self._concurrency - len(self._attempting),
            self._concurrency * _RECORDING_FACTOR - len(self._in_flight),
        )

        if free <= 0:
            # Every slot is busy, and a finishing attempt wakes the loop.
            return self._poll_interval

        due = await self._store.due_events(
            now, free, routes=self._targets.keys(), exclude=self._in_flight.keys()
        )

        for event in due:
            if free <= 0:
                return self._poll_interval

            if event.id in self._in_flight:
                continue

            free -= 1
            task = asyncio.create_task(self._deliver(event))
            self._in_flight[event.id] = task
            self._attempting.add(event.id)
            task.add_done_callback(functools.partial(self._finished, event.id))

        # Every due event is in flight now, so only later ones matter.
        next_at = await self._store.next_attempt_at(now, routes=self._targets.keys())

        if next_at is None:
            return self._poll_interval

        return min(self._poll_interval, max(0.0, next_at - self._clock()))

    def _finished(self, event_id: int, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(event_id, None)
        self._attempting.discard(event_id)
        self._wake.set()

        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "delivery_crashed",
                extra={"event_id": event_id, "error": repr(task.exception())},
            )

    async def _deliver(self, event: InboxEvent) -> None:
        target = self._targets[event.route]
        attempt = event.attempts + 1
        started = time.perf_counter()

        try:
            await self._attempt(event, target, attempt)
        except _AttemptFailed as failure:
            self._attempt_over(event.id)
            seconds = time.perf_counter() - started
            await self._record_failure(event, target, attempt, failure, seconds)
            return

        # The result is committed in the writer's next batch; meanwhile the
        # slot serves another event.
        self._attempt_over(event.id)

        now = self._clock()

        try:
            await self._store.mark_delivered(event.id, now)
        except StorageError as exc:
            # The event stays pending and is delivered again, with the same
            # webhook-id, so the application can drop the repeat.
            logger.error(
                "delivery_not_recorded",
                extra={"event_id": event.id, "route": event.route, "error": str(exc)},
            )
            return

        if self._metrics is not None:
            self._metrics.observe_attempt(
                event.route, "delivered", time.perf_counter() - started
            )
            self._metrics.observe_delivered(event.route, now - event.received_at)

    def _attempt_over(self, event_id: int) -> None:
        self._attempting.discard(event_id)
        self._wake.set()

    async def _attempt(
        self, event: InboxEvent, target: DeliveryTarget, attempt: int
    ) -> None:
        try:
            headers = self._signers[event.route].sign(
                event.body, msg_id=event.webhook_id
            )
        except InvalidWebhookId as exc:
            # Keys from `idempotency_key` are always valid; this catches rows
            # written some other way, which retries cannot fix.
            raise _AttemptFailed("error", f"cannot sign: {exc}") from exc

        headers[ATTEMPT_HEADER] = str(attempt)
        headers["content-type"] = event.content_type
        client = self._clients[event.route]

        try:
            async with asyncio.timeout(target.timeout):
                status = await client.post(event.body, headers)
        except TimeoutError as exc:
            raise _AttemptFailed(
                "timeout", f"timed out after {target.timeout:g} s"
            ) from exc
        except UpstreamError as exc:
            raise _AttemptFailed("unreachable", str(exc)) from exc
        except ValueError as exc:
            # A content type with a line break, from a row not written by the
            # receiver. Retries cannot fix it.
            raise _AttemptFailed("error", f"cannot send: {exc}") from exc

        if not 200 <= status < 300:
            raise _AttemptFailed("rejected", f"upstream returned HTTP {status}")

    async def _record_failure(
        self,
        event: InboxEvent,
        target: DeliveryTarget,
        attempt: int,
        failure: _AttemptFailed,
        seconds: float,
    ) -> None:
        retry_at = target.retry.next_attempt_at(event, self._clock(), self._rng)

        try:
            await self._store.mark_failed(
                event.id, error=failure.reason, next_attempt_at=retry_at
            )
        except StorageError as exc:
            logger.error(
                "delivery_failure_not_recorded",
                extra={"event_id": event.id, "route": event.route, "error": str(exc)},
            )
            return

        context = {
            "event_id": event.id,
            "route": event.route,
            "webhook_id": event.webhook_id,
            "attempt": attempt,
            "error": failure.reason,
        }

        if self._metrics is not None:
            self._metrics.observe_attempt(event.route, failure.outcome, seconds)

        if retry_at is not None:
            retry_in = round(max(0.0, retry_at - self._clock()), 1)
            logger.warning(
                "delivery_failed", extra={**context, "retry_in_seconds": retry_in}
            )
            return

        if self._metrics is not None:
            self._metrics.observe_dead_letter(event.route)

        logger.warning("dead_letter", extra=context)


class _Poster(Protocol):
    async def post(self, body: bytes, headers: dict[str, str]) -> int: ...

    async def aclose(self) -> None: ...


def _make_poster(target: DeliveryTarget, concurrency: int) -> _Poster:
    return UpstreamClient(
        target.url,
        ssl_context=target.ssl_context,
        max_idle=concurrency,
        resolver=target.resolver,
        connect_timeout=target.connect_timeout,
    )
