"""Idempotency keys: which id makes two requests the same event.

The key is the `webhook-id` header, else Kratos' `Ory-Webhook-Trigger-Id`, else a
hash of the route and the body. The relay derives `webhook-id` from the trigger
id, and Kratos keeps the trigger id across its own retries, so a retried call
maps to the first one. Every key is a valid Standard Webhooks message id, so
deliveries can carry it as their `webhook-id`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from ..signing import MAX_WEBHOOK_ID_LENGTH

__all__ = ["TRIGGER_ID_HEADER", "WEBHOOK_ID_HEADER", "idempotency_key"]

WEBHOOK_ID_HEADER: Final = "webhook-id"
TRIGGER_ID_HEADER: Final = "ory-webhook-trigger-id"

# The characters a Standard Webhooks message id may hold: printable ASCII
# without the `.` that separates the signed parts.
_MESSAGE_ID = re.compile(rf"[\x21-\x2d\x2f-\x7e]{{1,{MAX_WEBHOOK_ID_LENGTH}}}")


def idempotency_key(
    route: str,
    body: bytes,
    *,
    webhook_id: str | None = None,
    trigger_id: str | None = None,
) -> str:
    """Return the idempotency key of a request on a route.

    A header value that is not a valid message id (too long, or holding `.`,
    spaces or non-ASCII) is replaced by `hdr_` and its SHA-256, so a repeat still
    maps to the same key. Without either header the key is `body_` and the
    SHA-256 of the route and the body.
    """
    for value in (webhook_id, trigger_id):
        if not value:
            continue

        if _MESSAGE_ID.fullmatch(value):
            return value

        return "hdr_" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()

    digest = hashlib.sha256(route.encode("utf-8", "replace") + b"\x00" + body)
    return "body_" + digest.hexdigest()
