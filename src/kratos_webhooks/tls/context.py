"""Build a server TLS context: TLS 1.2 or later, AEAD suites with ECDHE only."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Final

from ..errors import ConfigError
from ..secrets import Secret
from .handshake import RefusalHandler, watch_handshakes

if TYPE_CHECKING:
    from ..config import TlsConfig

__all__ = ["TLS12_CIPHERS", "build_server_context", "key_password"]

# TLS 1.2 suites with forward secrecy and an AEAD cipher; TLS 1.3 suites are
# all AEAD with forward secrecy and are configured apart by OpenSSL.
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1:!SHA256:!SHA384"

MIN_VERSIONS: Final = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH: Final = {
    "off": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def key_password(tls: TlsConfig) -> bytes | None:
    """Load the private key's passphrase from its `env:` or `file:` reference.

    Raises:
        ConfigError: the reference cannot be resolved.
    """
    if tls.key_password is None:
        return None

    return Secret.load(tls.key_password).reveal().encode()


def build_server_context(
    tls: TlsConfig,
    *,
    password: bytes | None = None,
    on_refusal: RefusalHandler | None = None,
) -> ssl.SSLContext:
    """Build a server context from the configuration and the files it names.

    Raises:
        ConfigError: the certificate, key or client CA cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSIONS[tls.min_version]
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
    )
    context.set_alpn_protocols(["http/1.1"])

    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=password or b"")
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {tls.cert_file} or key {tls.key_file}",
            problems=[("server.tls", str(exc))],
        ) from exc

    context.verify_mode = CLIENT_AUTH[tls.client_auth]

    if tls.client_ca_file is not None and tls.client_auth != "off":
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the client CA {tls.client_ca_file}",
                problems=[("server.tls.client_ca_file", str(exc))],
            ) from exc

    if on_refusal is not None:
        watch_handshakes(context, on_refusal)

    return context
