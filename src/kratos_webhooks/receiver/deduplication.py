"""Stage 7: the idempotency key of a request, and one request per key at a time.

The key is the most specific id that authentication vouches for:

- Standard Webhooks: the verified `webhook-id`, which the signature covers.
  The relay derives it from Kratos' `Ory-Webhook-Trigger-Id`, so Kratos'
  retries of one call share it.
- API key and basic auth: Kratos' `Ory-Webhook-Trigger-Id`, which stays the
  same across Kratos' retries of one call. Whoever holds the credential can
  send any headers and any body alike, so keying on the body would stop no
  replay, while it would merge two distinct calls whose bodies happen to be
  equal (a small custom template makes that likely).
- Jsonnet MAC: a SHA-256 of the route and the body, because the MAC covers the
  body and no header: a captured body replayed with a fresh trigger id must
  not be processed again. The generated template sends the whole `ctx`, with
  its flow id and request headers, so two distinct calls do not share a body.
- Without either id, the body hash, `sha256_` and 64 hex digits.

Kratos' trigger id is a UUID, and only a UUID is taken as one, so it can never
equal a body-hash key. The store keeps the first answer per key with a digest
of its body, and answers a repeat of the key with another body 409
`idempotency_conflict`; this module makes a concurrent duplicate wait until
the first call of its key is finished.
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
# Kratos sends a UUIDv4 as the trigger id; any case is accepted.
_TRIGGER_ID: Final = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def delivery_id(webhook_id: str | None, headers: list[Header]) -> str | None:
    """Return the verified `webhook-id`, else Kratos' trigger id, else None.

    The trigger id counts only in the UUID form Kratos sends, in lower case.
    Any other value is ignored, and the call is keyed on its body.
    """
    if webhook_id is not None:
        return webhook_id

    for name, value in headers:
        if name == _TRIGGER_HEADER and _TRIGGER_ID.fullmatch(value):
            return value.decode("ascii").lower()

    return None


def idempotency_key(route: str, key_id: str | None, body: bytes) -> str:
    """Return the key under which a request's answer is stored.

    `key_id` is the id that authentication vouches for (see the module's
    rules); without one, the key is a hash of route and body.
    """
    if key_id is not None:
        return key_id

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
