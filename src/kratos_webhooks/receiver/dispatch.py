"""Stage 8: hand the event to the application, now (sync) or durably later (async).

A sync route calls the application within its budget and passes on its answer
only if Kratos would accept it. An async route commits the event to the inbox
and answers 202 only after the commit, then wakes the delivery worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import msgspec
import structlog

from ..errors import (
    InvalidPayload,
    InvalidUpstreamAnswer,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..hooks import Handler, HookEvent
from ..kratos.answers import InvalidAnswer, InvalidAnswerType
from ..signing import Signer
from .answers import JSON, Answer, accepted_answer
from .delivery import DeliveryWorker
from .kratos_answers import MAX_ANSWER_BYTES, check_kratos_answer
from .payload import Payload
from .state import StateStore, StoredAnswer

__all__ = ["HandlerTarget", "HookRequest", "InboxTarget", "Target", "UpstreamTarget"]

USER_AGENT: Final = "kratos-webhooks"

logger = structlog.stdlib.get_logger("kratos_webhooks.server")


@dataclass(frozen=True, slots=True)
class HookRequest:
    """An authenticated, parsed request, as the targets receive it.

    `webhook_id` is the idempotency key. `body` is what is forwarded: the raw
    body, or its redacted form on a route with `forward_redacted`.
    `delivery_id` is the verified `webhook-id` or Kratos' trigger id, None
    when the key is a body hash. `client_certificate` is the ASGI TLS
    extension of a connection that presented a client certificate.
    `body_digest` is that of the body as received, before any redaction,
    which the idempotency record keeps.
    """

    route: str
    webhook_id: str
    body: bytes
    payload: Payload
    delivery_id: str | None = None
    client_certificate: Mapping[str, Any] | None = None
    body_digest: bytes | None = None


class Target:
    """The destination of a route's authenticated events."""

    sync: bool = True

    async def dispatch(self, request: HookRequest, content_type: str) -> Answer:
        raise NotImplementedError


class UpstreamTarget(Target):
    """A sync route that forwards to the application over HTTP."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        timeout: float,
        signer: Signer | None,
    ) -> None:
        self._url = url
        self._client = client
        self._timeout = timeout
        self._signer = signer

    async def dispatch(self, request: HookRequest, content_type: str) -> Answer:
        headers = {
            "content-type": content_type,
            "user-agent": USER_AGENT,
            "webhook-id": request.webhook_id,
        }

        if self._signer is not None:
            headers |= self._signer.sign(request.body, msg_id=request.webhook_id)

        try:
            async with asyncio.timeout(self._timeout):
                status, body = await self._post(request.body, headers)
        except TimeoutError as exc:
            raise UpstreamTimeout() from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.HTTPError as exc:
            logger.warning(
                "upstream_failed", route=request.route, error=type(exc).__name__
            )
            raise UpstreamUnavailable() from exc

        return _checked_answer(request.route, status, body)

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request = self._client.build_request(
            "POST", self._url, content=body, headers=headers
        )
        response = await self._client.send(request, stream=True)

        try:
            parts: list[bytes] = []
            size = 0

            async for chunk in response.aiter_raw():
                size += len(chunk)

                if size > MAX_ANSWER_BYTES:
                    raise InvalidUpstreamAnswer(
                        "The application's response is too large."
                    )

                parts.append(chunk)
        finally:
            await response.aclose()

        return response.status_code, b"".join(parts)


class HandlerTarget(Target):
    """A sync route answered by a Python hook handler in this process."""

    def __init__(self, handler: Handler, *, timeout: float) -> None:
        self._handler = handler
        self._timeout = timeout

    async def dispatch(self, request: HookRequest, content_type: str) -> Answer:
        event = handler_event(self._handler, request)

        try:
            async with asyncio.timeout(self._timeout):
                answer = await self._handler(event)

            status, body = answer.to_http()
        except TimeoutError as exc:
            raise UpstreamTimeout() from exc
        except (InvalidAnswer, InvalidAnswerType) as exc:
            logger.warning(
                "invalid_handler_answer", route=request.route, error=type(exc).__name__
            )
            raise InvalidUpstreamAnswer(
                "The handler's answer is not one that Kratos accepts."
            ) from exc
        except Exception as exc:
            # A failing handler is the application's fault, reported as an
            # unreachable upstream; the exception text may hold payload data.
            logger.error(
                "handler_failed", route=request.route, error=type(exc).__name__
            )
            raise UpstreamUnavailable("The handler failed.") from exc

        return _checked_answer(request.route, status, body)


def handler_event(handler: Handler, request: HookRequest) -> HookEvent[Any]:
    """Build a handler's event from the payload the pipeline already decoded.

    Raises:
        InvalidPayload: the payload does not fit the handler's payload type.
    """
    payload = request.payload
    return HookEvent(
        hook=handler.hook,
        payload=_handler_payload(handler, payload),
        delivery_id=request.delivery_id,
        client_certificate=request.client_certificate,
        body=payload.data,
        redactor=handler.redactor,
    )


def _handler_payload(handler: Handler, payload: Payload) -> Any:
    payload_type = handler.payload_type
    document = payload.document

    # With no payload type of its own, a handler gets what the route parsed:
    # the Kratos model, or the plain document of a json or form route.
    if payload_type is None:
        return payload.context if payload.context is not None else document

    if payload_type in (dict, Any, object):
        return document

    try:
        return msgspec.convert(document, payload_type)
    except msgspec.ValidationError as exc:
        name = getattr(payload_type, "__name__", repr(payload_type))
        raise InvalidPayload(f"The body does not match {name}: {exc}") from exc


class InboxTarget(Target):
    """An async route: store, answer 202, deliver later."""

    sync = False

    def __init__(self, store: StateStore, worker: DeliveryWorker) -> None:
        self._store = store
        self._worker = worker

    async def dispatch(self, request: HookRequest, content_type: str) -> Answer:
        accepted = accepted_answer(request.webhook_id)
        stored, created = await self._store.accept_event(
            route=request.route,
            key=request.webhook_id,
            body=request.body,
            content_type=content_type,
            answer=StoredAnswer(accepted.status, accepted.body, accepted.content_type),
            body_digest=request.body_digest,
        )

        if not created:
            return Answer(stored.status, stored.body, stored.content_type, "duplicate")

        self._worker.wake()
        return Answer(stored.status, stored.body, stored.content_type, "accepted")


def _checked_answer(route: str, status: int, body: bytes) -> Answer:
    try:
        passed = check_kratos_answer(status, body)
    except InvalidUpstreamAnswer as exc:
        logger.warning(
            "invalid_upstream_answer",
            route=route,
            upstream_status=status,
            detail=exc.message,
        )
        raise

    return Answer(status, passed, JSON, "ok")
