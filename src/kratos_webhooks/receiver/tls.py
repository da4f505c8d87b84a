"""The HTTPS listener's TLS context: TLS 1.2 or later, AEAD suites with ECDHE only."""

from __future__ import annotations

import ssl
from typing import Final

from ..config import TlsConfig
from ..errors import ConfigError

__all__ = ["TLS12_CIPHERS", "server_context"]

# TLS 1.2 suites with forward secrecy and an AEAD cipher; TLS 1.3 suites are
# all AEAD and are configured apart by OpenSSL.
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1:!SHA256:!SHA384"

_MIN_VERSIONS: Final = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH: Final = {
    "off": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """Build the server context from the configuration.

    Raises:
        ConfigError: the certificate, key or client CA cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSIONS[tls.min_version]
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
    )
    context.set_alpn_protocols(["http/1.1"])

    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {tls.cert_file} or key {tls.key_file}",
            problems=[("server.tls", str(exc))],
        ) from exc

    context.verify_mode = _CLIENT_AUTH[tls.client_auth]

    if tls.client_ca_file is not None and tls.client_auth != "off":
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the client CA {tls.client_ca_file}",
                problems=[("server.tls.client_ca_file", str(exc))],
            ) from exc

    return context
