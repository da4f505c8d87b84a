"""Stage 7: the idempotency key of a request, and one request per key at a time.

The key is the verified `webhook-id`, else Kratos' `Ory-Webhook-Trigger-Id`
(the same on each of Kratos' retries of one hook call), else a SHA-256 of the
route and body. The store keeps the first answer per key; this module makes a
concurrent duplicate wait until the first call of its key is finished.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

__all__ = ["KeyLocks", "delivery_id", "idempotency_key"]

Header = tuple[bytes, bytes]

_TRIGGER_HEADER: Final = b"ory-webhook-trigger-id"
# The characters and length a Standard Webhooks message id may have.
_VALID_KEY: Final = re.compile(rb"[\x21-\x2d\x2f-\x7e]{1,256}")


def delivery_id(webhook_id: str | None, headers: list[Header]) -> str | None:
    """Return the verified `webhook-id`, else Kratos' trigger id, else None.

    A trigger id that is not a valid message id is ignored, so that a client
    cannot pick a key that breaks the delivery headers.
    """
    if webhook_id is not None:
        return webhook_id

    for name, value in headers:
        if name == _TRIGGER_HEADER and _VALID_KEY.fullmatch(value):
            return value.decode("ascii")

    return None


def idempotency_key(route: str, delivery: str | None, body: bytes) -> str:
    """Return the key under which a request's answer is stored.

    It is the delivery id from `delivery_id`, or a hash of route and body
    when the request has none.
    """
    if delivery is not None:
        return delivery

    digest = hashlib.sha256(route.encode() + b"\n" + body).hexdigest()
    return f"sha256_{digest}"


class KeyLocks:
    """One asyncio lock per key in use; a key's lock is dropped when released."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)

        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]

            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
