"""Typed models of the `ctx` object that Kratos renders into a web hook body.

The shapes follow the Go structs Kratos marshals (`templateContext` with its
flow, identity and session). They are tolerant of what Kratos really sends:
absent `identity` and `session`, nil UUIDs before an identity or session is
stored, `0001-01-01T00:00:00Z` timestamps, `null` metadata and organization
ids, and floats printed with 17 significant digits.

Fields that a newer Kratos adds are kept: `decode_context` records, on every
decoded object, the keys it does not model, and `context_to_builtins` writes
them back, so a decode and encode round trip loses nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeVar, get_args

import msgspec
from msgspec.structs import FieldInfo

from ..errors import InvalidJson, InvalidPayload

__all__ = [
    "HOOK_POINTS",
    "NIL_UUID",
    "AuthenticationMethod",
    "Device",
    "Flow",
    "HookPoint",
    "Identity",
    "KratosContext",
    "LoginContext",
    "LoginFlow",
    "RecoveryAddress",
    "RecoveryContext",
    "RecoveryFlow",
    "RegistrationContext",
    "RegistrationFlow",
    "Session",
    "SettingsContext",
    "SettingsFlow",
    "UiContainer",
    "UiNode",
    "UiText",
    "VerifiableAddress",
    "VerificationContext",
    "VerificationFlow",
    "context_to_builtins",
    "context_type",
    "decode_as",
    "decode_context",
    "decode_form",
    "decode_json",
    "unknown_fields",
]

HookPoint = Literal[
    "registration.before",
    "registration.after",
    "login.before",
    "login.after",
    "settings.before",
    "settings.after",
    "recovery.before",
    "recovery.after",
    "verification.before",
    "verification.after",
]
HOOK_POINTS: Final[tuple[HookPoint, ...]] = get_args(HookPoint)

# Kratos gives an identity or session this id until it is stored.
NIL_UUID: Final = uuid.UUID(int=0)

_EXTRA: Final = "_unknown_fields"
_RAW: Final = "_raw_object"

T = TypeVar("T")


class _Model(msgspec.Struct, kw_only=True, dict=True):
    """Base of every model; `dict=True` lets a decoded object carry its unknown keys."""


class UiText(_Model):
    """A message in a flow's UI, as Kratos' `text.Message` prints it."""

    id: int
    text: str
    type: str
    context: dict[str, Any] | None = None


class UiNode(_Model):
    """A UI node; `attributes` varies with the node type, so it stays a mapping."""

    type: str
    group: str
    attributes: dict[str, Any]
    messages: list[UiText] = []
    meta: dict[str, Any] = {}


class UiContainer(_Model):
    action: str
    method: str
    nodes: list[UiNode] = []
    messages: list[UiText] | None = None


class VerifiableAddress(_Model):
    value: str
    via: str
    id: uuid.UUID = NIL_UUID
    verified: bool = False
    status: str | None = None
    verified_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class RecoveryAddress(_Model):
    value: str
    via: str
    id: uuid.UUID = NIL_UUID
    break_glass_for_organization: uuid.UUID | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class Identity(_Model):
    """An identity as hooks see it, which never has credentials or admin metadata."""

    id: uuid.UUID
    schema_id: str
    traits: dict[str, Any]
    schema_url: str = ""
    state: str | None = None
    metadata_public: dict[str, Any] | None = None
    metadata_admin: dict[str, Any] | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    organization_id: uuid.UUID | None = None
    external_id: str | None = None
    state_changed_at: dt.datetime | None = None
    verifiable_addresses: list[VerifiableAddress] = []
    recovery_addresses: list[RecoveryAddress] = []
    region: str | None = None

    @property
    def is_stored(self) -> bool:
        """Whether Kratos has stored the identity; false in pre-persist registration."""
        return self.id != NIL_UUID


class AuthenticationMethod(_Model):
    method: str
    aal: str | None = None
    completed_at: dt.datetime | None = None
    provider: str | None = None
    organization: str | None = None
    upstream_acr: str | None = None
    upstream_amr: list[str] | None = None


class Device(_Model):
    id: uuid.UUID = NIL_UUID
    ip_address: str | None = None
    user_agent: str | None = None
    location: str | None = None


class Session(_Model):
    """A session; on a fresh login its id and device ids are still the nil UUID."""

    id: uuid.UUID
    active: bool = False
    expires_at: dt.datetime | None = None
    authenticated_at: dt.datetime | None = None
    authenticator_assurance_level: str | None = None
    authentication_methods: list[AuthenticationMethod] = []
    issued_at: dt.datetime | None = None
    identity: Identity | None = None
    devices: list[Device] = []
    tokenized: str | None = None

    @property
    def is_stored(self) -> bool:
        """Whether Kratos has stored the session; false during a fresh login."""
        return self.id != NIL_UUID


class Flow(_Model):
    """The fields every self-service flow has."""

    id: uuid.UUID
    type: str
    expires_at: dt.datetime | None = None
    issued_at: dt.datetime | None = None
    request_url: str = ""
    return_to: str | None = None
    active: str | None = None
    ui: UiContainer | None = None
    state: str | None = None
    transient_payload: dict[str, Any] | None = None


class LoginFlow(Flow):
    organization_id: uuid.UUID | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    refresh: bool = False
    requested_aal: str | None = None
    oauth2_login_challenge: str | None = None
    oauth2_login_request: dict[str, Any] | None = None
    session_token_exchange_code: str | None = None
    identity_schema: str | None = None


class RegistrationFlow(Flow):
    organization_id: uuid.UUID | None = None
    oauth2_login_challenge: str | None = None
    oauth2_login_request: dict[str, Any] | None = None
    session_token_exchange_code: str | None = None
    identity_schema: str | None = None


class SettingsFlow(Flow):
    identity: Identity | None = None
    organization_id: uuid.UUID | None = None
    continue_with: list[dict[str, Any]] | None = None


class RecoveryFlow(Flow):
    continue_with: list[dict[str, Any]] | None = None


class VerificationFlow(Flow):
    pass


class KratosContext(_Model):
    """The whole `ctx`, as a passthrough template (`function(ctx) ctx`) sends it.

    `request_cookies` and `request_headers` hold values the end user sent, the
    session cookie among them; the repr of a context is redacted for that reason.
    """

    flow: Flow
    request_headers: dict[str, list[str]] = {}
    request_method: str = ""
    request_url: str = ""
    request_cookies: dict[str, str] = {}
    identity: Identity | None = None
    session: Session | None = None

    def __repr__(self) -> str:
        from .redaction import redact_payload

        shown = redact_payload(context_to_builtins(self))
        return f"{type(self).__name__}({msgspec.json.encode(shown).decode()})"


class LoginContext(KratosContext):
    flow: LoginFlow


class RegistrationContext(KratosContext):
    flow: RegistrationFlow


class SettingsContext(KratosContext):
    flow: SettingsFlow


class RecoveryContext(KratosContext):
    flow: RecoveryFlow


class VerificationContext(KratosContext):
    flow: VerificationFlow


_CONTEXT_BY_FLOW: Final[dict[str, type[KratosContext]]] = {
    "login": LoginContext,
    "registration": RegistrationContext,
    "settings": SettingsContext,
    "recovery": RecoveryContext,
    "verification": VerificationContext,
}


def context_type(hook: HookPoint | None) -> type[KratosContext]:
    """Return the context model for a hook point, or the generic one for `None`."""
    if hook is None:
        return KratosContext

    if hook not in HOOK_POINTS:
        raise ValueError(
            f"unknown hook point {hook!r}: expected one of {', '.join(HOOK_POINTS)}"
        )

    return _CONTEXT_BY_FLOW[hook.partition(".")[0]]


def decode_json(body: bytes) -> Any:
    """Decode a body as UTF-8 JSON, whatever charset its Content-Type claims.

    Raises:
        TypeError: `body` is not bytes.
        InvalidJson: the body is not UTF-8 JSON.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("decode the raw body bytes, not a decoded str")

    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidJson() from exc
    except RecursionError as exc:
        # msgspec raises it, not DecodeError, past about 1000 levels.
        raise InvalidJson("The body is nested too deeply.") from exc


def decode_as(body: bytes, model: type[T]) -> T:
    """Decode a JSON body into a type the caller gives (a msgspec Struct, dataclass...).

    Use it for bodies that a custom Jsonnet template shapes.

    Raises:
        InvalidJson: the body is not UTF-8 JSON.
        InvalidPayload: the JSON does not match `model`.
    """
    value = decode_json(body)

    try:
        return msgspec.convert(value, model)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(
            f"The body does not match {model.__name__}: {exc}"
        ) from exc


def decode_context(
    body: bytes | Mapping[str, Any], hook: HookPoint | None = None
) -> KratosContext:
    """Decode a passthrough `ctx` body into the model for `hook` (generic if None).

    `body` is the raw JSON bytes, or a mapping already decoded from them.

    Raises:
        InvalidJson: the body is not UTF-8 JSON.
        InvalidPayload: the JSON is not a Kratos `ctx` object.
    """
    model = context_type(hook)
    raw = body if isinstance(body, Mapping) else decode_json(body)

    if not isinstance(raw, Mapping):
        raise InvalidPayload("The body is not a JSON object.")

    try:
        context = msgspec.convert(raw, model)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(f"The body is not a Kratos payload: {exc}") from exc

    _remember_source(context, raw)
    return context


def decode_form(body: bytes) -> dict[str, str]:
    """Decode a form-encoded body, as Kratos sends it with a form Content-Type.

    Kratos encodes a flat string map with Go's `url.Values.Encode`: percent
    escapes of UTF-8 bytes, so the body is ASCII whatever charset is claimed.

    Raises:
        InvalidJson: the body is not ASCII form data (reason code `invalid_json`).
        InvalidPayload: a key repeats, which Kratos never sends.
    """
    from urllib.parse import parse_qsl

    try:
        text = bytes(body).decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidJson("The body is not valid form-encoded data.") from exc

    form: dict[str, str] = {}

    for key, value in pairs:
        if key in form:
            raise InvalidPayload(f"The form field {key!r} appears more than once.")

        form[key] = value

    return form


def unknown_fields(model: msgspec.Struct) -> dict[str, Any]:
    """Return the keys a decoded object carried that its model does not declare."""
    extra: dict[str, Any] = model.__dict__.get(_EXTRA, {})
    return extra


def context_to_builtins(value: Any) -> Any:
    """Turn a context (or any model in it) back into JSON-ready builtins.

    Unknown keys come back, keys absent from the decoded body stay absent, and an
    unchanged timestamp keeps the exact text Kratos sent (Kratos prints
    nanoseconds, Python keeps microseconds).
    """
    if isinstance(value, msgspec.Struct):
        return _struct_to_builtins(value)

    if isinstance(value, list | tuple):
        return [context_to_builtins(item) for item in value]

    if isinstance(value, dict):
        return {key: context_to_builtins(item) for key, item in value.items()}

    return msgspec.to_builtins(value)


def _struct_to_builtins(model: msgspec.Struct) -> dict[str, Any]:
    raw: Mapping[str, Any] | None = model.__dict__.get(_RAW)
    out: dict[str, Any] = {}
    fields = _struct_fields(type(model))

    for field in fields:
        value = getattr(model, field.name)

        # A key absent from the body stays absent unless code has since set it.
        if (
            raw is not None
            and field.encode_name not in raw
            and _is_default(field, value)
        ):
            continue

        if raw is not None and isinstance(value, dt.datetime):
            sent = raw.get(field.encode_name)

            if isinstance(sent, str) and _same_instant(sent, value):
                out[field.encode_name] = sent
                continue

        out[field.encode_name] = context_to_builtins(value)

    for key, value in unknown_fields(model).items():
        out.setdefault(key, value)

    return out


def _is_default(field: msgspec.structs.FieldInfo, value: Any) -> bool:
    if field.default_factory is not msgspec.NODEFAULT:
        return bool(value == field.default_factory())

    return bool(value == field.default)


def _same_instant(text: str, value: dt.datetime) -> bool:
    try:
        return msgspec.convert(text, dt.datetime) == value
    except msgspec.ValidationError:
        return False


@functools.cache
def _struct_fields(model: type[msgspec.Struct]) -> tuple[FieldInfo, ...]:
    # msgspec evaluates a model's annotations on every `fields` call.
    return msgspec.structs.fields(model)


def _remember_source(value: Any, raw: Any) -> None:
    """Record, on each decoded model, its source object and the keys it lacks."""
    if isinstance(value, msgspec.Struct) and isinstance(raw, Mapping):
        fields = _struct_fields(type(value))
        known = {field.encode_name for field in fields}
        value.__dict__[_RAW] = raw
        value.__dict__[_EXTRA] = {k: v for k, v in raw.items() if k not in known}

        for field in fields:
            if field.encode_name in raw:
                _remember_source(getattr(value, field.name), raw[field.encode_name])

        return

    if isinstance(value, list) and isinstance(raw, list) and len(value) == len(raw):
        for item, raw_item in zip(value, raw, strict=True):
            _remember_source(item, raw_item)
