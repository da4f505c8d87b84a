"""Events of async routes, as the inbox stores them until they are delivered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["EVENT_STATES", "EventState", "InboxEvent"]

EventState = Literal["pending", "delivered", "dead"]
EVENT_STATES: Final[tuple[EventState, ...]] = ("pending", "delivered", "dead")

# The longest `last_error` kept: an error is a short reason, never a body.
MAX_ERROR_LENGTH: Final = 200


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One accepted event and its delivery progress.

    `webhook_id` is the idempotency key the event was accepted under, and every
    delivery of it carries that id. Times are Unix seconds. `retry_since` is
    when the current attempt budget began: the arrival, or the last redrive.
    """

    id: int
    route: str
    webhook_id: str
    body: bytes
    content_type: str
    received_at: float
    attempts: int
    next_attempt_at: float
    state: EventState
    last_error: str | None
    retry_since: float
    delivered_at: float | None = None


def shorten_error(error: str) -> str:
    """Cut an error message to one line of at most `MAX_ERROR_LENGTH` characters."""
    line = " ".join(error.split())

    if len(line) <= MAX_ERROR_LENGTH:
        return line

    return line[: MAX_ERROR_LENGTH - 3] + "..."
