"""Stage 1: find the route for a path and check the method (404, 405).

Routes match the path as the client sent it, before percent-decoding: uvicorn
decodes `%2F` into `/` in `scope["path"]`, so `/a%2Fb` would otherwise reach
the route `/a/b`. Configured paths contain no `%`, so a request path with any
percent-encoding matches no route and is answered 404.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from ..errors import MethodNotAllowed, NotFound

__all__ = ["RouteMethodNotAllowed", "RouteTable", "request_path"]


class RouteMethodNotAllowed(MethodNotAllowed):
    """The method is not one of the route's; `allowed` fills the Allow header."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__()
        self.allowed = allowed


def request_path(scope: Mapping[str, Any]) -> str:
    """Return the request's path as sent: `raw_path` when the server gives it."""
    raw_path = scope.get("raw_path")

    if isinstance(raw_path, bytes):
        return raw_path.decode("latin-1")

    path: str = scope["path"]
    return path


class _Routed(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def methods(self) -> tuple[str, ...]: ...


R = TypeVar("R", bound=_Routed)


class RouteTable(Generic[R]):
    """Exact-path lookup: Kratos calls fixed URLs, so no patterns are needed."""

    def __init__(self, routes: Iterable[R]) -> None:
        self._routes = {route.path: route for route in routes}

    def match(self, path: str, method: str) -> R:
        """Return the route for a path and method.

        Raises:
            NotFound: no route has this path.
            RouteMethodNotAllowed: the route does not accept this method.
        """
        route = self._routes.get(path)

        if route is None:
            raise NotFound()

        if method not in route.methods:
            raise RouteMethodNotAllowed(route.methods)

        return route
