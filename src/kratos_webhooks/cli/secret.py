"""`kratos-webhooks secret new`: make a fresh signing secret."""

from __future__ import annotations

import click

from ..secrets import HmacKey
from .options import MissingExtra

NEW_SECRET_BYTES = 32


@click.group()
def secret() -> None:
    """Make secrets for signing web hooks."""


@secret.command("new")
@click.option(
    "--ed25519",
    is_flag=True,
    help="Make an Ed25519 key pair for v1a signatures instead of an HMAC secret.",
)
def new(ed25519: bool) -> None:
    """Print a new `whsec_` secret of 32 random bytes, or an Ed25519 key pair.

    Store it in a secret manager or a file readable only by its service; pass it
    to the commands with --secret-env or --secret-file.
    """
    if not ed25519:
        click.echo(HmacKey.generate(NEW_SECRET_BYTES).encode())
        return

    try:
        from ..asymmetric import Ed25519PrivateKey
    except ImportError as exc:
        raise MissingExtra(str(exc)) from exc

    private = Ed25519PrivateKey.generate()
    click.echo(f"secret key: {private.encode()}")
    click.echo(f"public key: {private.public_key().encode()}")
