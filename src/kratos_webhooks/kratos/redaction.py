"""Redaction of credentials and chosen fields from Kratos payloads.

One function, `redact_payload`, serves log lines, the reprs of payloads and
events, and bodies forwarded to an application that asked for redaction. It
always removes:

- every value in `request_cookies` (the session cookie and the CSRF cookie are
  bearer credentials), and in `cookies` as Kratos' own digest template names it;
- the values of `Cookie`, `Authorization`, `Proxy-Authorization`, `Set-Cookie`,
  `X-Session-Token` and `Ory-Base-Url-Rewrite-Token` in `request_headers` (or
  `headers`): Kratos up to v1.2 forwarded every request header;
- the CSRF token in `flow.ui.nodes`, `session.tokenized` (a signed session
  token) and `flow.session_token_exchange_code`;
- any value under a key named `ory_kratos_session`, `ory_session_*` or
  `csrf_token*`, wherever a custom template puts it.

Extra fields are named by JSON pointers (RFC 6901), where `*` matches every
element of an array or every member of an object: `/identity/traits/phone`,
`/identity/verifiable_addresses/*/value`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlencode

from ..errors import ConfigError, InvalidPayload

__all__ = [
    "REDACTED",
    "SENSITIVE_HEADERS",
    "Redactor",
    "parse_pointer",
    "redact_body",
    "redact_payload",
    "redacted_json",
]

REDACTED: Final = "[redacted]"

SENSITIVE_HEADERS: Final = frozenset(
    {
        "authorization",
        "cookie",
        "ory-base-url-rewrite-token",
        "proxy-authorization",
        "set-cookie",
        "x-session-token",
    }
)

_COOKIE_KEYS: Final = ("request_cookies", "cookies")
_HEADER_KEYS: Final = ("request_headers", "headers")
_SECRET_KEY_PREFIXES: Final = ("ory_kratos_session", "ory_session_", "csrf_token")

Pointer = tuple[str, ...]


def parse_pointer(text: str) -> Pointer:
    """Split a JSON pointer such as `/identity/traits/phone` into its tokens.

    Raises:
        ConfigError: the pointer is empty or does not start with `/`.
    """
    if not isinstance(text, str) or not text.startswith("/"):
        raise ConfigError(
            f"invalid redaction pointer {text!r}: a JSON pointer starts with '/', "
            "for example /identity/traits/phone"
        )

    return tuple(
        part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")
    )


class Redactor:
    """Redaction with a fixed set of extra pointers, parsed once."""

    def __init__(self, pointers: Iterable[str] = (), *, placeholder: str = REDACTED):
        self.pointers: tuple[str, ...] = tuple(pointers)
        self._parsed = tuple(parse_pointer(p) for p in self.pointers)
        self.placeholder = placeholder

    def __repr__(self) -> str:
        return f"Redactor(pointers={list(self.pointers)!r})"

    def redact(self, payload: Any) -> Any:
        """Return a redacted deep copy of a decoded payload; the input is unchanged.

        Raises:
            InvalidPayload: the payload is nested too deeply to copy and walk.
        """
        try:
            return self._redact(payload)
        except RecursionError as exc:
            raise InvalidPayload("The body is nested too deeply to redact.") from exc

    def _redact(self, payload: Any) -> Any:
        result = copy.deepcopy(payload)

        if isinstance(result, dict):
            self._redact_envelope(result)
            self._redact_context(result)

        result = self._redact_secret_keys(result)

        for pointer in self._parsed:
            self._redact_pointer(result, pointer)

        return result

    def redact_body(self, body: bytes, *, form: bool = False) -> bytes:
        """Redact a raw JSON (or form) body and serialise it again.

        The output is new JSON, so any signature over the original bytes no longer
        holds: call this only after verification, on what is forwarded onwards.

        Raises:
            InvalidJson: the body is not UTF-8 JSON or form data.
            InvalidPayload: the body is nested too deeply to redact.
        """
        from .models import decode_form, decode_json

        document = decode_form(body) if form else decode_json(body)
        return self.redact_document(document, form=form)

    def redact_document(self, document: Any, *, form: bool = False) -> bytes:
        """Redact a decoded JSON document (or form map) and serialise it.

        Use it where the body is already decoded, so it is not decoded twice.

        Raises:
            InvalidPayload: the document is nested too deeply to redact.
        """
        if form:
            fields = self.redact(document)
            return urlencode(sorted(fields.items())).encode("ascii")

        redacted = self.redact(document)

        try:
            text = json.dumps(redacted, ensure_ascii=False)
        except RecursionError as exc:
            raise InvalidPayload("The body is nested too deeply to redact.") from exc

        return text.encode("utf-8")

    def _redact_context(self, payload: dict[str, Any]) -> None:
        for key in _COOKIE_KEYS:
            cookies = payload.get(key)

            if isinstance(cookies, dict):
                for name in cookies:
                    cookies[name] = self.placeholder

        for key in _HEADER_KEYS:
            headers = payload.get(key)

            if isinstance(headers, dict):
                self._redact_headers(headers)

        flow = payload.get("flow")

        if isinstance(flow, dict):
            self._redact_ui_nodes(flow.get("ui"))

            if "session_token_exchange_code" in flow:
                flow["session_token_exchange_code"] = self.placeholder

        session = payload.get("session")

        if isinstance(session, dict) and "tokenized" in session:
            session["tokenized"] = self.placeholder

    def _redact_headers(self, headers: dict[str, Any]) -> None:
        for name, value in headers.items():
            if name.lower() not in SENSITIVE_HEADERS:
                continue

            if isinstance(value, list):
                headers[name] = [self.placeholder for _ in value]
            else:
                headers[name] = self.placeholder

    def _redact_ui_nodes(self, ui: Any) -> None:
        if not isinstance(ui, dict) or not isinstance(ui.get("nodes"), list):
            return

        for node in ui["nodes"]:
            attributes = node.get("attributes") if isinstance(node, dict) else None

            if not isinstance(attributes, dict):
                continue

            if attributes.get("name") == "csrf_token" and "value" in attributes:
                attributes["value"] = self.placeholder

    def _redact_envelope(self, payload: dict[str, Any]) -> None:
        # The Jsonnet MAC envelope carries the ctx as a JSON string.
        inner = payload.get("payload")

        if set(payload) != {"payload", "mac"} or not isinstance(inner, str):
            return

        try:
            decoded = json.loads(inner)
        except ValueError:
            return

        payload["payload"] = json.dumps(self.redact(decoded), ensure_ascii=False)

    def _redact_secret_keys(self, value: Any) -> Any:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and key.startswith(_SECRET_KEY_PREFIXES):
                    value[key] = self.placeholder
                else:
                    value[key] = self._redact_secret_keys(item)

        elif isinstance(value, list):
            for index, item in enumerate(value):
                value[index] = self._redact_secret_keys(item)

        return value

    def _redact_pointer(self, value: Any, pointer: Sequence[str]) -> None:
        segment, rest = pointer[0], pointer[1:]

        for key in _matching_keys(value, segment):
            if rest:
                self._redact_pointer(value[key], rest)
            else:
                value[key] = self.placeholder


def _matching_keys(value: Any, segment: str) -> list[Any]:
    if isinstance(value, dict):
        if segment == "*":
            return list(value)

        return [segment] if segment in value else []

    if isinstance(value, list):
        if segment == "*":
            return list(range(len(value)))

        if segment.isdigit() and int(segment) < len(value):
            return [int(segment)]

    return []


def redact_payload(
    payload: Any, pointers: Iterable[str] = (), *, placeholder: str = REDACTED
) -> Any:
    """Return a redacted deep copy of a decoded Kratos payload (see the module doc).

    Raises:
        ConfigError: a pointer is not a JSON pointer.
    """
    return Redactor(pointers, placeholder=placeholder).redact(payload)


def redact_body(
    body: bytes, pointers: Iterable[str] = (), *, form: bool = False
) -> bytes:
    """Redact a raw body for forwarding; see `Redactor.redact_body`."""
    return Redactor(pointers).redact_body(body, form=form)


def redacted_json(payload: Any, pointers: Iterable[str] = ()) -> str:
    """Return compact redacted JSON text of a payload, for a log line."""
    from .models import context_to_builtins

    return json.dumps(
        redact_payload(context_to_builtins(payload), pointers),
        ensure_ascii=False,
        default=str,
    )
