"""Standard Webhooks v1a keys: Ed25519, `whsk_` secret and `whpk_` public keys.

Needs the `cryptography` extra; importing this module without it raises an
ImportError that names the extra.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "Ed25519 (v1a) signatures need: pip install 'kratos-webhooks[cryptography]'"
    ) from exc

from .errors import ConfigError
from .secrets import Secret, parse_base64_key

__all__ = ["Ed25519PrivateKey", "Ed25519PublicKey"]

PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"


@dataclass(frozen=True, repr=False)
class Ed25519PublicKey:
    """A `whpk_` key that verifies v1a signatures."""

    key: ed25519.Ed25519PublicKey = field(compare=False)
    label: str = "literal"

    @classmethod
    def parse(cls, text: str, *, label: str = "literal") -> Ed25519PublicKey:
        """Parse `whpk_` + base64 of the 32-byte public key.

        Raises:
            ConfigError: the text is not such a key.
        """
        raw = parse_base64_key(text, prefix=PUBLIC_KEY_PREFIX, subject="public key")

        if len(raw) != 32:
            raise ConfigError(f"public key decodes to {len(raw)} bytes; expected 32")

        return cls(ed25519.Ed25519PublicKey.from_public_bytes(raw), label)

    @classmethod
    def from_secret(cls, secret: Secret) -> Ed25519PublicKey:
        return cls.parse(secret.reveal(), label=secret.reference)

    def encode(self) -> str:
        raw = self.key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")

    def verify_base64(self, encoded: str, signed: bytes) -> bool:
        """Return whether `encoded` is a valid signature of `signed`."""
        try:
            signature = base64.b64decode(encoded, validate=True)
            self.key.verify(signature, signed)
        except (binascii.Error, ValueError, InvalidSignature):
            return False

        return True

    def __repr__(self) -> str:
        return f"Ed25519PublicKey({self.label!r})"


@dataclass(frozen=True, repr=False)
class Ed25519PrivateKey:
    """A `whsk_` key that makes v1a signatures."""

    key: ed25519.Ed25519PrivateKey = field(compare=False)
    label: str = "literal"

    @classmethod
    def parse(cls, text: str, *, label: str = "literal") -> Ed25519PrivateKey:
        """Parse `whsk_` + base64 of the 32-byte seed, or of seed + public key.

        Raises:
            ConfigError: the text is not such a key, or its public half disagrees.
        """
        raw = parse_base64_key(text, prefix=PRIVATE_KEY_PREFIX, subject="secret key")

        if len(raw) not in (32, 64):
            raise ConfigError(
                f"secret key decodes to {len(raw)} bytes; expected 32 or 64"
            )

        private = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])

        if len(raw) == 64:
            public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

            if public != raw[32:]:
                raise ConfigError("secret key's public half does not match its seed")

        return cls(private, label)

    @classmethod
    def from_secret(cls, secret: Secret) -> Ed25519PrivateKey:
        return cls.parse(secret.reveal(), label=secret.reference)

    @classmethod
    def generate(cls) -> Ed25519PrivateKey:
        return cls(ed25519.Ed25519PrivateKey.generate(), "generated")

    def encode(self) -> str:
        """Return `whsk_` + base64 of the 32-byte seed."""
        raw = self.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return PRIVATE_KEY_PREFIX + base64.b64encode(raw).decode("ascii")

    def public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey(self.key.public_key(), self.label)

    def sign_base64(self, signed: bytes) -> str:
        return base64.b64encode(self.key.sign(signed)).decode("ascii")

    def __repr__(self) -> str:
        return f"Ed25519PrivateKey({self.label!r})"
