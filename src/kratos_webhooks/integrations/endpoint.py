"""What every framework integration shares: authenticate raw bytes, decode, answer.

The framework modules only read the untouched body and the headers, hand them
to `WebhookEndpoint.event`, and turn its errors and answers into responses.
This module imports no web framework.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..credentials import ApiKeyCheck, BasicAuthCheck, JsonnetMacCheck, header_values
from ..errors import (
    ConfigError,
    MalformedHeader,
    PayloadTooLarge,
    RateLimited,
    UnsupportedEncoding,
    WebhookError,
)
from ..hooks import Handler, HandlerFunction, HookEvent, as_handler, decode_payload
from ..kratos.models import HookPoint, context_type
from ..kratos.redaction import Redactor
from ..secrets import KeySet, Secret
from ..signing import DEFAULT_TOLERANCE, Verifier

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "SCHEMES",
    "Authenticated",
    "BodyUnavailable",
    "HeaderPairs",
    "RouteCheck",
    "Scheme",
    "WebhookEndpoint",
    "authenticate",
    "error_body",
    "header_pairs",
    "route_check",
]

Scheme = Literal[
    "standard-webhooks", "kratos-api-key", "kratos-basic", "kratos-jsonnet-mac"
]
SCHEMES: Final[tuple[Scheme, ...]] = (
    "standard-webhooks",
    "kratos-api-key",
    "kratos-basic",
    "kratos-jsonnet-mac",
)
RouteCheck = Verifier | ApiKeyCheck | BasicAuthCheck | JsonnetMacCheck
HeaderPairs = list[tuple[bytes, bytes]]

# The receiver's default; Kratos' Jsonnet output is at most 512 KiB.
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024

TRIGGER_ID_HEADER: Final = "ory-webhook-trigger-id"
# Printable ASCII, as a `webhook-id`; Kratos sends a UUID.
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,256}")

logger = logging.getLogger("kratos_webhooks.integrations")


class BodyUnavailable(RuntimeError):
    """The framework consumed the body before the integration could read it.

    This is a wiring problem of the application, not a bad request: install the
    integration's raw-body middleware or extension so it reads the body first.
    """


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The result of a check: the bytes to decode and the delivery id."""

    payload: bytes
    delivery_id: str | None
    # The JSON MAC envelope always carries JSON, whatever the Content-Type claims.
    is_json_envelope: bool = False


def route_check(
    scheme: Scheme,
    secrets: Sequence[Secret | str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    api_key_name: str | None = None,
    api_key_in: Literal["header", "cookie"] = "header",
) -> RouteCheck:
    """Build the check of a route's `verify` block.

    `secrets` are `Secret` objects or references (`env:NAME`, `file:/path`); the
    first is the newest. `api_key_name` is the header or cookie that carries the
    key for `kratos-api-key`.

    Raises:
        ConfigError: the scheme is unknown, a secret cannot be loaded, or the
            api key has no name.
    """
    loaded = [s if isinstance(s, Secret) else Secret.load(s) for s in secrets]

    if scheme == "standard-webhooks":
        if not loaded:
            raise ConfigError("standard-webhooks needs at least one secret")

        return Verifier(KeySet.from_secrets(loaded), tolerance=tolerance)

    if scheme == "kratos-api-key":
        if not api_key_name:
            raise ConfigError("kratos-api-key needs api_key_name, the header or cookie")

        return ApiKeyCheck(api_key_name, loaded, location=api_key_in)

    if scheme == "kratos-basic":
        return BasicAuthCheck(loaded)

    if scheme == "kratos-jsonnet-mac":
        return JsonnetMacCheck(loaded)

    raise ConfigError(
        f"unknown scheme {scheme!r}: expected one of {', '.join(SCHEMES)}"
    )


def header_pairs(items: Iterable[tuple[str, str]]) -> HeaderPairs:
    """Turn `(name, value)` str pairs, as WSGI frameworks give them, into byte pairs."""
    return [
        (name.encode("latin-1"), value.encode("latin-1", "replace"))
        for name, value in items
    ]


def authenticate(check: RouteCheck, body: bytes, headers: HeaderPairs) -> Authenticated:
    """Run a route's check on the raw body and headers.

    Raises:
        TypeError: `body` is not bytes.
        VerificationError: the request is not authentic (401).
        InvalidJson: a Jsonnet MAC envelope is not JSON.
    """
    if isinstance(check, Verifier):
        delivery = check.verify(body, headers)
        return Authenticated(body, delivery.msg_id)

    if not isinstance(body, bytes):
        raise TypeError("authenticate the raw body bytes, not a decoded str")

    if isinstance(check, JsonnetMacCheck):
        payload = check.verify_body(body)
        return Authenticated(payload.encode("utf-8"), _trigger_id(headers), True)

    check.verify(headers)
    return Authenticated(body, _trigger_id(headers))


def _trigger_id(headers: HeaderPairs) -> str | None:
    values = header_values(headers, TRIGGER_ID_HEADER)

    if not values:
        return None

    if len(values) > 1:
        raise MalformedHeader(TRIGGER_ID_HEADER, "sent more than once")

    if not _DELIVERY_ID.fullmatch(values[0]):
        raise MalformedHeader(
            TRIGGER_ID_HEADER, "not printable ASCII of 1 to 256 characters"
        )

    return values[0]


def error_body(error: WebhookError) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Return the status, JSON body and headers that answer a rejection."""
    document = {"error": {"code": error.code, "message": error.message}}
    headers = [("Content-Type", "application/json")]

    if isinstance(error, RateLimited):
        headers.append(("Retry-After", str(error.retry_after)))

    return error.status, json.dumps(document).encode(), headers


class WebhookEndpoint:
    """A route's check, limits and decoding, with the handler it calls, if any.

    `handler` may be a function registered with `HookRegistry.on`, whose hook
    point and payload type then apply, or a plain function together with `hook`
    and `payload_type` (see `decode_payload`). `redact` lists extra JSON pointers
    that the reprs of events hide.
    """

    def __init__(
        self,
        check: RouteCheck,
        handler: Handler | HandlerFunction | None = None,
        *,
        hook: HookPoint | None = None,
        payload_type: Any = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        redact: Iterable[str] = (),
    ) -> None:
        if not isinstance(
            check, Verifier | ApiKeyCheck | BasicAuthCheck | JsonnetMacCheck
        ):
            raise ConfigError(
                "check must be a Verifier, ApiKeyCheck, BasicAuthCheck or "
                "JsonnetMacCheck; route_check() builds one from a scheme"
            )

        if not isinstance(max_body_bytes, int) or max_body_bytes <= 0:
            raise ConfigError("max_body_bytes must be a positive number of bytes")

        self.check = check
        self.max_body_bytes = max_body_bytes
        self.handler = None if handler is None else as_handler(handler, hook)

        if self.handler is not None:
            hook = self.handler.hook
            payload_type = payload_type or self.handler.payload_type

        if hook is not None:
            context_type(hook)

        self.hook = hook
        self.payload_type = payload_type
        redactor = Redactor(redact)
        self.redactor = (
            self.handler.redactor if self.handler and not redact else redactor
        )

    def __repr__(self) -> str:
        return (
            f"WebhookEndpoint({type(self.check).__name__}, hook={self.hook!r}, "
            f"handler={self.handler!r})"
        )

    def check_framing(self, headers: HeaderPairs) -> None:
        """Check Content-Length and Content-Encoding before the body is read.

        Raises:
            PayloadTooLarge: the declared length is over the limit (413).
            UnsupportedEncoding: the body is compressed; Kratos never compresses (415).
            MalformedHeader: Content-Length is not a number.
        """
        for value in header_values(headers, "content-encoding"):
            if value.strip().lower() not in ("", "identity"):
                raise UnsupportedEncoding()

        for value in header_values(headers, "content-length"):
            if not value.strip().isdigit():
                raise MalformedHeader("Content-Length", "not a number")

            if int(value) > self.max_body_bytes:
                raise PayloadTooLarge()

    def event(
        self,
        body: bytes,
        headers: HeaderPairs,
        *,
        client_certificate: Mapping[str, Any] | None = None,
    ) -> HookEvent[Any]:
        """Authenticate a raw body and decode it into the event for the handler.

        Raises:
            WebhookError: a rejection, with the reason code and status to answer.
            BodyUnavailable: the body is shorter than its Content-Length, because
                the application read the stream before.
        """
        self.check_framing(headers)

        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge()

        declared = header_values(headers, "content-length")

        # Servers enforce Content-Length, so fewer bytes here mean that something
        # in the application consumed the stream; a 401 would hide that.
        if declared and int(declared[0]) != len(body):
            raise BodyUnavailable(
                f"received {len(body)} of {declared[0]} body bytes: the stream was "
                "read before verification; put the raw-body middleware first"
            )

        verified = authenticate(self.check, body, headers)
        content_type = None

        if not verified.is_json_envelope:
            types = header_values(headers, "content-type")
            content_type = types[0] if types else None

        payload = decode_payload(
            verified.payload,
            hook=self.hook,
            payload_type=self.payload_type,
            content_type=content_type,
        )
        return HookEvent(
            hook=self.hook,
            payload=payload,
            delivery_id=verified.delivery_id,
            client_certificate=client_certificate,
            body=verified.payload,
            redactor=self.redactor,
        )

    def log_rejection(self, error: WebhookError) -> None:
        """Log a rejection at WARNING with its reason code, never body or headers."""
        logger.warning(
            "kratos web hook rejected: %s (%s), hook=%s",
            error.code,
            type(error).__name__,
            self.hook,
        )
