"""`kratos-webhooks inbox`: list, show and redrive the receiver's async events.

The commands open the state database directly, so they work while a receiver
runs beside them. A running receiver picks up a redriven event at its next poll.
Exit codes: 0 success, 1 event not found (or not a dead letter), 2 usage or
configuration error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from ..errors import ConfigError
from ..receiver.inbox import EVENT_STATES, EventState, InboxEvent
from ..receiver.state import StateStore, StorageError, StorageNotFound
from .config import load_any_config
from .options import EXIT_REJECTED, ConfigProblem

__all__ = ["inbox"]

F = TypeVar("F", bound=Callable[..., Any])

STORAGE_ENV = "KRATOS_WEBHOOKS_STORAGE"


class Failure(click.ClickException):
    """An event is missing or in the wrong state: exit 1."""

    exit_code = EXIT_REJECTED


def storage_options(func: F) -> F:
    """Add `--config` and `--storage`, which name the state database."""
    func = click.option(
        "--storage",
        metavar="URL",
        help="State database URL, such as sqlite:///var/lib/kratos-webhooks/state.db;"
        " overrides the configuration file.",
    )(func)
    func = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help=f"Receiver or relay configuration file whose storage key names the"
        f" state database; {STORAGE_ENV} overrides that key. The whole file is"
        " validated, as serve does.",
    )(func)
    return func


@click.group()
def inbox() -> None:
    """List, show and redrive events of async routes in the receiver's inbox."""


@inbox.command("list")
@storage_options
@click.option(
    "--state",
    type=click.Choice(EVENT_STATES),
    help="Show only events in this state.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Maximum number of events to show, newest first.",
)
def list_command(
    config_file: str | None, storage: str | None, state: EventState | None, limit: int
) -> None:
    """List events, newest first, without their bodies."""
    store = open_store(config_file, storage)
    events = run(lambda: store.list_events(state=state, limit=limit))

    if not events:
        click.echo("no events" if state is None else f"no {state} events")
        return

    click.echo(
        f"{'ID':>8}  {'STATE':<9}  {'TRIES':>5}  {'RECEIVED':<20}  {'NEXT ATTEMPT':<20}"
        "  ROUTE  WEBHOOK-ID  LAST ERROR"
    )

    for event in events:
        next_attempt = format_time(event.next_attempt_at)

        if event.state != "pending":
            next_attempt = "-"

        click.echo(
            f"{event.id:>8}  {event.state:<9}  {event.attempts:>5}"
            f"  {format_time(event.received_at):<20}  {next_attempt:<20}"
            f"  {event.route}  {event.webhook_id}  {event.last_error or '-'}"
        )


@inbox.command("show")
@storage_options
@click.argument("event_id", metavar="ID", type=click.IntRange(min=1))
@click.option(
    "--body",
    "print_body",
    is_flag=True,
    help="Write only the event's raw body to standard output, byte for byte."
    " It holds personal data and Kratos session cookies.",
)
def show(
    config_file: str | None, storage: str | None, event_id: int, print_body: bool
) -> None:
    """Show one event; its body only with --body."""
    store = open_store(config_file, storage)
    event = run(lambda: store.get_event(event_id))

    if event is None:
        raise Failure(f"event {event_id} not found")

    if print_body:
        sys.stdout.buffer.write(event.body)
        sys.stdout.buffer.flush()
        return

    for name, value in describe(event):
        click.echo(f"{name + ':':<17} {value}")


@inbox.command("redrive")
@storage_options
@click.argument("event_id", metavar="ID", type=click.IntRange(min=1), required=False)
@click.option("--all", "redrive_all", is_flag=True, help="Redrive every dead letter.")
def redrive(
    config_file: str | None,
    storage: str | None,
    event_id: int | None,
    redrive_all: bool,
) -> None:
    """Make a dead letter (ID) or every dead letter (--all) pending again.

    A redriven event is due at once and gets the full attempt budget again.
    """
    if (event_id is None) == (not redrive_all):
        raise click.UsageError("give either an event ID or --all")

    store = open_store(config_file, storage)

    if redrive_all:
        count = run(lambda: store.redrive(None))
        click.echo(f"redrove {count} dead letter{'s' if count != 1 else ''}")
        return

    assert event_id is not None
    event = run(lambda: store.get_event(event_id))

    if event is None:
        raise Failure(f"event {event_id} not found")

    if event.state != "dead":
        raise Failure(f"event {event_id} is {event.state}, not a dead letter")

    if run(lambda: store.redrive(event_id)) != 1:
        # Another redrive got there between the read and the update.
        raise Failure(f"event {event_id} is no longer a dead letter")

    click.echo(f"redrove event {event_id}")


def open_store(config_file: str | None, storage: str | None) -> StateStore:
    """Open the store named by `--storage`, the config file or the environment."""
    url = storage

    if url is None and config_file is not None:
        try:
            # The loader applies KRATOS_WEBHOOKS_STORAGE over the file's key.
            url = load_any_config(config_file).storage
        except ConfigError as exc:
            raise ConfigProblem.from_error(exc) from exc

    if url is None:
        url = os.environ.get(STORAGE_ENV)

    if url is None:
        raise click.UsageError(
            "name the state database with --config FILE, --storage URL"
            f" or {STORAGE_ENV}"
        )

    try:
        return StateStore.open(url)
    except ConfigError as exc:
        raise ConfigProblem.from_error(exc) from exc


T = TypeVar("T")


def run(action: Callable[[], T]) -> T:
    """Run a store call, turning storage failures into exit codes 2 and 1."""
    try:
        return action()
    except StorageNotFound as exc:
        raise ConfigProblem(f"{exc}: check --storage or the storage key") from exc
    except StorageError as exc:
        raise Failure(str(exc)) from exc


def describe(event: InboxEvent) -> list[tuple[str, str]]:
    """Return the fields `show` prints, never the body itself."""
    return [
        ("id", str(event.id)),
        ("state", event.state),
        ("route", event.route),
        ("webhook-id", event.webhook_id),
        ("content-type", event.content_type),
        ("body", f"{len(event.body)} bytes (print it with --body)"),
        ("received", format_time(event.received_at)),
        ("attempts", str(event.attempts)),
        ("next attempt", format_time(event.next_attempt_at)),
        ("retrying since", format_time(event.retry_since)),
        ("delivered", format_time(event.delivered_at)),
        ("last error", event.last_error or "-"),
    ]


def format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"

    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
