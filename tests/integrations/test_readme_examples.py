"""The README's handler examples are the files that the integration tests run."""

from __future__ import annotations

import re

from .cases import EXAMPLES

ROOT = EXAMPLES.parent.parent
DOCUMENTS = [ROOT / "README.md"]
BLOCK = re.compile(r"```python\n# examples/handlers/(\S+)\n(.*?)```\n", re.DOTALL)


def _section() -> str:
    for document in DOCUMENTS:
        if document.exists():
            text = document.read_text()

            if "## Writing hook handlers" in text:
                return text.split("## Writing hook handlers", 1)[1]

    raise AssertionError("no 'Writing hook handlers' section found")


def test_readme_blocks_match_examples() -> None:
    blocks = dict(BLOCK.findall(_section()))

    assert set(blocks) == {
        "kratos_hooks.py",
        "starlette_app.py",
        "fastapi_app.py",
        "flask_app.py",
        "django_app.py",
    }

    for name, code in blocks.items():
        assert code == (EXAMPLES / name).read_text(), name
