"""The relay's HTTPS listener: reload on change and SIGHUP, start checks."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from ..receiver.harness import wait_until
from ..tls.pki import Pki, fingerprint, now, write_pair
from .harness import RelayProcess, relaying

pytestmark = pytest.mark.slow

ENV = {"RELAY_TLS_KRATOS_KEY": "relay-tls-key"}


def _config(tmp_path: Path, cert_file: Path, key_file: Path) -> Path:
    document: dict[str, Any] = {
        "relay": {
            "listen": "127.0.0.1:0",
            "tls": {"cert_file": str(cert_file), "key_file": str(key_file)},
        },
        "outbound": {"allow_loopback_targets": True},
        "storage": f"sqlite://{tmp_path / 'relay.db'}",
        "routes": [
            {
                "path": "/kratos/hook",
                "target": "http://127.0.0.1:9/never",
                "mode": "sync",
                "kratos_auth": {
                    "type": "api_key",
                    "name": "X-Key",
                    "secrets": ["env:RELAY_TLS_KRATOS_KEY"],
                },
                "signing": {"secrets": [f"literal:{'A' * 43}="]},
            }
        ],
    }
    path = tmp_path / "relay.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _port(relay: RelayProcess) -> int:
    return int(relay.address.rpartition(":")[2])


def _served_fingerprint(relay: RelayProcess, pki: Pki) -> str:
    raw = socket.create_connection(("127.0.0.1", _port(relay)), timeout=5)

    with pki.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)

    assert der is not None
    return hashlib.sha256(der).hexdigest()


def _reloads(relay: RelayProcess) -> int:
    return len(relay.events("tls_reloaded"))


def test_relay_certificate_change_served(tmp_path: Path) -> None:
    pki = Pki(tmp_path)

    with relaying(_config(tmp_path, pki.cert_file, pki.key_file), ENV) as relay:
        assert _served_fingerprint(relay, pki) == fingerprint(pki.server)

        renewed: trustme.LeafCert = pki.server_ca.issue_cert("127.0.0.1", "localhost")
        write_pair(renewed, tmp_path, "server")

        assert wait_until(lambda: _reloads(relay) >= 1, 10)
        assert _served_fingerprint(relay, pki) == fingerprint(renewed)


def test_relay_sighup_reloads(tmp_path: Path) -> None:
    pki = Pki(tmp_path)

    with relaying(_config(tmp_path, pki.cert_file, pki.key_file), ENV) as relay:
        relay.process.send_signal(signal.SIGHUP)

        assert wait_until(lambda: _reloads(relay) >= 1, 10)
        assert relay.process.poll() is None


def test_relay_expired_certificate_exits_3(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    leaf = pki.server_ca.issue_cert(
        "localhost", not_before=now() - timedelta(days=9), not_after=now()
    )
    cert_file, key_file = write_pair(leaf, tmp_path, "expired")
    code = "from kratos_webhooks.cli import main; main()"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "relay",
            "--config",
            str(_config(tmp_path, cert_file, key_file)),
        ],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **ENV},
    )

    assert result.returncode == 3
    assert b"expired on" in result.stderr


def test_relay_exposed_key_warns(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.key_file.chmod(0o644)

    with relaying(_config(tmp_path, pki.cert_file, pki.key_file), ENV) as relay:
        warned = relay.events("tls_key_exposed")

    assert len(warned) == 1
    assert warned[0]["listener"] == "relay"
