"""Python functions as Kratos hook handlers.

    hooks = HookRegistry()

    @hooks.on("registration.after")
    def check_domain(event: HookEvent[RegistrationContext]) -> Answer:
        ...

A handler is sync or async, receives a `HookEvent` (the decoded payload, the
verified delivery id and the client certificate, if any) and returns an
answer builder, or None for "no change". The receiver names a handler in a
route as `handler: "module:function"`, which `load_handler` resolves.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar, cast

from .errors import ConfigError, UnsupportedMediaType
from .kratos.answers import Answer, InvalidAnswerType, NoChange
from .kratos.models import (
    HOOK_POINTS,
    HookPoint,
    Identity,
    KratosContext,
    Session,
    context_type,
    decode_as,
    decode_context,
    decode_form,
    decode_json,
)
from .kratos.redaction import Redactor

__all__ = [
    "Handler",
    "HandlerFunction",
    "HookEvent",
    "HookRegistry",
    "decode_payload",
    "load_handler",
    "payload_format",
]

P = TypeVar("P")
PayloadFormat = Literal["json", "form"]
HandlerResult = Answer | None
HandlerFunction = Callable[..., HandlerResult | Awaitable[HandlerResult]]

FORM_MEDIA_TYPE: Final = "application/x-www-form-urlencoded"
_JSON_MEDIA_TYPES: Final = frozenset({"application/json", "text/json"})
_HANDLER_ATTRIBUTE: Final = "__kratos_handler__"


@dataclass(frozen=True, repr=False)
class HookEvent(Generic[P]):
    """One verified call from Kratos, as a handler receives it.

    `payload` is a `KratosContext` model for a passthrough template, a dict for a
    form body, or whatever `payload_type` the handler asked for. `delivery_id`
    is the verified `webhook-id`, or Kratos' `Ory-Webhook-Trigger-Id` when the
    route checks Kratos' own credential. `client_certificate` is what the server
    reports of the client's TLS certificate, or None.
    """

    hook: HookPoint | None
    payload: P
    delivery_id: str | None = None
    client_certificate: Mapping[str, Any] | None = None
    body: bytes = field(default=b"", compare=False)
    redactor: Redactor = field(default_factory=Redactor, compare=False)

    def __repr__(self) -> str:
        from .kratos.redaction import redacted_json

        shown = redacted_json(self.payload, self.redactor.pointers)
        return (
            f"HookEvent(hook={self.hook!r}, delivery_id={self.delivery_id!r}, "
            f"payload={shown})"
        )

    @property
    def identity(self) -> Identity | None:
        """The payload's identity, when the payload is a Kratos context that has one."""
        if isinstance(self.payload, KratosContext):
            return self.payload.identity

        return None

    @property
    def session(self) -> Session | None:
        """The payload's session, when the payload is a Kratos context that has one."""
        if isinstance(self.payload, KratosContext):
            return self.payload.session

        return None


def payload_format(content_type: str | None) -> PayloadFormat:
    """Pick the body format from a Content-Type; its charset label is ignored.

    Kratos sends `application/json` or, when configured, form data. JSON is
    always UTF-8 and Kratos' form data is ASCII, whatever a charset label says.

    Raises:
        UnsupportedMediaType: any other media type.
    """
    if not content_type:
        return "json"

    media_type = content_type.split(";", 1)[0].strip().lower()

    if media_type in _JSON_MEDIA_TYPES or media_type.endswith("+json"):
        return "json"

    if media_type == FORM_MEDIA_TYPE:
        return "form"

    raise UnsupportedMediaType()


def decode_payload(
    body: bytes,
    *,
    hook: HookPoint | None = None,
    payload_type: Any = None,
    content_type: str | None = None,
) -> Any:
    """Decode a verified body for a handler.

    With no `payload_type`, a JSON body becomes the `KratosContext` model of the
    hook point; `dict` gives plain JSON; any other type is decoded into. A form
    body becomes a dict of strings, or is converted into `payload_type`.

    Raises:
        UnsupportedMediaType: the Content-Type is neither JSON nor form data.
        InvalidJson: the body is not UTF-8 JSON (or ASCII form data).
        InvalidPayload: the body does not match the expected model.
    """
    if payload_format(content_type) == "form":
        form = decode_form(body)

        if payload_type in (None, dict):
            return form

        return decode_as(_json_bytes(form), payload_type)

    if payload_type is None:
        return decode_context(body, hook)

    if payload_type in (dict, Any, object):
        return decode_json(body)

    return decode_as(body, payload_type)


def _json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


class Handler:
    """A handler function with its hook point and payload type, callable async.

    `await handler(event)` runs a sync function in a worker thread, so it does not
    block the event loop, and returns the checked answer.
    """

    def __init__(
        self,
        function: HandlerFunction,
        *,
        hook: HookPoint | None = None,
        payload_type: Any = None,
        redactor: Redactor | None = None,
    ) -> None:
        if not callable(function):
            raise ConfigError(f"a hook handler must be callable, not {function!r}")

        if hook is not None:
            context_type(hook)

        self.function = function
        self.hook = hook
        self.payload_type = payload_type
        self.redactor = redactor or Redactor()
        self.is_async = inspect.iscoroutinefunction(function)

    def __repr__(self) -> str:
        name = getattr(self.function, "__qualname__", repr(self.function))
        return f"Handler({name}, hook={self.hook!r})"

    def event(
        self,
        body: bytes,
        *,
        content_type: str | None = None,
        delivery_id: str | None = None,
        client_certificate: Mapping[str, Any] | None = None,
    ) -> HookEvent[Any]:
        """Decode a verified body into the event this handler receives.

        Raises:
            UnsupportedMediaType, InvalidJson, InvalidPayload: see `decode_payload`.
        """
        payload = decode_payload(
            body,
            hook=self.hook,
            payload_type=self.payload_type,
            content_type=content_type,
        )
        return HookEvent(
            hook=self.hook,
            payload=payload,
            delivery_id=delivery_id,
            client_certificate=client_certificate,
            body=body,
            redactor=self.redactor,
        )

    async def __call__(self, event: HookEvent[Any]) -> Answer:
        """Run the function and return its answer, checked against the hook point.

        Raises:
            InvalidAnswerType: the function returned something that is not an answer.
            InvalidAnswer: the answer does not suit the hook point.
        """
        if self.is_async:
            pending = cast(Awaitable[HandlerResult], self.function(event))
            result = await pending
        else:
            function = cast(Callable[[HookEvent[Any]], HandlerResult], self.function)
            result = await asyncio.to_thread(function, event)

        return self._checked(result, event)

    def call_sync(self, event: HookEvent[Any]) -> Answer:
        """Run the function from synchronous code (a WSGI view) and return its answer.

        An async function runs in a new event loop, so call this only from a thread
        that has no running loop.
        """
        result = self.function(event)

        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))

        return self._checked(result, event)

    def _checked(self, result: object, event: HookEvent[Any]) -> Answer:
        if result is None:
            result = NoChange()

        if not isinstance(result, Answer):
            raise InvalidAnswerType(
                f"{self!r} returned {type(result).__name__}; return Interrupt, "
                "UpdateIdentity, NoChange or None"
            )

        if event.hook is not None:
            result.check_hook(event.hook)

        return result


async def _await(value: Awaitable[HandlerResult]) -> HandlerResult:
    return await value


class HookRegistry:
    """Handlers by hook point: `@hooks.on("registration.after")`.

    `redact` lists JSON pointers that the reprs of this registry's events hide, on
    top of the cookies and tokens that are always hidden.
    """

    def __init__(self, *, redact: Iterable[str] = ()) -> None:
        self.redactor = Redactor(redact)
        self._handlers: dict[HookPoint, Handler] = {}

    def __repr__(self) -> str:
        return f"HookRegistry(hooks={sorted(self._handlers)!r})"

    def __contains__(self, hook: object) -> bool:
        return hook in self._handlers

    def __iter__(self) -> Iterator[HookPoint]:
        return iter(self._handlers)

    def on(
        self, hook: HookPoint, *, payload_type: Any = None
    ) -> Callable[[HandlerFunction], HandlerFunction]:
        """Register the decorated function for a hook point and return it unchanged.

        Raises:
            ConfigError: the hook point is unknown or already has a handler.
        """
        if hook not in HOOK_POINTS:
            raise ConfigError(
                f"unknown hook point {hook!r}: expected one of {', '.join(HOOK_POINTS)}"
            )

        if hook in self._handlers:
            raise ConfigError(f"{hook} already has a handler: {self._handlers[hook]!r}")

        def register(function: HandlerFunction) -> HandlerFunction:
            handler = Handler(
                function, hook=hook, payload_type=payload_type, redactor=self.redactor
            )
            self._handlers[hook] = handler
            setattr(function, _HANDLER_ATTRIBUTE, handler)
            return function

        return register

    def handler(self, hook: HookPoint) -> Handler:
        """Return the handler of a hook point.

        Raises:
            KeyError: no handler is registered for it.
        """
        try:
            return self._handlers[hook]
        except KeyError:
            raise KeyError(f"no handler is registered for {hook}") from None

    async def dispatch(self, event: HookEvent[Any]) -> Answer:
        """Run the handler of the event's hook point and return its answer."""
        if event.hook is None:
            raise ValueError("an event without a hook point cannot be dispatched")

        return await self.handler(event.hook)(event)


def as_handler(
    target: Handler | HandlerFunction, hook: HookPoint | None = None
) -> Handler:
    """Return the `Handler` of a function decorated with `on`, or wrap a plain one."""
    if isinstance(target, Handler):
        return target

    registered = getattr(target, _HANDLER_ATTRIBUTE, None)

    if isinstance(registered, Handler):
        if hook is not None and hook != registered.hook:
            raise ConfigError(
                f"{registered!r} is registered for {registered.hook}, not {hook}"
            )

        return registered

    return Handler(target, hook=hook)


def load_handler(spec: str, hook: HookPoint | None = None) -> Handler:
    """Import `module:function` and return its handler, as a route names it.

    The function may be registered with `HookRegistry.on` (its hook point and
    payload type come along) or be a plain function, which then receives the
    `KratosContext` of `hook` (the generic one when `hook` is None). The
    result is awaited as `await handler(event)`; `handler.event(body, ...)`
    builds that event from a verified body, and `answer.to_http()` gives the
    status and body to send.

    Raises:
        ConfigError: the spec is malformed, the module cannot be imported, the
            name is missing or not callable, or the function is registered for
            another hook point than `hook`.
    """
    module_name, colon, attribute = (
        spec.partition(":") if isinstance(spec, str) else ("", "", "")
    )

    if not colon or not module_name or not attribute:
        raise ConfigError(
            f"invalid handler {spec!r}: expected 'module:function', "
            "for example 'myapp.hooks:on_registration'"
        )

    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        message = f"handler module {module_name!r} cannot be imported: {exc}"
        missing = getattr(exc, "name", None) or ""

        # A console script does not put the working directory on sys.path,
        # so a module beside the configuration is not found without help.
        if missing and (module_name + ".").startswith(missing + "."):
            message += (
                f"; is the directory that contains {missing!r} on PYTHONPATH?"
                " For example PYTHONPATH=examples/handlers kratos-webhooks serve ..."
            )

        raise ConfigError(message) from exc

    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ConfigError(
                f"handler {spec!r} not found: no attribute {name!r}"
            ) from None

    if isinstance(target, HookRegistry):
        raise ConfigError(
            f"handler {spec!r} is a HookRegistry; name one of its functions instead"
        )

    if not callable(target):
        raise ConfigError(f"handler {spec!r} is not callable")

    return as_handler(target, hook)
