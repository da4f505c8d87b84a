"""Starlette and FastAPI integration: verify Kratos web hooks on the raw body.

As a Starlette endpoint, which calls a handler and answers for it:

    webhook = KratosWebhook(check, on_registration)
    app = Starlette(routes=[Route("/hooks/registration", webhook.endpoint,
                                  methods=["POST"])])

As a FastAPI dependency, which hands the verified event to the route:

    webhook = KratosWebhook(check, on_registration)
    install(app)

    @app.post("/hooks/registration")
    async def registration(event: HookEvent = Depends(webhook)) -> Response:
        return await webhook.respond(event)

`install` adds the error handler that answers a rejection with the JSON error
shape, and `RawBodyMiddleware`, which keeps the raw bytes even when a form
parameter or another middleware reads the stream first. This module imports
Starlette only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from ..errors import PayloadTooLarge, WebhookError
from ..hooks import Handler, HandlerFunction, HookEvent
from ..kratos.answers import Answer
from ..kratos.models import HookPoint
from .endpoint import (
    DEFAULT_MAX_BODY_BYTES,
    BodyUnavailable,
    RouteCheck,
    WebhookEndpoint,
    error_body,
)

__all__ = [
    "KratosWebhook",
    "RawBodyMiddleware",
    "answer_response",
    "error_response",
    "install",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RAW_BODY_KEY: Final = "kratos_webhooks.raw_body"
TOO_LARGE_KEY: Final = "kratos_webhooks.body_too_large"


class RawBodyMiddleware:
    """Buffer each request body (up to a limit) and replay it to the application.

    The bytes are kept in the scope, so the integration verifies exactly what was
    received even after a form parser has consumed the stream. `paths` limits the
    buffering to those path prefixes.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        paths: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.paths = None if paths is None else tuple(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # An outer copy of this middleware already contains the untouched bytes.
        if (
            scope["type"] != "http"
            or RAW_BODY_KEY in scope
            or TOO_LARGE_KEY in scope
            or not self._applies(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        more_body = True

        while more_body:
            message = await receive()

            if message["type"] != "http.request":
                # A disconnect before the whole body: let the application see it.
                await self.app(scope, _replay([message], receive), send)
                return

            chunk = message.get("body", b"")
            size += len(chunk)
            more_body = message.get("more_body", False)

            if size > self.max_body_bytes:
                scope[TOO_LARGE_KEY] = True
                more_body = False
            else:
                chunks.append(chunk)

        body = b"".join(chunks)
        scope[RAW_BODY_KEY] = body
        replay = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([replay], receive), send)

    def _applies(self, path: str) -> bool:
        return self.paths is None or path.startswith(self.paths)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)

        return await receive()

    return replayed


def answer_response(answer: Answer) -> Response:
    """Turn an answer builder into a Starlette response."""
    status, body = answer.to_http()
    return Response(content=body, status_code=status, media_type=answer.media_type)


def error_response(error: WebhookError) -> Response:
    """Return the JSON error response to a rejection, with its status."""
    status, body, headers = error_body(error)
    return Response(content=body, status_code=status, headers=dict(headers))


async def _error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, WebhookError):
        raise exc

    return error_response(exc)


def install(app: Any, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Add the raw-body middleware and the rejection handler to an application.

    A FastAPI dependency needs both; call this once per application, before it
    starts, because Starlette accepts middleware only then.
    """
    app.add_middleware(RawBodyMiddleware, max_body_bytes=max_body_bytes)
    app.add_exception_handler(WebhookError, _error_handler)


class KratosWebhook:
    """One verified route: a Starlette endpoint, or a FastAPI dependency.

    `check` is the route's verification (`Verifier`, `ApiKeyCheck`,
    `BasicAuthCheck` or `JsonnetMacCheck`; `route_check` builds one from a scheme
    and secrets). The other arguments are those of `WebhookEndpoint`.
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
        self.route = WebhookEndpoint(
            check,
            handler,
            hook=hook,
            payload_type=payload_type,
            max_body_bytes=max_body_bytes,
            redact=redact,
        )

    def __repr__(self) -> str:
        return f"KratosWebhook({self.route!r})"

    def install(self, app: Any) -> None:
        """Call `install` on an application with this route's body limit."""
        install(app, max_body_bytes=self.route.max_body_bytes)

    async def __call__(self, request: Request) -> HookEvent[Any]:
        """Verify the request and return its event, as a FastAPI dependency.

        Raises:
            WebhookError: a rejection, which the handler added by `install` answers.
            RuntimeError: `install` was not called on the application.
        """
        handlers = getattr(request.app, "exception_handlers", {})

        if WebhookError not in handlers:
            raise RuntimeError(
                "call install(app) so that a rejection returns the JSON error shape; "
                "without it the dependency cannot respond"
            )

        try:
            return await self._event(request)
        except WebhookError as exc:
            self.route.log_rejection(exc)
            raise

    async def endpoint(self, request: Request) -> Response:
        """Verify the request, call the handler and answer, as a Starlette endpoint."""
        handler = self.route.handler

        if handler is None:
            raise RuntimeError("KratosWebhook.endpoint needs a handler function")

        try:
            event = await self._event(request)
        except WebhookError as exc:
            self.route.log_rejection(exc)
            return error_response(exc)

        return answer_response(await handler(event))

    async def respond(self, event: HookEvent[Any]) -> Response:
        """Call the handler with a verified event and return its answer."""
        handler = self.route.handler

        if handler is None:
            raise RuntimeError("KratosWebhook.respond needs a handler function")

        return answer_response(await handler(event))

    async def _event(self, request: Request) -> HookEvent[Any]:
        headers = list(request.headers.raw)
        self.route.check_framing(headers)
        body = await _read_body(request, self.route.max_body_bytes)
        return self.route.event(
            body, headers, client_certificate=_client_certificate(request.scope)
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the raw body within `limit` bytes, from the middleware's copy if any."""
    if request.scope.get(TOO_LARGE_KEY):
        raise PayloadTooLarge()

    buffered = request.scope.get(RAW_BODY_KEY)

    if isinstance(buffered, bytes):
        return buffered

    chunks: list[bytes] = []
    size = 0

    try:
        async for chunk in request.stream():
            size += len(chunk)

            if size > limit:
                raise PayloadTooLarge()

            chunks.append(chunk)
    except RuntimeError as exc:
        raise BodyUnavailable(
            "the request body was read before verification (by a form parameter or "
            "a middleware); call KratosWebhook.install(app) to keep the raw bytes"
        ) from exc

    body = b"".join(chunks)
    # Starlette caches the body under this name, so that the route can still
    # call request.body() or request.json() after the stream was read here.
    request._body = body
    return body


def _client_certificate(scope: Scope) -> dict[str, Any] | None:
    # The ASGI TLS extension; the receiver's server fills it in.
    tls = scope.get("extensions", {}).get("tls")

    if isinstance(tls, dict) and tls.get("client_cert_chain"):
        return dict(tls)

    return None
