"""Answers the receiver sends, and the JSON shape of every error answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

from ..errors import MethodNotAllowed, RateLimited, WebhookError

__all__ = [
    "JSON",
    "Answer",
    "accepted_answer",
    "error_answer",
    "internal_error_answer",
]

JSON: Final = "application/json"

Header = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP answer and the reason code that logs and metrics show."""

    status: int
    body: bytes
    content_type: str = JSON
    reason: str = "ok"
    headers: tuple[Header, ...] = field(default=())


def _error_body(code: str, message: str) -> bytes:
    document = {"error": {"code": code, "message": message}}
    return json.dumps(document, separators=(",", ":")).encode()


def error_answer(error: WebhookError) -> Answer:
    """Turn a rejection into its `{"error": {"code", "message"}}` answer."""
    headers: tuple[Header, ...] = ()

    if isinstance(error, RateLimited):
        headers = ((b"retry-after", str(error.retry_after).encode()),)
    elif isinstance(error, MethodNotAllowed):
        allowed: tuple[str, ...] = getattr(error, "allowed", ())
        headers = ((b"allow", ", ".join(allowed).encode()),)

    return Answer(
        status=error.status,
        body=_error_body(error.code, error.message),
        reason=error.code,
        headers=headers,
    )


def internal_error_answer() -> Answer:
    """Return the answer to a failure of the receiver itself, never a 500."""
    body = _error_body("internal_error", "The receiver failed; retry later.")
    return Answer(status=503, body=body, reason="internal_error")


def accepted_answer(webhook_id: str) -> Answer:
    """Return the 202 that an async route sends once the event is stored."""
    quoted = json.dumps(webhook_id).encode()
    body = b'{"accepted":true,"webhook_id":' + quoted + b"}"
    return Answer(status=202, body=body, reason="accepted")
