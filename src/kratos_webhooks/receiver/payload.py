"""Stage 6: parse the authenticated body (400) and check it against its model (422).

A route's `payload` setting says what its body is:

- `kratos`: a passthrough template's `ctx`, checked against the msgspec model
  of the route's hook point (the generic model when no hook point is set), and
  optionally its identity traits against a JSON Schema;
- `json`: any JSON object, as a custom template may send;
- `form`: form-encoded data, as Kratos sends with a form Content-Type.

The body is decoded once. A route that only forwards decodes straight into the
model; a route that redacts or calls a handler also keeps the decoded document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from ..errors import ConfigError, InvalidJson, InvalidPayload
from ..kratos.models import (
    HookPoint,
    KratosContext,
    context_type,
    decode_context,
    decode_form,
)

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

__all__ = ["Payload", "PayloadKind", "PayloadParser", "load_traits_schema"]

PayloadKind = Literal["kratos", "json", "form"]

_json_decoder: Final = msgspec.json.Decoder()
# msgspec raises RecursionError, not DecodeError, past about 1000 levels.
_TOO_DEEP: Final = "The body is nested too deeply."


@dataclass(frozen=True, slots=True)
class Payload:
    """A parsed body.

    `data` is the bytes that were parsed (the body, or the payload string of a
    Jsonnet MAC envelope). `document` is the decoded JSON object or form map,
    None where the route decoded straight into `context`. `context` is the
    Kratos model of a `kratos` route.
    """

    data: bytes
    document: dict[str, Any] | None
    context: KratosContext | None = None
    form: bool = False


def load_traits_schema(path: str) -> Draft202012Validator:
    """Load a JSON Schema for identity traits, with format checks on.

    Raises:
        ConfigError: the file cannot be read, is not JSON, or is not a valid
            Draft 2020-12 schema.
    """
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import SchemaError

    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the traits schema {path}") from exc
    except ValueError as exc:
        raise ConfigError(f"the traits schema {path} is not valid JSON") from exc

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(
            f"the traits schema {path} is not a valid JSON Schema: {exc.message}"
        ) from exc

    return Draft202012Validator(schema, format_checker=FormatChecker())


class PayloadParser:
    """One route's parse and validate stage."""

    def __init__(
        self,
        kind: PayloadKind,
        *,
        hook: HookPoint | None = None,
        keep_document: bool = False,
        traits_schema: Draft202012Validator | None = None,
    ) -> None:
        self.kind: PayloadKind = kind
        self.hook = hook
        self._keep_document = keep_document
        self._traits_schema = traits_schema
        self._model_decoder = msgspec.json.Decoder(context_type(hook))

    @property
    def form(self) -> bool:
        """Whether the route takes form-encoded bodies."""
        return self.kind == "form"

    def parse(self, data: bytes) -> Payload:
        """Decode and check an authenticated body.

        Raises:
            InvalidJson: the body is not UTF-8 JSON (or ASCII form data).
            InvalidPayload: the body does not fit the route's model or schema.
        """
        if self.kind == "form":
            return Payload(data, decode_form(data), form=True)

        if self.kind == "json":
            return Payload(data, _decode_object(data))

        if self._keep_document:
            document = _decode_object(data)
            context = decode_context(document, self.hook)
        else:
            document = None
            context = self._decode_model(data)

        if self._traits_schema is not None and context.identity is not None:
            try:
                _check_traits(self._traits_schema, context.identity.traits)
            except RecursionError as exc:
                # jsonschema walks the traits recursively.
                raise InvalidPayload(
                    "The identity traits are nested too deeply to check."
                ) from exc

        return Payload(data, document, context)

    def _decode_model(self, data: bytes) -> KratosContext:
        # The typed decoder skips the keys the model lacks without checking
        # their UTF-8, and stops at the first mismatch before the end of the
        # text, so both checks are made here to keep 400 apart from 422.
        try:
            str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJson() from exc

        try:
            context: KratosContext = self._model_decoder.decode(data)
        except msgspec.ValidationError as exc:
            _decode_object(data)
            raise InvalidPayload(f"The body is not a Kratos payload: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise InvalidJson() from exc
        except RecursionError as exc:
            raise InvalidJson(_TOO_DEEP) from exc

        return context


def _decode_object(data: bytes) -> dict[str, Any]:
    try:
        document = _json_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidJson() from exc
    except RecursionError as exc:
        raise InvalidJson(_TOO_DEEP) from exc

    if not isinstance(document, dict):
        raise InvalidPayload("The body must be a JSON object.")

    return document


def _check_traits(schema: Draft202012Validator, traits: dict[str, Any]) -> None:
    from jsonschema.exceptions import best_match

    error = best_match(schema.iter_errors(traits))

    if error is None:
        return

    # The message names the failed keyword and where, never the value: traits
    # are personal data, and the error answer reaches the caller.
    where = "/" + "/".join(str(part) for part in error.absolute_path)
    raise InvalidPayload(
        f"The identity traits fail the traits schema: {error.validator!r} at {where}."
    )
