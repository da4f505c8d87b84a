"""The one place where secret material is compared."""

from __future__ import annotations

import hmac

__all__ = ["constant_time_equal"]


def constant_time_equal(expected: str | bytes, received: str | bytes) -> bool:
    """Compare in time that depends on the length only, never on the contents.

    A str holding non-ASCII characters cannot be compared this way, so it counts
    as a mismatch: the values compared here are ASCII by construction.
    """
    try:
        if isinstance(expected, str) and isinstance(received, str):
            return hmac.compare_digest(expected, received)

        if isinstance(expected, bytes) and isinstance(received, bytes):
            return hmac.compare_digest(expected, received)
    except TypeError:
        return False

    return False
