"""The HTTPS listener's TLS context; built by `kratos_webhooks.tls.context`."""

from __future__ import annotations

import ssl

from ..config import TlsConfig
from ..tls.context import TLS12_CIPHERS, build_server_context, key_password

__all__ = ["TLS12_CIPHERS", "server_context"]


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """Build the server context from the configuration, without reloading.

    Raises:
        ConfigError: the certificate, key, key password or client CA cannot
            be loaded.
    """
    return build_server_context(tls, password=key_password(tls))
