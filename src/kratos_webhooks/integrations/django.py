"""Django integration: a CSRF-exempt view decorator that verifies the raw body.

    @kratos_webhook(check, hook="registration.after")
    def on_registration(event: HookEvent) -> Answer:
        return NoChange()

    urlpatterns = [path("hooks/registration", on_registration)]

The decorated function receives only the verified event and returns an answer
builder; an async function gives an async view. A rejection is answered with
the JSON error shape. Django keeps the body it read for `request.POST`, so a
middleware that parsed the form first does no harm; one that read the raw
stream makes the body unreadable and `BodyUnavailable` is raised. This module
imports Django only.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse, RawPostDataException
from django.http.request import RequestDataTooBig

from ..errors import MethodNotAllowed, PayloadTooLarge, WebhookError
from ..hooks import Handler, HandlerFunction, HookEvent
from ..kratos.answers import Answer
from ..kratos.models import HookPoint
from .endpoint import (
    DEFAULT_MAX_BODY_BYTES,
    BodyUnavailable,
    RouteCheck,
    WebhookEndpoint,
    error_body,
    header_pairs,
)

__all__ = ["answer_response", "error_response", "kratos_webhook"]

SyncView = Callable[..., HttpResponse]
AsyncView = Callable[..., Awaitable[HttpResponse]]


def kratos_webhook(
    check: RouteCheck,
    *,
    hook: HookPoint | None = None,
    payload_type: Any = None,
    methods: Sequence[str] = ("POST",),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    redact: Iterable[str] = (),
) -> Callable[[Handler | HandlerFunction], SyncView | AsyncView]:
    """Turn a handler into a CSRF-exempt Django view that verifies and answers.

    `check` is the route's verification (`route_check` builds one from a scheme
    and secrets). `methods` are the HTTP methods the view accepts: Kratos sends
    the method its hook configures, a body included, GET too. The other
    arguments are those of `WebhookEndpoint`.
    """
    allowed = tuple(m.upper() for m in methods)

    def decorate(function: Handler | HandlerFunction) -> SyncView | AsyncView:
        route = WebhookEndpoint(
            check,
            function,
            hook=hook,
            payload_type=payload_type,
            max_body_bytes=max_body_bytes,
            redact=redact,
        )
        handler = route.handler
        assert handler is not None

        def verify(request: HttpRequest) -> HookEvent[Any] | HttpResponse:
            try:
                if request.method not in allowed:
                    raise MethodNotAllowed()

                headers = header_pairs(request.headers.items())
                route.check_framing(headers)
                body = _raw_body(request)
                return route.event(
                    body, headers, client_certificate=_client_certificate(request)
                )
            except WebhookError as exc:
                route.log_rejection(exc)
                return error_response(exc, allowed)

        if handler.is_async:

            @functools.wraps(handler.function)
            async def async_view(
                request: HttpRequest, *args: Any, **kwargs: Any
            ) -> HttpResponse:
                event = verify(request)

                if isinstance(event, HttpResponse):
                    return event

                return answer_response(await handler(event))

            view: SyncView | AsyncView = async_view
        else:

            @functools.wraps(handler.function)
            def sync_view(
                request: HttpRequest, *args: Any, **kwargs: Any
            ) -> HttpResponse:
                event = verify(request)

                if isinstance(event, HttpResponse):
                    return event

                return answer_response(handler.call_sync(event))

            view = sync_view

        # What csrf_exempt sets; set directly, because csrf_exempt wraps an async
        # view in a sync function before Django 5.0.
        view.csrf_exempt = True  # type: ignore[union-attr]
        return view

    return decorate


def _raw_body(request: HttpRequest) -> bytes:
    try:
        body = request.body
    except RequestDataTooBig as exc:
        # Django's own DATA_UPLOAD_MAX_MEMORY_SIZE, when it is below our limit.
        raise PayloadTooLarge() from exc
    except RawPostDataException as exc:
        raise BodyUnavailable(
            "the request body was read from its stream before verification; "
            "read request.body, not request.read(), in middleware"
        ) from exc

    assert isinstance(body, bytes)
    return body


def _client_certificate(request: HttpRequest) -> dict[str, Any] | None:
    # The CGI convention of Apache mod_ssl and others; WSGI has no standard one.
    pem = request.META.get("SSL_CLIENT_CERT")

    if not pem:
        return None

    return {
        "client_cert_chain": [pem],
        "client_cert_name": request.META.get("SSL_CLIENT_S_DN"),
    }


def answer_response(answer: Answer) -> HttpResponse:
    """Turn an answer builder into a Django response."""
    status, body = answer.to_http()
    response = HttpResponse(body, status=status, content_type=answer.media_type)

    if answer.media_type is None:
        del response["Content-Type"]

    return response


def error_response(error: WebhookError, allowed: Sequence[str] = ()) -> HttpResponse:
    """Return the JSON error response to a rejection, with its status."""
    status, body, headers = error_body(error)
    response = HttpResponse(body, status=status)

    for name, value in headers:
        response[name] = value

    if isinstance(error, MethodNotAllowed) and allowed:
        response["Allow"] = ", ".join(allowed)

    return response
