"""Options and errors shared by the commands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import ConfigError
from ..secrets import Secret

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_START_FAILED = 3


class ConfigProblem(click.ClickException):
    """A configuration or secret problem: printed without a traceback, exit 2."""

    exit_code = EXIT_USAGE

    @classmethod
    def from_error(cls, error: ConfigError) -> ConfigProblem:
        lines = [str(error)]
        lines += [f"  {path}: {message}" for path, message in error.problems]
        return cls("\n".join(lines))


def secret_options(func: F) -> F:
    """Add the repeatable `--secret-env` and `--secret-file` options."""
    func = click.option(
        "--secret-file",
        "secret_files",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="Read a secret from this file (one trailing newline is dropped). "
        "Repeatable.",
    )(func)
    func = click.option(
        "--secret-env",
        "secret_envs",
        multiple=True,
        metavar="NAME",
        help="Read a secret from this environment variable. Repeatable; the first "
        "secret given (variables before files) is the newest.",
    )(func)
    return func


def load_secrets(envs: tuple[str, ...], files: tuple[str, ...]) -> list[Secret]:
    """Load the secrets named by the options, variables first, in the order given."""
    if not envs and not files:
        raise click.UsageError("give at least one --secret-env or --secret-file")

    try:
        return [Secret.load(f"env:{name}") for name in envs] + [
            Secret.load(f"file:{path}") for path in files
        ]
    except ConfigError as exc:
        raise ConfigProblem.from_error(exc) from exc


def read_body(body_file: str | None) -> bytes:
    """Read the body bytes from a file, or from standard input."""
    if body_file is None:
        return sys.stdin.buffer.read()

    try:
        with open(body_file, "rb") as stream:
            return stream.read()
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {body_file}: {exc.strerror}", param_hint="--body-file"
        ) from exc
