"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
KRATOS_SAMPLES = DATA / "kratos"


@pytest.fixture(scope="session")
def kratos_samples() -> dict[str, bytes]:
    """The Kratos request bodies, byte for byte as Kratos sends them."""
    return {
        path.name: path.read_bytes() for path in sorted(KRATOS_SAMPLES.glob("0*.json"))
    }
