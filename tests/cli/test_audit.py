"""`kratos-webhooks audit`: each finding, its level and the exit code."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kratos_webhooks.audit import audit_receiver, fails_audit, is_loopback
from kratos_webhooks.cli import main
from kratos_webhooks.config import parse_config

from ..tls.pki import Pki, now, write_pair

SECRET_ENV = {
    "AUDIT_KEY": "audit-api-key",
    "AUDIT_SW": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


@pytest.fixture(autouse=True)
def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def _document(pki: Pki, tmp_path: Path, **server: Any) -> dict[str, Any]:
    tls = {"cert_file": str(pki.cert_file), "key_file": str(pki.key_file)}
    tls.update(server.pop("tls", {}))
    return {
        "server": {"listen": "127.0.0.1:8443", "tls": tls, **server},
        "storage": f"sqlite://{tmp_path / 'state.db'}",
        "routes": [
            {
                "path": "/hooks/login",
                "mode": "sync",
                "upstream": "http://127.0.0.1:8000/login",
                "verify": {
                    "scheme": "kratos-api-key",
                    "secrets": ["env:AUDIT_KEY"],
                    "name": "X-Api-Key",
                },
            }
        ],
    }


def _findings(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    config = parse_config(document, environ=SECRET_ENV)
    return [(f.level, f.key, f.message) for f in audit_receiver(config)]


def _keys(findings: list[tuple[str, str, str]], level: str) -> list[str]:
    return [key for found_level, key, _ in findings if found_level == level]


def test_clean_config_has_only_info(pki: Pki, tmp_path: Path) -> None:
    findings = _findings(_document(pki, tmp_path))

    assert _keys(findings, "warning") == []
    assert _keys(findings, "error") == []
    assert ("info", "server.http_listen") in [(f[0], f[1]) for f in findings]
    assert any("plain HTTP is closed" in f[2] for f in findings)


def test_http_listen_reported(pki: Pki, tmp_path: Path) -> None:
    findings = _findings(_document(pki, tmp_path, http_listen="127.0.0.1:8080"))

    assert any("308 redirect" in message for _, _, message in findings)
    assert not any("plain HTTP is closed" in message for _, _, message in findings)


@pytest.mark.parametrize(
    ("version", "words"), [("1.2", "TLS 1.2 and 1.3"), ("1.3", "only TLS 1.3")]
)
def test_tls_version_info(pki: Pki, tmp_path: Path, version: str, words: str) -> None:
    findings = _findings(_document(pki, tmp_path, tls={"min_version": version}))

    assert any(
        level == "info" and key == "server.tls.min_version" and words in message
        for level, key, message in findings
    )


def test_literal_secret_warned(pki: Pki, tmp_path: Path) -> None:
    document = _document(pki, tmp_path)
    document["routes"][0]["verify"]["secrets"] = ["literal:not-for-production"]

    findings = _findings(document)

    assert _keys(findings, "warning") == ["routes[0].verify.secrets[0]"]
    assert "not-for-production" not in str(findings)


def test_literal_key_password_warned(pki: Pki, tmp_path: Path) -> None:
    document = _document(pki, tmp_path, tls={"key_password": "literal:pw"})

    assert "server.tls.key_password" in _keys(_findings(document), "warning")


def test_exposed_key_warned(pki: Pki, tmp_path: Path) -> None:
    pki.key_file.chmod(0o644)

    assert _keys(_findings(_document(pki, tmp_path)), "warning") == [
        "server.tls.key_file"
    ]


def test_public_listener_without_client_auth(pki: Pki, tmp_path: Path) -> None:
    findings = _findings(_document(pki, tmp_path, listen="0.0.0.0:8443"))

    assert _keys(findings, "warning") == ["routes[0].verify.scheme"]


def test_public_listener_with_client_auth(pki: Pki, tmp_path: Path) -> None:
    document = _document(
        pki,
        tmp_path,
        listen="0.0.0.0:8443",
        tls={"client_auth": "required", "client_ca_file": str(pki.client_ca_file)},
    )

    assert _keys(_findings(document), "warning") == []


def test_public_signed_route_not_flagged(pki: Pki, tmp_path: Path) -> None:
    document = _document(pki, tmp_path, listen="0.0.0.0:8443")
    document["routes"][0]["verify"] = {
        "scheme": "standard-webhooks",
        "secrets": ["env:AUDIT_SW"],
    }
    config = parse_config(document, environ=SECRET_ENV)

    assert not fails_audit(audit_receiver(config))


@pytest.mark.parametrize(("days", "level"), [(-1, "error"), (5, "warning")])
def test_certificate_expiry(pki: Pki, tmp_path: Path, days: int, level: str) -> None:
    leaf = pki.server_ca.issue_cert(
        "localhost",
        not_before=now() - timedelta(days=30),
        not_after=now() + timedelta(days=days),
    )
    cert_file, key_file = write_pair(leaf, tmp_path, "short")
    document = _document(
        pki, tmp_path, tls={"cert_file": str(cert_file), "key_file": str(key_file)}
    )

    assert _keys(_findings(document), level) == ["server.tls.cert_file"]


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("127.8.9.1:1", True),
        ("[::1]:1", True),
        ("localhost:1", True),
        ("0.0.0.0:1", False),
        ("[::]:1", False),
        ("10.0.0.1:1", False),
        ("receiver.internal:1", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def _run(document: dict[str, Any], tmp_path: Path) -> Any:
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(document))
    return CliRunner().invoke(main, ["audit", "--config", str(path)], env=SECRET_ENV)


def test_cli_clean_exits_0(pki: Pki, tmp_path: Path) -> None:
    result = _run(_document(pki, tmp_path), tmp_path)

    assert result.exit_code == 0, result.output
    assert "info: server.http_listen: plain HTTP is closed" in result.output


def test_cli_warning_exits_1(pki: Pki, tmp_path: Path) -> None:
    result = _run(_document(pki, tmp_path, listen="0.0.0.0:8443"), tmp_path)

    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("warning: routes[0].verify.scheme")


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes: 5\n")

    result = CliRunner().invoke(main, ["audit", "--config", str(path)])

    assert result.exit_code == 2
    assert "routes" in result.output


@pytest.fixture
def relay_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from ..relay.test_config import SIGNING

    monkeypatch.setenv("RELAY_TEST_SIGNING", SIGNING)
    monkeypatch.setenv("RELAY_TEST_KRATOS", "kratos-key")


@pytest.mark.usefixtures("relay_secrets")
@pytest.mark.parametrize(
    ("listen", "exit_code", "first_line"),
    [
        ("127.0.0.1:4480", 0, "info: relay.listen: the relay listens on loopback"),
        ("0.0.0.0:4480", 1, "warning: relay.listen: the relay listens on 0.0.0.0"),
    ],
)
def test_cli_relay_listener(
    tmp_path: Path, listen: str, exit_code: int, first_line: str
) -> None:
    from ..relay.test_config import route

    result = _run({"relay": {"listen": listen}, "routes": [route()]}, tmp_path)

    assert result.exit_code == exit_code, result.output
    assert result.output.splitlines()[0].startswith(first_line)


@pytest.mark.usefixtures("relay_secrets")
def test_cli_relay_with_tls(pki: Pki, tmp_path: Path) -> None:
    from ..relay.test_config import route

    tls = {"cert_file": str(pki.cert_file), "key_file": str(pki.key_file)}
    document = {"relay": {"listen": "0.0.0.0:4480", "tls": tls}, "routes": [route()]}

    result = _run(document, tmp_path)

    assert result.exit_code == 0, result.output
    assert "info: relay.tls: the relay serves HTTPS on 0.0.0.0:4480" in result.output
