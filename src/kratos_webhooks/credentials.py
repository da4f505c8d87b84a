"""Kratos' own credentials: an API key in a header or cookie, HTTP Basic, a body MAC.

Kratos cannot sign its web hooks; these check what it can send, each against
several active values so that a credential can be rotated without downtime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from .compare import constant_time_equal
from .errors import (
    ConfigError,
    CredentialMismatch,
    InvalidJson,
    MalformedCredential,
    MissingCredential,
)
from .secrets import Secret

__all__ = [
    "ApiKeyCheck",
    "BasicAuthCheck",
    "CredentialCheck",
    "JsonnetMacCheck",
    "header_values",
    "jsonnet_envelope",
    "jsonnet_mac",
]

ApiKeyLocation = Literal["header", "cookie"]
Headers = Mapping[str, str] | Iterable[tuple[bytes, bytes]]

# RFC 7230 token characters, the only ones allowed in a header or cookie name.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MAC_HEX = re.compile(r"[0-9a-f]{128}")


class CredentialCheck(Protocol):
    def verify(self, headers: Headers) -> None: ...


def header_values(headers: Headers, name: str) -> list[str]:
    """Return every value of a header, names compared case-insensitively.

    Raises:
        MalformedCredential: a value contains bytes that are not ASCII.
    """
    lowered = name.lower()

    if isinstance(headers, Mapping):
        return [v for k, v in headers.items() if k.lower() == lowered]

    wanted = lowered.encode("ascii")
    values = []

    for raw_name, raw_value in headers:
        if raw_name.lower() != wanted:
            continue

        try:
            values.append(raw_value.decode("ascii"))
        except UnicodeDecodeError as exc:
            raise MalformedCredential(f"The {name} header is not ASCII.") from exc

    return values


def _single_header(headers: Headers, name: str) -> str:
    values = header_values(headers, name)

    if not values:
        raise MissingCredential(f"The {name} header is missing.")

    if len(values) > 1:
        raise MalformedCredential(f"The {name} header was sent more than once.")

    return values[0]


def _require_secrets(values: Sequence[Secret], subject: str) -> tuple[Secret, ...]:
    if isinstance(values, Secret):
        values = (values,)

    if not values:
        raise ConfigError(f"{subject} needs at least one active value")

    for value in values:
        if not isinstance(value, Secret):
            raise TypeError(f"{subject} values must be Secret instances")

    return tuple(values)


def _matches_any(received: str, secrets: Sequence[Secret]) -> bool:
    # Every value is compared, so the time taken does not reveal which one matched.
    # UTF-8 bytes, because compare_digest rejects a str that is not ASCII.
    received_bytes = received.encode("utf-8", "surrogateescape")
    matched = False

    for secret in secrets:
        matched |= constant_time_equal(secret.reveal().encode("utf-8"), received_bytes)

    return matched


def parse_cookie_header(value: str) -> dict[str, list[str]]:
    """Parse a `Cookie` header strictly into name -> values.

    Raises:
        MalformedCredential: a pair has no `=` or an invalid name.
    """
    cookies: dict[str, list[str]] = {}

    for pair in value.split(";"):
        pair = pair.strip(" \t")

        if not pair:
            continue

        name, eq, cookie_value = pair.partition("=")

        if not eq or not _TOKEN.fullmatch(name):
            raise MalformedCredential("The Cookie header is malformed.")

        if len(cookie_value) >= 2 and cookie_value[0] == cookie_value[-1] == '"':
            cookie_value = cookie_value[1:-1]

        cookies.setdefault(name, []).append(cookie_value)

    return cookies


@dataclass(frozen=True)
class ApiKeyCheck:
    """Kratos' `auth.type: api_key`: a static value in a named header or cookie."""

    name: str
    values: tuple[Secret, ...]
    location: ApiKeyLocation = "header"

    def __init__(
        self,
        name: str,
        values: Sequence[Secret],
        *,
        location: ApiKeyLocation = "header",
    ) -> None:
        if not _TOKEN.fullmatch(name or ""):
            raise ConfigError(
                f"api key name {name!r} is not a valid header or cookie name"
            )

        if location not in ("header", "cookie"):
            raise ConfigError("api key location must be 'header' or 'cookie'")

        object.__setattr__(self, "name", name)
        object.__setattr__(self, "values", _require_secrets(values, "an api key"))
        object.__setattr__(self, "location", location)

    def verify(self, headers: Headers) -> None:
        """Check the key.

        Raises:
            CredentialError: missing, malformed or not matching any active value.
        """
        if self.location == "header":
            received = _single_header(headers, self.name)
        else:
            received = self._cookie_value(headers)

        if not _matches_any(received, self.values):
            raise CredentialMismatch()

    def _cookie_value(self, headers: Headers) -> str:
        found: list[str] = []

        for header in header_values(headers, "cookie"):
            found += parse_cookie_header(header).get(self.name, [])

        if not found:
            raise MissingCredential(f"The {self.name} cookie is missing.")

        if len(found) > 1:
            raise MalformedCredential(
                f"The {self.name} cookie was sent more than once."
            )

        return found[0]


@dataclass(frozen=True)
class BasicAuthCheck:
    """Kratos' `auth.type: basic_auth`: `Authorization: Basic base64(user:password)`.

    Each active value is a secret holding `user:password`.
    """

    values: tuple[Secret, ...]

    def __init__(self, values: Sequence[Secret]) -> None:
        values = _require_secrets(values, "basic auth")

        for value in values:
            if ":" not in value.reveal():
                raise ConfigError(
                    f"basic auth secret {value.reference} must hold user:password"
                )

        object.__setattr__(self, "values", values)

    def verify(self, headers: Headers) -> None:
        """Check the Basic credential.

        Raises:
            CredentialError: missing, malformed or not matching any active value.
        """
        header = _single_header(headers, "authorization")
        scheme, _, encoded = header.strip().partition(" ")

        if scheme.lower() != "basic" or not encoded:
            raise MalformedCredential("The Authorization header is not Basic.")

        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise MalformedCredential(
                "The Authorization header is not valid base64 of user:password."
            ) from exc

        if ":" not in decoded:
            raise MalformedCredential("The Authorization header has no user:password.")

        if not _matches_any(decoded, self.values):
            raise CredentialMismatch()


def jsonnet_mac(secret: str, payload: str) -> str:
    """Return the MAC that the generated Kratos template computes.

    It is SHA3-512 over the secret's UTF-8 bytes followed by the payload's, in
    lowercase hex, as Jsonnet's `std.sha3(secret + payload)` prints it. SHA-3 has
    no length extension, so a secret prefix is a sound MAC here.
    """
    return hashlib.sha3_512((secret + payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class JsonnetMacCheck:
    """A body `{"payload": "<json string>", "mac": "<hex>"}` made by Kratos' Jsonnet.

    The MAC covers the payload string only. With `exact_layout` (the default)
    the envelope must also be laid out byte for byte as Kratos prints it, so
    that no byte of the body can change unnoticed, whitespace included.
    """

    values: tuple[Secret, ...]
    exact_layout: bool

    def __init__(self, values: Sequence[Secret], *, exact_layout: bool = True) -> None:
        object.__setattr__(self, "values", _require_secrets(values, "a body MAC"))
        object.__setattr__(self, "exact_layout", exact_layout)

    def verify_body(self, body: bytes) -> str:
        """Check the MAC over the exact payload string and return that string.

        Raises:
            TypeError: `body` is not bytes.
            InvalidJson: the body is not UTF-8 JSON.
            CredentialError: the envelope is malformed or the MAC does not match.
        """
        if not isinstance(body, bytes):
            raise TypeError("verify the raw body bytes, not a decoded str")

        try:
            envelope = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidJson() from exc

        if not isinstance(envelope, dict) or set(envelope) != {"payload", "mac"}:
            raise MalformedCredential(
                'The body is not a {"payload": ..., "mac": ...} envelope.'
            )

        payload, mac = envelope["payload"], envelope["mac"]

        if not isinstance(payload, str) or not isinstance(mac, str):
            raise MalformedCredential("The payload and mac must both be strings.")

        if not _MAC_HEX.fullmatch(mac):
            raise MalformedCredential("The mac is not 128 lowercase hex digits.")

        try:
            payload_bytes = payload.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedCredential("The payload is not valid Unicode.") from exc

        matched = False

        for secret in self.values:
            digest = hashlib.sha3_512(secret.reveal().encode("utf-8") + payload_bytes)
            matched |= constant_time_equal(digest.hexdigest(), mac)

        if not matched:
            raise CredentialMismatch()

        if self.exact_layout and body != jsonnet_envelope(payload, mac):
            raise MalformedCredential(
                "The envelope is not laid out as Kratos prints it."
            )

        return payload


# go-jsonnet's escapes: the short forms below, \u00xx (lowercase hex) for other
# characters below 0x20 and for 0x7f to 0x9f, and raw UTF-8 for the rest.
_JSONNET_ESCAPES: Final = {
    **{code: f"\\u{code:04x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\b"): "\\b",
    ord("\f"): "\\f",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def jsonnet_envelope(payload: str, mac: str) -> bytes:
    """Return the envelope exactly as Kratos' Jsonnet prints it.

    Kratos renders its body templates with go-jsonnet, whose output has sorted
    keys, a three-space indent and a trailing newline.
    """
    escaped = payload.translate(_JSONNET_ESCAPES)
    text = f'{{\n   "mac": "{mac}",\n   "payload": "{escaped}"\n}}\n'
    return text.encode("utf-8")
