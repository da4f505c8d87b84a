"""`kratos-webhooks config check FILE`: validate a receiver or relay configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
import yaml

from ..config import Config, load_config
from ..errors import ConfigError
from .options import EXIT_USAGE, reports_missing_extras

if TYPE_CHECKING:
    from ..relay.config import RelayConfig


@click.group("config")
def config_group() -> None:
    """Check receiver and relay configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@reports_missing_extras("config check")
def check(file: str) -> None:
    """Validate FILE and its environment overrides without starting anything.

    Every problem is listed with its key path; exit 0 when the file is valid,
    2 when it is not.
    """
    try:
        config = load_any_config(file)
    except ConfigError as exc:
        click.echo(f"{file}: {exc}", err=True)

        for path, message in exc.problems:
            click.echo(f"  {path or '(file)'}: {message}", err=True)

        raise SystemExit(EXIT_USAGE) from exc

    for path, message in config.warnings:
        click.echo(f"warning: {path}: {message}", err=True)

    click.echo(f"{file}: ok, {len(config.routes)} route(s)")


def load_any_config(file: str) -> Config | RelayConfig:
    """Load a relay configuration when the file looks like one, else a receiver's."""
    # The relay's modules need the server extra; a receiver's file does not.
    from ..relay.config import is_relay_document, load_relay_config

    try:
        document = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        # load_config reports the read or parse error with its details.
        return load_config(file)

    if is_relay_document(document):
        return load_relay_config(file)

    return load_config(file)
