"""`kratos-webhooks sign` and `verify`: Standard Webhooks headers from the shell."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError, VerificationError
from ..secrets import HmacKey, KeySet, Secret
from ..signing import DEFAULT_TOLERANCE, Signer, Verifier
from .options import (
    EXIT_REJECTED,
    ConfigProblem,
    MissingExtra,
    load_secrets,
    read_body,
    secret_options,
)

if TYPE_CHECKING:
    from ..asymmetric import Ed25519PrivateKey, Ed25519PublicKey


@dataclass
class Keys:
    """The secrets of a command, split into HMAC keys and Ed25519 keys by prefix."""

    hmac: list[HmacKey] = field(default_factory=list)
    private: list[Ed25519PrivateKey] = field(default_factory=list)
    public: list[Ed25519PublicKey] = field(default_factory=list)

    @classmethod
    def parse(cls, secrets: list[Secret]) -> Keys:
        keys = cls()

        try:
            for secret in secrets:
                value = secret.reveal()

                if value.startswith(("whsk_", "whpk_")):
                    keys._add_ed25519(secret)
                else:
                    keys.hmac.append(HmacKey.from_secret(secret))
        except ConfigError as exc:
            raise ConfigProblem.from_error(exc) from exc

        return keys

    def _add_ed25519(self, secret: Secret) -> None:
        try:
            from ..asymmetric import Ed25519PrivateKey, Ed25519PublicKey
        except ImportError as exc:
            raise MissingExtra(str(exc)) from exc

        if secret.reveal().startswith("whsk_"):
            private = Ed25519PrivateKey.from_secret(secret)
            self.private.append(private)
            self.public.append(private.public_key())
        else:
            self.public.append(Ed25519PublicKey.from_secret(secret))

    @property
    def key_set(self) -> KeySet | None:
        return KeySet(tuple(self.hmac)) if self.hmac else None


@click.command()
@secret_options
@click.option(
    "--body-file",
    type=click.Path(dir_okay=False),
    help="Read the body from this file instead of standard input.",
)
@click.option("--id", "msg_id", help="Message id to sign; a random msg_ id by default.")
@click.option(
    "--timestamp",
    type=click.IntRange(min=0),
    help="Unix seconds to sign; the current time by default.",
)
@click.option(
    "--all-keys",
    is_flag=True,
    help="Sign with every HMAC secret given, for a key rollover.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["headers", "json"]),
    default="headers",
    show_default=True,
    help="Print 'name: value' lines or one JSON object.",
)
def sign(
    secret_envs: tuple[str, ...],
    secret_files: tuple[str, ...],
    body_file: str | None,
    msg_id: str | None,
    timestamp: int | None,
    all_keys: bool,
    output_format: str,
) -> None:
    """Print the webhook-id, webhook-timestamp and webhook-signature headers for a body.

    The body is signed byte for byte as read. The first HMAC secret signs; a
    `whsk_` secret adds an Ed25519 (v1a) signature.
    """
    keys = Keys.parse(load_secrets(secret_envs, secret_files))

    if not keys.hmac and not keys.private:
        raise click.UsageError(
            "signing needs a whsec_ or whsk_ secret, not only public keys"
        )

    body = read_body(body_file)
    signer = Signer(keys.key_set, all_keys=all_keys, private_keys=keys.private)

    try:
        headers = signer.sign(body, msg_id=msg_id, timestamp=timestamp)
    except VerificationError as exc:
        raise click.BadParameter(exc.message, param_hint="--id") from exc

    if output_format == "json":
        click.echo(json.dumps(headers, indent=2))
        return

    for name, value in headers.items():
        click.echo(f"{name}: {value}")


def parse_header_option(values: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}

    for item in values:
        name, colon, value = item.partition(":")

        if not colon or not name.strip():
            raise click.BadParameter(
                f"expected 'name: value', got {item!r}", param_hint="--header"
            )

        headers[name.strip().lower()] = value.strip()

    return headers


def read_headers_file(path: str) -> dict[str, str]:
    """Read headers from a file, or from standard input when `path` is `-`.

    The file is a JSON object of names to values, as `sign --format json`
    prints, or `name: value` lines, as `sign` prints by default.
    """
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as stream:
                text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise click.BadParameter(
            f"cannot read {path}: {reason}", param_hint="--headers-file"
        ) from exc

    if text.lstrip().startswith(("{", "[")):
        return _headers_from_json(text, path)

    lines = [line for line in text.splitlines() if line.strip()]

    try:
        return parse_header_option(tuple(lines))
    except click.BadParameter as exc:
        raise click.BadParameter(
            f"{path}: {exc.message}", param_hint="--headers-file"
        ) from exc


def _headers_from_json(text: str, path: str) -> dict[str, str]:
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"cannot read a JSON object from {path}: {exc}", param_hint="--headers-file"
        ) from exc

    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
    ):
        raise click.BadParameter(
            "expected a JSON object of string names to string values",
            param_hint="--headers-file",
        )

    return {k.lower(): v for k, v in loaded.items()}


@click.command()
@secret_options
@click.option(
    "--body-file",
    type=click.Path(dir_okay=False),
    help="Read the body from this file instead of standard input.",
)
@click.option(
    "--header",
    "header_items",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A request header. Repeatable.",
)
@click.option(
    "--headers-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read the headers from this file, or from standard input if it is '-':"
    " 'name: value' lines, as sign prints them, or a JSON object.",
)
@click.option(
    "--now",
    type=click.IntRange(min=0),
    help="Check the timestamp against these Unix seconds instead of the clock.",
)
@click.option(
    "--tolerance",
    type=click.IntRange(min=0),
    default=DEFAULT_TOLERANCE,
    show_default=True,
    help="Seconds a timestamp may be old or ahead.",
)
def verify(
    secret_envs: tuple[str, ...],
    secret_files: tuple[str, ...],
    body_file: str | None,
    header_items: tuple[str, ...],
    headers_file: str | None,
    now: int | None,
    tolerance: int,
) -> None:
    """Check a body against its Standard Webhooks headers.

    Prints `ok` and exits 0, or prints the reason code and message and exits 1.
    """
    if headers_file == "-" and body_file is None:
        raise click.UsageError(
            "--headers-file - reads the headers from standard input, so give the"
            " body with --body-file"
        )

    keys = Keys.parse(load_secrets(secret_envs, secret_files))
    headers = read_headers_file(headers_file) if headers_file else {}
    headers.update(parse_header_option(header_items))

    if not headers:
        raise click.UsageError("give the headers with --header or --headers-file")

    body = read_body(body_file)
    clock = (lambda: float(now)) if now is not None else time.time
    verifier = Verifier(
        keys.key_set, public_keys=keys.public, tolerance=tolerance, clock=clock
    )

    try:
        verifier.verify(body, headers)
    except VerificationError as exc:
        click.echo(f"{exc.code}: {exc.message}")
        sys.exit(EXIT_REJECTED)

    click.echo("ok")
