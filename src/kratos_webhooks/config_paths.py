"""Relative file paths in a configuration, resolved against the file's directory.

A configuration names certificates, keys, secrets (`file:` references), JSON
schemas and the SQLite database. A relative name in it means the same file
whatever the working directory of the command that reads it, so it is joined
to the directory of the configuration file. A relative name set by an
environment override is resolved the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config, RouteConfig, ServerConfig, TlsConfig

__all__ = [
    "resolve_file",
    "resolve_paths",
    "resolve_route",
    "resolve_secret",
    "resolve_server",
    "resolve_storage",
    "resolve_tls",
]


def resolve_file(name: str, base: Path) -> str:
    """Join a relative file name to `base`; an absolute one is kept."""
    if not name or Path(name).is_absolute():
        return name

    return str(base / name)


def resolve_secret(reference: str, base: Path) -> str:
    """Resolve the path of a `file:` secret reference; other references are kept."""
    scheme, colon, name = reference.partition(":")

    if scheme != "file" or not colon:
        return reference

    return f"file:{resolve_file(name, base)}"


def resolve_storage(url: str, base: Path) -> str:
    """Resolve the path of a `sqlite://` storage URL; other URLs are kept."""
    scheme, separator, name = url.partition("://")

    if scheme != "sqlite" or not separator or name == ":memory:":
        return url

    return f"sqlite://{Path(resolve_file(name, base)).as_posix()}"


def resolve_tls(tls: TlsConfig, base: Path) -> TlsConfig:
    """Resolve a listener's TLS files and its key password's `file:` reference."""
    return dataclasses.replace(
        tls,
        cert_file=resolve_file(tls.cert_file, base),
        key_file=resolve_file(tls.key_file, base),
        client_ca_file=(
            None
            if tls.client_ca_file is None
            else resolve_file(tls.client_ca_file, base)
        ),
        key_password=(
            None if tls.key_password is None else resolve_secret(tls.key_password, base)
        ),
    )


def resolve_server(server: ServerConfig, base: Path) -> ServerConfig:
    """Resolve the receiver's TLS files."""
    return dataclasses.replace(server, tls=resolve_tls(server.tls, base))


def resolve_route(route: RouteConfig, base: Path) -> RouteConfig:
    """Resolve a route's `file:` secrets and its traits schema."""
    verify = dataclasses.replace(
        route.verify,
        secrets=tuple(resolve_secret(item, base) for item in route.verify.secrets),
    )
    return dataclasses.replace(
        route,
        verify=verify,
        upstream_secrets=tuple(
            resolve_secret(item, base) for item in route.upstream_secrets
        ),
        traits_schema=(
            None
            if route.traits_schema is None
            else resolve_file(route.traits_schema, base)
        ),
    )


def resolve_paths(config: Config, base: Path) -> Config:
    """Return the configuration with every relative file path joined to `base`."""
    return dataclasses.replace(
        config,
        server=resolve_server(config.server, base),
        storage=resolve_storage(config.storage, base),
        routes=tuple(resolve_route(route, base) for route in config.routes),
    )
