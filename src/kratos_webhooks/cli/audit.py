"""`kratos-webhooks audit --config FILE`: list weak transport settings."""

from __future__ import annotations

import click

from ..audit import Finding, audit_receiver, audit_relay, fails_audit
from ..config import load_config
from ..errors import ConfigError
from .options import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, reports_missing_extras


@click.command("audit")
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The receiver's or the relay's YAML configuration file.",
)
@reports_missing_extras("audit")
def audit(config_file: str) -> None:
    """Check a receiver or relay configuration for settings that weaken security.

    Each finding is printed as `level: key: message`. Exit 0 when every
    finding is info, 1 when any is a warning or an error, 2 when the
    configuration is invalid.
    """
    try:
        findings = _audit(config_file)
    except ConfigError as exc:
        click.echo(f"{config_file}: {exc}", err=True)

        for path, message in exc.problems:
            click.echo(f"  {path or '(file)'}: {message}", err=True)

        raise SystemExit(EXIT_USAGE) from exc

    for finding in findings:
        click.echo(f"{finding.level}: {finding.key}: {finding.message}")

    raise SystemExit(EXIT_REJECTED if fails_audit(findings) else EXIT_OK)


def _audit(config_file: str) -> list[Finding]:
    import yaml

    from ..relay.config import is_relay_document, load_relay_config

    try:
        with open(config_file, encoding="utf-8") as stream:
            document = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        # load_config reports the same failure with its usual message.
        document = None

    if is_relay_document(document):
        return audit_relay(load_relay_config(config_file))

    return audit_receiver(load_config(config_file))
