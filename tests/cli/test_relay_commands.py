"""`relay-outbox list | show | redrive` on a relay configuration, and `relay` errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from click.testing import CliRunner

from kratos_webhooks import HmacKey
from kratos_webhooks.cli import main
from kratos_webhooks.receiver.state import StateStore, StoredAnswer

BODY = b'{\n   "flow": {\n      "id": "1"\n   }\n}\n'


def relay_file(tmp_path: Path) -> Path:
    document = {
        "storage": f"sqlite://{tmp_path / 'relay.db'}",
        "routes": [
            {
                "path": "/kratos/login/after",
                "target": "https://hooks.example.com/kratos/login/after",
                "mode": "async",
                "kratos_auth": {
                    "type": "api_key",
                    "name": "X-Webhook-Key",
                    "secrets": ["literal:key"],
                },
                "signing": {"secrets": ["literal:" + HmacKey.generate().encode()]},
            }
        ],
    }
    path = tmp_path / "relay.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def store_dead_letter(tmp_path: Path) -> int:
    async def scenario() -> int:
        store = StateStore.open(f"sqlite://{tmp_path / 'relay.db'}")
        await store.start()

        try:
            await store.accept_event(
                route="/kratos/login/after",
                key="msg_trigger-1",
                body=BODY,
                content_type="application/json",
                answer=StoredAnswer(202, b"{}"),
            )
            (event,) = store.list_events()
            await store.mark_failed(
                event.id, error="ConnectError", next_attempt_at=None
            )
            return event.id
        finally:
            await store.close()

    return asyncio.run(scenario())


def test_outbox_list_show_redrive(tmp_path: Path) -> None:
    config = relay_file(tmp_path)
    event_id = store_dead_letter(tmp_path)
    runner = CliRunner()

    listed = runner.invoke(main, ["relay-outbox", "list", "--config", str(config)])
    shown = runner.invoke(
        main, ["relay-outbox", "show", str(event_id), "--config", str(config)]
    )
    body = runner.invoke(
        main, ["relay-outbox", "show", str(event_id), "--body", "--config", str(config)]
    )
    redriven = runner.invoke(
        main, ["relay-outbox", "redrive", str(event_id), "--config", str(config)]
    )
    pending = runner.invoke(
        main, ["relay-outbox", "list", "--state", "pending", "--config", str(config)]
    )

    assert listed.exit_code == 0, listed.output
    assert "dead" in listed.output
    assert "msg_trigger-1" in listed.output
    assert shown.exit_code == 0
    assert "ConnectError" in shown.output
    assert BODY.decode() not in shown.output
    assert body.stdout_bytes == BODY
    assert redriven.exit_code == 0
    assert f"redrove event {event_id}" in redriven.output
    assert "msg_trigger-1" in pending.output


def test_outbox_missing_event(tmp_path: Path) -> None:
    config = relay_file(tmp_path)
    store_dead_letter(tmp_path)
    result = CliRunner().invoke(
        main, ["relay-outbox", "show", "999", "--config", str(config)]
    )

    assert result.exit_code == 1
    assert "not found" in result.output


def test_relay_invalid_config_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "relay.yaml"
    path.write_text(yaml.safe_dump({"relay": {"listen": "x"}, "routes": []}))
    result = CliRunner().invoke(main, ["relay", "--config", str(path)])

    assert result.exit_code == 2
    assert "relay.listen" in result.output
    assert "routes" in result.output
