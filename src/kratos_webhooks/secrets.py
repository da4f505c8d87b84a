"""Secrets as a type, Standard Webhooks keys, and key sets for rotation.

A `Secret` is loaded from a reference (`env:NAME`, `file:/path` or `literal:...`)
and never shows its value in a repr or a message. Keys are parsed from secrets
and refused at load, with a `ConfigError` that states why, when they are unusable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import ConfigError

__all__ = [
    "MIN_KEY_BYTES",
    "HmacKey",
    "KeySet",
    "Secret",
    "parse_base64_key",
]

SecretSource = Literal["env", "file", "literal"]

HMAC_KEY_PREFIX = "whsec_"
MIN_KEY_BYTES = 16

_BASE64_BODY = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True, repr=False)
class Secret:
    """A secret value and the reference it came from; the repr hides the value."""

    source: SecretSource
    name: str
    _value: str = field(compare=False)

    @classmethod
    def load(cls, reference: str, *, allow_literal: bool = True) -> Secret:
        """Load a secret from `env:NAME`, `file:/path` or `literal:VALUE`.

        A file loses one trailing newline (as `echo` and editors add), nothing else.

        Raises:
            ConfigError: the reference is malformed, the variable is unset, the file
                cannot be read, or the value is empty.
        """
        if not isinstance(reference, str):
            raise TypeError("a secret reference must be a str")

        scheme, sep, rest = reference.partition(":")

        if not sep or scheme not in ("env", "file", "literal"):
            raise ConfigError(
                "invalid secret reference: use env:NAME, file:/path or literal:VALUE"
            )

        if scheme == "env":
            return cls._from_env(rest)

        if scheme == "file":
            return cls._from_file(rest)

        if not allow_literal:
            raise ConfigError(
                "literal: secrets are not allowed here: use env:NAME or file:/path"
            )

        return cls.literal(rest)

    @classmethod
    def literal(cls, value: str) -> Secret:
        """Wrap a value given in code or in a test."""
        if not value:
            raise ConfigError("secret is empty")

        return cls("literal", "", value)

    @classmethod
    def _from_env(cls, name: str) -> Secret:
        if not name:
            raise ConfigError("invalid secret reference: env: needs a variable name")

        value = os.environ.get(name)

        if value is None:
            raise ConfigError(f"secret env:{name} is not set")

        if not value:
            raise ConfigError(f"secret env:{name} is empty")

        return cls("env", name, value)

    @classmethod
    def _from_file(cls, path: str) -> Secret:
        if not path:
            raise ConfigError("invalid secret reference: file: needs a path")

        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"secret file:{path} cannot be read: {exc.strerror}"
            ) from exc

        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"secret file:{path} is not UTF-8 text") from exc

        value = value.removesuffix("\n")

        if not value:
            raise ConfigError(f"secret file:{path} is empty")

        return cls("file", path, value)

    @property
    def reference(self) -> str:
        """The reference without the value: `env:NAME`, `file:/path` or `literal`."""
        return f"{self.source}:{self.name}" if self.source != "literal" else "literal"

    def reveal(self) -> str:
        """Return the value. Call it only where the value is used, never to log it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.reference!r})"

    __str__ = __repr__


def parse_base64_key(text: str, *, prefix: str, subject: str) -> bytes:
    """Decode a `prefix` + base64 key, tolerating a missing prefix or padding.

    Raises:
        ConfigError: the key is empty, pasted with a signature's `v1,` prefix,
            contains characters outside standard base64, or is too short.
    """
    if not text:
        raise ConfigError(f"{subject} is empty")

    if text.startswith(("v1,", "v1a,")):
        raise ConfigError(
            f"{subject} starts with a signature version ('v1,'): "
            "that is a signature, not a secret"
        )

    body = text.removeprefix(prefix)

    if not body:
        raise ConfigError(f"{subject} is empty after the {prefix!r} prefix")

    if not _BASE64_BODY.fullmatch(body):
        raise ConfigError(
            f"{subject} contains characters outside standard base64 (A-Z a-z 0-9 + /)"
        )

    unpadded = body.rstrip("=")

    if len(unpadded) % 4 == 1:
        raise ConfigError(f"{subject} is not valid base64: its length is impossible")

    try:
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error as exc:
        raise ConfigError(f"{subject} is not valid base64") from exc

    return key


@dataclass(frozen=True, repr=False)
class HmacKey:
    """A Standard Webhooks symmetric key (`whsec_...`) for HMAC-SHA256, version v1."""

    key: bytes = field(compare=True)
    label: str = "literal"

    @classmethod
    def parse(cls, text: str, *, label: str = "literal") -> HmacKey:
        """Parse `whsec_` + base64, with or without the prefix and its padding.

        Raises:
            ConfigError: see `parse_base64_key`; also when the key has fewer than
                16 bytes.
        """
        subject = f"secret {label}" if label != "literal" else "secret"
        key = parse_base64_key(text, prefix=HMAC_KEY_PREFIX, subject=subject)

        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"{subject} decodes to {len(key)} bytes; at least {MIN_KEY_BYTES} "
                "are needed (make one with: kratos-webhooks secret new)"
            )

        return cls(key, label)

    @classmethod
    def from_secret(cls, secret: Secret) -> HmacKey:
        """Parse the key held by a loaded secret."""
        return cls.parse(secret.reveal(), label=secret.reference)

    @classmethod
    def generate(cls, size: int = 32) -> HmacKey:
        """Make a new random key of `size` bytes."""
        return cls(os.urandom(size), "generated")

    def encode(self) -> str:
        """Return the key as `whsec_` + padded base64."""
        return HMAC_KEY_PREFIX + base64.b64encode(self.key).decode("ascii")

    def __repr__(self) -> str:
        return f"HmacKey({self.label!r})"


@dataclass(frozen=True)
class KeySet:
    """Active keys for rotation, newest first: the first signs, every one verifies."""

    keys: tuple[HmacKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("a key set needs at least one key")

        for key in self.keys:
            if not isinstance(key, HmacKey):
                raise TypeError("a KeySet contains only HmacKey values")

    @classmethod
    def of(cls, *keys: HmacKey | str) -> KeySet:
        """Build a key set from keys or `whsec_` strings, newest first."""
        parsed = (k if isinstance(k, HmacKey) else HmacKey.parse(k) for k in keys)
        return cls(tuple(parsed))

    @classmethod
    def load(cls, references: Sequence[str], *, allow_literal: bool = True) -> KeySet:
        """Load every secret reference and parse it as a key, newest first."""
        if isinstance(references, str):
            raise TypeError("pass a sequence of secret references, not one str")

        secrets = [Secret.load(ref, allow_literal=allow_literal) for ref in references]
        return cls.from_secrets(secrets)

    @classmethod
    def from_secrets(cls, secrets: Iterable[Secret]) -> KeySet:
        return cls(tuple(HmacKey.from_secret(s) for s in secrets))

    @property
    def newest(self) -> HmacKey:
        return self.keys[0]

    def __iter__(self) -> Iterator[HmacKey]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)
