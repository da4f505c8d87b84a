"""`kratos-webhooks kratos-config`: write the Kratos hooks and the matching configs."""

from __future__ import annotations

from pathlib import Path

import click

from ..kratos.deployment import DEFAULT_HOOKS, Deployment, render_files
from ..kratos.templates import HookPoint, parse_hook_point, placeholder
from .options import EXIT_USAGE, reports_missing_extras


def _hook_points(values: tuple[str, ...]) -> list[HookPoint]:
    points = []

    for value in values or DEFAULT_HOOKS:
        try:
            points.append(parse_hook_point(value))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--hook") from exc

    paths = [point.path for point in points]

    if len(set(paths)) != len(paths):
        raise click.BadParameter("a hook point is given twice", param_hint="--hook")

    return points


def _env_name(_context: click.Context, parameter: click.Parameter, value: str) -> str:
    try:
        placeholder(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc

    return value


@click.command("kratos-config")
@click.option(
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the files into; it is created if missing.",
)
@click.option(
    "--receiver-url",
    required=True,
    metavar="URL",
    help="Base URL of the receiver, such as https://hooks.example.com.",
)
@click.option(
    "--upstream-url",
    default="http://127.0.0.1:8000",
    show_default=True,
    metavar="URL",
    help="Base URL of the application behind the receiver.",
)
@click.option(
    "--relay-url",
    default="http://127.0.0.1:4480",
    show_default=True,
    metavar="URL",
    help="Base URL at which Kratos reaches the relay.",
)
@click.option(
    "--hook",
    "hooks",
    multiple=True,
    metavar="FLOW.STAGE[.METHOD][:MODE]",
    help="A hook point such as registration.after.password:sync. Repeatable; "
    f"the default is {', '.join(DEFAULT_HOOKS)}.",
)
@click.option(
    "--auth",
    type=click.Choice(["api_key", "basic_auth"]),
    default="api_key",
    show_default=True,
    help="How Kratos authenticates to the relay.",
)
@click.option(
    "--api-key-name",
    default="X-Webhook-Key",
    show_default=True,
    help="Header or cookie name of Kratos' API key.",
)
@click.option(
    "--api-key-in",
    type=click.Choice(["header", "cookie"]),
    default="header",
    show_default=True,
    help="Whether Kratos sends the API key in a header or a cookie.",
)
@click.option(
    "--basic-user",
    default="kratos",
    show_default=True,
    help="User name Kratos sends with --auth basic_auth.",
)
@click.option(
    "--kratos-secret-env",
    default="KRATOS_WEBHOOKS_KRATOS_KEY",
    show_default=True,
    callback=_env_name,
    help="Variable holding Kratos' credential (the API key or Basic password).",
)
@click.option(
    "--signing-secret-env",
    default="KRATOS_WEBHOOKS_RELAY_SECRET",
    show_default=True,
    callback=_env_name,
    help="Variable holding the key the relay signs with and the receiver verifies.",
)
@click.option(
    "--upstream-secret-env",
    default="KRATOS_WEBHOOKS_UPSTREAM_SECRET",
    show_default=True,
    callback=_env_name,
    help="Variable holding the key the receiver signs its deliveries with.",
)
@click.option(
    "--jsonnet-mac",
    is_flag=True,
    help="Let Kratos v25.4 or later sign the body itself with a Jsonnet SHA3-512 "
    "MAC and call the receiver directly, without the relay.",
)
@click.option(
    "--mac-secret-env",
    default="KRATOS_WEBHOOKS_MAC_SECRET",
    show_default=True,
    callback=_env_name,
    help="Variable holding the Jsonnet MAC secret.",
)
@click.option(
    "--template-dir",
    default="/etc/kratos/webhooks",
    show_default=True,
    help="Directory from which Kratos reads the MAC template.",
)
@click.option(
    "--allow-private-targets",
    is_flag=True,
    help="Let the relay forward to private addresses (RFC 1918, fc00::/7).",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@reports_missing_extras("kratos-config")
def kratos_config(
    output_dir: Path,
    receiver_url: str,
    upstream_url: str,
    relay_url: str,
    hooks: tuple[str, ...],
    auth: str,
    api_key_name: str,
    api_key_in: str,
    basic_user: str,
    kratos_secret_env: str,
    signing_secret_env: str,
    upstream_secret_env: str,
    jsonnet_mac: bool,
    mac_secret_env: str,
    template_dir: str,
    allow_private_targets: bool,
    force: bool,
) -> None:
    """Write Kratos' web hook entries and the relay and receiver routes that match.

    The files name secrets only by environment variable, never by value. Exit
    0 when the files are written, 2 on invalid options or existing files.
    """
    deployment = Deployment(
        hooks=_hook_points(hooks),
        receiver_url=receiver_url,
        upstream_url=upstream_url,
        relay_url=relay_url,
        auth=auth,  # type: ignore[arg-type]
        api_key_name=api_key_name,
        api_key_in=api_key_in,  # type: ignore[arg-type]
        basic_user=basic_user,
        kratos_secret_env=kratos_secret_env,
        signing_secret_env=signing_secret_env,
        upstream_secret_env=upstream_secret_env,
        jsonnet_mac=jsonnet_mac,
        mac_secret_env=mac_secret_env,
        template_dir=template_dir,
        allow_private_targets=allow_private_targets,
    )

    try:
        files = render_files(deployment)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    existing = [name for name in files if (output_dir / name).exists()]

    if existing and not force:
        click.echo(
            f"not overwriting {', '.join(existing)} in {output_dir}: use --force",
            err=True,
        )
        raise SystemExit(EXIT_USAGE)

    output_dir.mkdir(parents=True, exist_ok=True)

    for name, text in files.items():
        (output_dir / name).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output_dir / name}")
