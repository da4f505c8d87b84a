"""`kratos-webhooks relay --config FILE` and `relay-outbox list|show|redrive`."""

from __future__ import annotations

import click

from ..errors import ConfigError
from .inbox import list_command, redrive, show
from .options import reports_missing_extras, require_server_extra
from .serve import exit_invalid_config, run_service

__all__ = ["relay", "relay_outbox"]


@click.command("relay")
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The relay's YAML configuration file.",
)
@reports_missing_extras("relay")
def relay(config_file: str) -> None:
    """Run the relay beside Kratos until SIGTERM or SIGINT.

    Exit 0 after a clean stop, 2 when the configuration is invalid, 3 when the
    listener, the TLS files or the outbox cannot start.
    """
    require_server_extra("relay")
    from ..relay.config import load_relay_config

    try:
        config = load_relay_config(config_file)
    except ConfigError as exc:
        exit_invalid_config(config_file, exc)

    from ..observability.logging import configure_logging
    from ..relay.server import Relay

    configure_logging(config.logging.level)
    run_service(Relay(config).run(), "the relay")


@click.group("relay-outbox")
def relay_outbox() -> None:
    """List, show and redrive the relay's async events (its outbox).

    Give the relay's configuration with --config: its storage key names the
    outbox database.
    """


relay_outbox.add_command(list_command)
relay_outbox.add_command(show)
relay_outbox.add_command(redrive)
