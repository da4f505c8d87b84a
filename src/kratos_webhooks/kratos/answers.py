"""Builders for the answers Kratos understands from a web hook.

- `Interrupt`: a 4xx with Kratos' `messages` shape, which stops the flow and
  shows the messages, on a field (`#/traits/email`) or on the whole flow (`#/`).
- `UpdateIdentity`: a 200 with `{"identity": {...}}`; each field given
  replaces the whole field in Kratos.
- `NoChange`: a 200 with `{}`, or a 204.

The builders reject, when they are built, what Kratos would choke on or
silently misread, with `InvalidAnswer` (a `ValueError`) or `InvalidAnswerType`
(a `TypeError`). These are programming errors, not rejections of a request.
"""

from __future__ import annotations

import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from .models import HOOK_POINTS, HookPoint, context_to_builtins

__all__ = [
    "Answer",
    "IgnoredUpdateWarning",
    "Interrupt",
    "InvalidAnswer",
    "InvalidAnswerType",
    "Message",
    "MessageType",
    "NoChange",
    "UpdateIdentity",
    "field_pointer",
]

MessageType = Literal["error", "info"]
IdentityState = Literal["active", "inactive"]

# Kratos decodes message ids into a Go int, 64 bits on every platform it ships for.
_GO_INT_MIN: Final = -(2**63)
_GO_INT_MAX: Final = 2**63 - 1

# Only these hook points save an identity that a hook changed; elsewhere Kratos
# parses the update and throws it away.
_SAVING_HOOK_POINTS: Final = frozenset({"registration.after", "settings.after"})

_UNSET: Any = object()


class InvalidAnswer(ValueError):
    """An answer that Kratos would reject, crash on, or silently misread."""


class InvalidAnswerType(TypeError):
    """An answer built from a value of the wrong type."""


class IgnoredUpdateWarning(UserWarning):
    """An identity update sent to a hook point where Kratos does not save it."""


class Answer(ABC):
    """An answer to Kratos: an HTTP status and a body."""

    @property
    @abstractmethod
    def status(self) -> int:
        """The HTTP status code."""

    @abstractmethod
    def body(self) -> bytes:
        """Return the body bytes (empty for a 204)."""

    @property
    def media_type(self) -> str | None:
        """The Content-Type of the body, or None when there is no body."""
        return "application/json" if self.status != 204 else None

    def to_http(self) -> tuple[int, bytes]:
        """Return `(status, body)` ready to send.

        Raises:
            InvalidAnswer: the answer is not complete (an interrupt without messages).
        """
        return self.status, self.body()

    def check_hook(self, hook: HookPoint) -> None:
        """Check that the answer suits a hook point; every answer suits by default.

        Raises:
            InvalidAnswer: Kratos would crash on this answer at that hook point.
        """
        _require_hook_point(hook)


@dataclass(frozen=True, slots=True)
class Message:
    """One message of an interrupt, attached to `instance_ptr` (`#/` for the flow)."""

    id: int
    text: str
    type: MessageType
    instance_ptr: str
    context: Mapping[str, Any] | None = None

    def to_builtins(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.id, "text": self.text, "type": self.type}

        if self.context is not None:
            entry["context"] = dict(self.context)

        return entry


class Interrupt(Answer):
    """Stop the flow and show messages (with `response.parse` or `can_interrupt`).

    Build it by chaining: `Interrupt().error("Not allowed.", id=4000001,
    field="traits.email")`. The status must be a 4xx other than 429: Kratos
    retries a 429 or a 5xx and then fails without showing any message.
    """

    def __init__(self, *, status: int = 400) -> None:
        if type(status) is not int:
            raise InvalidAnswerType(
                f"status must be an int, got {type(status).__name__}"
            )

        if not 400 <= status <= 499 or status == 429:
            raise InvalidAnswer(
                f"an interrupt cannot use status {status}: Kratos retries 429 and 5xx "
                "and never shows the messages; use 400, 403, 409 or 422"
            )

        self._status = status
        self.messages: list[Message] = []

    @property
    def status(self) -> int:
        return self._status

    def __repr__(self) -> str:
        return f"Interrupt(status={self._status}, messages={self.messages!r})"

    def error(
        self,
        text: str,
        *,
        id: int,
        field: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Interrupt:
        """Add an error message on a field (`traits.email`), or on the flow."""
        return self.message(text, id=id, type="error", field=field, context=context)

    def info(
        self,
        text: str,
        *,
        id: int,
        field: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Interrupt:
        """Add an info message on a field or, without one, the flow."""
        return self.message(text, id=id, type="info", field=field, context=context)

    def message(
        self,
        text: str,
        *,
        id: int,
        type: MessageType,
        field: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Interrupt:
        """Add a message and return the interrupt, for chaining.

        Raises:
            InvalidAnswerType: `id` is not an int, `text` not a str, or `context`
                not a JSON object.
            InvalidAnswer: the id is out of range, the text empty or the type unknown.
        """
        _check_message_id(id)

        if not isinstance(text, str):
            raise InvalidAnswerType("message text must be a str")

        if not text.strip():
            raise InvalidAnswer("message text must not be empty")

        if type not in ("error", "info"):
            # Kratos shows any type other than "error" as "info", "success" included.
            raise InvalidAnswer(f"message type must be 'error' or 'info', not {type!r}")

        if context is not None:
            if not isinstance(context, Mapping):
                raise InvalidAnswerType("message context must be a mapping")

            _check_json("message context", context)

        self.messages.append(Message(id, text, type, field_pointer(field), context))
        return self

    def body(self) -> bytes:
        if not self.messages:
            raise InvalidAnswer(
                "an interrupt needs at least one message: Kratos treats an empty "
                "list as a failed hook and shows a generic error"
            )

        grouped: dict[str, list[dict[str, Any]]] = {}

        for message in self.messages:
            grouped.setdefault(message.instance_ptr, []).append(message.to_builtins())

        document = {
            "messages": [
                {"instance_ptr": pointer, "messages": entries}
                for pointer, entries in grouped.items()
            ]
        }
        return _dump(document)


class UpdateIdentity(Answer):
    """Change the identity: each field given replaces that whole field in Kratos.

    Kratos saves the change only at `registration.after` and `settings.after`
    with `response.parse: true`. At a before-hook an update crashes the Kratos
    request, so it is rejected; at other hook points it is ignored, so it warns.
    """

    def __init__(
        self,
        *,
        traits: Mapping[str, Any] = _UNSET,
        metadata_public: Mapping[str, Any] | None = _UNSET,
        metadata_admin: Mapping[str, Any] | None = _UNSET,
        external_id: str = _UNSET,
        state: IdentityState = _UNSET,
        schema_id: str = _UNSET,
        verifiable_addresses: Sequence[Mapping[str, Any]] = _UNSET,
        recovery_addresses: Sequence[Mapping[str, Any]] = _UNSET,
        hook: HookPoint | None = None,
    ) -> None:
        fields: dict[str, Any] = {}

        if traits is not _UNSET:
            fields["traits"] = _json_object("traits", traits)

        for name, value in (
            ("metadata_public", metadata_public),
            ("metadata_admin", metadata_admin),
        ):
            if value is not _UNSET:
                fields[name] = None if value is None else _json_object(name, value)

        if external_id is not _UNSET:
            # An empty string is meaningful: Kratos (v25.4 and later) unsets the id.
            fields["external_id"] = _string("external_id", external_id)

        if state is not _UNSET:
            if state not in ("active", "inactive"):
                raise InvalidAnswer(
                    f"state must be 'active' or 'inactive', not {state!r}"
                )

            fields["state"] = state

        if schema_id is not _UNSET:
            if not _string("schema_id", schema_id):
                raise InvalidAnswer("schema_id must not be empty")

            fields["schema_id"] = schema_id

        if verifiable_addresses is not _UNSET:
            fields["verifiable_addresses"] = _addresses(
                "verifiable_addresses", verifiable_addresses
            )

        if recovery_addresses is not _UNSET:
            fields["recovery_addresses"] = _addresses(
                "recovery_addresses", recovery_addresses
            )

        if not fields:
            raise InvalidAnswer(
                "an identity update needs at least one field; return NoChange() "
                "to leave the identity as it is"
            )

        self.fields: dict[str, Any] = fields

        if hook is not None:
            self.check_hook(hook)

    @property
    def status(self) -> int:
        # Kratos applies an update only on exactly 200.
        return 200

    def __repr__(self) -> str:
        return f"UpdateIdentity(fields={sorted(self.fields)!r})"

    def body(self) -> bytes:
        return _dump({"identity": self.fields})

    def check_hook(self, hook: HookPoint) -> None:
        """Reject an update at a before-hook and warn where Kratos ignores it.

        Raises:
            InvalidAnswer: `hook` is a before-hook.
        """
        _require_hook_point(hook)

        if hook.endswith(".before"):
            raise InvalidAnswer(
                f"an identity update at {hook} crashes the Kratos request (there is "
                "no identity yet); return NoChange() or Interrupt() there"
            )

        if hook not in _SAVING_HOOK_POINTS:
            warnings.warn(
                f"Kratos ignores an identity update at {hook}; only "
                "registration.after and settings.after save it",
                IgnoredUpdateWarning,
                stacklevel=3,
            )


class NoChange(Answer):
    """Let the flow go on unchanged: 200 with `{}` (what a parse hook needs) or 204."""

    def __init__(self, *, status: Literal[200, 204] = 200) -> None:
        if status not in (200, 204) or type(status) is not int:
            raise InvalidAnswer(
                f"a no-op answer uses status 200 or 204, not {status!r}"
            )

        self._status: int = status

    @property
    def status(self) -> int:
        return self._status

    def __repr__(self) -> str:
        return f"NoChange(status={self._status})"

    def body(self) -> bytes:
        # With response.parse, Kratos needs JSON in a 200: an empty body fails.
        return b"{}" if self._status == 200 else b""


def field_pointer(field: str | None) -> str:
    """Turn a form field name (`traits.email`) into Kratos' pointer (`#/traits/email`).

    `None` or an empty name gives `#/`, a message on the whole flow. A name that
    already starts with `#/` is kept as it is.

    Raises:
        InvalidAnswer: the name has an empty part, as in `traits..email`.
    """
    if field is None or field in ("", "#", "#/"):
        return "#/"

    if not isinstance(field, str):
        raise InvalidAnswerType("field must be a str such as 'traits.email'")

    if field.startswith("#/"):
        return field

    parts = field.split(".")

    if not all(parts):
        raise InvalidAnswer(f"field {field!r} has an empty part")

    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _require_hook_point(hook: str) -> None:
    if hook not in HOOK_POINTS:
        raise InvalidAnswer(
            f"unknown hook point {hook!r}: expected one of {', '.join(HOOK_POINTS)}"
        )


def _check_message_id(value: object) -> None:
    # bool is an int in Python but a JSON boolean on the wire, which Kratos rejects.
    if type(value) is not int:
        raise InvalidAnswerType(
            f"message id must be an int, got {type(value).__name__}: Kratos decodes "
            "it into a Go int and fails on anything else"
        )

    if not _GO_INT_MIN <= value <= _GO_INT_MAX:
        raise InvalidAnswer("message id does not fit in a 64-bit signed integer")


def _check_json(what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidAnswerType(f"{what} is not JSON-serialisable: {exc}") from exc


def _json_object(what: str, value: Any) -> dict[str, Any]:
    if isinstance(value, msgspec.Struct):
        value = context_to_builtins(value)

    if not isinstance(value, Mapping):
        raise InvalidAnswerType(f"{what} must be a mapping (a JSON object)")

    _check_json(what, value)
    return dict(value)


def _string(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidAnswerType(f"{what} must be a str")

    return value


def _addresses(what: str, value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise InvalidAnswerType(f"{what} must be a list of address objects")

    addresses = []

    for index, item in enumerate(value):
        address = _json_object(f"{what}[{index}]", item)

        for key in ("value", "via"):
            if not isinstance(address.get(key), str) or not address[key]:
                raise InvalidAnswer(f"{what}[{index}] needs a non-empty {key!r}")

        addresses.append(address)

    return addresses


def _dump(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
