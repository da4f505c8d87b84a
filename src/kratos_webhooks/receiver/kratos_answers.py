"""What Kratos accepts as a web hook answer, checked before it is passed on.

Kratos applies an identity change only on exactly 200 with JSON, treats 204 as
a no-op, and interrupts the flow on a 4xx other than 429 whose body has the
`messages` shape. It retries 429 and 5xx and ends the flow with a generic
error, so the receiver never passes those on as if they were answers.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from ..errors import InvalidUpstreamAnswer

__all__ = ["MAX_ANSWER_BYTES", "check_kratos_answer"]

# Kratos reads at most 5 MiB of an answer and fails on a truncated JSON body.
MAX_ANSWER_BYTES: Final = 5 * 1024 * 1024

_decoder = msgspec.json.Decoder()


def check_kratos_answer(status: int, body: bytes) -> bytes:
    """Return the body to pass on, or raise when Kratos would reject the answer.

    Raises:
        InvalidUpstreamAnswer: the status or body is not one Kratos accepts.
    """
    if status == 204:
        return b""

    if status == 200:
        _check_identity_answer(_decode_object(status, body))
        return body

    if 400 <= status < 500 and status != 429:
        _check_messages(_decode_object(status, body))
        return body

    raise InvalidUpstreamAnswer(
        f"The application responded with status {status}, which Kratos does not accept."
    )


def _decode_object(status: int, body: bytes) -> dict[str, Any]:
    try:
        document = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidUpstreamAnswer(
            f"The application's {status} response is not JSON."
        ) from exc

    if not isinstance(document, dict):
        raise InvalidUpstreamAnswer(
            f"The application's {status} response is not a JSON object."
        )

    return document


def _check_identity_answer(document: dict[str, Any]) -> None:
    if set(document) - {"identity"}:
        raise InvalidUpstreamAnswer(
            'A 200 response may contain only {} or {"identity": {...}}.'
        )

    if "identity" in document and not isinstance(document["identity"], dict):
        raise InvalidUpstreamAnswer("The identity in a 200 response must be an object.")


def _check_messages(document: dict[str, Any]) -> None:
    messages = document.get("messages")

    if not isinstance(messages, list) or not messages:
        raise InvalidUpstreamAnswer(
            "A 4xx response needs a non-empty messages list for Kratos."
        )

    for entry in messages:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("instance_ptr", ""), str)
            and isinstance(entry.get("messages"), list)
            and all(_is_detailed_message(item) for item in entry["messages"])
        ):
            raise InvalidUpstreamAnswer(
                "A 4xx answer's messages do not have the shape Kratos reads."
            )


def _is_detailed_message(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and type(item.get("id")) is int
        and isinstance(item.get("text"), str)
        and isinstance(item.get("type"), str)
    )
