"""Commands run without an optional extra: a message naming the extra, exit 2.

Each case runs the command line in a fresh interpreter where the listed
modules cannot be imported, as on a plain `pip install kratos-webhooks`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kratos_webhooks.cli.options import SERVER_MODULES
from kratos_webhooks.secrets import HmacKey

# Setting sys.modules[name] to None makes `import name` raise
# ModuleNotFoundError, as if the package were not installed.
RUNNER = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from kratos_webhooks.cli import main
main(sys.argv[2:], prog_name="kratos-webhooks")
"""


def run_without(
    modules: tuple[str, ...], *arguments: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, ",".join(modules), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def receiver_file(tmp_path: Path) -> Path:
    path = tmp_path / "receiver.yaml"
    route = {
        "path": "/hooks",
        "verify": {
            "scheme": "standard-webhooks",
            "secrets": ["literal:" + HmacKey.generate().encode()],
        },
        "mode": "sync",
        "upstream": "http://127.0.0.1:9/hook",
    }
    document = {
        "server": {"tls": {"cert_file": "tls.crt", "key_file": "tls.key"}},
        "routes": [route],
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("missing", "arguments"),
    [
        (("structlog",), ("serve", "--config", "receiver.yaml")),
        (("uvicorn",), ("relay", "--config", "receiver.yaml")),
        (("cryptography",), ("demo", "--directory", "state")),
        (("structlog",), ("demo", "--directory", "state")),
    ],
)
def test_server_commands_name_extra(
    tmp_path: Path, missing: tuple[str, ...], arguments: tuple[str, ...]
) -> None:
    receiver_file(tmp_path)
    result = run_without(missing, *arguments, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert f"needs the Python package {missing[0]!r}" in result.stderr
    assert "pip install 'kratos-webhooks[server]'" in result.stderr
    assert "pip install '.[server]' in a checkout" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("missing", "arguments", "extra"),
    [
        (("cryptography",), ("secret", "new", "--ed25519"), "cryptography"),
    ],
)
def test_other_commands_name_extra(
    tmp_path: Path, missing: tuple[str, ...], arguments: tuple[str, ...], extra: str
) -> None:
    receiver_file(tmp_path)
    result = run_without(missing, *arguments, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert f"kratos-webhooks[{extra}]" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "arguments",
    [("config", "check", "receiver.yaml"), ("audit", "--config", "receiver.yaml")],
)
def test_plain_install_checks_configuration(
    tmp_path: Path, arguments: tuple[str, ...]
) -> None:
    receiver_file(tmp_path)
    result = run_without(SERVER_MODULES, *arguments, cwd=tmp_path)

    # The configuration's own problem (no TLS files) is reported, not an extra.
    assert result.returncode == 2, result.stderr
    assert "server.tls.cert_file" in result.stderr
    assert "kratos-webhooks[server]" not in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_install_signs_and_lists(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(HmacKey.generate().encode())
    (tmp_path / "body.json").write_bytes(b"{}")
    blocked = (*SERVER_MODULES, "gojsonnet")
    signed = run_without(
        blocked,
        *("sign", "--secret-file", "secret", "--body-file", "body.json"),
        cwd=tmp_path,
    )

    assert signed.returncode == 0, signed.stderr
    assert "webhook-signature: v1," in signed.stdout

    listed = run_without(
        blocked, "inbox", "list", "--storage", "sqlite:///absent.db", cwd=tmp_path
    )

    assert listed.returncode == 2, listed.stderr
    assert "no state database" in listed.stderr
    assert "Traceback" not in listed.stderr
