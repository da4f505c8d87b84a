"""`kratos-webhooks serve --config FILE`: run the receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn

import click

from ..config import load_config
from ..errors import ConfigError
from .options import (
    EXIT_START_FAILED,
    EXIT_USAGE,
    reports_missing_extras,
    require_server_extra,
)


@click.command("serve")
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The receiver's YAML configuration file.",
)
@reports_missing_extras("serve")
def serve(config_file: str) -> None:
    """Run the HTTPS receiver until SIGTERM or SIGINT.

    Exit 0 after a clean stop, 2 when the configuration is invalid, 3 when a
    listener, the TLS files or the store cannot start.
    """
    require_server_extra("serve")

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        exit_invalid_config(config_file, exc)

    from ..observability.logging import configure_logging
    from ..receiver.server import Receiver

    configure_logging(config.logging.level)
    run_service(Receiver(config).run(), "the receiver")


def exit_invalid_config(config_file: str, error: ConfigError) -> NoReturn:
    """Print every problem of a configuration file and exit 2."""
    click.echo(f"{config_file}: {error}", err=True)

    for path, message in error.problems:
        click.echo(f"  {path or '(file)'}: {message}", err=True)

    raise SystemExit(EXIT_USAGE) from error


def run_service(main: Coroutine[Any, Any, None], name: str) -> None:
    """Run a server until it stops; exit 3 when it cannot start."""
    from ..receiver.server import StartError

    try:
        run_loop(main)
    except (StartError, ConfigError) as exc:
        click.echo(f"cannot start {name}: {exc}", err=True)
        raise SystemExit(EXIT_START_FAILED) from exc


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on a uvloop event loop."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
