"""Attacks on Kratos' credential at the relay: header, cookie and Basic."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from .conftest import (
    BASIC_ASYNC,
    BASIC_PASSWORD,
    BASIC_SYNC,
    BASIC_USER,
    COOKIE_KEY,
    COOKIE_NAME,
    COOKIE_SYNC,
    HEADER_ASYNC,
    HEADER_KEY,
    HEADER_KEY_PREVIOUS,
    HEADER_SYNC,
    KEY_HEADER,
    Chain,
    assert_error,
    basic_value,
    exchange,
    kratos,
    request_bytes,
)

pytestmark = pytest.mark.slow


def _bare(**extra: str) -> dict[str, str]:
    headers = kratos(**extra)
    del headers[KEY_HEADER]
    return headers


def _refused(
    chain: Chain, path: str, headers: list[tuple[str, str]], code: str
) -> None:
    body = chain.body()
    before = len(chain.upstream.received)
    answer = exchange(chain.port, request_bytes("POST", path, headers, body))
    assert_error(answer.status, answer.body, 401, code)
    assert len(chain.upstream.received) == before


HEADER_CASES = {
    "missing": ([], "missing_header"),
    "wrong": ([(KEY_HEADER, "wrong-" + HEADER_KEY)], "credential_mismatch"),
    "empty": ([(KEY_HEADER, "")], "credential_mismatch"),
    "prefix": ([(KEY_HEADER, HEADER_KEY[:-1])], "credential_mismatch"),
    "longer": ([(KEY_HEADER, HEADER_KEY + "x")], "credential_mismatch"),
    "upper": ([(KEY_HEADER, HEADER_KEY.upper())], "credential_mismatch"),
    "twice": ([(KEY_HEADER, HEADER_KEY), (KEY_HEADER, HEADER_KEY)], "malformed_header"),
    "twice_one_wrong": (
        [(KEY_HEADER, "nope"), (KEY_HEADER, HEADER_KEY)],
        "malformed_header",
    ),
    "huge": ([(KEY_HEADER, "k" * 6000)], "credential_mismatch"),
    "as_cookie": ([("Cookie", f"{KEY_HEADER}={HEADER_KEY}")], "missing_header"),
    "as_basic": ([("Authorization", basic_value())], "missing_header"),
    "other_route_cookie": ([(KEY_HEADER, COOKIE_KEY)], "credential_mismatch"),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_header_key_refused(chain: Chain, case: str) -> None:
    extra, code = HEADER_CASES[case]

    for path in (HEADER_SYNC, HEADER_ASYNC):
        _refused(chain, path, [*_bare().items(), *extra], code)


def test_header_name_case_and_rotation_accepted(chain: Chain) -> None:
    for name, value in (
        (KEY_HEADER.lower(), HEADER_KEY),
        (KEY_HEADER.upper(), HEADER_KEY),
        (KEY_HEADER, HEADER_KEY_PREVIOUS),
    ):
        headers = [*_bare().items(), (name, value)]
        answer = exchange(
            chain.port, request_bytes("POST", HEADER_SYNC, headers, b"{}")
        )
        assert answer.status == 200, answer.body


COOKIE_CASES = {
    "missing": ([], "missing_header"),
    "wrong": ([("Cookie", f"{COOKIE_NAME}=x{COOKIE_KEY}")], "credential_mismatch"),
    "empty": ([("Cookie", f"{COOKIE_NAME}=")], "credential_mismatch"),
    "twice_one_header": (
        [("Cookie", f"{COOKIE_NAME}={COOKIE_KEY}; {COOKIE_NAME}={COOKIE_KEY}")],
        "malformed_header",
    ),
    "twice_two_headers": (
        [("Cookie", f"{COOKIE_NAME}=bad"), ("Cookie", f"{COOKIE_NAME}={COOKIE_KEY}")],
        "malformed_header",
    ),
    "name_case": (
        [("Cookie", f"{COOKIE_NAME.upper()}={COOKIE_KEY}")],
        "missing_header",
    ),
    "as_header": ([(COOKIE_NAME, COOKIE_KEY)], "missing_header"),
    "quoted": ([("Cookie", f'{COOKIE_NAME}="x{COOKIE_KEY}"')], "credential_mismatch"),
    "header_key": ([("Cookie", f"{COOKIE_NAME}={HEADER_KEY}")], "credential_mismatch"),
}


@pytest.mark.parametrize("case", sorted(COOKIE_CASES))
def test_cookie_key_refused(chain: Chain, case: str) -> None:
    extra, code = COOKIE_CASES[case]
    _refused(chain, COOKIE_SYNC, [*_bare().items(), *extra], code)


def test_cookie_among_others_accepted(chain: Chain) -> None:
    cookie = f"session=abc; {COOKIE_NAME}={COOKIE_KEY}; other=1"
    headers = [*_bare().items(), ("Cookie", cookie)]
    answer = exchange(chain.port, request_bytes("POST", COOKIE_SYNC, headers, b"{}"))

    assert answer.status == 200, answer.body
    assert "cookie" not in chain.upstream_for(COOKIE_SYNC)[-1].headers


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


BASIC_CASES = {
    "missing": ([], "missing_header"),
    "wrong_password": (
        [("Authorization", basic_value(password="x"))],
        "credential_mismatch",
    ),
    "wrong_user": (
        [("Authorization", basic_value(user="admin"))],
        "credential_mismatch",
    ),
    "no_colon": (
        [("Authorization", "Basic " + _b64(BASIC_PASSWORD))],
        "malformed_header",
    ),
    "not_base64": ([("Authorization", "Basic %%%%")], "malformed_header"),
    "empty": ([("Authorization", "Basic ")], "malformed_header"),
    "bearer": ([("Authorization", "Bearer " + BASIC_PASSWORD)], "malformed_header"),
    "twice": (
        [("Authorization", basic_value()), ("Authorization", basic_value())],
        "malformed_header",
    ),
    "huge": ([("Authorization", "Basic " + "QUFB" * 1500)], "malformed_header"),
    "latin1": (
        [("Authorization", "Basic " + base64.b64encode(b"kratos:\xe9").decode())],
        "malformed_header",
    ),
    "password_in_user": (
        [("Authorization", "Basic " + _b64(f"{BASIC_PASSWORD}:{BASIC_USER}"))],
        "credential_mismatch",
    ),
    "header_key": (
        [("Authorization", basic_value(password=HEADER_KEY))],
        "credential_mismatch",
    ),
}


@pytest.mark.parametrize("case", sorted(BASIC_CASES))
def test_basic_refused(chain: Chain, case: str) -> None:
    extra, code = BASIC_CASES[case]

    for path in (BASIC_SYNC, BASIC_ASYNC):
        _refused(chain, path, [*_bare().items(), *extra], code)


def test_basic_scheme_case_accepted_and_not_forwarded(chain: Chain) -> None:
    encoded = _b64(f"{BASIC_USER}:{BASIC_PASSWORD}")
    headers = [*_bare().items(), ("Authorization", "basic " + encoded)]
    answer = exchange(chain.port, request_bytes("POST", BASIC_SYNC, headers, b"{}"))

    assert answer.status == 200, answer.body
    forwarded = chain.upstream_for(BASIC_SYNC)[-1].headers
    assert "authorization" not in forwarded
    assert all(BASIC_PASSWORD not in v and encoded not in v for v in forwarded.values())


def test_credential_never_forwarded(chain: Chain) -> None:
    body = chain.body()
    headers = kratos()
    headers["Cookie"] = f"{COOKIE_NAME}={COOKIE_KEY}"
    headers["Authorization"] = basic_value()
    response = httpx.post(chain.url(HEADER_SYNC), content=body, headers=headers)
    assert response.status_code == 200

    received = [r for r in chain.upstream_for(HEADER_SYNC) if r.body == body]
    assert len(received) == 1

    for value in received[0].headers.values():
        for secret in (HEADER_KEY, COOKIE_KEY, BASIC_PASSWORD):
            assert secret not in value

    assert "cookie" not in received[0].headers
    assert "authorization" not in received[0].headers
    assert KEY_HEADER.lower() not in received[0].headers


def test_refusals_logged_with_reason(chain: Chain) -> None:
    headers = _bare()
    headers[KEY_HEADER] = "wrong"
    trigger = headers["ory-webhook-trigger-id"]
    response = httpx.post(chain.url(HEADER_SYNC), content=b"{}", headers=headers)
    assert response.status_code == 401
    deadline = time.monotonic() + 5

    while time.monotonic() < deadline:
        lines = [
            line
            for line in chain.relay.events("request")
            if line.get("status") == 401 and line.get("reason") == "credential_mismatch"
        ]

        if lines:
            break

        time.sleep(0.05)

    assert lines
    assert lines[-1]["level"] == "warning"
    assert trigger not in str(lines[-1].get("webhook_id"))
