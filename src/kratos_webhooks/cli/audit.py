"""`kratos-webhooks audit --config FILE`: list weak transport settings."""

from __future__ import annotations

import click

from ..audit import audit_receiver, fails_audit
from ..config import load_config
from ..errors import ConfigError
from .options import EXIT_OK, EXIT_REJECTED, EXIT_USAGE


@click.command("audit")
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The receiver's YAML configuration file.",
)
def audit(config_file: str) -> None:
    """Check a receiver configuration for settings that weaken its security.

    Each finding is printed as `level: key: message`. Exit 0 when every
    finding is info, 1 when any is a warning or an error, 2 when the
    configuration is invalid.
    """
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        click.echo(f"{config_file}: {exc}", err=True)

        for path, message in exc.problems:
            click.echo(f"  {path or '(file)'}: {message}", err=True)

        raise SystemExit(EXIT_USAGE) from exc

    findings = audit_receiver(config)

    for finding in findings:
        click.echo(f"{finding.level}: {finding.key}: {finding.message}")

    raise SystemExit(EXIT_REJECTED if fails_audit(findings) else EXIT_OK)
