"""The example applications' secrets and import path, for every framework test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cases import ENVIRONMENT, EXAMPLES


@pytest.fixture(scope="session", autouse=True)
def example_environment() -> Iterator[None]:
    """Set the secrets the examples read, and make the examples importable."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)

        patch.syspath_prepend(str(EXAMPLES))
        yield
