"""Kratos' own credentials under attack: API key, cookie, Basic and the body MAC."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import pytest

from ..receiver.harness import Certificates, ServeProcess, Upstream
from .conftest import (
    API_KEY,
    API_KEY_HEADER,
    API_KEY_PREVIOUS,
    BASIC_PASSWORD,
    BASIC_USER,
    COOKIE_KEY,
    COOKIE_NAME,
    MAC_SECRET,
    Ledger,
    assert_conflict_logged,
    assert_error,
    basic_value,
    event_body,
    mac_envelope,
    raw,
    wait_delivered,
)
from .wire import request_bytes

pytestmark = pytest.mark.slow

JSON = {"content-type": "application/json"}


def _post(
    client: httpx.Client,
    receiver: ServeProcess,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    return client.post(receiver.url(path), content=body, headers=headers)


def _send_raw(
    receiver: ServeProcess,
    certificates: Certificates,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> object:
    pairs = [
        (b"Content-Type", b"application/json"),
        *headers,
        (b"Connection", b"close"),
    ]

    with raw(receiver, certificates) as connection:
        connection.send(request_bytes("POST", path, pairs, body))
        return connection.read_response()


@pytest.mark.parametrize(
    "value", [API_KEY, API_KEY_PREVIOUS], ids=["current", "previous"]
)
def test_api_key_and_rotation_accepted(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger, value: str
) -> None:
    body = event_body(ledger)
    response = _post(
        client, receiver, "/apikey/sync", body, {**JSON, API_KEY_HEADER: value}
    )

    assert response.status_code == 204, response.text


API_KEY_ATTACKS = [
    ("empty", [(API_KEY_HEADER.encode(), b"")], "credential_mismatch"),
    (
        "prefix",
        [(API_KEY_HEADER.encode(), API_KEY[:-1].encode())],
        "credential_mismatch",
    ),
    (
        "suffix",
        [(API_KEY_HEADER.encode(), API_KEY.encode() + b"x")],
        "credential_mismatch",
    ),
    (
        "upper",
        [(API_KEY_HEADER.encode(), API_KEY.upper().encode())],
        "credential_mismatch",
    ),
    (
        "inner_space",
        [(API_KEY_HEADER.encode(), API_KEY[:5].encode() + b" " + API_KEY[5:].encode())],
        "credential_mismatch",
    ),
    (
        "both_keys",
        [(API_KEY_HEADER.encode(), f"{API_KEY}, {API_KEY_PREVIOUS}".encode())],
        "credential_mismatch",
    ),
    ("huge", [(API_KEY_HEADER.encode(), b"k" * 7000)], "credential_mismatch"),
    (
        "non_ascii",
        [(API_KEY_HEADER.encode(), API_KEY.encode() + b"\xe9")],
        "malformed_header",
    ),
    (
        "duplicate",
        [(API_KEY_HEADER.encode(), API_KEY.encode())] * 2,
        "malformed_header",
    ),
    (
        "duplicate_wrong_first",
        [(API_KEY_HEADER.encode(), b"x"), (API_KEY_HEADER.encode(), API_KEY.encode())],
        "malformed_header",
    ),
    ("missing", [], "missing_header"),
    (
        "in_cookie",
        [(b"Cookie", f"{API_KEY_HEADER}={API_KEY}".encode())],
        "missing_header",
    ),
    ("other_name", [(b"X-Webhook-Secrets", API_KEY.encode())], "missing_header"),
    (
        "underscore_name",
        [(API_KEY_HEADER.replace("-", "_").encode(), API_KEY.encode())],
        "missing_header",
    ),
    ("as_bearer", [(b"Authorization", f"Bearer {API_KEY}".encode())], "missing_header"),
]


@pytest.mark.parametrize(
    ("case", "headers", "code"), API_KEY_ATTACKS, ids=[a[0] for a in API_KEY_ATTACKS]
)
def test_api_key_attacks_rejected(
    receiver: ServeProcess,
    certificates: Certificates,
    ledger: Ledger,
    case: str,
    headers: list[tuple[bytes, bytes]],
    code: str,
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    response = _send_raw(receiver, certificates, "/apikey/sync", headers, body)

    assert_error(response, 401, code)  # type: ignore[arg-type]


def test_api_key_in_query_rejected(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    url = receiver.url("/apikey/sync") + f"?{API_KEY_HEADER}={API_KEY}"
    response = client.post(url, content=body, headers=JSON)

    assert_error(response, 401, "missing_header")


@pytest.mark.parametrize(
    "cookie",
    [
        f"{COOKIE_NAME}={COOKIE_KEY}",
        f'{COOKIE_NAME}="{COOKIE_KEY}"',
        f"ory_kratos_session=abc; {COOKIE_NAME}={COOKIE_KEY}; theme=dark",
        f"{COOKIE_NAME}={COOKIE_KEY} ;",
    ],
    ids=["plain", "quoted", "among_others", "trailing_separator"],
)
def test_cookie_key_accepted(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger, cookie: str
) -> None:
    body = event_body(ledger)
    response = _post(client, receiver, "/cookie/sync", body, {**JSON, "cookie": cookie})

    assert response.status_code == 204, response.text


COOKIE_ATTACKS = [
    ("missing", [], "missing_header"),
    ("empty_value", [(b"Cookie", f"{COOKIE_NAME}=".encode())], "credential_mismatch"),
    ("wrong", [(b"Cookie", f"{COOKIE_NAME}=nope".encode())], "credential_mismatch"),
    (
        "name_case",
        [(b"Cookie", f"{COOKIE_NAME.upper()}={COOKIE_KEY}".encode())],
        "missing_header",
    ),
    (
        "twice_in_one",
        [(b"Cookie", f"{COOKIE_NAME}=x; {COOKIE_NAME}={COOKIE_KEY}".encode())],
        "malformed_header",
    ),
    (
        "twice_in_two",
        [(b"Cookie", f"{COOKIE_NAME}={COOKIE_KEY}".encode())] * 2,
        "malformed_header",
    ),
    (
        "pair_without_equals",
        [(b"Cookie", f"junk; {COOKIE_NAME}={COOKIE_KEY}".encode())],
        "malformed_header",
    ),
    (
        "bad_name",
        [(b"Cookie", f"a b=1; {COOKIE_NAME}={COOKIE_KEY}".encode())],
        "malformed_header",
    ),
    (
        "non_ascii",
        [(b"Cookie", f"{COOKIE_NAME}={COOKIE_KEY}".encode() + b"\xff")],
        "malformed_header",
    ),
    ("in_header", [(COOKIE_NAME.encode(), COOKIE_KEY.encode())], "missing_header"),
    (
        "half_quoted",
        [(b"Cookie", f'{COOKIE_NAME}="{COOKIE_KEY}'.encode())],
        "credential_mismatch",
    ),
    (
        "set_cookie",
        [(b"Set-Cookie", f"{COOKIE_NAME}={COOKIE_KEY}".encode())],
        "missing_header",
    ),
]


@pytest.mark.parametrize(
    ("case", "headers", "code"), COOKIE_ATTACKS, ids=[a[0] for a in COOKIE_ATTACKS]
)
def test_cookie_attacks_rejected(
    receiver: ServeProcess,
    certificates: Certificates,
    ledger: Ledger,
    case: str,
    headers: list[tuple[bytes, bytes]],
    code: str,
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    response = _send_raw(receiver, certificates, "/cookie/sync", headers, body)

    assert_error(response, 401, code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [basic_value(), "basic " + basic_value()[6:], "BASIC  " + basic_value()[6:]],
    ids=["canonical", "lower_scheme", "upper_scheme_two_spaces"],
)
def test_basic_accepted(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger, value: str
) -> None:
    body = event_body(ledger)
    response = _post(
        client, receiver, "/basic/sync", body, {**JSON, "authorization": value}
    )

    assert response.status_code == 204, response.text


def _b64(text: bytes) -> bytes:
    return base64.b64encode(text)


_GOOD = f"{BASIC_USER}:{BASIC_PASSWORD}".encode()

BASIC_ATTACKS = [
    ("missing", [], "missing_header"),
    ("empty", [(b"Authorization", b"")], "malformed_header"),
    ("scheme_only", [(b"Authorization", b"Basic")], "malformed_header"),
    ("bearer", [(b"Authorization", b"Bearer " + _b64(_GOOD))], "malformed_header"),
    ("digest", [(b"Authorization", b"Digest username=kratos")], "malformed_header"),
    ("not_base64", [(b"Authorization", b"Basic !!!notbase64!!!")], "malformed_header"),
    (
        "no_padding",
        [(b"Authorization", b"Basic " + _b64(_GOOD + b"x").rstrip(b"="))],
        "malformed_header",
    ),
    (
        "urlsafe",
        [
            (
                b"Authorization",
                b"Basic " + base64.urlsafe_b64encode(b"\xfb\xff:" + _GOOD),
            )
        ],
        "malformed_header",
    ),
    (
        "inner_space",
        [(b"Authorization", b"Basic " + _b64(_GOOD)[:4] + b" " + _b64(_GOOD)[4:])],
        "malformed_header",
    ),
    (
        "no_colon",
        [(b"Authorization", b"Basic " + _b64(BASIC_PASSWORD.encode()))],
        "malformed_header",
    ),
    (
        "not_utf8",
        [(b"Authorization", b"Basic " + _b64(b"kratos:\xff\xfe"))],
        "malformed_header",
    ),
    (
        "wrong_password",
        [(b"Authorization", b"Basic " + _b64(b"kratos:wrong"))],
        "credential_mismatch",
    ),
    (
        "wrong_user",
        [(b"Authorization", b"Basic " + _b64(b"admin:" + BASIC_PASSWORD.encode()))],
        "credential_mismatch",
    ),
    ("empty_pair", [(b"Authorization", b"Basic " + _b64(b":"))], "credential_mismatch"),
    (
        "extra_colon",
        [(b"Authorization", b"Basic " + _b64(_GOOD + b":"))],
        "credential_mismatch",
    ),
    (
        "nul_inside",
        [(b"Authorization", b"Basic " + _b64(_GOOD + b"\x00"))],
        "credential_mismatch",
    ),
    (
        "huge",
        [(b"Authorization", b"Basic " + _b64(b"kratos:" + b"p" * 5000))],
        "credential_mismatch",
    ),
    (
        "duplicate",
        [(b"Authorization", b"Basic " + _b64(_GOOD))] * 2,
        "malformed_header",
    ),
    (
        "non_ascii",
        [(b"Authorization", b"Basic \xe9" + _b64(_GOOD))],
        "malformed_header",
    ),
]


@pytest.mark.parametrize(
    ("case", "headers", "code"), BASIC_ATTACKS, ids=[a[0] for a in BASIC_ATTACKS]
)
def test_basic_attacks_rejected(
    receiver: ServeProcess,
    certificates: Certificates,
    ledger: Ledger,
    case: str,
    headers: list[tuple[bytes, bytes]],
    code: str,
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    response = _send_raw(receiver, certificates, "/basic/sync", headers, body)

    assert_error(response, 401, code)  # type: ignore[arg-type]


def test_basic_async_delivered(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    body = event_body(ledger)
    headers = {**JSON, "authorization": basic_value()}
    response = _post(client, receiver, "/basic/async", body, headers)

    assert response.status_code == 202, response.text
    webhook_id = response.json()["webhook_id"]
    ledger.accept("/basic/async", webhook_id, body)
    assert [d.body for d in wait_delivered(upstream, "/basic/async", webhook_id)] == [
        body
    ]


def test_mac_envelope_accepted(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    envelope = mac_envelope(ledger, event_body(ledger))
    response = _post(client, receiver, "/mac/sync", envelope, JSON)

    assert response.status_code == 204, response.text
    assert upstream.requests_to("/up/mac/sync")[-1].body == envelope


def _envelope(case: str, ledger: Ledger) -> bytes:
    payload = event_body(ledger).decode()
    mac = json.loads(mac_envelope(ledger, payload.encode()))["mac"]
    wrong = json.loads(mac_envelope(ledger, payload.encode(), "not-the-secret"))["mac"]
    documents: dict[str, object] = {
        "wrong_secret": {"payload": payload, "mac": wrong},
        "upper_hex": {"payload": payload, "mac": mac.upper()},
        "truncated": {"payload": payload, "mac": mac[:-2]},
        "extra_key": {"payload": payload, "mac": mac, "x": 1},
        "missing_mac": {"payload": payload},
        "sig_not_mac": {"payload": payload, "sig": mac},
        "payload_object": {"payload": json.loads(payload), "mac": mac},
        "mac_number": {"payload": payload, "mac": 5},
        "reserialised": {"payload": json.dumps(json.loads(payload)), "mac": mac},
        "secret_suffix": {
            "payload": payload,
            "mac": __import__("hashlib")
            .sha3_512((payload + MAC_SECRET).encode())
            .hexdigest(),
        },
        "list": [payload, mac],
    }

    if case == "lone_surrogate":
        return (f'{{"payload": "{uuid.uuid4()}\\ud800", "mac": "{mac}"}}').encode()

    if case == "duplicate_mac_last_wrong":
        body = json.dumps({"payload": payload, "mac": mac})
        return (body[:-1] + f', "mac": "{wrong}"}}').encode()

    return json.dumps(documents[case]).encode()


MAC_ATTACKS = [
    ("wrong_secret", "credential_mismatch"),
    ("upper_hex", "malformed_header"),
    ("truncated", "malformed_header"),
    ("extra_key", "malformed_header"),
    ("missing_mac", "malformed_header"),
    ("sig_not_mac", "malformed_header"),
    ("payload_object", "malformed_header"),
    ("mac_number", "malformed_header"),
    ("reserialised", "credential_mismatch"),
    ("secret_suffix", "credential_mismatch"),
    ("list", "malformed_header"),
    ("lone_surrogate", "malformed_header"),
    ("duplicate_mac_last_wrong", "credential_mismatch"),
]


@pytest.mark.parametrize(("case", "code"), MAC_ATTACKS)
def test_mac_attacks_rejected(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger, case: str, code: str
) -> None:
    envelope = _envelope(case, ledger)
    ledger.refused(envelope)
    response = _post(client, receiver, "/mac/sync", envelope, JSON)

    assert_error(response, 401, code)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"not json", 400, "invalid_json"),
        (b"[1, 2]", 422, "invalid_payload"),
        (b'{"a": NaN}', 400, "invalid_json"),
    ],
)
def test_mac_valid_but_payload_bad(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    payload: bytes,
    status: int,
    code: str,
) -> None:
    envelope = mac_envelope(ledger, payload)
    before = len(upstream.requests_to("/up/mac/sync"))
    response = _post(client, receiver, "/mac/sync", envelope, JSON)

    assert_error(response, status, code)
    assert len(upstream.requests_to("/up/mac/sync")) == before


def test_mac_not_json_envelope_rejected(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger
) -> None:
    marker = ledger.marker()
    ledger.refused_markers.add(marker)
    deep = b"[" * 5000 + b"]" * 5000
    for body in (marker.encode(), b'{"payload": "' + marker.encode() + b'", ' + deep):
        response = _post(client, receiver, "/mac/sync", body, JSON)

        assert_error(response, 400, "invalid_json")


def test_mac_replay_same_body_stored_once(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    envelope = mac_envelope(ledger, event_body(ledger))
    answers = [_post(client, receiver, "/mac/async", envelope, JSON) for _ in range(3)]

    assert [a.status_code for a in answers] == [202, 202, 202]
    webhook_id = answers[0].json()["webhook_id"]
    assert {a.json()["webhook_id"] for a in answers} == {webhook_id}
    ledger.accept("/mac/async", webhook_id, envelope)
    assert len(wait_delivered(upstream, "/up/mac/async"[3:], webhook_id)) == 1


def _with_trigger(trigger: str) -> dict[str, str]:
    return {**JSON, "ory-webhook-trigger-id": trigger}


@pytest.mark.parametrize("path", ["/mac/sync", "/mac/async"])
def test_mac_replay_fresh_trigger_not_processed(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    path: str,
) -> None:
    envelope = mac_envelope(ledger, event_body(ledger))
    answers = [
        _post(client, receiver, path, envelope, _with_trigger(str(uuid.uuid4())))
        for _ in range(3)
    ]

    assert len({a.status_code for a in answers}) == 1
    assert answers[0].status_code in (202, 204), answers[0].text
    forwarded = [r for r in upstream.requests_to("/up" + path) if r.body == envelope]

    if path.endswith("async"):
        webhook_id = answers[0].json()["webhook_id"]
        assert {a.json()["webhook_id"] for a in answers} == {webhook_id}
        ledger.accept(path, webhook_id, envelope)
        forwarded = wait_delivered(upstream, path, webhook_id)
        time.sleep(0.5)

    assert len(forwarded) == 1


@pytest.mark.parametrize("path", ["/apikey/sync", "/basic/sync"])
def test_credential_fresh_trigger_is_new_call(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    path: str,
) -> None:
    # A credential holder can send any body, so a body hash would stop no
    # replay here; the trigger id keys the call, and equal bodies stay apart.
    body = event_body(ledger)
    credential = (
        {API_KEY_HEADER: API_KEY}
        if path.startswith("/apikey")
        else {"authorization": basic_value()}
    )
    triggers = [str(uuid.uuid4()) for _ in range(3)]
    answers = [
        _post(client, receiver, path, body, {**_with_trigger(trigger), **credential})
        for trigger in triggers
    ]

    assert [a.status_code for a in answers] == [204, 204, 204]
    forwarded = [r for r in upstream.requests_to("/up" + path) if r.body == body]
    assert len(forwarded) == 3


@pytest.mark.parametrize("path", ["/apikey/sync", "/basic/sync"])
def test_credential_same_trigger_processed_once(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    path: str,
) -> None:
    body = event_body(ledger)
    credential = (
        {API_KEY_HEADER: API_KEY}
        if path.startswith("/apikey")
        else {"authorization": basic_value()}
    )
    headers = {**_with_trigger(str(uuid.uuid4())), **credential}
    answers = [_post(client, receiver, path, body, headers) for _ in range(3)]

    assert [a.status_code for a in answers] == [204, 204, 204]
    forwarded = [r for r in upstream.requests_to("/up" + path) if r.body == body]
    assert len(forwarded) == 1


def test_kratos_retry_same_trigger_processed_once(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    envelope = mac_envelope(ledger, event_body(ledger))
    headers = _with_trigger(str(uuid.uuid4()))
    answers = [
        _post(client, receiver, "/mac/sync", envelope, headers) for _ in range(3)
    ]

    assert [a.status_code for a in answers] == [204, 204, 204]
    forwarded = [r for r in upstream.requests_to("/up/mac/sync") if r.body == envelope]
    assert len(forwarded) == 1


def _credential(path: str) -> dict[str, str]:
    if path.startswith("/basic"):
        return {"authorization": basic_value()}

    return {API_KEY_HEADER: API_KEY}


@pytest.mark.parametrize(
    "path", ["/apikey/sync", "/apikey/async", "/basic/sync", "/basic/async"]
)
def test_same_trigger_other_body_conflicts(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    path: str,
) -> None:
    # Kratos' retries are byte for byte, so another body under a used trigger
    # id is a fault or a forgery: refused, never acknowledged as delivered.
    trigger = str(uuid.uuid4())
    headers = {**_with_trigger(trigger), **_credential(path)}
    first, second = event_body(ledger), event_body(ledger)
    ledger.refused(second)
    accepted = _post(client, receiver, path, first, headers)

    assert accepted.status_code in (202, 204), accepted.text

    if path.endswith("async"):
        ledger.accept(path, trigger, first)
        assert len(wait_delivered(upstream, path, trigger)) == 1

    response = _post(client, receiver, path, second, headers)

    assert_error(response, 409, "idempotency_conflict")
    assert_conflict_logged(receiver, path, trigger)
    # A retry of the first call still gets the first response.
    again = _post(client, receiver, path, first, headers)
    assert (again.status_code, again.content) == (
        accepted.status_code,
        accepted.content,
    )


@pytest.mark.parametrize(
    "trigger",
    ["not-a-uuid", "0" * 32, "{9f425a8d-7efc-4768-8f23-7647a74fdf13}"],
    ids=["token", "hex", "braced"],
)
def test_trigger_not_a_uuid_is_ignored(
    client: httpx.Client,
    receiver: ServeProcess,
    upstream: Upstream,
    ledger: Ledger,
    trigger: str,
) -> None:
    # Only Kratos' UUID form keys a call; anything else keys it on its body.
    bodies = [event_body(ledger), event_body(ledger)]
    headers = {**_with_trigger(trigger), API_KEY_HEADER: API_KEY}
    answers = [_post(client, receiver, "/apikey/sync", b, headers) for b in bodies]

    assert [a.status_code for a in answers] == [204, 204]
    forwarded = [r for r in upstream.requests_to("/up/apikey/sync") if r.body in bodies]
    assert len(forwarded) == 2
    assert {r.headers["webhook-id"] for r in forwarded} != {trigger}


def test_trigger_cannot_take_a_body_hash_key(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    # A call sent without a trigger id is keyed `sha256_<hex>`. A trigger id of
    # that value must not take the same key and get another body dropped.
    plain = event_body(ledger)
    answer = _post(
        client, receiver, "/apikey/sync", plain, {**JSON, API_KEY_HEADER: API_KEY}
    )
    assert answer.status_code == 204
    (first,) = [r for r in upstream.requests_to("/up/apikey/sync") if r.body == plain]
    key = first.headers["webhook-id"]
    assert key.startswith("sha256_")

    other = event_body(ledger)
    headers = {**_with_trigger(key), API_KEY_HEADER: API_KEY}
    answer = _post(client, receiver, "/apikey/sync", other, headers)

    assert answer.status_code == 204
    forwarded = [r for r in upstream.requests_to("/up/apikey/sync") if r.body == other]
    assert len(forwarded) == 1
    assert forwarded[0].headers["webhook-id"] != key


def test_trigger_case_is_normalised(
    client: httpx.Client, receiver: ServeProcess, upstream: Upstream, ledger: Ledger
) -> None:
    trigger = str(uuid.uuid4())
    body = event_body(ledger)
    answers = [
        _post(
            client,
            receiver,
            "/apikey/sync",
            body,
            {**_with_trigger(value), API_KEY_HEADER: API_KEY},
        )
        for value in (trigger.upper(), trigger)
    ]

    assert [a.status_code for a in answers] == [204, 204]
    forwarded = [r for r in upstream.requests_to("/up/apikey/sync") if r.body == body]
    assert [r.headers["webhook-id"] for r in forwarded] == [trigger]
