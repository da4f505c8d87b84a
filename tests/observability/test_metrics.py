from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kratos_webhooks.observability.metrics import Metrics
from kratos_webhooks.receiver.state import StateStore, StoredAnswer

ACCEPTED = StoredAnswer(202, b"{}")


def test_registries_are_isolated() -> None:
    first = Metrics()
    second = Metrics()
    first.delivery.observe_attempt("/hooks/a", "delivered", 0.01)

    labels = {"route": "/hooks/a", "outcome": "delivered"}
    name = "kratos_webhooks_delivery_attempts_total"
    assert first.registry.get_sample_value(name, labels) == 1
    assert second.registry.get_sample_value(name, labels) is None
    assert REGISTRY.get_sample_value(name, labels) is None


def test_delivery_metrics_by_route_and_outcome() -> None:
    metrics = Metrics()
    metrics.delivery.observe_attempt("/hooks/a", "timeout", 2.0)
    metrics.delivery.observe_attempt("/hooks/a", "rejected", 0.05)
    metrics.delivery.observe_dead_letter("/hooks/a")
    metrics.delivery.observe_delivered("/hooks/b", 42.0)
    text = metrics.render().decode()

    attempts = 'kratos_webhooks_delivery_attempts_total{outcome="timeout",'
    assert attempts + 'route="/hooks/a"} 1.0' in text
    assert 'kratos_webhooks_dead_letters_total{route="/hooks/a"} 1.0' in text
    assert 'kratos_webhooks_delivery_latency_seconds_sum{route="/hooks/b"} 42.0' in text
    assert (
        'kratos_webhooks_delivery_attempt_duration_seconds_count{route="/hooks/a"} 2.0'
        in text
    )


def test_inbox_depth_is_read_at_scrape(tmp_path: Path) -> None:
    metrics = Metrics()

    async def scenario() -> None:
        store = StateStore.open(f"sqlite://{tmp_path / 'state.db'}")
        await store.start()
        metrics.watch_inbox(store)
        assert (
            'kratos_webhooks_inbox_depth{state="pending"} 0.0'
            in metrics.render().decode()
        )

        for key in ("msg_1", "msg_2", "msg_3"):
            await store.accept_event(
                route="/hooks/a",
                key=key,
                body=b"{}",
                content_type="application/json",
                answer=ACCEPTED,
            )

        (first, *_) = store.list_events()
        await store.mark_failed(
            first.id, error="upstream returned HTTP 500", next_attempt_at=None
        )
        text = metrics.render().decode()
        await store.close()

        assert 'kratos_webhooks_inbox_depth{state="pending"} 2.0' in text
        assert 'kratos_webhooks_inbox_depth{state="dead"} 1.0' in text
        assert 'kratos_webhooks_inbox_depth{state="delivered"} 0.0' in text

    asyncio.run(scenario())


def test_scrape_survives_missing_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    metrics.watch_inbox(StateStore.open(f"sqlite://{tmp_path / 'absent.db'}"))
    metrics.delivery.observe_dead_letter("/hooks/a")

    with caplog.at_level(logging.WARNING):
        text = metrics.render().decode()

    assert "kratos_webhooks_dead_letters_total" in text
    assert "kratos_webhooks_inbox_depth{" not in text
    assert "inbox depth unavailable" in caplog.text


def test_commit_metrics() -> None:
    metrics = Metrics()
    metrics.state.observe_commit(12, 0.003)
    registry = metrics.registry

    assert (
        registry.get_sample_value("kratos_webhooks_state_commit_batch_size_sum") == 12
    )
    assert (
        registry.get_sample_value("kratos_webhooks_state_commit_duration_seconds_count")
        == 1
    )
