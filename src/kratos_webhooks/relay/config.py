"""The relay's configuration: YAML, environment overrides and checks, as the receiver's.

The conventions are the receiver's: field names are the YAML keys, a variable
`KRATOS_WEBHOOKS_<PATH>` overrides a key (`KRATOS_WEBHOOKS_ROUTES__0__TARGET`),
secrets are `env:NAME` or `file:/path` references, relative file paths are
resolved against the configuration file's directory, and every problem is
reported at once with its key path. The relay's top-level keys are `relay`,
`outbound`, `storage`, `idempotency_window`, `logging` and `routes`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import yaml

from ..config import (
    MAX_SYNC_TIMEOUT,
    LimitsConfig,
    LoggingConfig,
    TlsConfig,
    apply_environment,
    name_overrides,
)
from ..config_checks import PLAIN_PATH, PLAIN_PATH_MESSAGE, parse_listen
from ..config_paths import resolve_file, resolve_secret, resolve_storage, resolve_tls
from ..config_schema import convert
from ..errors import ConfigError
from ..secrets import HmacKey, Secret
from .target import TargetPolicy, TargetRejected

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_SYNC_BUDGET",
    "STANDARD_WEBHOOKS_SCHEDULE",
    "KratosAuthConfig",
    "ListenerConfig",
    "OutboundConfig",
    "OutboxDeliveryConfig",
    "RelayConfig",
    "RelayRouteConfig",
    "SigningConfig",
    "is_relay_document",
    "load_relay_config",
    "parse_relay_config",
]

DEFAULT_LISTEN: Final = "127.0.0.1:4480"
# Kratos abandons an attempt after 30 s; the receiver's own sync budget
# (10 s by default) must fit inside this one.
DEFAULT_SYNC_BUDGET: Final = 20.0
# Delays after each failed attempt, in seconds: the example schedule of the
# Standard Webhooks specification (immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 10 h), so eight attempts over about 27.5 hours.
STANDARD_WEBHOOKS_SCHEDULE: Final = (
    5.0,
    300.0,
    1800.0,
    7200.0,
    18000.0,
    36000.0,
    36000.0,
)

Mode = Literal["sync", "async"]

_TOP_LEVEL_KEYS: Final = frozenset(
    {"relay", "outbound", "storage", "idempotency_window", "logging", "routes"}
)
_METHOD: Final = re.compile(r"[A-Z]{1,20}")
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """The listener Kratos calls: loopback and plain HTTP unless TLS is set."""

    listen: str = DEFAULT_LISTEN
    tls: TlsConfig | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """Outbound settings toward receivers: TLS trust, client certificate, guard.

    `ca_file` replaces the system roots. Private and loopback targets are
    rejected unless allowed here; link-local and metadata addresses always are.
    """

    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    connect_timeout: float = 5.0
    max_connections: int = 100
    allow_private_targets: bool = False
    allow_loopback_targets: bool = False

    @property
    def policy(self) -> TargetPolicy:
        return TargetPolicy(
            allow_private=self.allow_private_targets,
            allow_loopback=self.allow_loopback_targets,
        )


@dataclass(frozen=True, slots=True)
class KratosAuthConfig:
    """The credential Kratos sends, named as in Kratos' `auth` setting.

    `secrets` lists the active values, newest first: for `api_key` each is the
    key, for `basic_auth` each is `user:password`, or only the password when
    `user` is set.
    """

    type: Literal["api_key", "basic_auth"]
    secrets: tuple[str, ...]
    name: str | None = None
    user: str | None = None
    in_: Literal["header", "cookie"] = field(default="header", metadata={"key": "in"})


@dataclass(frozen=True, slots=True)
class SigningConfig:
    """The Standard Webhooks keys the relay signs with, newest first.

    The newest key signs; with `all_keys` every key signs, during a rollover
    in which the receiver may still know only an older key.
    """

    secrets: tuple[str, ...]
    all_keys: bool = False


@dataclass(frozen=True, slots=True)
class OutboxDeliveryConfig:
    """Retries of an async route's outbox: delays in seconds after each failure.

    An event is a dead letter after `len(schedule) + 1` failed attempts.
    `jitter` spreads each delay over ±that fraction.
    """

    schedule: tuple[float, ...] = STANDARD_WEBHOOKS_SCHEDULE
    timeout: float = 10.0
    jitter: float = 0.1


@dataclass(frozen=True, slots=True)
class RelayRouteConfig:
    """One path Kratos calls, the receiver URL it goes to, and how."""

    path: str
    target: str
    mode: Mode
    kratos_auth: KratosAuthConfig
    signing: SigningConfig
    methods: tuple[str, ...] = ("POST",)
    timeout: float = DEFAULT_SYNC_BUDGET
    max_body_bytes: int | None = None
    delivery: OutboxDeliveryConfig = field(default_factory=OutboxDeliveryConfig)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The whole relay configuration; `warnings` as in the receiver's `Config`."""

    routes: tuple[RelayRouteConfig, ...]
    relay: ListenerConfig = field(default_factory=ListenerConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    storage: str = "sqlite:///var/lib/kratos-webhooks/relay.db"
    idempotency_window: float = 86_400.0
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    warnings: tuple[tuple[str, str], ...] = field(
        default=(), metadata={"internal": True}
    )


def is_relay_document(document: Any) -> bool:
    """Return whether a parsed YAML document is a relay configuration."""
    if not isinstance(document, dict):
        return False

    if "relay" in document or "outbound" in document:
        return True

    routes = document.get("routes")

    return isinstance(routes, list) and any(
        isinstance(route, dict) and ("kratos_auth" in route or "target" in route)
        for route in routes
    )


def load_relay_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> RelayConfig:
    """Read, override from the environment and validate a relay configuration.

    Raises:
        ConfigError: the file cannot be read or parsed, or any setting is
            invalid; `problems` lists each one with its key path.
    """
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"cannot read configuration {os.fspath(path)}: {reason}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"configuration {os.fspath(path)} is not valid YAML",
            problems=[("", str(exc).replace("\n", " "))],
        ) from exc

    return parse_relay_config(
        document,
        environ=os.environ if environ is None else environ,
        base_dir=Path(os.path.abspath(path)).parent,
    )


def parse_relay_config(
    document: Any,
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> RelayConfig:
    """Validate a parsed relay document, after applying environment overrides.

    Relative file paths are resolved against `base_dir` when it is given.

    Raises:
        ConfigError: any setting is invalid; `problems` lists them all.
    """
    problems: list[tuple[str, str]] = []

    if document is None:
        document = {}

    if not isinstance(document, dict):
        raise ConfigError(
            "invalid configuration", problems=[("", "the file must hold a mapping")]
        )

    overrides: dict[str, str] = {}
    document = apply_environment(
        document,
        environ or {},
        problems,
        top_level_keys=_TOP_LEVEL_KEYS,
        overrides=overrides,
    )
    config = convert(RelayConfig, document, "", problems)
    warnings: list[tuple[str, str]] = []

    if isinstance(config, RelayConfig):
        if base_dir is not None:
            config = _resolve_paths(config, base_dir)

        _check_config(config, problems, warnings)

    if problems or not isinstance(config, RelayConfig):
        raise ConfigError(
            f"invalid configuration: {len(problems)} problem(s)",
            problems=name_overrides(problems, overrides),
        )

    return dataclasses.replace(
        config, warnings=tuple(name_overrides(warnings, overrides))
    )


def _resolve_paths(config: RelayConfig, base: Path) -> RelayConfig:
    def file(name: str | None) -> str | None:
        return None if name is None else resolve_file(name, base)

    def secrets(references: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(resolve_secret(reference, base) for reference in references)

    listener = config.relay

    if listener.tls is not None:
        listener = dataclasses.replace(listener, tls=resolve_tls(listener.tls, base))

    outbound = dataclasses.replace(
        config.outbound,
        ca_file=file(config.outbound.ca_file),
        client_cert_file=file(config.outbound.client_cert_file),
        client_key_file=file(config.outbound.client_key_file),
    )
    routes = tuple(
        dataclasses.replace(
            route,
            kratos_auth=dataclasses.replace(
                route.kratos_auth, secrets=secrets(route.kratos_auth.secrets)
            ),
            signing=dataclasses.replace(
                route.signing, secrets=secrets(route.signing.secrets)
            ),
        )
        for route in config.routes
    )
    return dataclasses.replace(
        config,
        relay=listener,
        outbound=outbound,
        storage=resolve_storage(config.storage, base),
        routes=routes,
    )


Problems = list[tuple[str, str]]


def _check_config(config: RelayConfig, problems: Problems, warnings: Problems) -> None:
    _check_listener(config.relay, problems, warnings)
    _check_outbound(config.outbound, problems)

    if not config.storage.startswith("sqlite://"):
        problems.append(("storage", "only sqlite:///path URLs are supported"))

    if config.idempotency_window <= 0:
        problems.append(("idempotency_window", "must be above 0 seconds"))

    if not config.routes:
        problems.append(("routes", "at least one route is needed"))

    seen: set[str] = set()

    for index, route in enumerate(config.routes):
        path = f"routes[{index}]"

        if route.path in seen:
            problems.append((f"{path}.path", f"{route.path} is configured twice"))

        seen.add(route.path)
        _check_route(route, path, config.outbound.policy, problems, warnings)


def _check_listener(
    listener: ListenerConfig, problems: Problems, warnings: Problems
) -> None:
    try:
        host, _ = parse_listen(listener.listen)
    except ValueError as exc:
        problems.append(("relay.listen", str(exc)))
        host = "127.0.0.1"

    tls = listener.tls

    if tls is None:
        if not is_loopback_host(host):
            warnings.append(
                (
                    "relay.listen",
                    f"{host} is beyond loopback without TLS: Kratos' credential "
                    "and every payload cross the network in clear text",
                )
            )
    else:
        for key in ("cert_file", "key_file"):
            _check_file(getattr(tls, key), f"relay.tls.{key}", problems)

        if tls.client_auth != "off":
            if tls.client_ca_file is None:
                problems.append(
                    ("relay.tls.client_ca_file", "needed when client_auth is not off")
                )
            else:
                _check_file(tls.client_ca_file, "relay.tls.client_ca_file", problems)

    limits = listener.limits

    for key in ("max_body_bytes", "max_connections", "max_header_bytes"):
        if getattr(limits, key) <= 0:
            problems.append((f"relay.limits.{key}", "must be above 0"))

    for key in ("header_timeout", "body_timeout", "idle_timeout"):
        if getattr(limits, key) <= 0:
            problems.append((f"relay.limits.{key}", "must be above 0 seconds"))


def is_loopback_host(host: str) -> bool:
    """Return whether a listen host accepts connections from this machine only."""
    if host == "localhost":
        return True

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_outbound(outbound: OutboundConfig, problems: Problems) -> None:
    for key in ("ca_file", "client_cert_file", "client_key_file"):
        value = getattr(outbound, key)

        if value is not None:
            _check_file(value, f"outbound.{key}", problems)

    if (outbound.client_cert_file is None) != (outbound.client_key_file is None):
        problems.append(
            (
                "outbound.client_key_file",
                "set both client_cert_file and client_key_file",
            )
        )

    if outbound.connect_timeout <= 0:
        problems.append(("outbound.connect_timeout", "must be above 0 seconds"))

    if outbound.max_connections <= 0:
        problems.append(("outbound.max_connections", "must be above 0"))


def _check_file(name: str, path: str, problems: Problems) -> None:
    if not Path(name).is_file():
        problems.append((path, f"{name} is not a readable file"))


def _check_route(
    route: RelayRouteConfig,
    path: str,
    policy: TargetPolicy,
    problems: Problems,
    warnings: Problems,
) -> None:
    if not route.path.startswith("/"):
        problems.append((f"{path}.path", "must start with /"))
    elif not PLAIN_PATH.fullmatch(route.path):
        problems.append((f"{path}.path", PLAIN_PATH_MESSAGE))

    if not route.methods:
        problems.append((f"{path}.methods", "at least one method is needed"))

    for index, method in enumerate(route.methods):
        if not _METHOD.fullmatch(method):
            problems.append(
                (f"{path}.methods[{index}]", f"{method!r} is not an upper-case method")
            )

    _check_target(route.target, f"{path}.target", policy, problems, warnings)
    _check_kratos_auth(route.kratos_auth, f"{path}.kratos_auth", problems, warnings)
    _check_signing(route.signing, f"{path}.signing", problems, warnings)

    if not 0 < route.timeout <= MAX_SYNC_TIMEOUT:
        problems.append(
            (
                f"{path}.timeout",
                f"must be above 0 and at most {MAX_SYNC_TIMEOUT:g} seconds, because "
                "Kratos abandons an attempt after 30 s",
            )
        )

    if route.max_body_bytes is not None and route.max_body_bytes <= 0:
        problems.append((f"{path}.max_body_bytes", "must be above 0"))

    delivery = route.delivery

    if not delivery.schedule:
        problems.append((f"{path}.delivery.schedule", "at least one delay is needed"))

    for index, delay in enumerate(delivery.schedule):
        if delay <= 0:
            problems.append(
                (f"{path}.delivery.schedule[{index}]", "must be above 0 seconds")
            )

    if delivery.timeout <= 0:
        problems.append((f"{path}.delivery.timeout", "must be above 0 seconds"))

    if not 0 <= delivery.jitter <= 1:
        problems.append((f"{path}.delivery.jitter", "must be between 0 and 1"))


def _check_target(
    url: str, path: str, policy: TargetPolicy, problems: Problems, warnings: Problems
) -> None:
    try:
        policy.check_url(url)
    except ValueError as exc:
        problems.append((path, str(exc)))
        return
    except TargetRejected as exc:
        hint = {
            "loopback": ": set outbound.allow_loopback_targets to allow it",
            "private": ": set outbound.allow_private_targets to allow it",
        }.get(exc.category, ", which the relay never connects to")
        problems.append((path, f"{exc.address} is a {exc.category} address{hint}"))
        return

    parts = urlsplit(url)

    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        warnings.append(
            (path, "plain http:// beyond loopback: use https:// toward the receiver")
        )


def _check_kratos_auth(
    auth: KratosAuthConfig, path: str, problems: Problems, warnings: Problems
) -> None:
    if auth.type == "basic_auth" and auth.user is not None and ":" in auth.user:
        problems.append((f"{path}.user", "a Basic user name cannot contain ':'"))

    if auth.type == "api_key":
        if auth.name is None:
            problems.append((f"{path}.name", "the api key's header or cookie name"))
        elif not _TOKEN.fullmatch(auth.name):
            problems.append((f"{path}.name", f"{auth.name!r} is not a header name"))

    if not auth.secrets:
        problems.append((f"{path}.secrets", "at least one secret is needed"))

    for index, reference in enumerate(auth.secrets):
        item = f"{path}.secrets[{index}]"
        secret = _load_secret(reference, item, problems, warnings)

        if secret is None:
            continue

        if (
            auth.type == "basic_auth"
            and auth.user is None
            and ":" not in secret.reveal()
        ):
            problems.append((item, "must hold user:password, or set user"))


def _check_signing(
    signing: SigningConfig, path: str, problems: Problems, warnings: Problems
) -> None:
    if not signing.secrets:
        problems.append((f"{path}.secrets", "at least one signing key is needed"))

    for index, reference in enumerate(signing.secrets):
        item = f"{path}.secrets[{index}]"
        secret = _load_secret(reference, item, problems, warnings)

        if secret is None:
            continue

        try:
            HmacKey.from_secret(secret)
        except ConfigError as exc:
            problems.append((item, str(exc)))


def _load_secret(
    reference: str, path: str, problems: Problems, warnings: Problems
) -> Secret | None:
    try:
        secret = Secret.load(reference)
    except ConfigError as exc:
        problems.append((path, str(exc)))
        return None

    if secret.source == "literal":
        warnings.append(
            (path, "literal secret: use env:NAME or file:/path in production")
        )

    return secret
