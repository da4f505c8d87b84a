"""Checks of a converted configuration beyond types: ranges, references, files."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from .errors import ConfigError
from .secrets import HmacKey, Secret
from .tls.checks import check_client_certificates, check_key_password

if TYPE_CHECKING:
    from .config import (
        AdminConfig,
        Config,
        RouteConfig,
        ServerConfig,
        TlsConfig,
        VerifyConfig,
    )

__all__ = [
    "PLAIN_PATH",
    "PLAIN_PATH_MESSAGE",
    "check_config",
    "check_parts",
    "parse_listen",
]

Problems = list[tuple[str, str]]

# Kratos gives up on an attempt after 30 s, so a sync answer must come sooner.
MAX_SYNC_TIMEOUT: Final = 25.0
_METHOD: Final = re.compile(r"[A-Z]{1,20}")
# The path characters of RFC 3986 without `%`: requests are routed on the path
# as sent, so a configured path must need no percent-encoding to be matched.
PLAIN_PATH: Final = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
PLAIN_PATH_MESSAGE: Final = (
    "must contain only letters, digits and -._~!$&'()*+,;=:@/ (no percent-encoding)"
)
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HANDLER: Final = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def parse_listen(address: str) -> tuple[str, int]:
    """Split `host:port` or `[ipv6]:port` into its parts.

    Raises:
        ValueError: the address has no valid port or host.
    """
    host, sep, port_text = address.rpartition(":")

    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected host:port, such as 127.0.0.1:8443 or [::1]:8443")

    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]

    port = int(port_text)

    if port > 65535:
        raise ValueError(f"port {port} is above 65535")

    return host, port


def check_config(config: Config, problems: Problems, warnings: Problems) -> None:
    """Record every semantic problem of a converted configuration."""
    check_parts(
        problems,
        warnings,
        server=config.server,
        admin=config.admin,
        storage=config.storage,
        idempotency_window=config.idempotency_window,
        routes=config.routes,
    )


def check_parts(
    problems: Problems,
    warnings: Problems,
    *,
    server: ServerConfig | None = None,
    admin: AdminConfig | None = None,
    storage: str | None = None,
    idempotency_window: float | None = None,
    routes: Sequence[RouteConfig | None] | None = None,
) -> None:
    """Record the semantic problems of the parts given; None skips a part.

    A None item of `routes` is a route that did not convert; the others keep
    their index in the key paths.
    """
    if server is not None:
        _check_server(server, problems)
        check_key_password(server.tls, "server.tls", problems, warnings)

    if admin is not None:
        _check_listen(admin.listen, "admin.listen", problems)

    if storage is not None and not storage.startswith("sqlite://"):
        problems.append(("storage", "only sqlite:///path URLs are supported"))

    if idempotency_window is not None and idempotency_window <= 0:
        problems.append(("idempotency_window", "must be above 0 seconds"))

    if routes is not None:
        _check_routes(routes, server.tls if server else None, problems, warnings)


def _check_routes(
    routes: Sequence[RouteConfig | None],
    tls: TlsConfig | None,
    problems: Problems,
    warnings: Problems,
) -> None:
    if not routes:
        problems.append(("routes", "at least one route is needed"))

    seen: set[str] = set()

    for index, route in enumerate(routes):
        path = f"routes[{index}]"

        if route is None:
            continue

        if route.path in seen:
            problems.append((f"{path}.path", f"{route.path} is configured twice"))

        seen.add(route.path)
        _check_route(route, path, problems, warnings)

        # The rules depend on the listener's client_auth, so they need the
        # server's TLS settings.
        if tls is not None:
            check_client_certificates(
                route.client_certificates,
                tls,
                f"{path}.client_certificates",
                problems,
            )


def _check_listen(address: str, path: str, problems: Problems) -> None:
    try:
        parse_listen(address)
    except ValueError as exc:
        problems.append((path, str(exc)))


def _check_server(server: ServerConfig, problems: Problems) -> None:
    _check_listen(server.listen, "server.listen", problems)

    if server.http_listen is not None:
        _check_listen(server.http_listen, "server.http_listen", problems)

    tls = server.tls

    for key in ("cert_file", "key_file"):
        _check_readable(getattr(tls, key), f"server.tls.{key}", problems)

    if tls.client_auth != "off":
        if tls.client_ca_file is None:
            problems.append(
                ("server.tls.client_ca_file", "needed when client_auth is not off")
            )
        else:
            _check_readable(tls.client_ca_file, "server.tls.client_ca_file", problems)

    for index, network in enumerate(server.trusted_proxies):
        _check_network(network, f"server.trusted_proxies[{index}]", problems)

    for key in ("max_body_bytes", "max_connections", "max_header_bytes"):
        if getattr(server.limits, key) <= 0:
            problems.append((f"server.limits.{key}", "must be above 0"))

    for key in ("header_timeout", "body_timeout", "idle_timeout"):
        if getattr(server.limits, key) <= 0:
            problems.append((f"server.limits.{key}", "must be above 0 seconds"))

    _check_rate(server.rate_limit.global_, "server.rate_limit.global", problems)
    _check_rate(server.rate_limit.per_source, "server.rate_limit.per_source", problems)


def _check_readable(name: str, path: str, problems: Problems) -> None:
    if not Path(name).is_file():
        problems.append((path, f"{name} is not a readable file"))


def _check_network(text: str, path: str, problems: Problems) -> None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        problems.append((path, f"{text!r} is not an IP address or CIDR range"))


def _check_rate(text: str | None, path: str, problems: Problems) -> None:
    if text is None:
        return

    from limits import parse

    try:
        parse(text)
    except ValueError:
        problems.append((path, f"{text!r} is not a rate such as '100/second'"))


def _check_route(
    route: RouteConfig, path: str, problems: Problems, warnings: Problems
) -> None:
    if not route.path.startswith("/"):
        problems.append((f"{path}.path", "must start with /"))
    elif not PLAIN_PATH.fullmatch(route.path):
        problems.append((f"{path}.path", PLAIN_PATH_MESSAGE))

    for index, method in enumerate(route.methods):
        if not _METHOD.fullmatch(method):
            problems.append(
                (f"{path}.methods[{index}]", f"{method!r} is not an upper-case method")
            )

    if not route.methods:
        problems.append((f"{path}.methods", "at least one method is needed"))

    _check_verify(route.verify, f"{path}.verify", problems, warnings)
    _check_target(route, path, problems, warnings)

    for index, network in enumerate(route.allow_from):
        _check_network(network, f"{path}.allow_from[{index}]", problems)

    _check_rate(route.rate_limit, f"{path}.rate_limit", problems)
    _check_sizes(route, path, problems)
    _check_payload(route, path, problems)

    if not 0 < route.timeout <= MAX_SYNC_TIMEOUT:
        problems.append(
            (
                f"{path}.timeout",
                f"must be above 0 and at most {MAX_SYNC_TIMEOUT:g} seconds, because "
                "Kratos abandons an attempt after 30 s",
            )
        )

    delivery = route.delivery

    if delivery.max_attempts < 1:
        problems.append((f"{path}.delivery.max_attempts", "must be at least 1"))

    for key in ("max_age", "initial_backoff", "max_backoff", "timeout"):
        if getattr(delivery, key) <= 0:
            problems.append((f"{path}.delivery.{key}", "must be above 0 seconds"))


def _check_sizes(route: RouteConfig, path: str, problems: Problems) -> None:
    if route.max_body_bytes is not None and route.max_body_bytes <= 0:
        problems.append((f"{path}.max_body_bytes", "must be above 0"))

    if route.max_inflated_bytes is None:
        return

    if not route.gzip:
        problems.append((f"{path}.max_inflated_bytes", "applies only with gzip: true"))

    if route.max_inflated_bytes <= 0:
        problems.append((f"{path}.max_inflated_bytes", "must be above 0"))


def _check_verify(
    verify: VerifyConfig, path: str, problems: Problems, warnings: Problems
) -> None:
    if verify.tolerance < 0:
        problems.append((f"{path}.tolerance", "must not be negative"))

    if not verify.secrets:
        problems.append((f"{path}.secrets", "at least one secret is needed"))

    if verify.scheme == "kratos-api-key":
        if verify.name is None:
            problems.append((f"{path}.name", "the api key's header or cookie name"))
        elif not _TOKEN.fullmatch(verify.name):
            problems.append((f"{path}.name", f"{verify.name!r} is not a header name"))

    for index, reference in enumerate(verify.secrets):
        secret = _load_secret(reference, f"{path}.secrets[{index}]", problems, warnings)

        if secret is None:
            continue

        if verify.scheme == "standard-webhooks":
            _check_hmac_key(secret, f"{path}.secrets[{index}]", problems)
        elif verify.scheme == "kratos-basic" and ":" not in secret.reveal():
            problems.append((f"{path}.secrets[{index}]", "must hold user:password"))


def _load_secret(
    reference: str, path: str, problems: Problems, warnings: Problems
) -> Secret | None:
    try:
        secret = Secret.load(reference)
    except ConfigError as exc:
        problems.append((path, str(exc)))
        return None

    if secret.source == "literal":
        message = "literal secret: use env:NAME or file:/path in production"
        warnings.append((path, message))

    return secret


def _check_hmac_key(secret: Secret, path: str, problems: Problems) -> None:
    try:
        HmacKey.from_secret(secret)
    except ConfigError as exc:
        problems.append((path, str(exc)))


def _check_target(
    route: RouteConfig, path: str, problems: Problems, warnings: Problems
) -> None:
    if (route.upstream is None) == (route.handler is None):
        problems.append((path, "set exactly one of upstream and handler"))

    if route.upstream is not None:
        parts = urlsplit(route.upstream)

        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append((f"{path}.upstream", "must be an http:// or https:// URL"))

    if route.handler is not None:
        _check_handler(route, f"{path}.handler", problems)

        if route.mode == "async":
            problems.append(
                (f"{path}.handler", "async routes deliver to an upstream URL")
            )

    if route.mode == "async" and not route.upstream_secrets:
        problems.append(
            (f"{path}.upstream_secrets", "async routes sign deliveries: add a secret")
        )

    unsigned = route.upstream is not None and not route.upstream_secrets

    if route.mode == "sync" and unsigned:
        warnings.append(
            (
                f"{path}.upstream_secrets",
                "calls to the upstream are not signed, so the application "
                "cannot verify that they come from the receiver: add a secret",
            )
        )

    for index, reference in enumerate(route.upstream_secrets):
        item = f"{path}.upstream_secrets[{index}]"
        secret = _load_secret(reference, item, problems, warnings)

        if secret is not None:
            _check_hmac_key(secret, item, problems)


def _check_handler(route: RouteConfig, path: str, problems: Problems) -> None:
    from .hooks import load_handler

    assert route.handler is not None

    if not _HANDLER.fullmatch(route.handler):
        problems.append((path, "expected module:function"))
        return

    try:
        load_handler(route.handler, route.hook)
    except ConfigError as exc:
        problems.append((path, str(exc)))


def _check_payload(route: RouteConfig, path: str, problems: Problems) -> None:
    from .kratos.redaction import parse_pointer
    from .receiver.payload import load_traits_schema

    if route.traits_schema is not None:
        if route.payload_kind != "kratos":
            problems.append(
                (
                    f"{path}.traits_schema",
                    "needs a Kratos payload: set payload: kratos or a hook",
                )
            )

        try:
            load_traits_schema(route.traits_schema)
        except ConfigError as exc:
            problems.append((f"{path}.traits_schema", str(exc)))

    if route.forward_redacted and route.upstream is None:
        problems.append(
            (f"{path}.forward_redacted", "applies only to routes with an upstream")
        )

    if route.redact and not route.forward_redacted:
        problems.append(
            (f"{path}.redact", "has an effect only with forward_redacted: true")
        )

    for index, pointer in enumerate(route.redact):
        try:
            parse_pointer(pointer)
        except ConfigError as exc:
            problems.append((f"{path}.redact[{index}]", str(exc)))
