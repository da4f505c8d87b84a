"""Python handlers for sync routes: `handler: "package.module:function"`.

A handler takes a `HookRequest` and returns a `HookAnswer`, a dict (sent as a
200 JSON answer) or None (a 204). It may be a plain or an async function; a
plain one runs in a worker thread so that it cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..tls.certificates import CertificateInfo

__all__ = ["HookAnswer", "HookRequest", "call_handler", "import_handler"]


@dataclass(frozen=True, slots=True)
class HookRequest:
    """An authenticated, parsed request: the route, its key, raw body and payload.

    `client_certificate` is the client certificate verified in the TLS
    handshake, or None when the client presented none.
    """

    route: str
    webhook_id: str
    body: bytes
    payload: dict[str, Any]
    client_certificate: CertificateInfo | None = None


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """The status and raw JSON body a handler answers with."""

    status: int = 204
    body: bytes = b""


Handler = Callable[[HookRequest], Any]


def import_handler(spec: str) -> Handler:
    """Import `module:function`.

    Raises:
        ImportError: the module cannot be imported or has no such callable.
    """
    module_name, _, function_name = spec.partition(":")
    module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)

    if not callable(function):
        raise ImportError(f"{module_name} has no callable {function_name}")

    handler: Handler = function
    return handler


async def call_handler(handler: Handler, request: HookRequest) -> HookAnswer:
    """Call a handler and normalise its result to a `HookAnswer`.

    Raises:
        TypeError: the handler returned something other than the three forms.
    """
    if inspect.iscoroutinefunction(handler):
        result = await handler(request)
    else:
        result = await asyncio.to_thread(handler, request)

    if result is None:
        return HookAnswer(204)

    if isinstance(result, HookAnswer):
        return result

    if isinstance(result, dict):
        return HookAnswer(200, json.dumps(result).encode())

    raise TypeError(
        f"handler returned {type(result).__name__}; expected HookAnswer, dict or None"
    )
