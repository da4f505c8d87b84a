"""Signed, verified, replay-proof Ory Kratos web hooks.

The package root contains the framework-agnostic core, which imports only the
standard library. The receiver, relay, integrations and command line are
imported by their own module paths.
"""

from __future__ import annotations

from .credentials import ApiKeyCheck, BasicAuthCheck, JsonnetMacCheck, jsonnet_mac
from .errors import (
    ClientCertificateRejected,
    ConfigError,
    CredentialError,
    CredentialMismatch,
    ForbiddenSource,
    InvalidJson,
    InvalidPayload,
    InvalidTimestamp,
    InvalidUpstreamAnswer,
    InvalidWebhookId,
    MalformedCredential,
    MalformedHeader,
    MalformedSignatureHeader,
    MalformedTimestamp,
    MethodNotAllowed,
    MissingCredential,
    MissingHeader,
    NoSupportedSignature,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SignatureMismatch,
    TimestampInFuture,
    TimestampTooOld,
    UnsupportedEncoding,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    VerificationError,
    WebhookError,
)
from .secrets import HmacKey, KeySet, Secret
from .signing import DEFAULT_TOLERANCE, Delivery, Signer, Verifier, new_message_id

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TOLERANCE",
    "ApiKeyCheck",
    "BasicAuthCheck",
    "ClientCertificateRejected",
    "ConfigError",
    "CredentialError",
    "CredentialMismatch",
    "Delivery",
    "ForbiddenSource",
    "HmacKey",
    "InvalidJson",
    "InvalidPayload",
    "InvalidTimestamp",
    "InvalidUpstreamAnswer",
    "InvalidWebhookId",
    "JsonnetMacCheck",
    "KeySet",
    "MalformedCredential",
    "MalformedHeader",
    "MalformedSignatureHeader",
    "MalformedTimestamp",
    "MethodNotAllowed",
    "MissingCredential",
    "MissingHeader",
    "NoSupportedSignature",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Secret",
    "SignatureMismatch",
    "Signer",
    "TimestampInFuture",
    "TimestampTooOld",
    "UnsupportedEncoding",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "VerificationError",
    "Verifier",
    "WebhookError",
    "__version__",
    "jsonnet_mac",
    "new_message_id",
]
