"""The check of the application's answer before it is passed on to Kratos."""

from __future__ import annotations

import pytest

from kratos_webhooks.errors import InvalidUpstreamAnswer
from kratos_webhooks.receiver.kratos_answers import check_kratos_answer


@pytest.mark.parametrize("status", [200, 400])
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_answer_rejected(status: int, depth: int) -> None:
    body = b"[" * depth + b"]" * depth

    with pytest.raises(InvalidUpstreamAnswer, match="not JSON"):
        check_kratos_answer(status, body)


def test_empty_answer_passed_as_no_change() -> None:
    assert check_kratos_answer(204, b"ignored") == b""
