"""Standard Webhooks signing and verification (v1: HMAC-SHA256, v1a: Ed25519).

The signed content is `<webhook-id>.<webhook-timestamp>.<raw body bytes>`. The
verifier works on the bytes received, never on re-serialised JSON, because Kratos
prints JSON its own way (sorted keys, 3-space indent, `%.17g` floats).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, NoReturn

from .compare import constant_time_equal
from .errors import (
    InvalidWebhookId,
    MalformedHeader,
    MalformedSignatureHeader,
    MalformedTimestamp,
    MissingHeader,
    NoSupportedSignature,
    SignatureMismatch,
    TimestampInFuture,
    TimestampTooOld,
)
from .secrets import HmacKey, KeySet

if TYPE_CHECKING:
    from .asymmetric import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_SIGNATURE_HEADER_LENGTH",
    "MAX_WEBHOOK_ID_LENGTH",
    "Delivery",
    "Headers",
    "Signer",
    "Verifier",
    "new_message_id",
]

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"

DEFAULT_TOLERANCE: Final = 300
MAX_WEBHOOK_ID_LENGTH: Final = 256
# Room for dozens of signatures during a rotation; a longer header is an attack.
MAX_SIGNATURE_HEADER_LENGTH: Final = 4096
# Ten digits cover Unix seconds until the year 2286; milliseconds have thirteen
# and are caught by the tolerance, anything longer is refused before int().
_MAX_TIMESTAMP_DIGITS: Final = 15

# The canonical base64 of a 32-byte HMAC-SHA256: 43 characters, the last of which
# carries two zero bits, then one `=`.
_V1_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
# The canonical base64 of a 64-byte Ed25519 signature.
_V1A_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{85}[AQgw]==")

Headers = Mapping[str, str] | Iterable[tuple[bytes, bytes]]
Clock = Callable[[], float]


class Delivery(NamedTuple):
    """The result of a verification: the message id and its signed timestamp."""

    msg_id: str
    timestamp: int


# NamedTuple's own __new__ is a Python function; this skips it on the hot path.
_new_delivery = tuple.__new__


def new_message_id() -> str:
    """Make a random message id, `msg_` and 27 URL-safe characters."""
    return "msg_" + _random.token_urlsafe(20)


def _signed_prefix(msg_id: str, timestamp: int | str) -> bytes:
    return f"{msg_id}.{timestamp}.".encode()


_SHA256_BLOCK: Final = 64


def _hmac_pads(key: bytes) -> tuple[Any, Any]:
    """Hash the HMAC-SHA256 inner and outer pads of a key (RFC 2104) once.

    Each message then costs two copies of a hash state instead of a new key
    schedule, which is most of what `hmac.new` spends on a small body.
    """
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()

    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


class Signer:
    """Sign bodies for the Standard Webhooks headers with the newest key of a set.

    With `all_keys=True` it adds one signature per active key, for a rollover in
    which receivers may still know only an older key.
    """

    def __init__(
        self,
        keys: KeySet | HmacKey | None,
        *,
        all_keys: bool = False,
        private_keys: Sequence[Ed25519PrivateKey] = (),
        clock: Clock = time.time,
    ) -> None:
        if keys is None and not private_keys:
            raise TypeError("a Signer needs HMAC keys, Ed25519 private keys, or both")

        if isinstance(keys, HmacKey):
            keys = KeySet((keys,))

        self._hmac_keys = () if keys is None else keys.keys
        self._all_keys = all_keys
        self._private_keys = tuple(private_keys)
        self._clock = clock

    def signature(self, body: bytes, *, msg_id: str, timestamp: int) -> str:
        """Return the `webhook-signature` value for a body, id and timestamp."""
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError("sign the raw body bytes, not a decoded str")

        _check_webhook_id(msg_id)
        signed = _signed_prefix(msg_id, timestamp) + bytes(body)
        keys = self._hmac_keys if self._all_keys else self._hmac_keys[:1]
        entries = [
            "v1," + base64.b64encode(hmac.digest(k.key, signed, "sha256")).decode()
            for k in keys
        ]
        entries += ["v1a," + key.sign_base64(signed) for key in self._private_keys]
        return " ".join(entries)

    def sign(
        self, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
    ) -> dict[str, str]:
        """Return the three headers for a body; a fresh id and the clock by default."""
        msg_id = new_message_id() if msg_id is None else msg_id
        timestamp = int(self._clock()) if timestamp is None else timestamp

        if timestamp < 0:
            raise ValueError("timestamp must not be negative")

        return {
            ID_HEADER: msg_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: self.signature(body, msg_id=msg_id, timestamp=timestamp),
        }


class Verifier:
    """Verify Standard Webhooks signatures against every active key of a set.

    The tolerance applies both ways: a timestamp more than `tolerance` seconds
    old or ahead of `clock()` is refused.
    """

    def __init__(
        self,
        keys: KeySet | HmacKey | None,
        *,
        public_keys: Sequence[Ed25519PublicKey] = (),
        tolerance: int = DEFAULT_TOLERANCE,
        clock: Clock = time.time,
    ) -> None:
        if keys is None and not public_keys:
            raise TypeError("a Verifier needs HMAC keys, Ed25519 public keys, or both")

        if isinstance(keys, HmacKey):
            keys = KeySet((keys,))

        if not isinstance(tolerance, int) or tolerance < 0:
            raise ValueError("tolerance must be a non-negative number of seconds")

        self._macs = [_hmac_pads(k.key) for k in (keys or ())]
        self._public_keys = tuple(public_keys)
        self.tolerance = tolerance
        self._clock = clock

    def verify(self, body: bytes, headers: Headers) -> Delivery:
        """Verify a raw body against its headers; names are case-insensitive.

        `headers` is a mapping of str names to str values, or the ASGI list of
        `(name, value)` byte pairs.

        Raises:
            TypeError: `body` is not bytes.
            VerificationError: a subclass naming what failed, with its reason code.
        """
        if type(headers) is dict:
            # The common case, a dict with lowercase names, skips the general scan.
            msg_id = headers.get(ID_HEADER)
            timestamp = headers.get(TIMESTAMP_HEADER)
            signature = headers.get(SIGNATURE_HEADER)

            if msg_id is not None and timestamp is not None and signature is not None:
                return self._verify(body, msg_id, timestamp, signature)

        return self._verify(body, *_read_headers(headers))

    def is_valid(self, body: bytes, headers: Headers) -> bool:
        """Return whether `verify` accepts; prefer `verify` to learn why not."""
        from .errors import VerificationError

        try:
            self.verify(body, headers)
        except VerificationError:
            return False

        return True

    def verify_parts(
        self,
        body: bytes,
        *,
        msg_id: str | None,
        timestamp: str | None,
        signature: str | None,
    ) -> Delivery:
        """Verify with the three header values already taken out of the request.

        Raises:
            TypeError: `body` is not bytes.
            VerificationError: a subclass naming what failed, with its reason code.
        """
        return self._verify(body, msg_id, timestamp, signature)

    def _verify(
        self,
        body: bytes,
        msg_id: str | None,
        timestamp: str | None,
        signature: str | None,
    ) -> Delivery:
        if not isinstance(body, bytes):
            raise TypeError("verify the raw body bytes, not a decoded str")

        if msg_id is None or timestamp is None or signature is None:
            _raise_missing(msg_id, timestamp)

        if not (
            0 < len(msg_id) <= MAX_WEBHOOK_ID_LENGTH
            and msg_id.isascii()
            and msg_id.isprintable()
            and " " not in msg_id
            and "." not in msg_id
        ):
            _reject_webhook_id(msg_id)

        if not (
            timestamp.isascii()
            and timestamp.isdigit()
            and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
        ):
            _reject_timestamp(timestamp)

        sent_at = int(timestamp)
        now = int(self._clock())
        tolerance = self.tolerance

        if sent_at < now - tolerance:
            raise TimestampTooOld(sent_at, now, tolerance)

        if sent_at > now + tolerance:
            raise TimestampInFuture(sent_at, now, tolerance)

        if len(signature) > MAX_SIGNATURE_HEADER_LENGTH:
            raise MalformedSignatureHeader(
                SIGNATURE_HEADER,
                f"longer than {MAX_SIGNATURE_HEADER_LENGTH} characters",
            )

        prefix = f"{msg_id}.{timestamp}.".encode()

        # Each entry is compared with the canonical `v1,` encoding of each key's
        # MAC. A malformed, non-canonical or other-version entry can never equal
        # it, so entries need no validation before they are compared. This loop
        # is written out in place because it is the hot path of every request.
        entries = signature.split(" ")

        for inner_pad, outer_pad in self._macs:
            inner = inner_pad.copy()
            inner.update(prefix)
            inner.update(body)
            outer = outer_pad.copy()
            outer.update(inner.digest())
            encoded = binascii.b2a_base64(outer.digest(), newline=False).decode()
            expected = "v1," + encoded

            for entry in entries:
                if constant_time_equal(expected, entry):
                    return _new_delivery(Delivery, (msg_id, sent_at))

        # Nothing matched: classify the header to raise the error that names why.
        _, ed25519_entries = _parse_signature_header(signature)

        if ed25519_entries and self._matches_ed25519(prefix + body, ed25519_entries):
            return Delivery(msg_id, sent_at)

        raise SignatureMismatch()

    def _matches_ed25519(self, signed: bytes, entries: list[str]) -> bool:
        for public_key in self._public_keys:
            for entry in entries:
                if public_key.verify_base64(entry, signed):
                    return True

        return False


def _is_valid_webhook_id(msg_id: str) -> bool:
    # Printable ASCII without space or the `.` that separates the signed parts.
    # Verifier._verify repeats this test inline, on its hot path.
    return (
        0 < len(msg_id) <= MAX_WEBHOOK_ID_LENGTH
        and msg_id.isascii()
        and msg_id.isprintable()
        and " " not in msg_id
        and "." not in msg_id
    )


def _check_webhook_id(msg_id: str) -> None:
    if not _is_valid_webhook_id(msg_id):
        _reject_webhook_id(msg_id)


def _raise_missing(msg_id: str | None, timestamp: str | None) -> NoReturn:
    if msg_id is None:
        raise MissingHeader(ID_HEADER)

    if timestamp is None:
        raise MissingHeader(TIMESTAMP_HEADER)

    raise MissingHeader(SIGNATURE_HEADER)


def _reject_timestamp(timestamp: str) -> NoReturn:
    if timestamp.isascii() and timestamp.isdigit():
        raise MalformedTimestamp(TIMESTAMP_HEADER, "too many digits")

    raise MalformedTimestamp(
        TIMESTAMP_HEADER, "expected whole Unix seconds as ASCII digits"
    )


def _reject_webhook_id(msg_id: str) -> NoReturn:

    if not msg_id:
        reason = "empty"
    elif len(msg_id) > MAX_WEBHOOK_ID_LENGTH:
        reason = f"longer than {MAX_WEBHOOK_ID_LENGTH} characters"
    else:
        reason = "contains '.', whitespace, control or non-ASCII characters"

    raise InvalidWebhookId(ID_HEADER, reason)


def _parse_signature_header(value: str) -> tuple[list[str], list[str]]:
    """Split the header into v1 and v1a entries, skipping unknown and malformed ones."""
    if len(value) > MAX_SIGNATURE_HEADER_LENGTH:
        raise MalformedSignatureHeader(
            SIGNATURE_HEADER, f"longer than {MAX_SIGNATURE_HEADER_LENGTH} characters"
        )

    hmac_entries: list[str] = []
    ed25519_entries: list[str] = []
    unknown_versions = 0

    for token in value.split(" "):
        version, comma, encoded = token.partition(",")

        if not comma:
            continue

        if version == "v1":
            if _V1_SIGNATURE.fullmatch(encoded):
                hmac_entries.append(encoded)
        elif version == "v1a":
            if _V1A_SIGNATURE.fullmatch(encoded):
                ed25519_entries.append(encoded)
        elif version and encoded:
            unknown_versions += 1

    if hmac_entries or ed25519_entries:
        return hmac_entries, ed25519_entries

    if unknown_versions:
        raise NoSupportedSignature()

    raise MalformedSignatureHeader(
        SIGNATURE_HEADER, "no well-formed 'v1,<base64>' entry"
    )


_HEADER_NAMES: Final = {
    ID_HEADER.encode(): 0,
    TIMESTAMP_HEADER.encode(): 1,
    SIGNATURE_HEADER.encode(): 2,
}


def _read_headers(headers: Headers) -> tuple[str | None, str | None, str | None]:
    """Take the three values out of a mapping or ASGI pairs, names case-insensitive."""
    if type(headers) is dict or isinstance(headers, Mapping):
        return (
            _lookup(headers, ID_HEADER),
            _lookup(headers, TIMESTAMP_HEADER),
            _lookup(headers, SIGNATURE_HEADER),
        )

    found: list[str | None] = [None, None, None]

    for raw_name, raw_value in headers:
        slot = _HEADER_NAMES.get(raw_name.lower())

        if slot is None:
            continue

        name = raw_name.decode("latin-1").lower()

        if found[slot] is not None:
            raise MalformedHeader(name, "sent more than once")

        try:
            found[slot] = raw_value.decode("ascii")
        except UnicodeDecodeError as exc:
            raise MalformedHeader(name, "contains non-ASCII bytes") from exc

    return found[0], found[1], found[2]


def _lookup(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)

    if value is None:
        matches = [v for k, v in headers.items() if k.lower() == name]

        if len(matches) > 1:
            raise MalformedHeader(name, "sent more than once")

        value = matches[0] if matches else None

    if value is not None and not isinstance(value, str):
        raise TypeError(f"header {name} must be a str value")

    return value
