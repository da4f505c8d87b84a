"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
KRATOS_SAMPLES = DATA / "kratos"


@pytest.fixture(scope="session")
def kratos_samples() -> dict[str, bytes]:
    """The Kratos request bodies, byte for byte as Kratos sends them."""
    return {
        path.name: path.read_bytes() for path in sorted(KRATOS_SAMPLES.glob("0*.json"))
    }


TLS_SCAN_REPORTS = pytest.StashKey[list[str]]()


@pytest.fixture
def record_scan_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Keep a TLS scan report to print in the terminal summary of every run."""
    reports = request.config.stash.setdefault(TLS_SCAN_REPORTS, [])
    return reports.append


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    # Printed in the summary rather than from the test, so that the report is
    # in CI's output without `-s`.
    for report in config.stash.get(TLS_SCAN_REPORTS, []):
        terminalreporter.section("TLS scan by sslyze")
        terminalreporter.write_line(report)
