"""The server TLS context: versions, AEAD suites, no compression or renegotiation."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kratos_webhooks.config import TlsConfig
from kratos_webhooks.errors import ConfigError
from kratos_webhooks.receiver.tls import server_context

from .harness import Certificates, make_certificates


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


def _tls(certificates: Certificates, **options: str) -> TlsConfig:
    return TlsConfig(str(certificates.cert_file), str(certificates.key_file), **options)  # type: ignore[arg-type]


def test_context_options(certificates: Certificates) -> None:
    context = server_context(_tls(certificates))

    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE


def test_only_aead_suites(certificates: Certificates) -> None:
    names = [c["name"] for c in server_context(_tls(certificates)).get_ciphers()]

    assert names
    for name in names:
        assert name.startswith("TLS_") or name.startswith("ECDHE-"), name
        assert "GCM" in name or "CHACHA20" in name, name


def test_min_version_13(certificates: Certificates) -> None:
    context = server_context(_tls(certificates, min_version="1.3"))

    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_unreadable_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        server_context(TlsConfig(str(tmp_path / "no.crt"), str(tmp_path / "no.key")))


@pytest.fixture
def tls_server(certificates: Certificates) -> Iterator[int]:
    context = server_context(_tls(certificates))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return

            try:
                with context.wrap_socket(connection, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(5)


def _handshake(port: int, certificates: Certificates, **settings: object) -> str:
    context = certificates.client_context()

    for name, value in settings.items():
        if name == "ciphers":
            context.set_ciphers(str(value))
        else:
            setattr(context, name, value)

    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())


def test_handshake_tls12_aead(tls_server: int, certificates: Certificates) -> None:
    version = _handshake(
        tls_server, certificates, maximum_version=ssl.TLSVersion.TLSv1_2
    )

    assert version == "TLSv1.2"


def test_handshake_cbc_refused(tls_server: int, certificates: Certificates) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(
            tls_server,
            certificates,
            maximum_version=ssl.TLSVersion.TLSv1_2,
            ciphers="ECDHE+AES128+SHA:ECDHE+AES256+SHA",
        )
