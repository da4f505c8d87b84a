"""`config check` and `serve` exit codes, with CliRunner and a real process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kratos_webhooks.cli import main
from kratos_webhooks.secrets import HmacKey

from ..receiver.harness import base_config, make_certificates, serve_command

EXAMPLES = Path(__file__).parents[2] / "examples"


def _config(tmp_path: Path) -> dict[str, object]:
    config = base_config(tmp_path, make_certificates(tmp_path))
    config["routes"] = [
        {
            "path": "/hooks/login/after",
            "verify": {
                "scheme": "standard-webhooks",
                "secrets": ["literal:" + HmacKey.generate().encode()],
            },
            "mode": "sync",
            "upstream": "http://127.0.0.1:9/hook",
        }
    ]
    return config


def test_config_check_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path)))
    result = CliRunner().invoke(main, ["config", "check", str(path)])

    assert result.exit_code == 0, result.output
    assert "ok, 1 route(s)" in result.output
    assert "warning: routes[0].verify.secrets[0]: literal secret" in result.output


def test_config_check_lists_every_problem(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config["routes"][0]["timeout"] = 40  # type: ignore[index]
    config["admin"] = {"listen": "nowhere"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["config", "check", str(path)])

    assert result.exit_code == 2
    assert "routes[0].timeout: must be above 0 and at most 25" in result.output
    assert "admin.listen: expected host:port" in result.output


def test_config_check_payload_keys(tmp_path: Path) -> None:
    config = _config(tmp_path)
    route = config["routes"][0]  # type: ignore[index]
    schema = tmp_path / "traits.schema.json"
    schema.write_text(
        '{"type": "object", "properties": {"email": {"format": "email"}}}'
    )
    route.update(
        hook="login.after",
        traits_schema=str(schema),
        forward_redacted=True,
        redact=["/identity/traits/phone"],
    )
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["config", "check", str(path)])

    assert result.exit_code == 0, result.output

    route.update(
        handler="tests.receiver.hook_handlers:tag_new_user",
        redact=["identity/traits/phone"],
        payload="json",
    )
    del route["upstream"]
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["config", "check", str(path)])

    assert result.exit_code == 2
    assert "routes[0].handler: " in result.output
    assert "registered for registration.after, not login.after" in result.output
    assert "routes[0].traits_schema: needs a Kratos payload" in result.output
    assert "routes[0].forward_redacted: applies only to routes with an" in result.output
    assert "routes[0].redact[0]: invalid redaction pointer" in result.output


def test_serve_invalid_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes: 5\n")
    result = subprocess.run(
        serve_command(path), capture_output=True, timeout=60, check=False
    )

    assert result.returncode == 2
    assert b"routes" in result.stderr


def test_serve_busy_port_exits_3(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = _config(tmp_path)
        port = busy.getsockname()[1]
        config["server"]["listen"] = f"127.0.0.1:{port}"  # type: ignore[index]
        path = tmp_path / "busy.yaml"
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run(
            serve_command(path), capture_output=True, timeout=60, check=False
        )

    assert result.returncode == 3
    assert b"cannot listen" in result.stderr


def test_serve_bad_certificate_exits_3(tmp_path: Path) -> None:
    config = _config(tmp_path)
    Path(config["server"]["tls"]["cert_file"]).write_text("not a certificate")  # type: ignore[index]
    path = tmp_path / "cert.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, *serve_command(path)[1:]],
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 3
    assert b"cannot start" in result.stderr


def test_config_check_example_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kratos_webhooks.cli.demo import prepare

    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(EXAMPLES / "receiver.yaml", examples / "receiver.yaml")
    prepare(examples / ".state", port=8443, admin_port=9464, app_port=8000)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(
        main, ["config", "check", str(examples / "receiver.yaml")]
    )

    assert result.exit_code == 0, result.output
    assert "ok, 10 route(s)" in result.output


def test_config_check_names_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path)))
    monkeypatch.setenv("KRATOS_WEBHOOKS_ROUTES__0__UPSTREAM", "ftp://127.0.0.1/")
    result = CliRunner().invoke(main, ["config", "check", str(path)])

    assert result.exit_code == 2
    assert (
        "routes[0].upstream: must be an http:// or https:// URL"
        " (from KRATOS_WEBHOOKS_ROUTES__0__UPSTREAM)" in result.output
    )


def test_config_check_finds_example_handler(tmp_path: Path) -> None:
    config = _config(tmp_path)
    route = config["routes"][0]  # type: ignore[index]
    del route["upstream"]
    route.update(hook="registration.after", handler="kratos_hooks:check_registration")
    path = tmp_path / "handler.yaml"
    path.write_text(yaml.safe_dump(config))
    # The console script, because `python -c` would put the working
    # directory on sys.path and the script does not.
    script = Path(sys.executable).parent / "kratos-webhooks"
    command = [str(script), "config", "check", str(path)]
    environ = dict(os.environ)
    without = subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env=environ
    )

    assert without.returncode == 2
    assert "is the directory that contains 'kratos_hooks' on PYTHONPATH?" in (
        without.stderr
    )

    search_path = [str(EXAMPLES / "handlers"), environ.get("PYTHONPATH", "")]
    environ["PYTHONPATH"] = os.pathsep.join(search_path)
    found = subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env=environ
    )

    assert found.returncode == 0, found.stderr
    assert "ok, 1 route(s)" in found.stdout
