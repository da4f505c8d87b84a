"""Configuration checks of the TLS settings, run by `config check` and at start.

Only the standard library is imported here, so that the configuration loads
without the server extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..secrets import Secret

if TYPE_CHECKING:
    from ..config import ClientCertificatesConfig, TlsConfig

__all__ = ["check_client_certificates", "check_key_password"]

Problems = list[tuple[str, str]]


def check_key_password(
    tls: TlsConfig, path: str, problems: Problems, warnings: Problems
) -> None:
    """Check that the key password reference resolves."""
    if tls.key_password is None:
        return

    try:
        secret = Secret.load(tls.key_password)
    except ConfigError as exc:
        problems.append((f"{path}.key_password", str(exc)))
        return

    if secret.source == "literal":
        message = "literal secret: use env:NAME or file:/path in production"
        warnings.append((f"{path}.key_password", message))


def check_client_certificates(
    rules: ClientCertificatesConfig | None,
    tls: TlsConfig,
    path: str,
    problems: Problems,
) -> None:
    """Check a route's client certificate rules against the listener's settings."""
    from .identity import normalise_fingerprint, normalise_san

    if rules is None:
        return

    if tls.client_auth == "off":
        problems.append(
            (path, "needs server.tls.client_auth set to optional or required")
        )

    if not (rules.subjects or rules.sans or rules.fingerprints):
        problems.append((path, "list at least one subject, SAN or fingerprint"))

    for index, san in enumerate(rules.sans):
        try:
            normalise_san(san)
        except ValueError as exc:
            problems.append((f"{path}.sans[{index}]", str(exc)))

    for index, fingerprint in enumerate(rules.fingerprints):
        try:
            normalise_fingerprint(fingerprint)
        except ValueError as exc:
            problems.append((f"{path}.fingerprints[{index}]", str(exc)))
