"""The ASGI TLS extension of a connection: `scope["extensions"]["tls"]`.

uvicorn 0.55 fills no TLS extension, so the receiver's protocol sets
one per connection from the handshake's result. It follows the ASGI TLS
extension, with one key of ours added:

- `server_cert`: None (not filled);
- `client_cert_chain`: the verified chain as PEM strings, client first; empty
  without a client certificate;
- `client_cert_name`: the client's subject as an RFC 4514 string, or None;
- `client_cert_error`: None, because a certificate that fails verification
  ends the handshake;
- `tls_version`: the protocol as a number, 0x0303 for TLS 1.2, 0x0304 for 1.3;
- `cipher_suite`: the IANA number of the cipher suite, or None if unknown;
- `client_cert`: ours, the parsed client certificate (`CertificateInfo.as_dict`:
  subject, common_names, issuer, sans, fingerprint_sha256, serial_number,
  not_before, not_after), or None.
"""

from __future__ import annotations

import _ssl
import ssl
from functools import cache
from typing import Any, Final

from .certificates import CertificateInfo, describe_certificate

__all__ = ["client_certificate", "tls_extension"]

_VERSIONS: Final = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@cache
def _cipher_numbers() -> dict[str, int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("ALL")
    return {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}


def _verified_chain(ssl_object: ssl.SSLObject) -> list[str]:
    # Public from Python 3.13 as SSLObject.get_verified_chain; the method of
    # the underlying _ssl object exists from 3.10.
    inner = getattr(ssl_object, "_sslobj", None)
    get_chain = getattr(inner, "get_verified_chain", None)

    if get_chain is None:
        der = ssl_object.getpeercert(binary_form=True)
        return [ssl.DER_cert_to_PEM_cert(der)] if der else []

    return [
        str(certificate.public_bytes(_ssl.ENCODING_PEM)) for certificate in get_chain()
    ]


def client_certificate(ssl_object: ssl.SSLObject) -> CertificateInfo | None:
    """Describe the verified client certificate of a connection, or return None."""
    der = ssl_object.getpeercert(binary_form=True)
    return describe_certificate(der) if der else None


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """Build the TLS extension of a connection whose handshake has completed."""
    certificate = client_certificate(ssl_object)
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": _verified_chain(ssl_object) if certificate else [],
        "client_cert_name": certificate.subject if certificate else None,
        "client_cert_error": None,
        "tls_version": _VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": _cipher_numbers().get(cipher[0]) if cipher else None,
        "client_cert": certificate.as_dict() if certificate else None,
    }
