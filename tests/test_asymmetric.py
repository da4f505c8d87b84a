from __future__ import annotations

import base64

import pytest

from kratos_webhooks import (
    ConfigError,
    HmacKey,
    SignatureMismatch,
    Signer,
    Verifier,
)
from kratos_webhooks.asymmetric import Ed25519PrivateKey, Ed25519PublicKey

NOW = 1_700_000_000
BODY = b'{"flow": {"id": "x"}}\n'


def clock() -> float:
    return NOW


def test_v1a_sign_then_verify() -> None:
    private = Ed25519PrivateKey.generate()
    headers = Signer(None, private_keys=[private]).sign(BODY, msg_id="m", timestamp=NOW)
    verifier = Verifier(None, public_keys=[private.public_key()], clock=clock)

    assert headers["webhook-signature"].startswith("v1a,")
    assert verifier.verify(BODY, headers).msg_id == "m"


def test_v1a_tampered_body_fails() -> None:
    private = Ed25519PrivateKey.generate()
    headers = Signer(None, private_keys=[private]).sign(BODY, msg_id="m", timestamp=NOW)
    verifier = Verifier(None, public_keys=[private.public_key()], clock=clock)

    with pytest.raises(SignatureMismatch):
        verifier.verify(BODY + b" ", headers)


def test_v1a_other_key_fails() -> None:
    headers = Signer(None, private_keys=[Ed25519PrivateKey.generate()]).sign(
        BODY, msg_id="m", timestamp=NOW
    )
    verifier = Verifier(
        None, public_keys=[Ed25519PrivateKey.generate().public_key()], clock=clock
    )

    assert not verifier.is_valid(BODY, headers)


def test_v1_and_v1a_together() -> None:
    hmac_key = HmacKey.generate()
    private = Ed25519PrivateKey.generate()
    headers = Signer(hmac_key, private_keys=[private]).sign(
        BODY, msg_id="m", timestamp=NOW
    )

    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Verifier(hmac_key, clock=clock).is_valid(BODY, headers)
    assert Verifier(None, public_keys=[private.public_key()], clock=clock).is_valid(
        BODY, headers
    )


def test_key_encodings_round_trip() -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()

    assert private.encode().startswith("whsk_")
    assert public.encode().startswith("whpk_")
    assert Ed25519PrivateKey.parse(private.encode()).public_key().encode() == (
        public.encode()
    )
    assert Ed25519PublicKey.parse(public.encode()).encode() == public.encode()


def test_private_key_with_public_half() -> None:
    private = Ed25519PrivateKey.generate()
    seed = base64.b64decode(private.encode().removeprefix("whsk_"))
    public = base64.b64decode(private.public_key().encode().removeprefix("whpk_"))
    joined = "whsk_" + base64.b64encode(seed + public).decode()

    assert Ed25519PrivateKey.parse(joined).encode() == private.encode()


def test_private_key_with_wrong_public_half() -> None:
    seed = bytes(32)
    joined = "whsk_" + base64.b64encode(seed + bytes(32)).decode()

    with pytest.raises(ConfigError, match="does not match"):
        Ed25519PrivateKey.parse(joined)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("whpk_", "empty"),
        ("whpk_" + base64.b64encode(bytes(31)).decode(), "31 bytes"),
        ("whpk_%%%", "outside standard base64"),
    ],
)
def test_public_key_refused(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        Ed25519PublicKey.parse(text)


def test_key_reprs_hide_material() -> None:
    private = Ed25519PrivateKey.generate()

    assert private.encode() not in repr(private)
    assert private.public_key().encode() not in repr(private.public_key())


def test_signer_or_verifier_needs_keys() -> None:
    with pytest.raises(TypeError):
        Signer(None)

    with pytest.raises(TypeError):
        Verifier(None)
