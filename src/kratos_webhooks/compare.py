"""The one place where secret material is compared."""

from __future__ import annotations

import hmac

__all__ = ["constant_time_equal"]


def constant_time_equal(expected: str | bytes, received: str | bytes) -> bool:
    """Compare in time that depends on the length only, never on the contents.

    A str holding non-ASCII characters, or a str against bytes, cannot be
    compared this way and counts as a mismatch: the values compared here are
    ASCII by construction, so only forged input takes that branch.
    """
    try:
        return hmac.compare_digest(expected, received)  # type: ignore[arg-type]
    except TypeError:
        return False
