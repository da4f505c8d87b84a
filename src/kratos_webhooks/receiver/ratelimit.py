"""Stage 3: rate limits per source, per route and overall (429).

Counters live in memory, so each receiver process counts on its own. Kratos
obeys `Retry-After` on a 429 with no upper bound, so the value sent is capped
at a few seconds whatever the window of the limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from ..errors import RateLimited

__all__ = ["MAX_RETRY_AFTER", "RateLimits"]

MAX_RETRY_AFTER: Final = 5


class RateLimits:
    """The limits that apply to one request: overall, per source, per route."""

    def __init__(
        self,
        *,
        overall: str | None,
        per_source: str | None,
        per_route: dict[str, str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._overall = parse(overall) if overall else None
        self._per_source = parse(per_source) if per_source else None
        self._per_route = {
            path: parse(rate) for path, rate in per_route.items() if rate is not None
        }
        self._clock = clock

    def check(self, route: str, source: str) -> None:
        """Count the request against each limit.

        Raises:
            RateLimited: a limit is used up; `retry_after` is 1 to 5 seconds.
        """
        self._hit(self._per_source, "source", source)
        self._hit(self._per_route.get(route), "route", route)
        self._hit(self._overall, "overall")

    def _hit(self, item: RateLimitItem | None, *identifiers: str) -> None:
        if item is None or self._limiter.hit(item, *identifiers):
            return

        reset_at = self._limiter.get_window_stats(item, *identifiers).reset_time
        wait = math.ceil(reset_at - self._clock())
        raise RateLimited(retry_after=min(max(wait, 1), MAX_RETRY_AFTER))
