"""Flask integration: a view decorator, and an extension that keeps the raw body.

    app = Flask(__name__)
    webhooks = KratosWebhooks(app)

    @app.post("/hooks/registration")
    @webhooks.verified(check, hook="registration.after")
    def on_registration(event: HookEvent) -> Answer:
        return NoChange()

The decorated function receives only the verified event (sync or async) and
returns an answer builder. A rejection is answered with the JSON error shape.
The extension wraps the WSGI application so the body is read before anything
else can parse it as a form; without it, a form parsed earlier makes the body
unreadable and `BodyUnavailable` is raised. This module imports Flask only.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from flask import Flask, Response, request

from ..errors import PayloadTooLarge, WebhookError
from ..hooks import Handler, HandlerFunction
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

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "KratosWebhooks",
    "RawBodyMiddleware",
    "answer_response",
    "error_response",
    "verified",
]

RAW_BODY_KEY: Final = "kratos_webhooks.raw_body"
TOO_LARGE_KEY: Final = "kratos_webhooks.body_too_large"

View = Callable[..., Response]


class RawBodyMiddleware:
    """WSGI middleware that reads each body once, keeps it, and replays it.

    Only bodies with a Content-Length are buffered, up to `max_body_bytes`;
    `paths` limits the buffering to those path prefixes.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        paths: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.paths = None if paths is None else tuple(paths)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")

        applies = self.paths is None or path.startswith(self.paths)

        # An outer copy of this middleware already contains the untouched bytes.
        if applies and RAW_BODY_KEY not in environ and TOO_LARGE_KEY not in environ:
            self._buffer(environ)

        return self.app(environ, start_response)

    def _buffer(self, environ: WSGIEnvironment) -> None:
        length = environ.get("CONTENT_LENGTH", "")

        if not length or not length.isdigit():
            return

        if int(length) > self.max_body_bytes:
            environ[TOO_LARGE_KEY] = True
            return

        body = environ["wsgi.input"].read(int(length))
        environ[RAW_BODY_KEY] = body
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))


class KratosWebhooks:
    """Flask extension: installs `RawBodyMiddleware` and offers `verified`."""

    def __init__(
        self, app: Flask | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ) -> None:
        self.max_body_bytes = max_body_bytes

        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.wsgi_app = RawBodyMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, max_body_bytes=self.max_body_bytes
        )
        app.extensions["kratos_webhooks"] = self

    def verified(
        self,
        check: RouteCheck,
        *,
        hook: HookPoint | None = None,
        payload_type: Any = None,
        redact: Iterable[str] = (),
    ) -> Callable[[Handler | HandlerFunction], View]:
        """Return `verified(...)` with this extension's body limit."""
        return verified(
            check,
            hook=hook,
            payload_type=payload_type,
            max_body_bytes=self.max_body_bytes,
            redact=redact,
        )


def verified(
    check: RouteCheck,
    *,
    hook: HookPoint | None = None,
    payload_type: Any = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    redact: Iterable[str] = (),
) -> Callable[[Handler | HandlerFunction], View]:
    """Turn a handler into a Flask view that verifies, decodes, calls and answers.

    `check` is the route's verification (`route_check` builds one from a scheme
    and secrets); the other arguments are those of `WebhookEndpoint`. URL
    variables of the route are not passed to the handler.
    """

    def decorate(function: Handler | HandlerFunction) -> View:
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
        wrapped = handler.function

        @functools.wraps(wrapped)
        def view(*args: Any, **kwargs: Any) -> Response:
            headers = header_pairs(request.headers.items())

            try:
                route.check_framing(headers)
                body = _raw_body(max_body_bytes)
                event = route.event(
                    body, headers, client_certificate=_client_certificate()
                )
            except WebhookError as exc:
                route.log_rejection(exc)
                return error_response(exc)

            return answer_response(handler.call_sync(event))

        return view

    return decorate


def _raw_body(limit: int) -> bytes:
    environ = request.environ

    if environ.get(TOO_LARGE_KEY):
        raise PayloadTooLarge()

    buffered = environ.get(RAW_BODY_KEY)

    if isinstance(buffered, bytes):
        return buffered

    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge()

    # A form parsed before any get_data() has consumed the stream; werkzeug would
    # then return b"" here, and the check would fail for no visible reason.
    if "form" in request.__dict__ and getattr(request, "_cached_data", None) is None:
        raise BodyUnavailable(
            "the request body was parsed as a form before verification; "
            "install KratosWebhooks(app) so the raw bytes are kept"
        )

    body = request.get_data(cache=True, parse_form_data=False)

    if len(body) > limit:
        raise PayloadTooLarge()

    return body


def _client_certificate() -> dict[str, Any] | None:
    # The CGI convention of Apache mod_ssl and others; WSGI has no standard one.
    pem = request.environ.get("SSL_CLIENT_CERT")

    if not pem:
        return None

    return {
        "client_cert_chain": [pem],
        "client_cert_name": request.environ.get("SSL_CLIENT_S_DN"),
    }


def answer_response(answer: Answer) -> Response:
    """Turn an answer builder into a Flask response."""
    status, body = answer.to_http()
    response = Response(body, status=status)

    if answer.media_type is None:
        del response.headers["Content-Type"]
    else:
        response.content_type = answer.media_type

    return response


def error_response(error: WebhookError) -> Response:
    """Return the JSON error response to a rejection, with its status."""
    status, body, headers = error_body(error)
    return Response(body, status=status, headers=headers)
