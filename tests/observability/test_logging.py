"""The services' logging setup, run in a child process as `serve` runs it."""

from __future__ import annotations

import json
import subprocess
import sys

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
