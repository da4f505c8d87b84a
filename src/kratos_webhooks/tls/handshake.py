"""Report failed TLS handshakes with the reason and the client certificate.

asyncio and uvloop drop a failed handshake without a word: an `ssl.SSLError`
is an `OSError`, which both log only in debug mode, and the HTTP protocol never
hears of the connection. So each context gets an `ssl.SSLObject` subclass whose
`do_handshake` reports the error before raising it again; both event loops
call that method on the object that `SSLContext.wrap_bio` returns.

OpenSSL forgets a client certificate that fails verification, so nothing can
ask for it afterwards. To name the rejected certificate in the log, a message
callback copies the client's Certificate handshake message as it arrives; the
callback sees it after decryption, in TLS 1.3 too. `_msg_callback` is an
undocumented attribute of `ssl.SSLContext`, present from Python 3.8 to 3.13;
without it the refusal is still reported, without the certificate.
"""

from __future__ import annotations

import _ssl
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .certificates import CertificateInfo, describe_certificate

__all__ = ["HandshakeRefusal", "RefusalHandler", "watch_handshakes"]

# OpenSSL's X509_V_ERR codes for the two validity-period failures.
_NOT_YET_VALID: Final = 9
_EXPIRED: Final = 10
_HANDSHAKE_RECORD: Final = 22
_CERTIFICATE_MESSAGE: Final = 11
_TLS13: Final = 0x0304


@dataclass(frozen=True, slots=True)
class HandshakeRefusal:
    """A failed handshake: a reason code, OpenSSL's words and the client certificate.

    `certificate` is None when the client sent none or it could not be read.
    """

    reason: str
    detail: str
    certificate: CertificateInfo | None


RefusalHandler = Callable[[HandshakeRefusal], None]


def classify(error: ssl.SSLError) -> tuple[str, str]:
    """Return the reason code and OpenSSL's description of a handshake error."""
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = str(error.verify_message)

        if error.verify_code == _EXPIRED:
            return "client_certificate_expired", detail

        if error.verify_code == _NOT_YET_VALID:
            return "client_certificate_not_yet_valid", detail

        return "client_certificate_untrusted", detail

    detail = str(error.reason or error.strerror or type(error).__name__)

    if error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "client_certificate_missing", detail

    return "tls_handshake_failed", detail


class _WatchedSSLObject(ssl.SSLObject):
    """An SSLObject that reports a failed handshake to its context's handler."""

    _on_refusal: RefusalHandler
    _client_certificate: bytes | None = None

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as error:
            self._report(error)
            raise

    def _report(self, error: ssl.SSLError) -> None:
        reason, detail = classify(error)
        certificate = None

        if self._client_certificate is not None:
            try:
                certificate = describe_certificate(self._client_certificate)
            except ValueError:
                certificate = None

        self._on_refusal(HandshakeRefusal(reason, detail, certificate))


def watch_handshakes(context: ssl.SSLContext, on_refusal: RefusalHandler) -> None:
    """Make `context` report every failed server-side handshake to `on_refusal`."""
    watched = type(
        "WatchedSSLObject",
        (_WatchedSSLObject,),
        {"_on_refusal": staticmethod(on_refusal)},
    )
    context.sslobject_class = watched

    if context.verify_mode == ssl.CERT_NONE:
        return

    # The base class's descriptor takes the callback as it is; ssl.SSLContext's
    # own property would wrap it in enum conversions on every record.
    descriptor = getattr(_ssl._SSLContext, "_msg_callback", None)

    if descriptor is not None:
        descriptor.__set__(context, _copy_client_certificate)


def _copy_client_certificate(
    connection: Any,
    direction: str,
    version: int,
    content_type: int,
    message_type: int,
    data: bytes,
) -> None:
    # Called by OpenSSL for every record: it must be cheap and must not raise,
    # because an exception here would be raised by the next TLS call.
    if (
        content_type != _HANDSHAKE_RECORD
        or message_type != _CERTIFICATE_MESSAGE
        or direction != "read"
        or not isinstance(connection, _WatchedSSLObject)
    ):
        return

    connection._client_certificate = first_certificate(data, tls13=version == _TLS13)


def first_certificate(message: bytes, *, tls13: bool) -> bytes | None:
    """Return the DER leaf certificate of a Certificate handshake message, or None."""
    # The message: type (1 byte), length (3), then in TLS 1.3 a request
    # context (1-byte length and bytes), then the list (3-byte length), whose
    # first entry starts with its own 3-byte length.
    offset = 4

    if tls13:
        if len(message) <= offset:
            return None

        offset += 1 + message[offset]

    list_length = int.from_bytes(message[offset : offset + 3], "big")
    offset += 3

    if list_length == 0 or len(message) < offset + 3:
        return None

    length = int.from_bytes(message[offset : offset + 3], "big")
    offset += 3
    certificate = message[offset : offset + length]
    return certificate if len(certificate) == length and length else None
