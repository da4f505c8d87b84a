"""Options and errors shared by the commands."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar

import click

from ..errors import ConfigError
from ..secrets import Secret

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_START_FAILED = 3

# The top-level modules the receiver and the relay import from the server extra.
SERVER_MODULES: Final = (
    "cryptography",
    "httpcore",
    "httpx",
    "jsonschema",
    "limits",
    "prometheus_client",
    "starlette",
    "structlog",
    "uvicorn",
    "uvloop",
)
# The extra that installs each optional top-level module the commands import.
EXTRA_OF_MODULE: Final = {
    **dict.fromkeys(SERVER_MODULES, "server"),
    "cryptography": "cryptography",
    "gojsonnet": "jsonnet",
}


class ConfigProblem(click.ClickException):
    """A configuration or secret problem: printed without a traceback, exit 2."""

    exit_code = EXIT_USAGE

    @classmethod
    def from_error(cls, error: ConfigError) -> ConfigProblem:
        lines = [str(error)]
        lines += [f"  {path}: {message}" for path, message in error.problems]
        return cls("\n".join(lines))


class MissingExtra(click.ClickException):
    """A missing optional dependency: printed with the extra to install, exit 2."""

    exit_code = EXIT_USAGE


def require_server_extra(command: str) -> None:
    """Import every module of the server extra, so a missing one stops `command` first.

    Raises:
        MissingExtra: a module is not installed.
    """
    for module in SERVER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise _missing(module, "server", command) from exc


def missing_extra(error: ModuleNotFoundError, command: str) -> MissingExtra | None:
    """Describe the extra that provides the missing module, or None if none does."""
    module = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)

    if extra is None:
        return None

    return _missing(module, extra, command)


def _missing(module: str, extra: str, command: str) -> MissingExtra:
    return MissingExtra(
        f"{command} needs the Python package {module!r}, which the {extra!r} extra"
        f" installs: pip install 'kratos-webhooks[{extra}]', or"
        f" pip install '.[{extra}]' in a checkout"
    )


def reports_missing_extras(command: str) -> Callable[[F], F]:
    """Turn a missing optional dependency into a message naming its extra, exit 2.

    The commands import their optional dependencies lazily, so the import fails
    inside the command; this catches it at the command's boundary.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except ModuleNotFoundError as exc:
                problem = missing_extra(exc, command)

                if problem is None:
                    raise

                raise problem from exc

        return wrapper  # type: ignore[return-value]

    return decorate


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
