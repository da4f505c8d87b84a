"""The startup heap leaves the collector's full passes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from kratos_webhooks.heap import freeze_startup_heap


@pytest.fixture
def manual_collection() -> Iterator[None]:
    """Turn off automatic passes, so only the function under test collects."""
    gc.unfreeze()
    gc.disable()
    yield
    gc.enable()
    gc.unfreeze()


class Node:
    """A reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("manual_collection")
def test_objects_alive_at_startup_leave_the_collected_generations() -> None:
    survivors = [[index] for index in range(1000)]

    frozen = freeze_startup_heap()

    # Frozen objects that die leave the count, so it can only have shrunk.
    assert frozen >= len(survivors)
    assert 0 < gc.get_freeze_count() <= frozen
    walked = {id(o) for o in gc.get_objects()}
    assert not any(id(item) in walked for item in survivors)


@pytest.mark.usefixtures("manual_collection")
def test_garbage_is_freed_before_the_freeze() -> None:
    references = []

    for _ in range(500):
        node = Node()
        references.append(weakref.ref(node))
        del node

    assert all(reference() is not None for reference in references)

    freeze_startup_heap()

    assert all(reference() is None for reference in references)
