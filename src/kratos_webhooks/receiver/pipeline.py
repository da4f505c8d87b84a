"""The receiver's ASGI application: every stage in order, one access line each.

Cheap checks that need no body come first; nothing is parsed before it is
authenticated. Every failure becomes a `{"error": {"code", "message"}}` answer;
an unexpected exception is logged by type only and answered 503, never 500.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog

from ..errors import IdempotencyConflict, WebhookError
from ..kratos.redaction import Redactor
from ..observability.logging import SERVER_LOGGER, log_request
from ..observability.metrics import HttpMetrics
from .access import AllowList, SourceResolver, address_text
from .answers import Answer, error_answer, internal_error_answer
from .authenticity import Authenticator
from .client_auth import check_client_certificate, client_certificate
from .deduplication import KeyLocks, delivery_id, idempotency_key
from .dispatch import HookRequest, Target
from .limits import BodyLimits, ClientDisconnected, RequestHeaders, read_body
from .payload import Payload, PayloadParser
from .ratelimit import RateLimits
from .routing import RouteTable, request_path
from .state import StateStore, StoredAnswer, body_digest

if TYPE_CHECKING:
    from ..tls.identity import ClientCertificateRules

__all__ = ["ReceiverApp", "Route"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_UNROUTED: Final = "-"

server_log = structlog.stdlib.get_logger(SERVER_LOGGER)


@dataclass(frozen=True, slots=True)
class Route:
    """A configured route with its stages built.

    `redactor` is set on a route with `forward_redacted`; it redacts what the
    route forwards.
    """

    path: str
    methods: tuple[str, ...]
    allow_list: AllowList
    limits: BodyLimits
    authenticator: Authenticator
    parser: PayloadParser
    target: Target
    redactor: Redactor | None = None
    client_certificates: ClientCertificateRules | None = None


@dataclass(slots=True)
class _Outcome:
    """The fields that the access line and the metrics report for one request."""

    route: str = _UNROUTED
    source: str | None = None
    webhook_id: str | None = None


class ReceiverApp:
    """The ASGI application of the HTTPS listener."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        store: StateStore,
        sources: SourceResolver,
        rate_limits: RateLimits,
        metrics: HttpMetrics,
    ) -> None:
        self._routes = RouteTable(routes)
        self._store = store
        self._sources = sources
        self._rate_limits = rate_limits
        self._metrics = metrics
        self._locks = KeyLocks()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return

        started = time.perf_counter()
        outcome = _Outcome()

        try:
            answer = await self._handle(scope, receive, outcome)
        except IdempotencyConflict as error:
            # The key only: the body may hold personal data.
            server_log.warning(
                "idempotency_conflict", route=outcome.route, key=outcome.webhook_id
            )
            answer = error_answer(error)
        except WebhookError as error:
            answer = error_answer(error)
        except ClientDisconnected:
            self._record(scope, outcome, 499, "client_disconnected", started)
            return
        except Exception as exc:  # noqa: BLE001 - the last guard: never a 500
            server_log.error(
                "internal_error", route=outcome.route, error=type(exc).__name__
            )
            answer = internal_error_answer()

        await _send(send, answer)
        self._record(scope, outcome, answer.status, answer.reason, started)

    def _record(
        self, scope: Scope, outcome: _Outcome, status: int, reason: str, started: float
    ) -> None:
        seconds = time.perf_counter() - started
        self._metrics.observe(outcome.route, status, reason, seconds)
        log_request(
            method=scope.get("method"),
            route=outcome.route,
            source=outcome.source,
            status=status,
            reason=reason,
            webhook_id=outcome.webhook_id,
            latency_ms=round(seconds * 1000, 3),
        )

    async def _handle(
        self, scope: Scope, receive: Receive, outcome: _Outcome
    ) -> Answer:
        route = self._routes.match(request_path(scope), scope["method"])
        outcome.route = route.path
        certificate = client_certificate(scope)
        check_client_certificate(route.client_certificates, certificate, route.path)
        headers: list[tuple[bytes, bytes]] = scope["headers"]

        client = scope.get("client")
        source = self._sources.resolve(client[0] if client else None, headers)
        outcome.source = address_text(source) if source is not None else None
        route.allow_list.check(source)

        self._rate_limits.check(route.path, outcome.source or "unknown")

        declared = RequestHeaders.read(headers)
        route.limits.check_headers(declared)
        raw = await read_body(
            receive, route.limits.max_body_bytes, declared.content_length
        )
        body = route.limits.decode(raw, declared)

        authenticated = route.authenticator.authenticate(body, headers)
        payload = route.parser.parse(authenticated.payload)

        delivery = delivery_id(authenticated.webhook_id, headers)
        key_id = delivery if authenticated.headers_trusted else authenticated.webhook_id
        key = idempotency_key(route.path, key_id, body)
        outcome.webhook_id = key
        request = HookRequest(
            route.path,
            key,
            _forwarded_body(route, body, payload),
            payload,
            delivery,
            _tls_extension(scope),
            body_digest(body),
        )
        content_type = (declared.content_type or b"application/json").decode("latin-1")

        if not route.target.sync:
            return await route.target.dispatch(request, content_type)

        async with self._locks.hold(f"{route.path}\n{key}"):
            return await self._dispatch_once(route, request, content_type)

    async def _dispatch_once(
        self, route: Route, request: HookRequest, content_type: str
    ) -> Answer:
        digest = request.body_digest or body_digest(request.body)
        stored = await self._store.find_answer(
            route=route.path, key=request.webhook_id, body_digest=digest
        )

        if stored is not None:
            return Answer(stored.status, stored.body, stored.content_type, "duplicate")

        answer = await route.target.dispatch(request, content_type)
        first = await self._store.remember_answer(
            route=route.path,
            key=request.webhook_id,
            answer=StoredAnswer(answer.status, answer.body, answer.content_type),
            body_digest=digest,
        )

        if first.body != answer.body or first.status != answer.status:
            # Another process answered the same key first; its answer stands.
            return Answer(first.status, first.body, first.content_type, "duplicate")

        return answer


def _forwarded_body(route: Route, body: bytes, payload: Payload) -> bytes:
    redactor = route.redactor

    if redactor is None:
        return body

    # A Jsonnet MAC envelope carries the payload as a string inside the body.
    if payload.data is not body or payload.document is None:
        return redactor.redact_body(body, form=payload.form)

    return redactor.redact_document(payload.document, form=payload.form)


def _tls_extension(scope: Scope) -> Mapping[str, Any] | None:
    """Return the ASGI TLS extension when the client presented a certificate.

    The server adds `scope["extensions"]["tls"]` as the ASGI TLS extension
    describes it, with the PEM chain in `client_cert_chain`.
    """
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if isinstance(extensions, dict) else None

    if isinstance(tls, Mapping) and tls.get("client_cert_chain"):
        return tls

    return None


async def _send(send: Send, answer: Answer) -> None:
    headers = [
        (b"content-type", answer.content_type.encode("latin-1")),
        (b"content-length", str(len(answer.body)).encode()),
        (b"cache-control", b"no-store"),
        *answer.headers,
    ]

    if answer.status == 204:
        headers = [
            h for h in headers if h[0] not in (b"content-type", b"content-length")
        ]

    await send(
        {"type": "http.response.start", "status": answer.status, "headers": headers}
    )
    await send({"type": "http.response.body", "body": answer.body})
