"""The configuration: every problem at once with its key path, overrides, secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kratos_webhooks.config import Config, load_config, parse_config
from kratos_webhooks.errors import ConfigError
from kratos_webhooks.secrets import HmacKey

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    return {"cert_file": str(cert), "key_file": str(key)}


def document(tls_files: dict[str, str], **route: Any) -> dict[str, Any]:
    return {
        "server": {"tls": tls_files},
        "routes": [
            {
                "path": "/hooks/registration/after",
                "verify": {
                    "scheme": "standard-webhooks",
                    "secrets": ["literal:" + HmacKey.generate().encode()],
                },
                "mode": "sync",
                "upstream": "http://127.0.0.1:8000/hook",
                **route,
            }
        ],
    }


def problems_of(raw: Any, environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ=environ or {})

    return dict(caught.value.problems)


def test_valid_config_has_defaults(tls_files: dict[str, str]) -> None:
    config = parse_config(document(tls_files), environ={})

    assert isinstance(config, Config)
    assert config.server.listen == "0.0.0.0:8443"
    assert config.server.tls.min_version == "1.2"
    assert config.server.limits.header_timeout == 5.0
    assert config.admin.listen == "127.0.0.1:9464"
    assert config.idempotency_window == 86400.0
    assert config.routes[0].timeout == 10.0
    assert config.routes[0].methods == ("POST",)


def test_literal_secret_flagged(tls_files: dict[str, str]) -> None:
    signed = {"upstream_secrets": ["literal:" + HmacKey.generate().encode()]}
    config = parse_config(document(tls_files, **signed), environ={})

    assert [path for path, _ in config.warnings] == [
        "routes[0].verify.secrets[0]",
        "routes[0].upstream_secrets[0]",
    ]


def test_unsigned_sync_upstream_warned(tls_files: dict[str, str]) -> None:
    config = parse_config(document(tls_files), environ={})
    warnings = dict(config.warnings)

    assert "cannot verify" in warnings["routes[0].upstream_secrets"]


def test_config_is_frozen(tls_files: dict[str, str]) -> None:
    config = parse_config(document(tls_files), environ={})

    with pytest.raises(AttributeError):
        config.storage = "elsewhere"  # type: ignore[misc]


def test_every_problem_reported_at_once(tls_files: dict[str, str]) -> None:
    raw = document(tls_files, timeout=30, mode="later", rate_limit="lots")
    raw["server"]["limits"] = {"header_timeout": "slow", "max_connections": 0}
    raw["server"]["trusted_proxies"] = ["10.0.0.0/33"]
    raw["server"]["tls"]["min_version"] = "1.1"
    raw["unknown"] = 1
    problems = problems_of(raw)

    assert set(problems) == {
        "routes[0].mode",
        "server.limits.header_timeout",
        "server.tls.min_version",
        "unknown",
    }


SEMANTIC_CASES = [
    ({"timeout": 26}, "routes[0].timeout", "at most 25"),
    ({"timeout": 0}, "routes[0].timeout", "above 0"),
    ({"rate_limit": "lots"}, "routes[0].rate_limit", "not a rate"),
    ({"allow_from": ["10.0.0.0/33"]}, "routes[0].allow_from[0]", "CIDR"),
    ({"methods": ["post"]}, "routes[0].methods[0]", "upper-case"),
    ({"upstream": "ftp://x/"}, "routes[0].upstream", "http://"),
    ({"handler": "os:getcwd"}, "routes[0]", "exactly one"),
    ({"mode": "async"}, "routes[0].upstream_secrets", "add a secret"),
    ({"max_inflated_bytes": 10}, "routes[0].max_inflated_bytes", "gzip"),
    ({"verify": {"scheme": "kratos-api-key", "secrets": ["literal:k"]}},
     "routes[0].verify.name", "name"),
    ({"verify": {"scheme": "kratos-basic", "secrets": ["literal:nocolon"]}},
     "routes[0].verify.secrets[0]", "user:password"),
    ({"verify": {"scheme": "standard-webhooks", "secrets": ["literal:c2hvcnQ="]}},
     "routes[0].verify.secrets[0]", "bytes"),
    ({"verify": {"scheme": "standard-webhooks", "secrets": ["env:UNSET_FOR_TEST"]}},
     "routes[0].verify.secrets[0]", "not set"),
    ({"verify": {"scheme": "hmac", "secrets": []}},
     "routes[0].verify.scheme", "one of"),
    ({"path": "/hooks%2Fafter"}, "routes[0].path", "percent-encoding"),
    ({"path": "/hooks/after?x=1"}, "routes[0].path", "percent-encoding"),
    ({"path": "/hooks/caf\u00e9"}, "routes[0].path", "percent-encoding"),
]  # fmt: skip


@pytest.mark.parametrize(("route", "path", "fragment"), SEMANTIC_CASES)
def test_semantic_problem_has_key_path(
    tls_files: dict[str, str], route: dict[str, Any], path: str, fragment: str
) -> None:
    problems = problems_of(document(tls_files, **route))

    assert path in problems, problems
    assert fragment in problems[path]


def test_missing_tls_files_reported(tmp_path: Path) -> None:
    missing = {"cert_file": str(tmp_path / "no.crt"), "key_file": str(tmp_path / "no")}
    problems = problems_of(document(missing))

    assert "server.tls.cert_file" in problems
    assert "server.tls.key_file" in problems


def test_duplicate_route_paths(tls_files: dict[str, str]) -> None:
    raw = document(tls_files)
    raw["routes"].append(dict(raw["routes"][0]))

    assert "routes[1].path" in problems_of(raw)


def test_environment_overrides_nested_keys(tls_files: dict[str, str]) -> None:
    environ = {
        "KRATOS_WEBHOOKS_SERVER__LIMITS__MAX_BODY_BYTES": "2048",
        "KRATOS_WEBHOOKS_ROUTES__0__TIMEOUT": "3.5",
        "KRATOS_WEBHOOKS_ROUTES__0__ALLOW_FROM": "[10.0.0.0/8, 192.168.0.0/16]",
        "KRATOS_WEBHOOKS_SERVER__RATE_LIMIT__GLOBAL": "50/second",
        "KRATOS_WEBHOOKS_SECRET": "a secret, not an override",
    }
    config = parse_config(document(tls_files), environ=environ)

    assert config.server.limits.max_body_bytes == 2048
    assert config.routes[0].timeout == 3.5
    assert config.routes[0].allow_from == ("10.0.0.0/8", "192.168.0.0/16")
    assert config.server.rate_limit.global_ == "50/second"


def test_environment_override_reported_with_path(tls_files: dict[str, str]) -> None:
    environ = {
        "KRATOS_WEBHOOKS_ROUTES__0__TIMEOUT": "99",
        "KRATOS_WEBHOOKS_ROUTES__5__PATH": "/x",
    }
    problems = problems_of(document(tls_files), environ)

    assert "routes[0].timeout" in problems
    assert "routes[5]" in problems


def test_load_config_reports_yaml_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("server: [unclosed\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert "line" in caught.value.problems[0][1]


def test_load_config_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_example_matches_demo_config() -> None:
    from kratos_webhooks.cli.demo import demo_config

    example = yaml.safe_load((EXAMPLES / "receiver.yaml").read_text())
    made = demo_config(Path(".state"), port=8443, admin_port=9464, app_port=8000)

    assert example == made
    assert len(example["routes"]) == 10


def test_payload_keys_default(tls_files: dict[str, str]) -> None:
    route = parse_config(document(tls_files), environ={}).routes[0]

    assert route.payload is None
    assert route.payload_kind == "json"
    assert route.hook is None
    assert route.traits_schema is None
    assert route.forward_redacted is False
    assert route.redact == ()

    route = parse_config(document(tls_files, hook="settings.after"), environ={}).routes[
        0
    ]

    assert route.hook == "settings.after"
    assert route.payload_kind == "kratos"


def test_payload_key_types(tls_files: dict[str, str]) -> None:
    problems = problems_of(document(tls_files, hook="signup.after", payload="xml"))

    assert "expected one of 'registration.before'" in problems["routes[0].hook"]
    assert "expected one of 'kratos', 'json', 'form'" in problems["routes[0].payload"]


def test_payload_key_problems(tls_files: dict[str, str], tmp_path: Path) -> None:
    bad_schema = tmp_path / "bad.schema.json"
    bad_schema.write_text('{"type": 5}')
    raw = document(tls_files, traits_schema=str(bad_schema))
    second = document(
        tls_files, payload="kratos", traits_schema=str(tmp_path / "absent.json")
    )["routes"][0]
    second["path"] = "/second"
    raw["routes"].append(second)

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ={})

    messages = [f"{path}: {message}" for path, message in caught.value.problems]

    assert messages == [
        "routes[0].traits_schema: needs a Kratos payload: "
        "set payload: kratos or a hook",
        f"routes[0].traits_schema: the traits schema {bad_schema} is not a valid "
        "JSON Schema: 5 is not valid under any of the given schemas",
        f"routes[1].traits_schema: cannot read the traits schema "
        f"{tmp_path / 'absent.json'}",
    ]


def test_bad_traits_schema_reported(tls_files: dict[str, str], tmp_path: Path) -> None:
    schema = tmp_path / "traits.schema.json"
    schema.write_text('{"type": "object", "required": "email"}')
    raw = document(tls_files, hook="registration.after", traits_schema=str(schema))

    assert "not a valid JSON Schema" in problems_of(raw)["routes[0].traits_schema"]

    schema.write_text('{"type": "object", "required": ["email"]}')
    route = parse_config(raw, environ={}).routes[0]

    assert route.traits_schema == str(schema)


def test_demo_body_fits_demo_route() -> None:
    from kratos_webhooks.cli.demo import DEMO_BODY
    from kratos_webhooks.receiver.build import build_parser

    example = yaml.safe_load((EXAMPLES / "receiver.yaml").read_text())
    (route,) = [
        r for r in example["routes"] if r["path"].endswith("registration/after")
    ]
    raw = {"server": {"tls": {"cert_file": "x", "key_file": "y"}}, "routes": [route]}
    converted = convert_route(raw)
    payload = build_parser(converted).parse(DEMO_BODY)

    assert payload.context is not None
    assert payload.context.identity is not None
    assert payload.context.identity.traits == {"email": "alex.sample@example.com"}


def convert_route(raw: dict[str, Any]) -> Any:
    from kratos_webhooks.config_schema import convert

    problems: list[tuple[str, str]] = []
    config = convert(Config, raw, "", problems)

    assert problems == []
    return config.routes[0]


def test_schema_problems_keep_value_checks(tls_files: dict[str, str]) -> None:
    raw = document(
        tls_files,
        path="hooks",
        upstream="ftp://127.0.0.1/hook",
        rate_limit="often",
        timeout=60,
        colour="blue",
    )
    raw["server"]["listen"] = "127.0.0.1:99999"
    raw["server"]["tls"]["ciphers"] = "all"
    raw["extra"] = True

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ={})

    problems = dict(caught.value.problems)

    assert problems["extra"] == "unknown key"
    assert problems["server.tls.ciphers"] == "unknown key"
    assert problems["routes[0].colour"] == "unknown key"
    assert problems["server.listen"] == "port 99999 is above 65535"
    assert problems["routes[0].path"] == "must start with /"
    assert "http:// or https://" in problems["routes[0].upstream"]
    assert "is not a rate" in problems["routes[0].rate_limit"]
    assert "at most 25 seconds" in problems["routes[0].timeout"]
    assert "could not run" not in str(caught.value)


def test_invalid_route_keeps_other_checks(tls_files: dict[str, str]) -> None:
    raw = document(tls_files, mode="sometimes")
    raw["routes"].append({**raw["routes"][0], "mode": "sync", "timeout": 60})
    raw["admin"] = {"listen": "nowhere"}

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ={})

    problems = dict(caught.value.problems)

    assert "expected one of" in problems["routes[0].mode"]
    assert "at most 25 seconds" in problems["routes[1].timeout"]
    assert "expected host:port" in problems["admin.listen"]
    assert "the checks of routes[0] could not run" in str(caught.value)
    assert "routes[0].path" not in problems


def test_override_problem_names_variable(tls_files: dict[str, str]) -> None:
    environ = {
        "KRATOS_WEBHOOKS_ROUTES__0__TIMEOUT": "60",
        "KRATOS_WEBHOOKS_SERVER__LISTEN": "127.0.0.1:99999",
        "KRATOS_WEBHOOKS_ROUTES__0__VERIFY__SECRETS": "[env:ABSENT_SECRET_NAME]",
    }
    raw = document(tls_files, upstream="ftp://127.0.0.1/hook")
    problems = problems_of(raw, environ)

    assert problems["routes[0].timeout"].endswith(
        "(from KRATOS_WEBHOOKS_ROUTES__0__TIMEOUT)"
    )
    assert problems["server.listen"].endswith("(from KRATOS_WEBHOOKS_SERVER__LISTEN)")
    assert problems["routes[0].verify.secrets[0]"].endswith(
        "(from KRATOS_WEBHOOKS_ROUTES__0__VERIFY__SECRETS)"
    )
    assert "(from" not in problems["routes[0].upstream"]


def test_relative_paths_follow_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "etc"
    (directory / "tls").mkdir(parents=True)
    (directory / "tls" / "server.crt").write_text("cert")
    (directory / "tls" / "server.key").write_text("key")
    (directory / "secret").write_text(HmacKey.generate().encode())
    (directory / "traits.json").write_text('{"type": "object"}')
    route = {
        "path": "/hooks/registration/after",
        "verify": {"scheme": "standard-webhooks", "secrets": ["file:secret"]},
        "mode": "async",
        "hook": "registration.after",
        "traits_schema": "traits.json",
        "upstream": "http://127.0.0.1:8000/hook",
        "upstream_secrets": ["file:secret"],
    }
    raw = {
        "server": {
            "tls": {"cert_file": "tls/server.crt", "key_file": "tls/server.key"}
        },
        "storage": "sqlite://state/state.db",
        "routes": [route],
    }
    path = directory / "receiver.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc") / "receiver.yaml", environ={})

    assert config.server.tls.cert_file == str(directory / "tls" / "server.crt")
    assert config.server.tls.key_file == str(directory / "tls" / "server.key")
    assert config.storage == f"sqlite://{directory.as_posix()}/state/state.db"
    assert config.routes[0].verify.secrets == (f"file:{directory / 'secret'}",)
    assert config.routes[0].upstream_secrets == (f"file:{directory / 'secret'}",)
    assert config.routes[0].traits_schema == str(directory / "traits.json")


def test_absolute_and_env_references_kept(tls_files: dict[str, str]) -> None:
    from kratos_webhooks.config_paths import resolve_secret, resolve_storage

    base = Path("/srv/config")

    assert resolve_secret("env:NAME", base) == "env:NAME"
    assert resolve_secret("literal:a/b", base) == "literal:a/b"
    assert resolve_secret("file:/run/secret", base) == "file:/run/secret"
    assert resolve_secret("file:secret", base) == "file:/srv/config/secret"
    assert resolve_storage("sqlite:///var/state.db", base) == "sqlite:///var/state.db"
    assert resolve_storage("sqlite://:memory:", base) == "sqlite://:memory:"
    assert resolve_storage("postgresql://db/x", base) == "postgresql://db/x"
