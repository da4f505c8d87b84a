from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from kratos_webhooks import (
    Delivery,
    HmacKey,
    InvalidWebhookId,
    KeySet,
    MalformedHeader,
    MalformedSignatureHeader,
    MalformedTimestamp,
    MissingHeader,
    NoSupportedSignature,
    SignatureMismatch,
    Signer,
    TimestampInFuture,
    TimestampTooOld,
    VerificationError,
    Verifier,
    WebhookError,
)

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "standard-webhooks-published.json").read_text()
)["sign_vectors"]

NOW = 1_700_000_000
BODY = b'{\n   "flow": {\n      "id": "6f1d2c3b"\n   }\n}\n'
KEY = HmacKey.parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
OTHER_KEY = HmacKey.parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")


def fixed_clock(now: float = NOW) -> Any:
    return lambda: now


def signed_headers(
    body: bytes = BODY, *, msg_id: str = "msg_1", timestamp: int = NOW
) -> dict[str, str]:
    return Signer(KEY).sign(body, msg_id=msg_id, timestamp=timestamp)


def verifier(*keys: HmacKey, tolerance: int = 300) -> Verifier:
    return Verifier(KeySet(keys or (KEY,)), tolerance=tolerance, clock=fixed_clock())


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_published_vector_sign(vector: dict[str, Any]) -> None:
    signer = Signer(HmacKey.parse(vector["secret"]))

    signature = signer.signature(
        vector["payload"].encode(),
        msg_id=vector["msg_id"],
        timestamp=vector["timestamp"],
    )

    assert signature == vector["expected_signature"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_published_vector_verify(vector: dict[str, Any]) -> None:
    check = Verifier(
        HmacKey.parse(vector["secret"]), clock=fixed_clock(vector["timestamp"])
    )
    headers = {
        "webhook-id": vector["msg_id"],
        "webhook-timestamp": str(vector["timestamp"]),
        "webhook-signature": vector["expected_signature"],
    }

    delivery = check.verify(vector["payload"].encode(), headers)

    assert delivery == Delivery(vector["msg_id"], vector["timestamp"])


def test_signature_is_hmac_over_id_timestamp_body() -> None:
    expected = hmac.new(KEY.key, b"msg_1.%d." % NOW + BODY, hashlib.sha256).digest()

    headers = signed_headers()

    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(NOW)


def test_sign_defaults_fresh_id_and_clock() -> None:
    headers = Signer(KEY, clock=fixed_clock(NOW + 0.9)).sign(BODY)

    assert headers["webhook-id"].startswith("msg_")
    assert headers["webhook-timestamp"] == str(NOW)
    assert verifier().verify(BODY, headers).msg_id == headers["webhook-id"]


def test_sign_refuses_str_body() -> None:
    with pytest.raises(TypeError):
        Signer(KEY).sign("text")  # type: ignore[arg-type]


def test_verify_refuses_str_body() -> None:
    with pytest.raises(TypeError):
        verifier().verify(BODY.decode(), signed_headers())  # type: ignore[arg-type]


def test_verify_header_names_case_insensitive() -> None:
    headers = {k.upper(): v for k, v in signed_headers().items()}

    assert verifier().verify(BODY, headers).msg_id == "msg_1"


def test_verify_asgi_header_pairs() -> None:
    pairs = [(k.title().encode(), v.encode()) for k, v in signed_headers().items()]
    pairs.append((b"content-type", b"application/json"))

    assert verifier().verify(BODY, pairs).timestamp == NOW


def test_verify_asgi_duplicate_header_refused() -> None:
    pairs = [(k.encode(), v.encode()) for k, v in signed_headers().items()]
    pairs.append((b"webhook-id", b"msg_2"))

    with pytest.raises(MalformedHeader, match="more than once"):
        verifier().verify(BODY, pairs)


def test_verify_mapping_duplicate_by_case_refused() -> None:
    headers = signed_headers()
    headers.pop("webhook-id")
    headers["Webhook-Id"] = "msg_1"
    headers["WEBHOOK-ID"] = "msg_1"

    with pytest.raises(MalformedHeader, match="more than once"):
        verifier().verify(BODY, headers)


def test_verify_asgi_non_ascii_value_refused() -> None:
    pairs = [(k.encode(), v.encode()) for k, v in signed_headers().items()]
    pairs[0] = (b"webhook-id", "msg_\u00e9".encode("latin-1"))

    with pytest.raises(MalformedHeader):
        verifier().verify(BODY, pairs)


def test_is_valid_wraps_verify() -> None:
    assert verifier().is_valid(BODY, signed_headers())
    assert not verifier().is_valid(BODY + b" ", signed_headers())


# Rotation.


def test_rotation_every_active_key_verifies() -> None:
    old_signed = Signer(OTHER_KEY).sign(BODY, msg_id="msg_1", timestamp=NOW)
    new_signed = Signer(KEY).sign(BODY, msg_id="msg_1", timestamp=NOW)
    both = verifier(KEY, OTHER_KEY)

    assert both.verify(BODY, old_signed).msg_id == "msg_1"
    assert both.verify(BODY, new_signed).msg_id == "msg_1"


def test_rotation_removed_key_refused() -> None:
    old_signed = Signer(OTHER_KEY).sign(BODY, msg_id="msg_1", timestamp=NOW)

    with pytest.raises(SignatureMismatch):
        verifier(KEY).verify(BODY, old_signed)


def test_rotation_newest_key_signs() -> None:
    headers = Signer(KeySet((KEY, OTHER_KEY))).sign(BODY, msg_id="m", timestamp=NOW)

    assert len(headers["webhook-signature"].split(" ")) == 1
    assert verifier(KEY).is_valid(BODY, headers)
    assert not verifier(OTHER_KEY).is_valid(BODY, headers)


def test_rotation_rollover_signs_with_every_key() -> None:
    signer = Signer(KeySet((KEY, OTHER_KEY)), all_keys=True)
    headers = signer.sign(BODY, msg_id="m", timestamp=NOW)

    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verifier(KEY).is_valid(BODY, headers)
    assert verifier(OTHER_KEY).is_valid(BODY, headers)


def test_any_matching_entry_accepts() -> None:
    headers = signed_headers()
    wrong = Signer(OTHER_KEY).signature(BODY, msg_id="msg_1", timestamp=NOW)
    headers["webhook-signature"] = f"v2,abc {wrong} junk {headers['webhook-signature']}"

    assert verifier().verify(BODY, headers).msg_id == "msg_1"


# Tolerance, both ways, with its edges.


@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
def test_tolerance_edges_accepted(offset: int) -> None:
    headers = signed_headers(timestamp=NOW + offset)

    assert verifier().verify(BODY, headers).timestamp == NOW + offset


def test_tolerance_301_seconds_old_refused() -> None:
    with pytest.raises(TimestampTooOld) as caught:
        verifier().verify(BODY, signed_headers(timestamp=NOW - 301))

    assert caught.value.code == "timestamp_too_old"
    assert caught.value.status == 401


def test_tolerance_301_seconds_ahead_refused() -> None:
    with pytest.raises(TimestampInFuture) as caught:
        verifier().verify(BODY, signed_headers(timestamp=NOW + 301))

    assert caught.value.code == "timestamp_in_future"


def test_tolerance_is_configurable() -> None:
    headers = signed_headers(timestamp=NOW - 10)

    with pytest.raises(TimestampTooOld):
        verifier(tolerance=5).verify(BODY, headers)


def test_expiry_is_a_verification_error() -> None:
    assert issubclass(TimestampTooOld, VerificationError)
    assert issubclass(TimestampInFuture, VerificationError)


def test_tampered_body_refused() -> None:
    tampered = BODY.replace(b"6f1d", b"6f1e")

    with pytest.raises(SignatureMismatch) as caught:
        verifier().verify(tampered, signed_headers())

    assert caught.value.code == "signature_mismatch"


def test_tolerance_must_be_valid() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        Verifier(KEY, tolerance=-1)


# Malformed headers and timestamps, each with the specific class it raises.

VALID = signed_headers()
VALID_SIGNATURE = VALID["webhook-signature"]
VALID_B64 = VALID_SIGNATURE.removeprefix("v1,")
# Setting a low bit of the last character keeps the decoded bytes for lenient
# decoders, but the encoding is no longer the canonical one.
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
NON_CANONICAL = VALID_B64[:42] + _ALPHABET[_ALPHABET.index(VALID_B64[42]) + 1] + "="
WRONG_KEY_SIGNATURE = Signer(OTHER_KEY).signature(BODY, msg_id="msg_1", timestamp=NOW)

SIGNATURE_CASES: list[tuple[str, str, type[WebhookError]]] = [
    ("empty", "", MalformedSignatureHeader),
    ("only spaces", "    ", MalformedSignatureHeader),
    ("no comma", "v1" + VALID_B64, MalformedSignatureHeader),
    ("version alone", "v1", MalformedSignatureHeader),
    ("empty version", "," + VALID_B64, MalformedSignatureHeader),
    ("unknown version only", "v2," + VALID_B64, NoSupportedSignature),
    ("uppercase version", "V1," + VALID_B64, NoSupportedSignature),
    ("unpadded base64", "v1," + VALID_B64.rstrip("="), MalformedSignatureHeader),
    ("non-canonical base64", "v1," + NON_CANONICAL, MalformedSignatureHeader),
    ("extra padding", VALID_SIGNATURE + "=", MalformedSignatureHeader),
    ("truncated", VALID_SIGNATURE[:24], MalformedSignatureHeader),
    ("64 KiB long", "v1," + "A" * 65536, MalformedSignatureHeader),
    ("non-ASCII", "v1," + VALID_B64[:-2] + "\u00e9=", MalformedSignatureHeader),
    ("url-safe alphabet", "v1," + "-_" * 21 + "A=", MalformedSignatureHeader),
    ("double comma", "v1,," + VALID_B64, MalformedSignatureHeader),
    ("trailing tab", VALID_SIGNATURE + "\t", MalformedSignatureHeader),
    (
        "newline inside",
        "v1," + VALID_B64[:20] + "\n" + VALID_B64[20:],
        MalformedSignatureHeader,
    ),
    ("commas only", ", , ,", MalformedSignatureHeader),
    ("hex digest", "v1," + "ab" * 32, MalformedSignatureHeader),
    ("v1a too short", "v1a," + VALID_B64, MalformedSignatureHeader),
    ("wrong key", WRONG_KEY_SIGNATURE, SignatureMismatch),
    ("all zero", "v1," + "A" * 43 + "=", SignatureMismatch),
]

TIMESTAMP_CASES: list[tuple[str, str, type[WebhookError]]] = [
    ("empty", "", MalformedTimestamp),
    ("float", f"{NOW}.5", MalformedTimestamp),
    ("negative", f"-{NOW}", MalformedTimestamp),
    ("plus sign", f"+{NOW}", MalformedTimestamp),
    ("milliseconds", f"{NOW}000", TimestampInFuture),
    ("underscores", f"{NOW:_}", MalformedTimestamp),
    (
        "arabic-indic digits",
        str(NOW).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
        MalformedTimestamp,
    ),
    (
        "fullwidth digits",
        str(NOW).translate(str.maketrans("0123456789", "０１２３４５６７８９")),
        MalformedTimestamp,
    ),
    ("leading space", f" {NOW}", MalformedTimestamp),
    ("trailing space", f"{NOW} ", MalformedTimestamp),
    ("hex", hex(NOW), MalformedTimestamp),
    ("exponent", "1.7e9", MalformedTimestamp),
    ("forty digits", "9" * 40, MalformedTimestamp),
    ("zero", "0", TimestampTooOld),
    ("http date", "Tue, 14 Nov 2023 22:13:20 GMT", MalformedTimestamp),
]

ID_CASES: list[tuple[str, str, type[WebhookError]]] = [
    ("empty", "", InvalidWebhookId),
    ("dot", "msg.1", InvalidWebhookId),
    ("space", "msg 1", InvalidWebhookId),
    ("tab", "msg\t1", InvalidWebhookId),
    ("nul", "msg\x001", InvalidWebhookId),
    ("delete", "msg\x7f", InvalidWebhookId),
    ("non-ASCII", "msg_\u00e9", InvalidWebhookId),
    ("257 characters", "m" * 257, InvalidWebhookId),
]


@pytest.mark.parametrize(
    ("value", "error"),
    [case[1:] for case in SIGNATURE_CASES],
    ids=[case[0] for case in SIGNATURE_CASES],
)
def test_malformed_signature_header(value: str, error: type[WebhookError]) -> None:
    headers = {**VALID, "webhook-signature": value}

    with pytest.raises(error) as caught:
        verifier().verify(BODY, headers)

    assert type(caught.value) is error


@pytest.mark.parametrize(
    ("value", "error"),
    [case[1:] for case in TIMESTAMP_CASES],
    ids=[case[0] for case in TIMESTAMP_CASES],
)
def test_malformed_timestamp(value: str, error: type[WebhookError]) -> None:
    headers = {**VALID, "webhook-timestamp": value}

    with pytest.raises(error) as caught:
        verifier().verify(BODY, headers)

    assert type(caught.value) is error


@pytest.mark.parametrize(
    ("value", "error"),
    [case[1:] for case in ID_CASES],
    ids=[case[0] for case in ID_CASES],
)
def test_invalid_webhook_id(value: str, error: type[WebhookError]) -> None:
    headers = {**VALID, "webhook-id": value}

    with pytest.raises(error) as caught:
        verifier().verify(BODY, headers)

    assert type(caught.value) is error
    assert caught.value.code == "malformed_header"


def test_malformed_table_is_large() -> None:
    assert len(SIGNATURE_CASES) + len(TIMESTAMP_CASES) >= 30


def test_webhook_id_of_256_characters_accepted() -> None:
    msg_id = "m" * 256

    assert verifier().verify(BODY, signed_headers(msg_id=msg_id)).msg_id == msg_id


def test_sign_refuses_invalid_id() -> None:
    with pytest.raises(InvalidWebhookId):
        Signer(KEY).sign(BODY, msg_id="a.b")


@pytest.mark.parametrize(
    "missing", ["webhook-id", "webhook-timestamp", "webhook-signature"]
)
def test_missing_header(missing: str) -> None:
    headers = dict(VALID)
    headers.pop(missing)

    with pytest.raises(MissingHeader) as caught:
        verifier().verify(BODY, headers)

    assert caught.value.header == missing
    assert caught.value.code == "missing_header"


def test_error_messages_hold_no_signature() -> None:
    for value, _error in [case[1:] for case in SIGNATURE_CASES]:
        try:
            verifier().verify(BODY, {**VALID, "webhook-signature": value})
        except WebhookError as exc:
            assert VALID_B64 not in str(exc)
            assert KEY.encode() not in str(exc)
