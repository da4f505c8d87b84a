"""The receiver's configuration: one YAML file, validated at once into frozen objects.

Field names are the YAML keys. Any key can be overridden by an environment
variable `KRATOS_WEBHOOKS_<PATH>`, with `__` between levels and a list item
addressed by its index: `KRATOS_WEBHOOKS_ROUTES__0__UPSTREAM` sets the upstream
of the first route. An override's value is read as a YAML scalar or flow
collection, so `true`, `5` and `[a, b]` keep their types. A variable is an
override only when its first level is a top-level key (`SERVER`, `ADMIN`,
`STORAGE`, `ROUTES`, `IDEMPOTENCY_WINDOW`, `LOGGING`). Others, such as a secret
named `KRATOS_WEBHOOKS_SECRET`, are left alone.

Secrets are references (`env:NAME`, `file:/path`); `literal:VALUE` is accepted
for demos and tests and listed in `Config.warnings`. Relative file paths in a
file read by `load_config` are resolved against the file's directory.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from .config_checks import MAX_SYNC_TIMEOUT, check_config, check_parts
from .config_paths import resolve_paths, resolve_route, resolve_server, resolve_storage
from .config_schema import INVALID, convert
from .errors import ConfigError
from .kratos.models import HookPoint

__all__ = [
    "ENV_PREFIX",
    "MAX_SYNC_TIMEOUT",
    "AdminConfig",
    "ClientCertificatesConfig",
    "Config",
    "DeliveryConfig",
    "LimitsConfig",
    "LoggingConfig",
    "RateLimitConfig",
    "RouteConfig",
    "ServerConfig",
    "TlsConfig",
    "VerifyConfig",
    "load_config",
    "parse_config",
]

ENV_PREFIX: Final = "KRATOS_WEBHOOKS_"
DEFAULT_SYNC_TIMEOUT: Final = 10.0

Scheme = Literal[
    "standard-webhooks", "kratos-api-key", "kratos-basic", "kratos-jsonnet-mac"
]
Mode = Literal["sync", "async"]
PayloadKind = Literal["kratos", "json", "form"]


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The HTTPS listener's certificate and protocol settings."""

    cert_file: str
    key_file: str
    min_version: Literal["1.2", "1.3"] = "1.2"
    client_auth: Literal["off", "optional", "required"] = "off"
    client_ca_file: str | None = None
    key_password: str | None = None


@dataclass(frozen=True, slots=True)
class ClientCertificatesConfig:
    """Client certificates a route accepts: one match in any list is enough.

    `subjects` lists subject common names, `sans` lists subject alternative
    names written `dns:NAME`, `uri:URI` or `email:ADDRESS`, and `fingerprints`
    lists SHA-256 fingerprints in hex, with or without colons.
    """

    subjects: tuple[str, ...] = ()
    sans: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Connection and request limits; times in seconds, sizes in bytes."""

    max_body_bytes: int = 1_048_576
    header_timeout: float = 5.0
    body_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 1000
    max_header_bytes: int = 16_384


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Rate limits in the `limits` notation, such as `100/second`; None is no limit."""

    global_: str | None = field(default=None, metadata={"key": "global"})
    per_source: str | None = None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The HTTPS listener and what applies to every route."""

    tls: TlsConfig
    listen: str = "0.0.0.0:8443"
    http_listen: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The plain-HTTP listener for /metrics, /healthz and /readyz."""

    listen: str = "127.0.0.1:9464"


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """The log level of the service's loggers."""

    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    """The authentication of a route's requests; `name` and `in` apply to api keys."""

    scheme: Scheme
    secrets: tuple[str, ...]
    tolerance: int = 300
    name: str | None = None
    in_: Literal["header", "cookie"] = field(default="header", metadata={"key": "in"})


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Retry policy of an async route's deliveries; times in seconds."""

    max_attempts: int = 12
    max_age: float = 86_400.0
    initial_backoff: float = 1.0
    max_backoff: float = 600.0
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One receiving path, its checks and where its events go."""

    path: str
    verify: VerifyConfig
    mode: Mode
    methods: tuple[str, ...] = ("POST",)
    upstream: str | None = None
    handler: str | None = None
    upstream_secrets: tuple[str, ...] = ()
    allow_from: tuple[str, ...] = ()
    rate_limit: str | None = None
    max_body_bytes: int | None = None
    gzip: bool = False
    max_inflated_bytes: int | None = None
    timeout: float = DEFAULT_SYNC_TIMEOUT
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    # What the body is; None means `kratos` on a route with a hook or a
    # handler, else `json`.
    payload: PayloadKind | None = None
    hook: HookPoint | None = None
    traits_schema: str | None = None
    forward_redacted: bool = False
    redact: tuple[str, ...] = ()

    @property
    def payload_kind(self) -> PayloadKind:
        """The body format in effect, after the default."""
        if self.payload is not None:
            return self.payload

        if self.hook is None and self.handler is None:
            return "json"

        return "kratos"

    client_certificates: ClientCertificatesConfig | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole receiver configuration.

    `warnings` lists `(key path, message)` pairs for settings that work but
    should not reach production, such as `literal:` secrets.
    """

    server: ServerConfig
    routes: tuple[RouteConfig, ...]
    admin: AdminConfig = field(default_factory=AdminConfig)
    storage: str = "sqlite:///var/lib/kratos-webhooks/state.db"
    idempotency_window: float = 86_400.0
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    warnings: tuple[tuple[str, str], ...] = field(
        default=(), metadata={"internal": True}
    )


_TOP_LEVEL_KEYS: Final = frozenset(
    {"server", "admin", "storage", "routes", "idempotency_window", "logging"}
)


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, override from the environment and validate a configuration file.

    Relative file paths are resolved against the directory of `path`.

    Raises:
        ConfigError: the file cannot be read or parsed, or any setting is
            invalid; `problems` lists each one with its key path.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"cannot read configuration {os.fspath(path)}: {reason}"
        ) from exc

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"configuration {os.fspath(path)} is not valid YAML",
            problems=[("", _describe_yaml_error(exc))],
        ) from exc

    return parse_config(
        document,
        environ=os.environ if environ is None else environ,
        base_dir=Path(os.path.abspath(path)).parent,
    )


def parse_config(
    document: Any,
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate a parsed YAML document, after applying environment overrides.

    Relative file paths are resolved against `base_dir` when it is given, and
    against the working directory otherwise.

    Raises:
        ConfigError: any setting is invalid; `problems` lists them all. A
            problem caused by an override names its variable.
    """
    problems: list[tuple[str, str]] = []

    if document is None:
        document = {}

    if not isinstance(document, dict):
        raise ConfigError(
            "invalid configuration", problems=[("", "the file must hold a mapping")]
        )

    overrides: dict[str, str] = {}
    document = apply_environment(document, environ or {}, problems, overrides=overrides)
    config = convert(Config, document, "", problems)
    warnings: list[tuple[str, str]] = []
    unchecked: list[str] = []

    if isinstance(config, Config):
        if base_dir is not None:
            config = resolve_paths(config, base_dir)

        check_config(config, problems, warnings)
    else:
        unchecked = _check_convertible_parts(document, base_dir, problems, warnings)

    warnings = name_overrides(warnings, overrides)

    if problems or not isinstance(config, Config):
        message = f"invalid configuration: {len(problems)} problem(s)"

        if unchecked:
            message += (
                f"; the checks of {', '.join(unchecked)} could not run until these"
                " are fixed, so run again after fixing them"
            )

        raise ConfigError(message, problems=name_overrides(problems, overrides))

    return _with_warnings(config, warnings)


def _check_convertible_parts(
    document: dict[str, Any],
    base_dir: Path | None,
    problems: list[tuple[str, str]],
    warnings: list[tuple[str, str]],
) -> list[str]:
    """Check each top-level part that converts on its own, when the whole does not.

    Returns the key paths of the parts whose value checks could not run.
    """
    # The conversion of the whole document has already reported these.
    reported: list[tuple[str, str]] = []
    hints = typing.get_type_hints(Config)
    parts: dict[str, Any] = {}
    unchecked: list[str] = []
    base = base_dir or Path()

    for name in ("server", "admin", "storage", "idempotency_window"):
        if name not in document:
            continue

        value = convert(hints[name], document[name], name, reported)

        if value is INVALID:
            unchecked.append(name)
        else:
            parts[name] = value

    if "server" in parts:
        parts["server"] = resolve_server(parts["server"], base)

    if "storage" in parts:
        parts["storage"] = resolve_storage(parts["storage"], base)

    routes: list[RouteConfig | None] | None = None

    if isinstance(document.get("routes"), list):
        routes = []

        for index, item in enumerate(document["routes"]):
            route = convert(RouteConfig, item, f"routes[{index}]", reported)

            if route is INVALID:
                unchecked.append(f"routes[{index}]")
                routes.append(None)
            else:
                routes.append(resolve_route(route, base))
    elif "routes" in document:
        unchecked.append("routes")

    check_parts(problems, warnings, routes=routes, **parts)
    return unchecked


def name_overrides(
    problems: list[tuple[str, str]], overrides: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Add `(from VARIABLE)` to each problem in a key that an override set."""
    named: list[tuple[str, str]] = []

    for path, message in problems:
        variable = _override_of(path, overrides)

        if variable is not None and variable not in message:
            message = f"{message} (from {variable})"

        named.append((path, message))

    return named


def _override_of(path: str, overrides: Mapping[str, str]) -> str | None:
    """Return the variable that set `path` or a key that contains it."""
    found: str | None = None
    longest = -1

    for key, variable in overrides.items():
        inside = path == key or path.startswith((f"{key}.", f"{key}["))

        if inside and len(key) > longest:
            found, longest = variable, len(key)

    return found


def _with_warnings(config: Config, warnings: list[tuple[str, str]]) -> Config:
    values = {name: getattr(config, name) for name in Config.__dataclass_fields__}
    values["warnings"] = tuple(warnings)
    return Config(**values)


def apply_environment(
    document: dict[str, Any],
    environ: Mapping[str, str],
    problems: list[tuple[str, str]],
    *,
    top_level_keys: Collection[str] = _TOP_LEVEL_KEYS,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return a copy of the document with `KRATOS_WEBHOOKS_*` overrides applied.

    Only variables whose first level is one of `top_level_keys` are overrides.
    `overrides`, when given, receives the key path each variable set, such as
    `routes[0].upstream`, mapped to the variable's name.
    """
    result: dict[str, Any] = _deep_copy(document)

    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue

        parts = name[len(ENV_PREFIX) :].lower().split("__")

        if parts[0] not in top_level_keys:
            continue

        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            problems.append((_display(parts), f"{name} is not a valid YAML value"))
            continue

        if _set_path(result, parts, value, name, problems) and overrides is not None:
            overrides[_display(parts)] = name

    return result


def _set_path(
    document: dict[str, Any],
    parts: list[str],
    value: Any,
    variable: str,
    problems: list[tuple[str, str]],
) -> bool:
    """Set the value at `parts`; return False after recording why it cannot."""
    node: Any = document

    for depth, part in enumerate(parts[:-1]):
        following = parts[depth + 1]
        node = _step_into(node, part, following.isdigit())

        if node is None:
            path = _display(parts[: depth + 1])
            problems.append((path, f"{variable} addresses a missing list item"))
            return False

    last = parts[-1]

    if isinstance(node, list):
        index = int(last) if last.isdigit() else -1

        if not 0 <= index <= len(node):
            problems.append((_display(parts), f"{variable} addresses a missing item"))
            return False

        if index == len(node):
            node.append(value)
        else:
            node[index] = value

        return True

    node[last] = value
    return True


def _display(parts: list[str]) -> str:
    """Write a key path as the other problems do: `routes[0].upstream`."""
    text = ""

    for part in parts:
        if part.isdigit():
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = part

    return text


def _step_into(node: Any, part: str, wants_list: bool) -> Any:
    if isinstance(node, list):
        if not part.isdigit():
            return None

        index = int(part)

        if index == len(node):
            node.append({})

        return node[index] if index < len(node) else None

    child = node.get(part)

    if not isinstance(child, dict | list):
        child = [] if wants_list else {}
        node[part] = child

    return child


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}

    if isinstance(value, list):
        return [_deep_copy(item) for item in value]

    return value


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "syntax error"

    if mark is None:
        return str(problem)

    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
