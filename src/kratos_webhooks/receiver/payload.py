"""Stage 6: parse the authenticated body as UTF-8 JSON (400) holding an object (422).

The check stays light on purpose: Kratos' payload differs by hook point and by
template, and a template may send any JSON object.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import InvalidJson, InvalidPayload

__all__ = ["parse_payload"]

_decoder = msgspec.json.Decoder()


def parse_payload(payload: bytes) -> dict[str, Any]:
    """Decode a JSON object.

    Raises:
        InvalidJson: the bytes are not UTF-8 JSON.
        InvalidPayload: the JSON is valid but not an object.
    """
    try:
        document = _decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise InvalidJson() from exc

    if not isinstance(document, dict):
        raise InvalidPayload("The body must be a JSON object.")

    return document
