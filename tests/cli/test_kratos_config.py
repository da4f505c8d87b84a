"""`kratos-config`: Kratos hooks, relay and receiver routes that agree, no secrets."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import _gojsonnet
import pytest
import yaml
from click.testing import CliRunner

from kratos_webhooks import HmacKey, JsonnetMacCheck, Secret
from kratos_webhooks.cli import main
from kratos_webhooks.config import parse_config
from kratos_webhooks.kratos.templates import fill_placeholder
from kratos_webhooks.relay.config import parse_relay_config

SAMPLES = Path(__file__).parent.parent / "data" / "kratos"
KRATOS_KEY = "kratos-credential-7f3a9c"
SIGNING_KEY = HmacKey.generate().encode()
UPSTREAM_KEY = HmacKey.generate().encode()
MAC_KEY = HmacKey.generate().encode()
SECRETS = {
    "KRATOS_WEBHOOKS_KRATOS_KEY": KRATOS_KEY,
    "KRATOS_WEBHOOKS_RELAY_SECRET": SIGNING_KEY,
    "KRATOS_WEBHOOKS_UPSTREAM_SECRET": UPSTREAM_KEY,
    "KRATOS_WEBHOOKS_MAC_SECRET": MAC_KEY,
}


@pytest.fixture(autouse=True)
def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def generate(tmp_path: Path, *options: str) -> dict[str, str]:
    output = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "kratos-config",
            "--output-dir",
            str(output),
            "--receiver-url",
            "https://127.0.0.1:8443",
            *options,
        ],
    )
    assert result.exit_code == 0, result.output
    return {path.name: path.read_text() for path in output.iterdir()}


def hook_lists(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Flatten `selfservice.flows...hooks` into dotted name -> hooks list."""
    found: dict[str, list[dict[str, Any]]] = {}

    def walk(node: dict[str, Any], names: list[str]) -> None:
        for key, value in node.items():
            if key == "hooks":
                found[".".join(names)] = value
            else:
                walk(value, [*names, key])

    walk(document["selfservice"]["flows"], [])
    return found


def receiver_config(routes_file: str, tmp_path: Path) -> Any:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    document = yaml.safe_load(routes_file)
    document["server"] = {"tls": {"cert_file": str(cert), "key_file": str(key)}}
    return parse_config(document, environ={})


def test_default_files_written(tmp_path: Path) -> None:
    files = generate(tmp_path)

    assert set(files) == {"kratos-hooks.yaml", "relay.yaml", "receiver-routes.yaml"}


def test_no_secret_in_output(tmp_path: Path) -> None:
    for options in ([], ["--jsonnet-mac"], ["--auth", "basic_auth"]):
        files = generate(tmp_path, "--force", *options)

        for name, text in files.items():
            for secret in SECRETS.values():
                assert secret not in text, name


def test_kratos_entries_shape(tmp_path: Path) -> None:
    files = generate(tmp_path)
    hooks = hook_lists(yaml.safe_load(files["kratos-hooks.yaml"]))

    assert set(hooks) == {
        "registration.before",
        "registration.after",
        "login.after",
        "settings.after",
        "recovery.after",
        "verification.after",
    }

    for name, entries in hooks.items():
        (entry,) = entries
        config = entry["config"]
        assert entry["hook"] == "web_hook"
        assert config["method"] == "POST"
        assert config["url"] == "http://127.0.0.1:4480/kratos/" + name.replace(".", "/")
        template = base64.b64decode(config["body"].removeprefix("base64://"))
        assert template == b"function(ctx) ctx\n"
        assert config["auth"] == {
            "type": "api_key",
            "config": {
                "name": "X-Webhook-Key",
                "value": "${KRATOS_WEBHOOKS_KRATOS_KEY}",
                "in": "header",
            },
        }
        sync = name.startswith(("registration", "settings"))
        expected = {"parse": True} if sync else {"ignore": True}
        assert config["response"] == expected, name


def test_kratos_body_renders_samples(tmp_path: Path) -> None:
    files = generate(tmp_path, "--hook", "registration.after.password")
    hooks = hook_lists(yaml.safe_load(files["kratos-hooks.yaml"]))
    body_uri = hooks["registration.after.password"][0]["config"]["body"]
    template = base64.b64decode(body_uri.removeprefix("base64://")).decode()

    for sample in sorted(SAMPLES.glob("*.passthrough.json")):
        ctx = json.dumps(
            json.loads(sample.read_bytes()), ensure_ascii=False, separators=(",", ":")
        )
        rendered = _gojsonnet.evaluate_snippet("b", template, tla_codes={"ctx": ctx})
        assert str(rendered).encode() == sample.read_bytes(), sample.name


def test_three_sides_agree(tmp_path: Path) -> None:
    files = generate(tmp_path)
    hooks = hook_lists(yaml.safe_load(files["kratos-hooks.yaml"]))
    relay = parse_relay_config(yaml.safe_load(files["relay.yaml"]), environ={})
    receiver = receiver_config(files["receiver-routes.yaml"], tmp_path)
    relay_routes = {route.path: route for route in relay.routes}
    receiver_routes = {route.path: route for route in receiver.routes}

    assert len(relay_routes) == len(hooks) == len(receiver_routes)
    assert relay.outbound.allow_loopback_targets

    for name, (entry,) in hooks.items():
        path = "/kratos/" + name.replace(".", "/")
        config = entry["config"]
        relay_route = relay_routes[path]
        receiver_route = receiver_routes[path]
        mode = "sync" if "parse" in config["response"] else "async"

        assert config["url"].endswith(path)
        assert relay_route.mode == receiver_route.mode == mode
        assert relay_route.target == "https://127.0.0.1:8443" + path
        assert relay_route.kratos_auth.type == config["auth"]["type"]
        assert relay_route.kratos_auth.name == config["auth"]["config"]["name"]
        assert relay_route.kratos_auth.in_ == config["auth"]["config"]["in"]
        assert relay_route.kratos_auth.secrets == ("env:KRATOS_WEBHOOKS_KRATOS_KEY",)
        assert receiver_route.verify.scheme == "standard-webhooks"
        assert relay_route.signing.secrets == receiver_route.verify.secrets
        assert receiver_route.upstream == "http://127.0.0.1:8000" + path
        assert relay_route.timeout > receiver_route.timeout


def test_basic_auth_agrees(tmp_path: Path) -> None:
    files = generate(tmp_path, "--auth", "basic_auth", "--basic-user", "hooks")
    hooks = hook_lists(yaml.safe_load(files["kratos-hooks.yaml"]))
    relay = parse_relay_config(yaml.safe_load(files["relay.yaml"]), environ={})

    for entries in hooks.values():
        assert entries[0]["config"]["auth"] == {
            "type": "basic_auth",
            "config": {"user": "hooks", "password": "${KRATOS_WEBHOOKS_KRATOS_KEY}"},
        }

    for route in relay.routes:
        assert route.kratos_auth.type == "basic_auth"
        assert route.kratos_auth.user == "hooks"


def test_jsonnet_mac_files(tmp_path: Path) -> None:
    files = generate(tmp_path, "--jsonnet-mac", "--template-dir", "/etc/kratos/hooks")

    assert set(files) == {
        "kratos-hooks.yaml",
        "receiver-routes.yaml",
        "webhook-mac.jsonnet",
    }
    hooks = hook_lists(yaml.safe_load(files["kratos-hooks.yaml"]))
    receiver = receiver_config(files["receiver-routes.yaml"], tmp_path)
    receiver_routes = {route.path: route for route in receiver.routes}

    for name, (entry,) in hooks.items():
        path = "/kratos/" + name.replace(".", "/")
        config = entry["config"]
        assert config["url"] == "https://127.0.0.1:8443" + path
        assert config["body"] == "file:///etc/kratos/hooks/webhook-mac.jsonnet"
        assert "auth" not in config
        verify = receiver_routes[path].verify
        assert verify.scheme == "kratos-jsonnet-mac"
        assert verify.secrets == ("env:KRATOS_WEBHOOKS_MAC_SECRET",)


def test_jsonnet_mac_receiver_accepts(tmp_path: Path) -> None:
    files = generate(tmp_path, "--jsonnet-mac")
    receiver = receiver_config(files["receiver-routes.yaml"], tmp_path)
    secrets = [Secret.load(ref) for ref in receiver.routes[0].verify.secrets]
    template = fill_placeholder(
        files["webhook-mac.jsonnet"], "KRATOS_WEBHOOKS_MAC_SECRET", MAC_KEY
    )
    check = JsonnetMacCheck(secrets)

    for sample in sorted(SAMPLES.glob("*.passthrough.json")):
        ctx = json.dumps(
            json.loads(sample.read_bytes()), ensure_ascii=False, separators=(",", ":")
        )
        body = str(_gojsonnet.evaluate_snippet("b", template, tla_codes={"ctx": ctx}))
        payload = check.verify_body(body.encode())
        assert json.loads(payload) == json.loads(sample.read_bytes())


def test_existing_files_kept(tmp_path: Path) -> None:
    generate(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "kratos-config",
            "--output-dir",
            str(tmp_path / "out"),
            "--receiver-url",
            "https://hooks.example.com",
        ],
    )

    assert result.exit_code == 2
    assert "--force" in result.output


@pytest.mark.parametrize(
    "options",
    [
        ["--hook", "signup.after"],
        ["--hook", "login.after", "--hook", "login.after:sync"],
        ["--kratos-secret-env", "lower-case"],
        ["--upstream-url", "ftp://example.com"],
    ],
)
def test_invalid_options_exit_2(tmp_path: Path, options: list[str]) -> None:
    result = CliRunner().invoke(
        main,
        [
            "kratos-config",
            "--output-dir",
            str(tmp_path / "out"),
            "--receiver-url",
            "https://hooks.example.com",
            *options,
        ],
    )

    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out").exists()


def test_private_receiver_allowed(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "kratos-config",
            "--output-dir",
            str(tmp_path / "out"),
            "--receiver-url",
            "https://10.0.4.7:8443",
        ],
    )
    assert result.exit_code == 0, result.output
    relay = parse_relay_config(
        yaml.safe_load((tmp_path / "out" / "relay.yaml").read_text()), environ={}
    )

    assert relay.outbound.allow_private_targets
    assert not relay.outbound.allow_loopback_targets
