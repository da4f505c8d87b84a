from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from kratos_webhooks.observability.logging import (
    ACCESS_LOGGER,
    configure_logging,
    drop_sensitive,
    log_request,
)

FIELDS = {
    "method": "POST",
    "route": "/hooks/login",
    "source": "127.0.0.1",
    "status": 202,
    "reason": "accepted",
    "webhook_id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    "latency_ms": 1.234,
}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    output = io.StringIO()
    configure_logging("info", output)

    try:
        yield output
    finally:
        root.handlers, level = saved
        root.setLevel(level)
        structlog.reset_defaults()


def lines(output: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


def test_access_line_matches_structlog_line(stream: io.StringIO) -> None:
    structlog.stdlib.get_logger(ACCESS_LOGGER).info("request", **FIELDS)
    log_request(**FIELDS)  # type: ignore[arg-type]
    reference, line = lines(stream)

    assert list(line) == list(reference)
    assert line.pop("timestamp") != ""
    reference.pop("timestamp")
    assert line == reference


def test_access_line_timestamp_is_iso_utc(stream: io.StringIO) -> None:
    log_request(**FIELDS)  # type: ignore[arg-type]
    (line,) = lines(stream)
    stamp = str(line["timestamp"])

    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None
    assert len(stamp.rpartition(".")[2]) == len("123456Z")


def test_access_line_fields_pass_redaction() -> None:
    event = dict(FIELDS, event="request")

    assert drop_sensitive(None, "info", dict(event)) == event


def test_access_line_reaches_caplog(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, ACCESS_LOGGER):
        log_request(**FIELDS)  # type: ignore[arg-type]

    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert isinstance(record.msg, dict)
    assert record.msg["reason"] == "accepted"


def test_access_line_skipped_below_level(stream: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    log_request(**FIELDS)  # type: ignore[arg-type]

    assert stream.getvalue() == ""


def test_other_lines_still_rendered_by_structlog(stream: io.StringIO) -> None:
    structlog.stdlib.get_logger("kratos_webhooks.server").info(
        "started", routes=2, secret="hidden"
    )
    (line,) = lines(stream)

    assert line["event"] == "started"
    assert line["routes"] == 2
    assert "secret" not in line


# Run as `serve` runs it, in a child process, so the global setup stays there.
SCRIPT = """
import logging
import httpx
from kratos_webhooks.observability.logging import configure_logging

configure_logging("info")
transport = httpx.MockTransport(lambda request: httpx.Response(204))

with httpx.Client(transport=transport) as client:
    client.post("http://upstream.test/hook?token=query-secret-value")

logging.getLogger("httpx").warning("httpx warning still shown")
logging.getLogger("kratos_webhooks.server").info("server line")
"""


def _log_lines() -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_httpx_info_lines_dropped() -> None:
    lines = _log_lines()
    httpx_lines = [line for line in lines if line.get("logger") == "httpx"]

    assert [line["event"] for line in httpx_lines] == ["httpx warning still shown"]
    assert all("query-secret-value" not in json.dumps(line) for line in lines)
    assert any(line.get("event") == "server line" for line in lines)
