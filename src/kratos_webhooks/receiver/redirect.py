"""The plain-HTTP listener: every request is answered 308 to the HTTPS address.

The body is never read or echoed, and the connection is closed after the
answer, so nothing sent in clear text is processed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

__all__ = ["RedirectApp"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# A host name or an IPv4 address, optionally with a port; anything else in the
# Host header is replaced by the configured name rather than reflected.
_HOST: Final = re.compile(rb"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?")
_BODY: Final = (
    b'{"error":{"code":"https_required","message":"Use HTTPS: see the Location."}}'
)


class RedirectApp:
    """Answer each request with a 308 to the same path over HTTPS."""

    def __init__(self, https_port: int, fallback_host: str) -> None:
        self.https_port = https_port
        self._fallback_host = fallback_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return

        host = self._fallback_host

        for name, value in scope["headers"]:
            if name == b"host" and _HOST.fullmatch(value):
                host = value.decode("ascii").rpartition(":")[0] or value.decode("ascii")

        port = self.https_port
        netloc = host if port == 443 else f"{host}:{port}"
        path = scope.get("raw_path") or scope["path"].encode()
        location = b"https://" + netloc.encode("ascii") + path
        query = scope.get("query_string", b"")

        if query:
            location += b"?" + query

        await send(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [
                    (b"location", location),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_BODY)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _BODY})
