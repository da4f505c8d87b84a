"""The relay's configuration: defaults, overrides, every problem with its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kratos_webhooks import HmacKey
from kratos_webhooks.cli import main
from kratos_webhooks.errors import ConfigError
from kratos_webhooks.relay.config import (
    STANDARD_WEBHOOKS_SCHEDULE,
    is_relay_document,
    load_relay_config,
    parse_relay_config,
)
from kratos_webhooks.relay.outbox import schedule_policy

SIGNING = HmacKey.generate().encode()


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_TEST_SIGNING", SIGNING)
    monkeypatch.setenv("RELAY_TEST_KRATOS", "kratos-key")


def route(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "path": "/kratos/registration/after",
        "target": "https://hooks.example.com/kratos/registration/after",
        "mode": "sync",
        "kratos_auth": {
            "type": "api_key",
            "name": "X-Webhook-Key",
            "secrets": ["env:RELAY_TEST_KRATOS"],
        },
        "signing": {"secrets": ["env:RELAY_TEST_SIGNING"]},
    }
    value.update(changes)
    return value


def test_defaults() -> None:
    config = parse_relay_config({"routes": [route()]}, environ={})
    (only,) = config.routes

    assert config.relay.listen == "127.0.0.1:4480"
    assert config.relay.tls is None
    assert not config.outbound.allow_private_targets
    assert not config.outbound.allow_loopback_targets
    assert only.timeout == 20.0
    assert only.delivery.schedule == STANDARD_WEBHOOKS_SCHEDULE
    assert config.warnings == ()


def test_schedule_policy_follows_table() -> None:
    import random

    config = parse_relay_config({"routes": [route(mode="async")]}, environ={})
    policy = schedule_policy(config.routes[0].delivery)
    rng = random.Random(1)

    assert policy.max_attempts == 8
    assert [round(policy.backoff(n, rng) / d, 1) <= 1.1 for n, d in
            enumerate(STANDARD_WEBHOOKS_SCHEDULE, 1)] == [True] * 7  # fmt: skip
    assert policy.backoff(1, rng) >= 4.5
    assert policy.backoff(7, rng) >= 36000 * 0.9
    assert policy.max_age > sum(STANDARD_WEBHOOKS_SCHEDULE)


def test_environment_overrides() -> None:
    environ = {
        "KRATOS_WEBHOOKS_ROUTES__0__TIMEOUT": "12",
        "KRATOS_WEBHOOKS_OUTBOUND__ALLOW_PRIVATE_TARGETS": "true",
        "KRATOS_WEBHOOKS_SERVER__LISTEN": "ignored: not a relay key",
    }
    config = parse_relay_config({"routes": [route()]}, environ=environ)

    assert config.routes[0].timeout == 12.0
    assert config.outbound.allow_private_targets


PROBLEMS = [
    ({"target": "http://169.254.169.254/x"}, "routes[0].target", "never connects"),
    ({"target": "http://[::ffff:169.254.169.254]/"}, "routes[0].target", "metadata"),
    ({"target": "http://127.0.0.1:8443/"}, "routes[0].target", "allow_loopback"),
    ({"target": "http://10.1.2.3/"}, "routes[0].target", "allow_private"),
    ({"target": "ftp://example.com/"}, "routes[0].target", "http"),
    ({"mode": "later"}, "routes[0].mode", "one of"),
    ({"timeout": 29}, "routes[0].timeout", "30 s"),
    ({"path": "kratos"}, "routes[0].path", "start with /"),
    ({"path": "/kratos%2Fafter"}, "routes[0].path", "percent-encoding"),
    ({"path": "/kratos after"}, "routes[0].path", "percent-encoding"),
    ({"methods": ["post"]}, "routes[0].methods[0]", "upper-case"),
    (
        {"kratos_auth": {"type": "api_key", "secrets": ["env:RELAY_TEST_KRATOS"]}},
        "routes[0].kratos_auth.name",
        "name",
    ),
    (
        {"kratos_auth": {"type": "basic_auth", "secrets": ["env:RELAY_TEST_KRATOS"]}},
        "routes[0].kratos_auth.secrets[0]",
        "user:password",
    ),
    (
        {"kratos_auth": {"type": "api_key", "name": "k", "secrets": ["env:UNSET_X"]}},
        "routes[0].kratos_auth.secrets[0]",
        "not set",
    ),
    (
        {"signing": {"secrets": ["env:RELAY_TEST_KRATOS"]}},
        "routes[0].signing.secrets[0]",
        "",
    ),
    ({"signing": {"secrets": []}}, "routes[0].signing.secrets", "at least one"),
    ({"delivery": {"schedule": []}}, "routes[0].delivery.schedule", "at least one"),
    ({"delivery": {"schedule": [5, -1]}}, "routes[0].delivery.schedule[1]", "above 0"),
    ({"delivery": {"jitter": 2}}, "routes[0].delivery.jitter", "between"),
    ({"surprise": 1}, "routes[0].surprise", "unknown key"),
]


@pytest.mark.parametrize(("changes", "key", "words"), PROBLEMS)
def test_route_problem_reported(changes: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_relay_config({"routes": [route(**changes)]}, environ={})

    found = dict(caught.value.problems)
    assert key in found, caught.value.problems
    assert words in found[key]


def test_every_problem_at_once(tmp_path: Path) -> None:
    document = {
        "relay": {
            "listen": "nowhere",
            "tls": {"cert_file": "/missing", "key_file": "/m"},
        },
        "outbound": {"client_cert_file": str(tmp_path / "missing.pem")},
        "storage": "redis://x",
        "routes": [route(), route()],
    }

    with pytest.raises(ConfigError) as caught:
        parse_relay_config(document, environ={})

    keys = {key for key, _ in caught.value.problems}
    assert {
        "relay.listen",
        "relay.tls.cert_file",
        "relay.tls.key_file",
        "outbound.client_cert_file",
        "outbound.client_key_file",
        "storage",
        "routes[1].path",
    } <= keys


def test_open_listener_warns() -> None:
    config = parse_relay_config(
        {"relay": {"listen": "0.0.0.0:4480"}, "routes": [route()]},
        environ={},
    )

    assert [key for key, _ in config.warnings] == ["relay.listen"]
    assert "without TLS" in config.warnings[0][1]


def test_plain_http_target_warns() -> None:
    config = parse_relay_config(
        {"routes": [route(target="http://hooks.example.com/x")]}, environ={}
    )

    assert [key for key, _ in config.warnings] == ["routes[0].target"]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"relay": {}}, True),
        ({"outbound": {}}, True),
        ({"routes": [{"target": "x"}]}, True),
        ({"routes": [{"upstream": "x"}]}, False),
        ({"server": {}}, False),
        ([], False),
    ],
)
def test_is_relay_document(document: Any, expected: bool) -> None:
    assert is_relay_document(document) is expected


def test_config_check_validates_relay(tmp_path: Path) -> None:
    good = tmp_path / "relay.yaml"
    good.write_text(yaml.safe_dump({"routes": [route()]}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"routes": [route(target="http://169.254.169.254/")]})
    )
    runner = CliRunner()

    ok = runner.invoke(main, ["config", "check", str(good)])
    failed = runner.invoke(main, ["config", "check", str(bad)])

    assert ok.exit_code == 0, ok.output
    assert "1 route(s)" in ok.output
    assert failed.exit_code == 2
    assert "routes[0].target" in failed.output
    assert SIGNING not in ok.output + failed.output


def test_load_reports_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_relay_config(tmp_path / "missing.yaml")

    broken = tmp_path / "broken.yaml"
    broken.write_text("routes: [\n")

    with pytest.raises(ConfigError, match="not valid YAML"):
        load_relay_config(broken)


def test_relative_paths_follow_relay_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "deploy"
    directory.mkdir()
    (directory / "signing").write_text(SIGNING)
    (directory / "ca.pem").write_text("ca")
    document = {
        "outbound": {"ca_file": "ca.pem"},
        "storage": "sqlite://relay.db",
        "routes": [route(signing={"secrets": ["file:signing"]})],
    }
    (directory / "relay.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.chdir(tmp_path)
    config = load_relay_config(Path("deploy") / "relay.yaml", environ={})

    assert config.outbound.ca_file == str(directory / "ca.pem")
    assert config.storage == f"sqlite://{directory.as_posix()}/relay.db"
    assert config.routes[0].signing.secrets == (f"file:{directory / 'signing'}",)


def test_override_problem_names_relay_variable() -> None:
    environ = {"KRATOS_WEBHOOKS_ROUTES__0__TIMEOUT": "60"}

    with pytest.raises(ConfigError) as caught:
        parse_relay_config({"routes": [route()]}, environ=environ)

    problems = dict(caught.value.problems)

    assert problems["routes[0].timeout"].endswith(
        "(from KRATOS_WEBHOOKS_ROUTES__0__TIMEOUT)"
    )
