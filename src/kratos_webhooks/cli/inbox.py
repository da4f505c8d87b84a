"""`kratos-webhooks inbox`: list, show and redrive the receiver's async events.

The commands open the state database directly, so they work while a receiver
runs beside them. A running receiver picks up a redriven event at its next poll.
Exit codes: 0 success, 1 event not found (or not a dead letter), 2 usage or
configuration error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from ..config import Config, apply_environment, name_overrides
from ..config_paths import resolve_storage
from ..errors import ConfigError
from ..receiver.inbox import EVENT_STATES, EventState, InboxEvent
from ..receiver.state import StateStore, StorageError, StorageNotFound
from .options import EXIT_REJECTED, ConfigProblem, reports_missing_extras

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
        f" state database; {STORAGE_ENV} overrides that key. Only that key is"
        " read, so the file's secrets and handlers need not be loadable.",
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
@reports_missing_extras("inbox")
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
        next_attempt = "-"

        if event.state == "pending":
            next_attempt = format_time(event.next_attempt_at)

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
@reports_missing_extras("inbox")
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
@reports_missing_extras("inbox")
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
            url = read_storage(config_file, os.environ)
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


def read_storage(config_file: str, environ: Mapping[str, str]) -> str:
    """Read only the storage URL of a receiver or relay configuration file.

    The rest of the file is neither validated nor loaded, so a file whose
    secrets or handlers are not available here still names its database.
    `KRATOS_WEBHOOKS_STORAGE` overrides the key, and a relative SQLite path is
    resolved against the file's directory, as the services do.

    Raises:
        ConfigError: the file cannot be read or parsed, or its storage key is
            not a string.
    """
    try:
        text = Path(config_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read configuration {config_file}: {reason}") from exc

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration {config_file} is not valid YAML") from exc

    if document is None:
        document = {}

    if not isinstance(document, dict):
        raise ConfigError(f"configuration {config_file} must hold a mapping")

    default = _default_storage(document)
    problems: list[tuple[str, str]] = []
    overrides: dict[str, str] = {}
    document = apply_environment(
        {"storage": document["storage"]} if "storage" in document else {},
        environ,
        problems,
        top_level_keys={"storage"},
        overrides=overrides,
    )
    url = document.get("storage", default)

    if not isinstance(url, str):
        problems.append(("storage", f"expected a string, got {url!r}"))

    if problems:
        raise ConfigError(
            f"invalid storage in {config_file}",
            problems=name_overrides(problems, overrides),
        )

    return resolve_storage(url, Path(os.path.abspath(config_file)).parent)


def _default_storage(document: dict[str, Any]) -> str:
    from ..relay.config import RelayConfig, is_relay_document

    if is_relay_document(document):
        return str(RelayConfig.__dataclass_fields__["storage"].default)

    return str(Config.__dataclass_fields__["storage"].default)


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
    """Return the fields `show` prints, never the body itself.

    Only a pending event has a next attempt, and a delivered one is no longer
    retrying, so those fields print `-` for the other states.
    """
    pending = event.state == "pending"
    delivered = event.state == "delivered"
    return [
        ("id", str(event.id)),
        ("state", event.state),
        ("route", event.route),
        ("webhook-id", event.webhook_id),
        ("content-type", event.content_type),
        ("body", f"{len(event.body)} bytes (print it with --body)"),
        ("received", format_time(event.received_at)),
        ("attempts", str(event.attempts)),
        ("next attempt", format_time(event.next_attempt_at) if pending else "-"),
        ("retrying since", "-" if delivered else format_time(event.retry_since)),
        ("delivered", format_time(event.delivered_at)),
        ("last error", event.last_error or "-"),
    ]


def format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"

    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
