"""The error tree: every rejection is a `WebhookError`, every misuse a `ConfigError`.

Each rejection class carries the stable reason code and the HTTP status of the
receiver's response. Several classes may share a reason code: the class names
what failed precisely, the code is what logs, metrics and clients see.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ClientCertificateRejected",
    "ConfigError",
    "CredentialError",
    "CredentialMismatch",
    "ForbiddenSource",
    "IdempotencyConflict",
    "InvalidJson",
    "InvalidPayload",
    "InvalidTimestamp",
    "InvalidUpstreamAnswer",
    "InvalidWebhookId",
    "MalformedCredential",
    "MalformedHeader",
    "MalformedRequest",
    "MalformedSignatureHeader",
    "MalformedTimestamp",
    "MethodNotAllowed",
    "MissingCredential",
    "MissingHeader",
    "NoSupportedSignature",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "SignatureMismatch",
    "TimestampInFuture",
    "TimestampTooOld",
    "UnsupportedEncoding",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "VerificationError",
    "WebhookError",
]


class WebhookError(Exception):
    """Root of every rejection of a request or an answer.

    `code` is the stable reason code and `status` the HTTP status of the
    receiver's response. The message is short and never contains a secret, a signature
    or a body, so it is safe to return to the caller and to log.
    """

    code: ClassVar[str] = "rejected"
    status: ClassVar[int] = 400
    default_message: ClassVar[str] = "The request was rejected."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(Exception):
    """A configuration, secret or argument is invalid: raised at start, never a 4xx.

    `problems` lists each invalid setting as `(key path, message)`, so that one
    error can report every problem of a configuration file at once.
    """

    def __init__(
        self, message: str, *, problems: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = problems or []


# Routing and access control.


class NotFound(WebhookError):
    code = "not_found"
    status = 404
    default_message = "No route matches this path."


class MethodNotAllowed(WebhookError):
    code = "method_not_allowed"
    status = 405
    default_message = "This route does not accept that method."


class ForbiddenSource(WebhookError):
    code = "forbidden_source"
    status = 403
    default_message = "The source address is not allowed on this route."


class ClientCertificateRejected(WebhookError):
    code = "client_certificate_rejected"
    status = 403
    default_message = "The client certificate is not allowed on this route."


class RateLimited(WebhookError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests; retry shortly."

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# Framing, size and encoding.


class MalformedRequest(WebhookError):
    code = "malformed_request"
    status = 400
    default_message = "The request is not valid HTTP/1.1."


class PayloadTooLarge(WebhookError):
    code = "payload_too_large"
    status = 413
    default_message = "The request body is larger than this route accepts."


class UnsupportedEncoding(WebhookError):
    code = "unsupported_encoding"
    status = 415
    default_message = "This content encoding is not accepted on this route."


class UnsupportedMediaType(WebhookError):
    code = "unsupported_media_type"
    status = 415
    default_message = "This content type is not accepted on this route."


# Authenticity. Every failure to authenticate, expiry included, is a
# VerificationError, so catching that one class always rejects.


class VerificationError(WebhookError):
    code = "signature_mismatch"
    status = 401
    default_message = "The request could not be authenticated."


class MissingHeader(VerificationError):
    code = "missing_header"
    default_message = "A required header is missing."

    def __init__(self, header: str) -> None:
        super().__init__(f"The {header} header is missing.")
        self.header = header


class MalformedHeader(VerificationError):
    code = "malformed_header"
    default_message = "A header is malformed."

    def __init__(self, header: str, reason: str) -> None:
        super().__init__(f"The {header} header is malformed: {reason}.")
        self.header = header
        self.reason = reason


class MalformedSignatureHeader(MalformedHeader):
    """The signature header contains no entry that could be a signature."""


class MalformedTimestamp(MalformedHeader):
    """The timestamp is not a plain decimal number of seconds."""


class InvalidWebhookId(MalformedHeader):
    """The message id is empty, too long, or contains forbidden characters."""


class InvalidTimestamp(VerificationError):
    """The timestamp is well formed but outside the tolerance."""

    def __init__(self, timestamp: int, now: int, tolerance: int) -> None:
        super().__init__()
        self.timestamp = timestamp
        self.now = now
        self.tolerance = tolerance


class TimestampTooOld(InvalidTimestamp):
    code = "timestamp_too_old"
    default_message = "The timestamp is older than the tolerance allows."


class TimestampInFuture(InvalidTimestamp):
    code = "timestamp_in_future"
    default_message = "The timestamp is further ahead than the tolerance allows."


class SignatureMismatch(VerificationError):
    code = "signature_mismatch"
    default_message = "No signature matches any active key."


class NoSupportedSignature(SignatureMismatch):
    """Every entry of the signature header uses a version this verifier lacks."""

    default_message = "The signature header has no signature of a supported version."


class CredentialError(VerificationError):
    """Kratos' own credential (API key, Basic, body MAC) failed."""

    code = "credential_mismatch"
    default_message = "The credential does not match any active value."


class CredentialMismatch(CredentialError):
    pass


class MissingCredential(CredentialError):
    code = "missing_header"
    default_message = "The credential is missing."


class MalformedCredential(CredentialError):
    code = "malformed_header"
    default_message = "The credential is malformed."


# Body content.


class InvalidJson(WebhookError):
    code = "invalid_json"
    status = 400
    default_message = "The body is not valid UTF-8 JSON."


class InvalidPayload(WebhookError):
    code = "invalid_payload"
    status = 422
    default_message = "The body does not match the expected Kratos payload."


# Idempotency.


class IdempotencyConflict(WebhookError):
    """A key already names an event with another body.

    Kratos repeats a call byte for byte, so another body under a used key is a
    fault or a forgery, and it must not be acknowledged as delivered.
    """

    code = "idempotency_conflict"
    status = 409
    default_message = "This idempotency key was already used with another body."


# The application behind the receiver.


class UpstreamError(WebhookError):
    code = "upstream_unavailable"
    status = 502
    default_message = "The application could not be reached."


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"
    status = 504
    default_message = "The application did not respond in time."


class InvalidUpstreamAnswer(UpstreamError):
    code = "invalid_upstream_answer"
    status = 502
    default_message = "The application's response is not one that Kratos accepts."
