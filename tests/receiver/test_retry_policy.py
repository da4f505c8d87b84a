from __future__ import annotations

import random

import pytest

from kratos_webhooks.errors import ConfigError
from kratos_webhooks.receiver.delivery import RetryPolicy
from kratos_webhooks.receiver.inbox import InboxEvent

NOW = 1_700_000_000.0


def event(attempts: int, *, retry_since: float = NOW) -> InboxEvent:
    return InboxEvent(
        id=1,
        route="/hooks/a",
        webhook_id="msg_1",
        body=b"{}",
        content_type="application/json",
        received_at=retry_since,
        attempts=attempts,
        next_attempt_at=NOW,
        state="pending",
        last_error=None,
        retry_since=retry_since,
    )


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 12
    assert policy.max_age == 86400
    assert policy.initial_backoff == 1.0
    assert policy.max_backoff == 600
    assert policy.jitter == 0.2


def test_backoff_doubles_up_to_cap() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=10.0, jitter=0.0)
    rng = random.Random(1)
    delays = [policy.backoff(n, rng) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.backoff(10_000, rng) == 10.0


def test_proportional_jitter_stays_in_band() -> None:
    policy = RetryPolicy(initial_backoff=10.0, max_backoff=1000.0, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.backoff(2, rng) for _ in range(2000)]
    assert min(delays) >= 16.0
    assert max(delays) <= 24.0
    # Spread over the band, not stuck at one value.
    assert max(delays) - min(delays) > 6.0


def test_proportional_jitter_respects_cap() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=5.0, jitter=0.5)
    rng = random.Random(3)
    assert max(policy.backoff(8, rng) for _ in range(500)) <= 5.0


def test_full_jitter_spans_zero_to_delay() -> None:
    policy = RetryPolicy(initial_backoff=4.0, max_backoff=100.0, jitter="full")
    rng = random.Random(11)
    delays = [policy.backoff(1, rng) for _ in range(2000)]
    assert min(delays) >= 0.0
    assert max(delays) <= 4.0
    assert min(delays) < 0.5
    assert max(delays) > 3.5


def test_last_attempt_makes_dead_letter() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=0.0)
    rng = random.Random(0)
    assert policy.next_attempt_at(event(0), NOW, rng) == NOW + 1.0
    assert policy.next_attempt_at(event(1), NOW, rng) == NOW + 2.0
    assert policy.next_attempt_at(event(2), NOW, rng) is None


def test_age_limit_makes_dead_letter() -> None:
    policy = RetryPolicy(
        max_age=100.0, initial_backoff=30.0, max_backoff=30.0, jitter=0
    )
    rng = random.Random(0)
    assert policy.next_attempt_at(event(1), NOW + 60, rng) == NOW + 90
    assert policy.next_attempt_at(event(2), NOW + 71, rng) is None


def test_age_counts_from_redrive() -> None:
    policy = RetryPolicy(max_age=100.0, jitter=0.0)
    redriven = event(0, retry_since=NOW + 1000)
    assert policy.next_attempt_at(redriven, NOW + 1000, random.Random(0)) == NOW + 1001


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_age": 0}, "max_age"),
        ({"max_age": float("nan")}, "max_age"),
        ({"initial_backoff": 0}, "initial_backoff"),
        ({"initial_backoff": 5, "max_backoff": 1}, "max_backoff"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": "half"}, "jitter"),
    ],
)
def test_invalid_policy_is_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetryPolicy(**options)  # type: ignore[arg-type]
