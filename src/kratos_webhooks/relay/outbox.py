"""The relay's outbox: async routes use the receiver's durable store and worker.

An event is committed to SQLite (WAL, synchronous=FULL) before Kratos gets
its 202, then the delivery worker forwards it, signed with the route's keys and
through the target guard, on a fixed retry schedule, and dead-letters it after
the last attempt.
"""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass
from typing import Final

from ..receiver.delivery import DeliveryTarget, DeliveryWorker, RetryPolicy
from ..receiver.state import StateStore
from ..secrets import KeySet
from .config import OutboxDeliveryConfig, RelayConfig
from .target import GuardedResolver, Resolver, system_resolver

__all__ = ["ScheduleRetryPolicy", "open_outbox", "schedule_policy"]

# Past the last scheduled delay, the event is old enough to give up on.
_MAX_AGE_MARGIN: Final = 3600.0


@dataclass(frozen=True, slots=True)
class ScheduleRetryPolicy(RetryPolicy):
    """A retry policy that follows a table of delays instead of doubling.

    The delay after failure n is `schedule[n - 1]`, spread by `jitter` (a
    fraction), so an event is attempted `len(schedule) + 1` times.
    """

    schedule: tuple[float, ...] = ()

    def backoff(self, failures: int, rng: random.Random) -> float:
        delay = self.schedule[min(failures, len(self.schedule)) - 1]

        if self.jitter == "full":
            return rng.uniform(0.0, delay)

        spread = delay * self.jitter
        return rng.uniform(delay - spread, delay + spread)


def schedule_policy(delivery: OutboxDeliveryConfig) -> ScheduleRetryPolicy:
    """Build the retry policy of an async route from its configuration."""
    schedule = delivery.schedule
    return ScheduleRetryPolicy(
        max_attempts=len(schedule) + 1,
        max_age=sum(schedule) * (1 + delivery.jitter) + _MAX_AGE_MARGIN,
        initial_backoff=min(schedule),
        max_backoff=max(schedule) * (1 + delivery.jitter),
        jitter=delivery.jitter,
        schedule=schedule,
    )


def open_outbox(
    config: RelayConfig,
    context: ssl.SSLContext,
    *,
    resolver: Resolver = system_resolver,
) -> tuple[StateStore, DeliveryWorker]:
    """Make the outbox store and its delivery worker for the async routes.

    Raises:
        ConfigError: the storage URL or a signing secret is unusable.
    """
    store = StateStore.open(
        config.storage, idempotency_window=config.idempotency_window
    )
    outbound = config.outbound
    guard = GuardedResolver(outbound.policy, resolver=resolver)
    targets = {
        route.path: DeliveryTarget(
            url=route.target,
            keys=KeySet.load(route.signing.secrets),
            all_keys=route.signing.all_keys,
            timeout=route.delivery.timeout,
            retry=schedule_policy(route.delivery),
            ssl_context=context,
            resolver=guard,
            connect_timeout=outbound.connect_timeout,
        )
        for route in config.routes
        if route.mode == "async"
    }
    return store, DeliveryWorker(store, targets)
