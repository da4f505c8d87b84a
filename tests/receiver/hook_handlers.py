"""Hook handlers that the receiver's tests name in routes as `module:function`.

Each handler records the event it got in `EVENTS`, so an in-process test can
check what the receiver passed; the answers carry the delivery id, so a test
over a real `serve` process can check it too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from kratos_webhooks.hooks import HookEvent, HookRegistry
from kratos_webhooks.kratos.answers import Interrupt, NoChange, UpdateIdentity
from kratos_webhooks.kratos.models import RegistrationContext

EVENTS: list[HookEvent[Any]] = []
hooks = HookRegistry()


@hooks.on("registration.after")
def tag_new_user(event: HookEvent[RegistrationContext]) -> UpdateIdentity:
    """Sync: set a public metadata field that names the delivery."""
    EVENTS.append(event)
    return UpdateIdentity(metadata_public={"delivery": event.delivery_id})


@hooks.on("registration.before")
async def close_sign_ups(event: HookEvent[RegistrationContext]) -> Interrupt:
    """Async: interrupt the flow with a message that names the delivery."""
    EVENTS.append(event)
    await asyncio.sleep(0)
    return Interrupt(status=403).error(
        f"Sign-ups are closed ({event.delivery_id}).", id=4000001
    )


def no_change(event: HookEvent[Any]) -> None:
    """A plain function: the route's hook point decides its payload."""
    EVENTS.append(event)


async def plain_dict(event: HookEvent[Any]) -> Any:
    """Returns what a builder would send, but not as an answer builder."""
    EVENTS.append(event)
    return {"identity": {}}


def update_on_before(event: HookEvent[Any]) -> UpdateIdentity:
    """An identity update on a before hook, which Kratos cannot take."""
    EVENTS.append(event)
    return UpdateIdentity(metadata_public={"seen": True})


def failing(event: HookEvent[Any]) -> None:
    """Fails with a message that quotes the payload, as careless code does."""
    raise RuntimeError(f"cannot handle {event.body.decode()}")


def slow(event: HookEvent[Any]) -> None:
    """Takes longer than the route's budget."""
    time.sleep(1.5)


def raw_dict(event: HookEvent[dict[str, Any]]) -> NoChange:
    """Takes the payload as a plain dict, whatever the route's model."""
    EVENTS.append(event)
    return NoChange(status=204)


class VerificationDigest(msgspec.Struct):
    """The body of a custom template for verification.after."""

    event: str
    flow_id: str
    email: str


@hooks.on("verification.after", payload_type=VerificationDigest)
def digest(event: HookEvent[VerificationDigest]) -> None:
    """Takes a custom template's body in a type of its own."""
    EVENTS.append(event)
