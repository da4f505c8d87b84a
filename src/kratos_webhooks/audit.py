"""Audit a configuration for settings that work but weaken transport security.

Each check is a function from a validated configuration to findings. The
receiver's checks are listed in `RECEIVER_CHECKS`; another service with its
own configuration (the relay) gets its own list and the same `Finding` type.
Findings at `warning` or `error` level make `kratos-webhooks audit` exit 1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from .config import Config
from .config_checks import parse_listen
from .errors import ConfigError

if TYPE_CHECKING:
    from .relay.config import RelayConfig

__all__ = [
    "RECEIVER_CHECKS",
    "RELAY_CHECKS",
    "Finding",
    "Level",
    "audit_receiver",
    "audit_relay",
    "fails_audit",
    "is_loopback",
]

Level = Literal["info", "warning", "error"]
LEVELS: Final[tuple[Level, ...]] = ("info", "warning", "error")
# Static credentials that anyone who sees one request can replay.
CREDENTIAL_SCHEMES: Final = frozenset({"kratos-api-key", "kratos-basic"})
EXPIRY_WARNING_DAYS: Final = 14


@dataclass(frozen=True, slots=True)
class Finding:
    """One audit result: its level, the configuration key it is about, a message."""

    level: Level
    key: str
    message: str


Check = Callable[[Any], Iterable[Finding]]


def is_loopback(address: str) -> bool:
    """Tell whether a `host:port` listen address accepts only local connections."""
    host, _ = parse_listen(address)

    if host == "localhost":
        return True

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plain_http(config: Config) -> Iterable[Finding]:
    """Say whether anything answers plain HTTP."""
    http_listen = config.server.http_listen

    if http_listen is None:
        yield Finding(
            "info",
            "server.http_listen",
            "plain HTTP is closed: nothing listens for http://",
        )
    else:
        yield Finding(
            "info",
            "server.http_listen",
            f"plain HTTP on {http_listen} answers only with a 308 redirect to "
            "HTTPS and never reads the request body",
        )


def check_literal_secrets(config: Config) -> Iterable[Finding]:
    """Flag secrets written into the file, which belong in env: or file:."""
    for key, message in config.warnings:
        if message.startswith("literal secret"):
            yield Finding("warning", key, message)


def check_tls_version(config: Config) -> Iterable[Finding]:
    """Report the lowest TLS version accepted."""
    if config.server.tls.min_version == "1.3":
        yield Finding("info", "server.tls.min_version", "only TLS 1.3 is accepted")
    else:
        yield Finding(
            "info",
            "server.tls.min_version",
            'TLS 1.2 and 1.3 are accepted: set "1.3" when every client supports it',
        )


def check_key_file(config: Config) -> Iterable[Finding]:
    """Flag a private key readable by group or others."""
    from .tls.certificates import key_file_exposed

    key_file = config.server.tls.key_file

    if key_file_exposed(key_file):
        yield Finding(
            "warning",
            "server.tls.key_file",
            f"{key_file} is readable by group or others: chmod 600 it",
        )


def check_client_auth(config: Config) -> Iterable[Finding]:
    """Flag static-credential routes reachable beyond loopback without mutual TLS."""
    server = config.server

    if server.tls.client_auth != "off" or is_loopback(server.listen):
        return

    for index, route in enumerate(config.routes):
        if route.verify.scheme in CREDENTIAL_SCHEMES:
            yield Finding(
                "warning",
                f"routes[{index}].verify.scheme",
                f"{route.path} accepts a static {route.verify.scheme} credential "
                f"on {server.listen} without client certificates: set "
                "server.tls.client_auth, or listen on loopback behind the relay",
            )


def check_certificate_expiry(config: Config) -> Iterable[Finding]:
    """Flag a server certificate that has expired or expires within 14 days."""
    from .tls.certificates import describe_certificate, read_certificate_chain

    cert_file = config.server.tls.cert_file

    try:
        certificate = describe_certificate(read_certificate_chain(cert_file)[0])
    except ConfigError as exc:
        yield Finding("error", "server.tls.cert_file", str(exc))
        return

    days = certificate.seconds_left(datetime.now(UTC)) / 86_400

    if days <= 0:
        yield Finding("error", "server.tls.cert_file", f"{cert_file} has expired")
    elif days < EXPIRY_WARNING_DAYS:
        yield Finding(
            "warning",
            "server.tls.cert_file",
            f"{cert_file} expires in {days:.1f} days: renew it",
        )


RECEIVER_CHECKS: Final[tuple[Check, ...]] = (
    check_plain_http,
    check_tls_version,
    check_literal_secrets,
    check_key_file,
    check_client_auth,
    check_certificate_expiry,
)


def audit_receiver(
    config: Config, checks: Sequence[Check] = RECEIVER_CHECKS
) -> list[Finding]:
    """Run the checks on a receiver configuration, most severe findings first."""
    findings = [finding for check in checks for finding in check(config)]
    return sorted(findings, key=lambda finding: -LEVELS.index(finding.level))


def fails_audit(findings: Iterable[Finding]) -> bool:
    """Tell whether any finding is at warning level or above."""
    return any(finding.level != "info" for finding in findings)


def check_relay_listener(config: RelayConfig) -> Iterable[Finding]:
    """Flag a relay reachable beyond loopback without TLS, and report its state."""
    listener = config.relay

    if listener.tls is not None:
        yield Finding(
            "info", "relay.tls", f"the relay serves HTTPS on {listener.listen}"
        )
    elif is_loopback(listener.listen):
        yield Finding(
            "info", "relay.listen", f"the relay listens on loopback ({listener.listen})"
        )
    else:
        yield Finding(
            "warning",
            "relay.listen",
            f"the relay listens on {listener.listen} without TLS: Kratos' "
            "credential and every payload cross the network in clear text; set "
            "relay.tls or listen on loopback",
        )


def check_relay_literal_secrets(config: RelayConfig) -> Iterable[Finding]:
    """Flag secrets written into the relay's file."""
    for key, message in config.warnings:
        if "literal" in message:
            yield Finding("warning", key, message)


RELAY_CHECKS: Final[tuple[Check, ...]] = (
    check_relay_listener,
    check_relay_literal_secrets,
)


def audit_relay(
    config: RelayConfig, checks: Sequence[Check] = RELAY_CHECKS
) -> list[Finding]:
    """Run the checks on a relay configuration, most severe findings first."""
    findings = [finding for check in checks for finding in check(config)]
    return sorted(findings, key=lambda finding: -LEVELS.index(finding.level))
