from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from kratos_webhooks.cli import main
from kratos_webhooks.cli.inbox import inbox
from kratos_webhooks.receiver.state import StateStore, StoredAnswer

SAMPLES = Path(__file__).parents[1] / "data" / "kratos"
LOGIN = (SAMPLES / "04-login-after-password-browser.passthrough.json").read_bytes()
UPSTREAM_KEY = "whsec_" + "A" * 43 + "="
ACCEPTED = StoredAnswer(202, b'{"status":"accepted"}')


def fill_inbox(path: Path) -> dict[str, int]:
    """Store one pending, one delivered and two dead events; return their ids."""

    async def fill() -> dict[str, int]:
        store = StateStore.open(f"sqlite://{path}")
        await store.start()
        ids: dict[str, int] = {}

        try:
            for name in ("pending", "delivered", "dead", "dead2"):
                await store.accept_event(
                    route="/hooks/login/after",
                    key=f"msg_{name}",
                    body=LOGIN,
                    content_type="application/json",
                    answer=ACCEPTED,
                )
                ids[name] = store.list_events(limit=1)[0].id

            await store.mark_delivered(ids["delivered"], 1_700_000_000.0)

            for name in ("dead", "dead2"):
                await store.mark_failed(
                    ids[name], error="upstream returned HTTP 500", next_attempt_at=None
                )
        finally:
            await store.close()

        return ids

    return asyncio.run(fill())


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def ids(database: Path) -> dict[str, int]:
    return fill_inbox(database)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("KRATOS_WEBHOOKS_STORAGE", raising=False)
    return CliRunner()


def storage(database: Path) -> list[str]:
    return ["--storage", f"sqlite://{database}"]


def test_list_shows_every_event(
    runner: CliRunner, database: Path, ids: dict[str, int]
) -> None:
    result = runner.invoke(inbox, ["list", *storage(database)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATE", "TRIES"]
    assert len(lines) == 5
    assert "msg_dead2" in lines[1]
    assert "upstream returned HTTP 500" in lines[1]
    assert "FAKE" not in result.output


def test_list_filters_by_state(
    runner: CliRunner, database: Path, ids: dict[str, int]
) -> None:
    result = runner.invoke(inbox, ["list", "--state", "dead", *storage(database)])

    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()[1:]
    assert [int(row.split()[0]) for row in rows] == [ids["dead2"], ids["dead"]]


def test_list_limit_and_empty_state(runner: CliRunner, database: Path) -> None:
    fill_inbox(database)
    limited = runner.invoke(inbox, ["list", "--limit", "1", *storage(database)])
    runner.invoke(inbox, ["redrive", "--all", *storage(database)])
    empty = runner.invoke(inbox, ["list", "--state", "dead", *storage(database)])

    assert limited.exit_code == 0
    assert len(limited.output.splitlines()) == 2
    assert empty.exit_code == 0
    assert empty.output == "no dead events\n"


def test_list_rejects_unknown_state(runner: CliRunner, database: Path) -> None:
    result = runner.invoke(inbox, ["list", "--state", "lost", *storage(database)])

    assert result.exit_code == 2
    assert "lost" in result.output


def test_show_hides_body_by_default(
    runner: CliRunner, database: Path, ids: dict[str, int]
) -> None:
    result = runner.invoke(inbox, ["show", str(ids["dead"]), *storage(database)])

    assert result.exit_code == 0, result.output
    assert "msg_dead" in result.output
    assert f"{len(LOGIN)} bytes" in result.output
    assert "upstream returned HTTP 500" in result.output
    assert "FAKE" not in result.output
    assert "csrf" not in result.output


def test_show_body_prints_raw_bytes(
    runner: CliRunner, database: Path, ids: dict[str, int]
) -> None:
    result = runner.invoke(
        inbox, ["show", str(ids["pending"]), "--body", *storage(database)]
    )

    assert result.exit_code == 0
    assert result.stdout_bytes == LOGIN


def test_show_unknown_event(
    runner: CliRunner, database: Path, ids: dict[str, int]
) -> None:
    result = runner.invoke(inbox, ["show", "999", *storage(database)])

    assert result.exit_code == 1
    assert "event 999 not found" in result.output


def test_redrive_one_dead_letter(
    runner: CliRunner, database: Path, ids: dict[str, int]
) -> None:
    result = runner.invoke(inbox, ["redrive", str(ids["dead"]), *storage(database)])
    again = runner.invoke(inbox, ["redrive", str(ids["dead"]), *storage(database)])
    listed = runner.invoke(inbox, ["list", "--state", "dead", *storage(database)])

    assert result.exit_code == 0, result.output
    assert result.output == f"redrove event {ids['dead']}\n"
    assert again.exit_code == 1
    assert "is pending, not a dead letter" in again.output
    assert [int(r.split()[0]) for r in listed.output.splitlines()[1:]] == [ids["dead2"]]


def test_delivered_after_redrive_drops_retry_fields(
    runner: CliRunner, database: Path, ids: dict[str, int]
) -> None:
    redriven = runner.invoke(inbox, ["redrive", str(ids["dead"]), *storage(database)])

    assert redriven.exit_code == 0, redriven.output

    async def deliver() -> None:
        store = StateStore.open(f"sqlite://{database}")
        await store.start()

        try:
            await store.mark_delivered(ids["dead"], 1_700_000_100.0)
        finally:
            await store.close()

    asyncio.run(deliver())
    listed = runner.invoke(inbox, ["list", "--state", "delivered", *storage(database)])
    shown = runner.invoke(inbox, ["show", str(ids["dead"]), *storage(database)])
    fields = {}

    for line in shown.output.splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()

    rows = [line.split() for line in listed.output.splitlines()[1:]]
    row = next(row for row in rows if row[0] == str(ids["dead"]))

    assert "HTTP 500" not in listed.output
    assert row[-1] == "-"
    assert fields["state"] == "delivered"
    assert fields["delivered"] == "2023-11-14T22:15:00Z"
    assert fields["next attempt"] == "-"
    assert fields["retrying since"] == "-"
    assert fields["last error"] == "-"


def test_redrive_all(runner: CliRunner, database: Path, ids: dict[str, int]) -> None:
    result = runner.invoke(inbox, ["redrive", "--all", *storage(database)])
    again = runner.invoke(inbox, ["redrive", "--all", *storage(database)])

    assert result.exit_code == 0
    assert result.output == "redrove 2 dead letters\n"
    assert again.exit_code == 0
    assert again.output == "redrove 0 dead letters\n"


@pytest.mark.parametrize("arguments", [["redrive"], ["redrive", "1", "--all"]])
def test_redrive_needs_id_or_all(
    runner: CliRunner, database: Path, ids: dict[str, int], arguments: list[str]
) -> None:
    result = runner.invoke(inbox, [*arguments, *storage(database)])

    assert result.exit_code == 2
    assert "either an event ID or --all" in result.output


def test_redrive_unknown_and_delivered(
    runner: CliRunner, database: Path, ids: dict[str, int]
) -> None:
    unknown = runner.invoke(inbox, ["redrive", "999", *storage(database)])
    delivered = runner.invoke(
        inbox, ["redrive", str(ids["delivered"]), *storage(database)]
    )

    assert unknown.exit_code == 1
    assert "event 999 not found" in unknown.output
    assert delivered.exit_code == 1
    assert "is delivered, not a dead letter" in delivered.output


def write_config(tmp_path: Path, storage_line: str) -> Path:
    """Write a valid receiver configuration with the given storage line."""
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_text("not read by the inbox commands\n")

    config = tmp_path / "receiver.yaml"
    config.write_text(
        "server:\n"
        "  listen: 127.0.0.1:8443\n"
        "  tls:\n"
        f"    cert_file: {tmp_path / 'tls.crt'}\n"
        f"    key_file: {tmp_path / 'tls.key'}\n"
        f"{storage_line}"
        "routes:\n"
        "- path: /hooks/login/after\n"
        "  verify:\n"
        "    scheme: kratos-api-key\n"
        "    name: X-Webhook-Secret\n"
        "    secrets: ['literal:inbox-test-key-0123456789']\n"
        "  mode: async\n"
        "  upstream: http://127.0.0.1:8000/kratos\n"
        f"  upstream_secrets: ['literal:{UPSTREAM_KEY}']\n"
    )
    return config


def test_config_file_names_the_database(
    runner: CliRunner, tmp_path: Path, database: Path, ids: dict[str, int]
) -> None:
    config = write_config(tmp_path, f"storage: sqlite://{database}\n")

    result = runner.invoke(inbox, ["list", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 5


def test_environment_overrides_config(
    runner: CliRunner,
    tmp_path: Path,
    database: Path,
    ids: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, f"storage: sqlite://{tmp_path / 'other.db'}\n")
    monkeypatch.setenv("KRATOS_WEBHOOKS_STORAGE", f"sqlite://{database}")

    result = runner.invoke(inbox, ["show", str(ids["dead"]), "--config", str(config)])

    assert result.exit_code == 0, result.output


def test_storage_option_overrides_config(
    runner: CliRunner, tmp_path: Path, database: Path, ids: dict[str, int]
) -> None:
    config = write_config(tmp_path, f"storage: sqlite://{tmp_path / 'other.db'}\n")

    result = runner.invoke(
        inbox, ["show", str(ids["dead"]), "--config", str(config), *storage(database)]
    )

    assert result.exit_code == 0, result.output


def test_storage_from_environment_alone(
    runner: CliRunner,
    database: Path,
    ids: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KRATOS_WEBHOOKS_STORAGE", f"sqlite://{database}")

    result = runner.invoke(inbox, ["show", str(ids["dead"])])

    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("storage_line", "message"),
    [
        ("storage: [1, 2]\n", "storage"),
        ("storage: redis://localhost\n", "storage"),
        ("storage: sqlite://absent-dir/absent.db\n", "no state database"),
    ],
)
def test_bad_storage_in_config_exits_2(
    runner: CliRunner, tmp_path: Path, storage_line: str, message: str
) -> None:
    config = write_config(tmp_path, storage_line)

    result = runner.invoke(inbox, ["list", "--config", str(config)])

    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- just\n- a list\n", "must hold a mapping"),
        ("storage: [unclosed\n", "is not valid YAML"),
    ],
)
def test_invalid_config_exits_2(
    runner: CliRunner, tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "receiver.yaml"
    config.write_text(content)

    result = runner.invoke(inbox, ["list", "--config", str(config)])

    assert result.exit_code == 2
    assert message in result.output


def test_config_read_for_storage_only(
    runner: CliRunner,
    tmp_path: Path,
    database: Path,
    ids: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INBOX_TEST_ABSENT_SECRET", raising=False)
    config = tmp_path / "receiver.yaml"
    config.write_text(
        "server: {tls: {cert_file: absent.crt, key_file: absent.key}}\n"
        "storage: sqlite://state.db\n"
        "routes:\n"
        "- path: /hooks/login/after\n"
        "  verify:\n"
        "    scheme: standard-webhooks\n"
        "    secrets: [env:INBOX_TEST_ABSENT_SECRET]\n"
        "  mode: sync\n"
        "  handler: inbox_test_absent_module:on_login\n"
    )
    monkeypatch.chdir(tmp_path.parent)
    result = runner.invoke(inbox, ["list", "--config", str(config)])

    assert database == tmp_path / "state.db"
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 5


def test_storage_override_named_in_error(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, "")
    monkeypatch.setenv("KRATOS_WEBHOOKS_STORAGE", "[1, 2]")
    result = runner.invoke(inbox, ["list", "--config", str(config)])

    assert result.exit_code == 2
    assert "storage: expected a string" in result.output
    assert "(from KRATOS_WEBHOOKS_STORAGE)" in result.output


def test_missing_config_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(inbox, ["list", "--config", str(tmp_path / "absent.yaml")])

    assert result.exit_code == 2
    assert "cannot read configuration" in result.output


def test_no_storage_named_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(inbox, ["list"])

    assert result.exit_code == 2
    assert "--config FILE, --storage URL" in result.output


def test_missing_database_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    absent = tmp_path / "absent.db"
    result = runner.invoke(inbox, ["list", "--storage", f"sqlite://{absent}"])

    assert result.exit_code == 2
    assert "no state database" in result.output
    assert not absent.exists()


def test_inbox_is_a_subcommand_of_main(runner: CliRunner) -> None:
    result = runner.invoke(main, ["inbox", "--help"])

    assert result.exit_code == 0
    assert "redrive" in result.output
