"""Sign a Kratos call and forward it to the receiver, the body byte for byte.

Each attempt gets a fresh `webhook-timestamp` and signature. The `webhook-id`
is `msg_` plus Kratos' `Ory-Webhook-Trigger-Id`, which stays the same across
Kratos' own retries of one hook call, so the receiver processes them once.
Without that header (Kratos' `emit_analytics_event: false`), the id is a hash
of the route and body, which is also the same on each retry. The trigger id
must be a UUID, as Kratos sends, and a hash id is 40 hex digits without
hyphens, so no trigger id can take the id of an event sent without one.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..errors import (
    ConfigError,
    InvalidUpstreamAnswer,
    MalformedHeader,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..receiver.upstream_client import (
    AnswerTooLarge,
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
)
from ..signing import Signer
from .target import (
    GuardedResolver,
    Resolver,
    TargetPolicy,
    TargetRejected,
    system_resolver,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "MAX_ANSWER_BYTES",
    "MAX_RETRY_AFTER",
    "TRIGGER_HEADER",
    "ForwardFailed",
    "ForwardedResponse",
    "Forwarder",
    "RelayClient",
    "client_context",
    "passed_headers",
    "relay_client",
    "webhook_id_for",
]

Header = tuple[bytes, bytes]

TRIGGER_HEADER: Final = "ory-webhook-trigger-id"
USER_AGENT: Final = "kratos-webhooks-relay"
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_READ_TIMEOUT: Final = 25.0
# Kratos reads at most 5 MiB of a web hook's response and cuts the rest, which
# breaks the JSON, so the relay rejects a longer response instead.
MAX_ANSWER_BYTES: Final = 5 * 1024 * 1024
# Kratos (go-retryablehttp 0.7.8) waits for the delay a 429 or 503 `Retry-After`
# sets, with no cap, while the user's request hangs. Longer delays are cut to this.
MAX_RETRY_AFTER: Final = 5

# Headers of Kratos' request that travel on: Kratos' ids and the W3C trace
# context. Kratos' credential (api key header, cookie, Authorization) never does.
_PASSED_HEADERS: Final = frozenset(
    {
        b"ory-webhook-trigger-id",
        b"ory-webhook-request-id",
        b"traceparent",
        b"tracestate",
        b"baggage",
    }
)
# Kratos sends a UUIDv4; any case is accepted and written in lower case.
_TRIGGER_ID: Final = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# The hex digits of a body-hash id: never a UUID, which has hyphens.
_HASH_ID_DIGITS: Final = 40
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
_TIMEOUTS: Final = frozenset({"ConnectTimeout", "ReadTimeout"})


def webhook_id_for(route: str, headers: Iterable[Header], body: bytes) -> str:
    """Return the `webhook-id` for a Kratos call: stable across Kratos' retries.

    Raises:
        MalformedHeader: `Ory-Webhook-Trigger-Id` is sent twice, or is not a
            UUID in the 8-4-4-4-12 hex form.
    """
    triggers = [
        value for name, value in headers if name.lower() == b"ory-webhook-trigger-id"
    ]

    if len(triggers) > 1:
        raise MalformedHeader(TRIGGER_HEADER, "sent more than once")

    if triggers:
        if not _TRIGGER_ID.fullmatch(triggers[0]):
            raise MalformedHeader(TRIGGER_HEADER, "expected a UUID")

        return "msg_" + triggers[0].decode("ascii").lower()

    digest = hashlib.sha256(route.encode("utf-8") + b"\n" + body).hexdigest()
    return "msg_" + digest[:_HASH_ID_DIGITS]


def passed_headers(headers: Iterable[Header]) -> list[Header]:
    """Return the headers of Kratos' request that are forwarded unchanged."""
    return [(name, value) for name, value in headers if name.lower() in _PASSED_HEADERS]


def client_context(
    *,
    ca_file: str | None = None,
    client_cert_file: str | None = None,
    client_key_file: str | None = None,
) -> ssl.SSLContext:
    """Build the outbound TLS context: verified, TLS 1.2 or later, optional mTLS.

    The receiver's certificate is verified against the system roots, or only
    against `ca_file` when one is given.

    Raises:
        ConfigError: the CA bundle, certificate or key cannot be loaded.
    """
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the CA bundle {ca_file}",
            problems=[("outbound.ca_file", str(exc))],
        ) from exc

    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])

    if client_cert_file is not None:
        try:
            context.load_cert_chain(client_cert_file, client_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the client certificate {client_cert_file} "
                f"or key {client_key_file}",
                problems=[("outbound.client_cert_file", str(exc))],
            ) from exc

    return context


class RelayClient:
    """The relay's HTTP clients: guarded targets, no redirects, no proxies.

    One kept-alive client per target URL, all of them together allowed
    `max_connections` requests, and so connections, at once. Connections are
    made only to addresses the target guard checked, verified with `context`.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        policy: TargetPolicy,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_connections: int = 100,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.context = context
        self.guard = GuardedResolver(policy, resolver=resolver)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._clients: dict[str, UpstreamClient] = {}

    def upstream(self, url: str) -> UpstreamClient:
        """Return the client for `url`, made on first use.

        Raises:
            ConfigError: the URL is not http:// or https:// with a host.
        """
        client = self._clients.get(url)

        if client is None:
            client = UpstreamClient(
                url,
                ssl_context=self.context,
                max_idle=self._max_connections,
                slots=self._slots,
                resolver=self.guard,
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                user_agent=USER_AGENT,
            )
            self._clients[url] = client

        return client

    async def aclose(self) -> None:
        """Close every idle connection."""
        for client in self._clients.values():
            await client.aclose()

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def relay_client(
    context: ssl.SSLContext,
    policy: TargetPolicy,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_connections: int = 100,
    resolver: Resolver = system_resolver,
) -> RelayClient:
    """Make the relay's HTTP client: guarded targets, no redirects, no proxies."""
    return RelayClient(
        context,
        policy,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_connections=max_connections,
        resolver=resolver,
    )


@dataclass(frozen=True, slots=True)
class ForwardedResponse:
    """The receiver's response as the relay passes it back to Kratos."""

    status: int
    body: bytes
    content_type: str
    retry_after: str | None = None


class ForwardFailed(UpstreamUnavailable):
    """The receiver could not be reached; `detail` names why, for the log only."""

    def __init__(self, detail: str) -> None:
        super().__init__("The receiver could not be reached.")
        self.detail = detail


class Forwarder:
    """Sign and forward calls to one receiver URL, within a time budget."""

    def __init__(
        self,
        url: str,
        signer: Signer,
        client: RelayClient,
        *,
        budget: float,
    ) -> None:
        self.url = url
        self._signer = signer
        self._upstream = client.upstream(url)
        self._budget = budget

    def headers(
        self,
        body: bytes,
        *,
        webhook_id: str,
        content_type: str,
        passed: Iterable[Header] = (),
    ) -> list[tuple[str, str]]:
        """Return the outgoing headers: Kratos' passed ones, then a fresh signature.

        The client adds `host`, `user-agent` and `content-length`.
        """
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in passed
        ]
        # The response body goes back to Kratos as received, so it must not
        # arrive compressed.
        headers.append(("content-type", content_type))
        headers.append(("accept-encoding", "identity"))
        headers += self._signer.sign(body, msg_id=webhook_id).items()
        return headers

    async def forward(
        self,
        method: str,
        body: bytes,
        *,
        webhook_id: str,
        content_type: str,
        passed: Iterable[Header] = (),
    ) -> ForwardedResponse:
        """Send one signed attempt and return the receiver's response.

        Raises:
            UpstreamTimeout: no complete response within the budget, or no
                connection within the connect timeout.
            ForwardFailed: the receiver could not be reached, or its address
                is rejected by the target guard.
            InvalidUpstreamAnswer: a redirect, or a response above 5 MiB.
        """
        headers = self.headers(
            body, webhook_id=webhook_id, content_type=content_type, passed=passed
        )

        try:
            async with asyncio.timeout(self._budget):
                response = await self._upstream.send(
                    method, body, headers, max_answer_bytes=MAX_ANSWER_BYTES
                )
        except TimeoutError as exc:
            raise UpstreamTimeout("The receiver did not respond in time.") from exc
        except AnswerTooLarge as exc:
            message = "The receiver's response is above 5 MiB."
            raise InvalidUpstreamAnswer(message) from exc
        except UpstreamError as exc:
            if exc.kind in _TIMEOUTS:
                raise UpstreamTimeout("The receiver did not respond in time.") from exc

            raise ForwardFailed(_describe(exc)) from exc

        if 300 <= response.status < 400:
            # Kratos counts an unfollowed 3xx as success, so passing it on would
            # hide a misrouted receiver.
            raise InvalidUpstreamAnswer("The receiver responded with a redirect.")

        return ForwardedResponse(
            status=response.status,
            body=response.body,
            content_type=response.header(b"content-type") or "application/json",
            retry_after=_capped_retry_after(response),
        )


def _capped_retry_after(response: UpstreamResponse) -> str | None:
    if response.status not in _RETRY_AFTER_STATUSES:
        return None

    value = response.header(b"retry-after")

    if value is None:
        return None

    value = value.strip()

    if value.isascii() and value.isdigit() and int(value) <= MAX_RETRY_AFTER:
        return value

    # A longer delay or an HTTP date: Kratos would wait for it, uncapped.
    return str(MAX_RETRY_AFTER)


def _describe(error: UpstreamError) -> str:
    """Name a transport failure without the URL, which may carry a query string."""
    if isinstance(error, TargetRejected):
        return f"target rejected: {error.category} address"

    return error.kind
