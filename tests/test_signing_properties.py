"""Properties of signing and verification, searched by Hypothesis."""

from __future__ import annotations

import base64
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from kratos_webhooks import (
    HmacKey,
    KeySet,
    MalformedSignatureHeader,
    Signer,
    VerificationError,
    Verifier,
    WebhookError,
)

NOW = 1_700_000_000
KEY = HmacKey(bytes(range(32)))
SIGNER = Signer(KEY)
VERIFIER = Verifier(KeySet((KEY,)), clock=lambda: NOW)

ID_ALPHABET = "".join(c for c in string.printable[:94] if c != ".")
ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=256)
timestamps = st.integers(min_value=NOW - 300, max_value=NOW + 300)
bodies = st.binary(max_size=4096)


@given(body=bodies, msg_id=ids, timestamp=timestamps)
def test_sign_then_verify_passes(body: bytes, msg_id: str, timestamp: int) -> None:
    headers = SIGNER.sign(body, msg_id=msg_id, timestamp=timestamp)

    delivery = VERIFIER.verify(body, headers)

    assert delivery.msg_id == msg_id
    assert delivery.timestamp == timestamp


@given(body=bodies.filter(bool), msg_id=ids, timestamp=timestamps, data=st.data())
def test_changed_body_byte_fails(
    body: bytes, msg_id: str, timestamp: int, data: st.DataObject
) -> None:
    headers = SIGNER.sign(body, msg_id=msg_id, timestamp=timestamp)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = bytearray(body)
    changed[index] ^= flip

    assert not VERIFIER.is_valid(bytes(changed), headers)


@given(body=bodies, msg_id=ids, timestamp=timestamps, data=st.data())
def test_changed_id_byte_fails(
    body: bytes, msg_id: str, timestamp: int, data: st.DataObject
) -> None:
    headers = SIGNER.sign(body, msg_id=msg_id, timestamp=timestamp)
    index = data.draw(st.integers(0, len(msg_id) - 1))
    replacement = data.draw(st.characters(codec="latin-1"))
    changed = msg_id[:index] + replacement + msg_id[index + 1 :]

    if changed != msg_id:
        assert not VERIFIER.is_valid(body, {**headers, "webhook-id": changed})


@given(body=bodies, msg_id=ids, timestamp=timestamps, data=st.data())
def test_changed_timestamp_byte_fails(
    body: bytes, msg_id: str, timestamp: int, data: st.DataObject
) -> None:
    headers = SIGNER.sign(body, msg_id=msg_id, timestamp=timestamp)
    text = headers["webhook-timestamp"]
    index = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.characters(codec="latin-1"))
    changed = text[:index] + replacement + text[index + 1 :]

    if changed != text:
        assert not VERIFIER.is_valid(body, {**headers, "webhook-timestamp": changed})


@given(other=st.binary(min_size=16, max_size=64), body=bodies)
def test_other_key_fails(other: bytes, body: bytes) -> None:
    headers = Signer(HmacKey(other)).sign(body, msg_id="msg_1", timestamp=NOW)

    assert VERIFIER.is_valid(body, headers) == (other == KEY.key)


junk_text = st.one_of(
    st.none(), st.text(max_size=300), st.text(alphabet="v1a, =+/Aa0.", max_size=120)
)


@settings(max_examples=500)
@given(msg_id=junk_text, timestamp=junk_text, signature=junk_text, body=bodies)
def test_header_junk_raises_only_our_errors(
    msg_id: str | None, timestamp: str | None, signature: str | None, body: bytes
) -> None:
    headers = {
        name: value
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        )
        if value is not None
    }

    try:
        VERIFIER.verify(body, headers)
    except WebhookError as exc:
        assert isinstance(exc, VerificationError)
        assert exc.status == 401


@settings(max_examples=500)
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(
                [b"webhook-id", b"Webhook-Timestamp", b"WEBHOOK-SIGNATURE", b"x"]
            ),
            st.binary(max_size=80),
        ),
        max_size=6,
    ),
    body=bodies,
)
def test_asgi_junk_raises_only_our_errors(
    pairs: list[tuple[bytes, bytes]], body: bytes
) -> None:
    try:
        VERIFIER.verify(body, pairs)
    except WebhookError as exc:
        assert isinstance(exc, VerificationError)


def test_non_canonical_case_decodes_like_the_canonical() -> None:
    signature = SIGNER.signature(b"x", msg_id="m", timestamp=NOW).removeprefix("v1,")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    bumped = signature[:42] + alphabet[alphabet.index(signature[42]) + 1] + "="

    assert base64.b64decode(bumped) == base64.b64decode(signature)

    try:
        VERIFIER.verify(
            b"x",
            {
                "webhook-id": "m",
                "webhook-timestamp": str(NOW),
                "webhook-signature": "v1," + bumped,
            },
        )
    except MalformedSignatureHeader:
        return

    raise AssertionError("a non-canonical signature was accepted")


@given(key=st.binary(min_size=16, max_size=200), body=bodies)
def test_keys_longer_than_a_block_verify(key: bytes, body: bytes) -> None:
    headers = Signer(HmacKey(key)).sign(body, msg_id="msg_1", timestamp=NOW)
    verifier = Verifier(HmacKey(key), clock=lambda: NOW)

    assert verifier.verify(body, headers).msg_id == "msg_1"
