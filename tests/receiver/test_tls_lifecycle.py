"""Certificate lifecycle on a running receiver: reload, start checks, plain HTTP."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from ..tls.pki import Pki, fingerprint, now, write_pair
from .harness import serve_command, serving, wait_until, write_config

pytestmark = pytest.mark.slow


class Certbot:
    """`live/example/{fullchain,privkey}.pem` symlinked into `archive/example/`."""

    def __init__(self, root: Path, ca: trustme.CA) -> None:
        self.root = root
        self.ca = ca
        self.version = 0

    @property
    def live(self) -> Path:
        return self.root / "live" / "example"

    def renew(self, leaf: trustme.LeafCert | None = None) -> trustme.LeafCert:
        leaf = leaf or self.ca.issue_cert("127.0.0.1", "localhost")
        self.version += 1
        archive = self.root / "archive" / "example"
        archive.mkdir(parents=True, exist_ok=True)
        self.live.mkdir(parents=True, exist_ok=True)
        chain = b"".join(pem.bytes() for pem in leaf.cert_chain_pems)
        (archive / f"fullchain{self.version}.pem").write_bytes(chain)
        key = archive / f"privkey{self.version}.pem"
        key.write_bytes(leaf.private_key_pem.bytes())
        key.chmod(0o600)

        for name in ("fullchain", "privkey"):
            temporary = self.live / f".{name}.new"
            temporary.symlink_to(f"../../archive/example/{name}{self.version}.pem")
            os.replace(temporary, self.live / f"{name}.pem")

        return leaf


def _config(tmp_path: Path, cert_file: Path, key_file: Path, **server: Any) -> Path:
    document = {
        "server": {
            "listen": "127.0.0.1:0",
            "tls": {"cert_file": str(cert_file), "key_file": str(key_file)},
            **server,
        },
        "admin": {"listen": "127.0.0.1:0"},
        "storage": f"sqlite://{tmp_path / 'state.db'}",
        "routes": [
            {
                "path": "/hooks/test",
                "mode": "sync",
                "upstream": "http://127.0.0.1:9/never",
                "verify": {
                    "scheme": "kratos-api-key",
                    "secrets": ["env:LC_KEY"],
                    "name": "X-Key",
                },
            }
        ],
    }
    return write_config(tmp_path / "config.yaml", document)


ENV = {"LC_KEY": "lifecycle-key"}


class KeepAlive:
    """One TLS connection used for several HTTP/1.1 requests."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.tls = context.wrap_socket(raw, server_hostname="localhost")

    def served_fingerprint(self) -> str:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()

    def get_status(self, path: str = "/missing") -> int:
        self.tls.sendall(f"GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n".encode())
        data = b""

        while b"\r\n\r\n" not in data:
            chunk = self.tls.recv(65536)
            assert chunk, "the connection was closed"
            data += chunk

        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )

        while len(body) < length:
            body += self.tls.recv(65536)

        return int(head.split()[1])

    def close(self) -> None:
        self.tls.close()


def _new_connection_fingerprint(port: int, pki: Pki) -> str:
    connection = KeepAlive(port, pki.client_context())

    try:
        return connection.served_fingerprint()
    finally:
        connection.close()


def test_renewal_served_to_new_connections(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    certbot = Certbot(tmp_path / "letsencrypt", pki.server_ca)
    first = certbot.renew()
    config = _config(
        tmp_path, certbot.live / "fullchain.pem", certbot.live / "privkey.pem"
    )

    with serving(config, ENV) as server:
        port = server.https_port
        opened = KeepAlive(port, pki.client_context())
        assert opened.get_status() == 404
        assert opened.served_fingerprint() == fingerprint(first)

        second = certbot.renew()

        assert wait_until(
            lambda: _new_connection_fingerprint(port, pki) == fingerprint(second), 10
        )
        assert opened.get_status() == 404
        assert opened.get_status() == 404
        assert opened.served_fingerprint() == fingerprint(first)
        opened.close()

        # A renewal that went wrong is not used: new connections keep the last
        # good certificate, and the failure is logged.
        certbot.renew(
            pki.server_ca.issue_cert(
                "localhost", not_before=now() - timedelta(days=9), not_after=now()
            )
        )

        assert wait_until(
            lambda: any(
                line.get("event") == "tls_reload_failed"
                for line in list(server.log_lines)
            ),
            10,
        )
        assert _new_connection_fingerprint(port, pki) == fingerprint(second)


def test_sighup_reloads(tmp_path: Path) -> None:
    pki = Pki(tmp_path)

    with serving(_config(tmp_path, pki.cert_file, pki.key_file), ENV) as server:
        server.process.send_signal(signal.SIGHUP)

        assert wait_until(
            lambda: any(
                line.get("event") == "tls_reloaded" for line in list(server.log_lines)
            ),
            10,
        )
        assert server.process.poll() is None
        assert _new_connection_fingerprint(server.https_port, pki) == fingerprint(
            pki.server
        )


def test_expiry_metric_on_admin(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    leaf = pki.server_ca.issue_cert("localhost", not_after=now() + timedelta(days=10))
    cert_file, key_file = write_pair(leaf, tmp_path, "short")

    with serving(_config(tmp_path, cert_file, key_file), ENV) as server:
        text = httpx.get(server.admin_url("/metrics"), timeout=5).text
        warned = [
            line
            for line in list(server.log_lines)
            if line.get("event") == "tls_certificate_expiring"
        ]

    name = 'kratos_webhooks_tls_certificate_expiry_seconds{listener="https"}'
    line = next(line for line in text.splitlines() if line.startswith(name))
    assert float(line.split()[-1]) == pytest.approx(10 * 86_400, abs=300)
    assert len(warned) == 1
    assert warned[0]["level"] == "warning"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", b"expired on"),
        ("not_yet_valid", b"is not valid before"),
        ("mismatch", b"does not match the server certificate"),
    ],
)
def test_bad_server_certificate_exits_3(
    tmp_path: Path, case: str, message: bytes
) -> None:
    pki = Pki(tmp_path)
    cert_file, key_file = pki.cert_file, pki.key_file

    if case == "expired":
        leaf = pki.server_ca.issue_cert(
            "localhost", not_before=now() - timedelta(days=9), not_after=now()
        )
        cert_file, key_file = write_pair(leaf, tmp_path, case)
    elif case == "not_yet_valid":
        leaf = pki.server_ca.issue_cert(
            "localhost",
            not_before=now() + timedelta(days=1),
            not_after=now() + timedelta(days=9),
        )
        cert_file, key_file = write_pair(leaf, tmp_path, case)
    else:
        _, key_file = write_pair(pki.server_ca.issue_cert("localhost"), tmp_path, case)

    result = subprocess.run(
        serve_command(_config(tmp_path, cert_file, key_file)),
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **ENV},
    )

    assert result.returncode == 3
    assert b"cannot start the receiver" in result.stderr
    assert message in result.stderr


def test_exposed_key_warns_at_start(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.key_file.chmod(0o640)

    with serving(_config(tmp_path, pki.cert_file, pki.key_file), ENV) as server:
        exposed = [
            line
            for line in list(server.log_lines)
            if line.get("event") == "tls_key_exposed"
        ]

    assert len(exposed) == 1
    assert exposed[0]["level"] == "warning"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_http_listen_redirects_without_body(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    http_port = _free_port()
    config = _config(
        tmp_path, pki.cert_file, pki.key_file, http_listen=f"127.0.0.1:{http_port}"
    )
    marker = b"do-not-echo-" + os.urandom(8).hex().encode()

    with serving(config, ENV) as server:
        https_port = server.https_port

        with socket.create_connection(("127.0.0.1", http_port), timeout=5) as plain:
            plain.sendall(
                b"POST /hooks/test?a=1 HTTP/1.1\r\nhost: example.com\r\n"
                b"content-type: application/json\r\n"
                + f"content-length: {len(marker)}\r\n\r\n".encode()
                + marker
            )
            answer = b""

            while chunk := plain.recv(65536):
                answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].split()[1] == b"308"
    assert f"location: https://example.com:{https_port}/hooks/test?a=1".encode() in [
        line.lower() for line in lines
    ]
    assert marker not in answer
    assert b"strict-transport-security" not in head.lower()
    assert b"https_required" in body


def test_no_http_listen_answers_nothing_in_clear(tmp_path: Path) -> None:
    pki = Pki(tmp_path)

    with serving(_config(tmp_path, pki.cert_file, pki.key_file), ENV) as server:
        assert set(server.addresses) == {"https", "admin"}

        with socket.create_connection(
            ("127.0.0.1", server.https_port), timeout=5
        ) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            answer = b""

            try:
                while chunk := plain.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass

    assert not answer.startswith(b"HTTP/")
