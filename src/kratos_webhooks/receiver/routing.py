"""Stage 1: find the route for a path and check the method (404, 405)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from ..errors import MethodNotAllowed, NotFound

__all__ = ["RouteMethodNotAllowed", "RouteTable"]


class RouteMethodNotAllowed(MethodNotAllowed):
    """The method is not one of the route's; `allowed` fills the Allow header."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__()
        self.allowed = allowed


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
