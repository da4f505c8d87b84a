"""The relay's ASGI application: Kratos' calls in, signed calls to the receiver out.

Each request goes through: route and method (404, 405), declared size and
content type (413, 415), Kratos' credential (401), the body read within the
limit, the `webhook-id`, then the route's mode. A sync route returns the
receiver's status and body unchanged (502 when it cannot be reached, 504 when
it is too slow). An async route responds 202 only once the event is committed
to the outbox. Every failure is a `{"error": {"code", "message"}}` answer, and
an unexpected exception is answered 503, never 500.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog

from ..credentials import ApiKeyCheck, BasicAuthCheck
from ..errors import IdempotencyConflict, VerificationError, WebhookError
from ..receiver.answers import Answer, accepted_answer, error_answer
from ..receiver.delivery import DeliveryWorker
from ..receiver.limits import BodyLimits, ClientDisconnected, RequestHeaders, read_body
from ..receiver.routing import RouteTable, request_path
from ..receiver.state import StateStore, StorageError, StoredAnswer
from .forwarder import Forwarder, ForwardFailed, passed_headers, webhook_id_for

__all__ = ["RELAY_LOGGER", "RelayApp", "RelayRoute"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Header = tuple[bytes, bytes]

RELAY_LOGGER: Final = "kratos_webhooks.relay"
_UNROUTED: Final = "-"

log = structlog.stdlib.get_logger(RELAY_LOGGER)


@dataclass(frozen=True, slots=True)
class RelayRoute:
    """A configured relay route with its checks and forwarder built."""

    path: str
    methods: tuple[str, ...]
    sync: bool
    credential: ApiKeyCheck | BasicAuthCheck
    limits: BodyLimits
    forwarder: Forwarder


@dataclass(slots=True)
class _Outcome:
    route: str = _UNROUTED
    webhook_id: str | None = None
    detail: str | None = None


def _storage_error_answer() -> Answer:
    body = (
        b'{"error":{"code":"storage_unavailable",'
        b'"message":"The relay cannot store the event; retry later."}}'
    )
    return Answer(503, body, reason="storage_unavailable")


def _internal_error_answer() -> Answer:
    body = b'{"error":{"code":"internal_error","message":"The relay failed."}}'
    return Answer(503, body, reason="internal_error")


class RelayApp:
    """The ASGI application Kratos calls."""

    def __init__(
        self,
        routes: Sequence[RelayRoute],
        *,
        store: StateStore | None,
        worker: DeliveryWorker | None,
    ) -> None:
        self._routes = RouteTable(routes)
        self._store = store
        self._worker = worker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return

        started = time.perf_counter()
        outcome = _Outcome()

        try:
            answer = await self._handle(scope, receive, outcome)
        except ForwardFailed as error:
            outcome.detail = error.detail
            answer = error_answer(error)
        except WebhookError as error:
            answer = error_answer(error)
        except StorageError as exc:
            outcome.detail = type(exc).__name__
            answer = _storage_error_answer()
        except ClientDisconnected:
            self._record(scope, outcome, 499, "client_disconnected", started)
            return
        except Exception as exc:  # noqa: BLE001 - the last guard: never a 500
            outcome.detail = type(exc).__name__
            answer = _internal_error_answer()

        await _send(send, answer)
        self._record(scope, outcome, answer.status, answer.reason, started)

    def _record(
        self, scope: Scope, outcome: _Outcome, status: int, reason: str, started: float
    ) -> None:
        fields = {
            "method": scope.get("method"),
            "route": outcome.route,
            "status": status,
            "reason": reason,
            "webhook_id": outcome.webhook_id,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }

        if outcome.detail is not None:
            fields["detail"] = outcome.detail

        if status >= 500 or reason in _WARNED_REASONS:
            log.warning("request", **fields)
        else:
            log.info("request", **fields)

    async def _handle(
        self, scope: Scope, receive: Receive, outcome: _Outcome
    ) -> Answer:
        route = self._routes.match(request_path(scope), scope["method"])
        outcome.route = route.path
        headers: list[Header] = scope["headers"]

        declared = RequestHeaders.read(headers)
        route.limits.check_headers(declared)
        route.credential.verify(headers)

        body = await read_body(
            receive, route.limits.max_body_bytes, declared.content_length
        )
        webhook_id = webhook_id_for(route.path, headers, body)
        outcome.webhook_id = webhook_id
        content_type = (declared.content_type or b"application/json").decode("latin-1")

        if route.sync:
            return await self._forward(
                scope["method"], route, body, webhook_id, content_type, headers
            )

        return await self._store_event(route, body, webhook_id, content_type)

    async def _forward(
        self,
        method: str,
        route: RelayRoute,
        body: bytes,
        webhook_id: str,
        content_type: str,
        headers: list[Header],
    ) -> Answer:
        response = await route.forwarder.forward(
            method,
            body,
            webhook_id=webhook_id,
            content_type=content_type,
            passed=passed_headers(headers),
        )
        extra: tuple[Header, ...] = ()
        # The receiver returns 409 only for a webhook-id it stored with
        # another body, so a trigger id was reused: a warning for the operator.
        reason = "forwarded"

        if response.status == IdempotencyConflict.status:
            reason = IdempotencyConflict.code

        if response.retry_after is not None:
            extra = ((b"retry-after", response.retry_after.encode("ascii")),)

        return Answer(
            response.status,
            response.body,
            response.content_type,
            reason=reason,
            headers=extra,
        )

    async def _store_event(
        self, route: RelayRoute, body: bytes, webhook_id: str, content_type: str
    ) -> Answer:
        store, worker = self._store, self._worker

        if store is None or worker is None:
            raise RuntimeError("an async route needs the outbox; build_relay opens it")

        accepted = accepted_answer(webhook_id)
        stored, created = await store.accept_event(
            route=route.path,
            key=webhook_id,
            body=body,
            content_type=content_type,
            answer=StoredAnswer(accepted.status, accepted.body, accepted.content_type),
        )

        if not created:
            return Answer(stored.status, stored.body, stored.content_type, "duplicate")

        worker.wake()
        return Answer(stored.status, stored.body, stored.content_type, "accepted")


# Rejections an operator must see: a wrong credential is either a
# misconfiguration or someone other than Kratos calling.
_WARNED_REASONS: Final = frozenset(
    {
        VerificationError.code,
        "credential_mismatch",
        "missing_header",
        "malformed_header",
        "invalid_upstream_answer",
        IdempotencyConflict.code,
    }
)


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
