"""`kratos-webhooks config check FILE`: validate a receiver configuration."""

from __future__ import annotations

import click

from ..config import load_config
from ..errors import ConfigError
from .options import EXIT_USAGE


@click.group("config")
def config_group() -> None:
    """Check receiver configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate FILE and its environment overrides without starting anything.

    Every problem is listed with its key path; exit 0 when the file is valid,
    2 when it is not.
    """
    try:
        config = load_config(file)
    except ConfigError as exc:
        click.echo(f"{file}: {exc}", err=True)

        for path, message in exc.problems:
            click.echo(f"  {path or '(file)'}: {message}", err=True)

        raise SystemExit(EXIT_USAGE) from exc

    for path, message in config.warnings:
        click.echo(f"warning: {path}: {message}", err=True)

    click.echo(f"{file}: ok, {len(config.routes)} route(s)")
