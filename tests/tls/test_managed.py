"""The managed context: start checks, key hygiene, expiry, reload and file watching."""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from kratos_webhooks.config import TlsConfig
from kratos_webhooks.errors import ConfigError
from kratos_webhooks.observability.metrics import Metrics
from kratos_webhooks.tls.managed import ManagedServerTls

from .pki import Pki, fingerprint, handshake, now, write_pair


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@dataclass
class CertbotLayout:
    """`live/NAME/{fullchain,privkey}.pem` as symlinks into `archive/NAME/`."""

    root: Path
    ca: trustme.CA
    version: int = 0

    @property
    def live(self) -> Path:
        return self.root / "live" / "example"

    def renew(self, leaf: trustme.LeafCert | None = None) -> trustme.LeafCert:
        """Write a new certificate into archive/ and swap the live symlinks."""
        leaf = leaf or self.ca.issue_cert("127.0.0.1", "localhost")
        self.version += 1
        archive = self.root / "archive" / "example"
        archive.mkdir(parents=True, exist_ok=True)
        self.live.mkdir(parents=True, exist_ok=True)
        (archive / f"fullchain{self.version}.pem").write_bytes(
            b"".join(pem.bytes() for pem in leaf.cert_chain_pems)
        )
        key = archive / f"privkey{self.version}.pem"
        key.write_bytes(leaf.private_key_pem.bytes())
        key.chmod(0o600)

        for name in ("fullchain", "privkey"):
            temporary = self.live / f".{name}.new"
            temporary.symlink_to(f"../../archive/example/{name}{self.version}.pem")
            os.replace(temporary, self.live / f"{name}.pem")

        return leaf

    def tls(self, **options: str) -> TlsConfig:
        return TlsConfig(
            str(self.live / "fullchain.pem"),
            str(self.live / "privkey.pem"),
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture
def certbot(tmp_path: Path, pki: Pki) -> CertbotLayout:
    layout = CertbotLayout(tmp_path / "letsencrypt", pki.server_ca)
    layout.renew(pki.server)
    return layout


def _served_fingerprint(managed: ManagedServerTls, pki: Pki) -> str:
    pair = handshake(managed.context, pki.client_context())
    assert pair.error is None
    return pair.served_fingerprint()


def test_load_valid(pki: Pki) -> None:
    managed = ManagedServerTls.load(TlsConfig(str(pki.cert_file), str(pki.key_file)))

    assert managed.certificate.fingerprint_sha256 == fingerprint(pki.server)
    assert isinstance(managed.context, ssl.SSLContext)


def test_load_expired_stops(pki: Pki, tmp_path: Path) -> None:
    leaf = pki.server_ca.issue_cert(
        "localhost", not_before=now() - timedelta(days=9), not_after=now()
    )
    cert_file, key_file = write_pair(leaf, tmp_path, "old")

    with pytest.raises(ConfigError, match="expired"):
        ManagedServerTls.load(TlsConfig(str(cert_file), str(key_file)))


@pytest.mark.parametrize("source", ["env", "file"])
def test_encrypted_key_password(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    key = serialization.load_pem_private_key(pki.key_file.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret passphrase"),
        )
    )
    encrypted.chmod(0o600)

    if source == "env":
        monkeypatch.setenv("TEST_TLS_KEY_PASSWORD", "s3cret passphrase")
        reference = "env:TEST_TLS_KEY_PASSWORD"
    else:
        password_file = tmp_path / "password"
        password_file.write_text("s3cret passphrase\n")
        reference = f"file:{password_file}"

    tls = TlsConfig(str(pki.cert_file), str(encrypted), key_password=reference)
    managed = ManagedServerTls.load(tls)

    assert _served_fingerprint(managed, pki) == fingerprint(pki.server)


def test_exposed_key_warns(pki: Pki) -> None:
    pki.key_file.chmod(0o644)

    with capture_logs() as logs:
        ManagedServerTls.load(TlsConfig(str(pki.cert_file), str(pki.key_file)))

    exposed = [log for log in logs if log["event"] == "tls_key_exposed"]
    assert len(exposed) == 1
    assert exposed[0]["log_level"] == "warning"
    assert exposed[0]["key_file"] == str(pki.key_file)


def test_private_key_no_warning(pki: Pki) -> None:
    with capture_logs() as logs:
        ManagedServerTls.load(TlsConfig(str(pki.cert_file), str(pki.key_file)))

    assert [log for log in logs if log["log_level"] == "warning"] == []


@pytest.mark.parametrize(("days", "warned"), [(5, True), (13.9, True), (15, False)])
def test_expiry_warning(pki: Pki, tmp_path: Path, days: float, warned: bool) -> None:
    leaf = pki.server_ca.issue_cert("localhost", not_after=now() + timedelta(days=days))
    cert_file, key_file = write_pair(leaf, tmp_path, "soon")

    with capture_logs() as logs:
        ManagedServerTls.load(TlsConfig(str(cert_file), str(key_file)))

    expiring = [log for log in logs if log["event"] == "tls_certificate_expiring"]
    assert bool(expiring) is warned

    if warned:
        assert expiring[0]["log_level"] == "warning"
        assert expiring[0]["days_left"] == pytest.approx(days, abs=0.1)


def test_expiry_metric(pki: Pki, tmp_path: Path) -> None:
    leaf = pki.server_ca.issue_cert("localhost", not_after=now() + timedelta(days=40))
    cert_file, key_file = write_pair(leaf, tmp_path, "metric")
    metrics = Metrics()

    ManagedServerTls.load(TlsConfig(str(cert_file), str(key_file)), metrics=metrics.tls)
    text = generate_latest(metrics.registry).decode()
    line = next(
        line
        for line in text.splitlines()
        if line.startswith(
            'kratos_webhooks_tls_certificate_expiry_seconds{listener="https"}'
        )
    )

    assert float(line.split()[-1]) == pytest.approx(40 * 86_400, abs=120)


def test_reload_serves_new_certificate(certbot: CertbotLayout, pki: Pki) -> None:
    metrics = Metrics()
    managed = ManagedServerTls.load(certbot.tls(), metrics=metrics.tls)
    opened = handshake(managed.context, pki.client_context())
    first = fingerprint(pki.server)

    renewed = certbot.renew()

    assert managed.reload_if_changed() is True
    assert _served_fingerprint(managed, pki) == fingerprint(renewed) != first
    assert managed.certificate.fingerprint_sha256 == fingerprint(renewed)
    assert managed.reload_if_changed() is False

    # A connection made before the reload still carries data both ways.
    assert opened.send_to_server(b"ping") == b"ping"
    assert opened.served_fingerprint() == first
    text = generate_latest(metrics.registry).decode()
    assert (
        'kratos_webhooks_tls_reloads_total{listener="https",outcome="loaded"} 1.0'
        in text
    )


def test_failed_reload_keeps_current(certbot: CertbotLayout, pki: Pki) -> None:
    managed = ManagedServerTls.load(certbot.tls())
    expired = pki.server_ca.issue_cert(
        "localhost", not_before=now() - timedelta(days=9), not_after=now()
    )
    certbot.renew(expired)

    with capture_logs() as logs:
        assert managed.reload() is False

    assert [log["event"] for log in logs] == ["tls_reload_failed"]
    assert "expired" in logs[0]["error"]
    assert _served_fingerprint(managed, pki) == fingerprint(pki.server)


def test_client_ca_reload_replaces_trust(tmp_path: Path, pki: Pki) -> None:
    tls = TlsConfig(
        str(pki.cert_file),
        str(pki.key_file),
        client_auth="required",
        client_ca_file=str(pki.client_ca_file),
    )
    managed = ManagedServerTls.load(tls)
    old_client = pki.client()
    new_ca = trustme.CA()
    new_client = pki.client(ca=new_ca)

    assert handshake(managed.context, pki.client_context(old_client)).error is None

    new_ca.cert_pem.write_to_path(pki.client_ca_file)
    assert managed.reload_if_changed() is True

    assert handshake(managed.context, pki.client_context(new_client)).error is None
    assert handshake(managed.context, pki.client_context(old_client)).error is not None


def test_watch_reloads_on_symlink_swap(certbot: CertbotLayout, pki: Pki) -> None:
    managed = ManagedServerTls.load(certbot.tls())

    async def scenario() -> str:
        stop = asyncio.Event()
        watcher = asyncio.create_task(managed.watch(stop))
        await asyncio.sleep(0.5)
        renewed = certbot.renew()

        for _ in range(200):
            if managed.certificate.fingerprint_sha256 == fingerprint(renewed):
                break

            await asyncio.sleep(0.05)

        stop.set()
        await asyncio.wait_for(watcher, 5)
        return fingerprint(renewed)

    renewed_fingerprint = asyncio.run(scenario())

    assert managed.certificate.fingerprint_sha256 == renewed_fingerprint
    assert _served_fingerprint(managed, pki) == renewed_fingerprint


def test_renewal_written_in_two_steps_loads_whole(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate written before its key is not loaded alone."""
    monkeypatch.setattr("kratos_webhooks.tls.managed.RELOAD_CHECK_SECONDS", 0.2)
    cert_file, key_file = write_pair(pki.server, tmp_path, "tls")
    metrics = Metrics()
    managed = ManagedServerTls.load(
        TlsConfig(str(cert_file), str(key_file)), metrics=metrics.tls
    )
    renewed = pki.server_ca.issue_cert("127.0.0.1", "localhost")

    async def scenario() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(managed.watch(stop))
        await asyncio.sleep(0.3)
        cert_file.write_bytes(b"".join(p.bytes() for p in renewed.cert_chain_pems))
        # Less than one reading apart: a reading between the two writes finds
        # the new certificate with the old key.
        await asyncio.sleep(0.15)
        key_file.write_bytes(renewed.private_key_pem.bytes())

        for _ in range(100):
            if managed.certificate.fingerprint_sha256 == fingerprint(renewed):
                break

            await asyncio.sleep(0.05)

        stop.set()
        await asyncio.wait_for(watcher, 5)

    asyncio.run(scenario())

    assert managed.certificate.fingerprint_sha256 == fingerprint(renewed)
    exposition = generate_latest(metrics.registry).decode()
    assert 'outcome="loaded"' in exposition
    assert 'outcome="failed"' not in exposition


def test_unusable_files_fail_once_until_changed(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kratos_webhooks.tls.managed.RELOAD_CHECK_SECONDS", 0.05)
    cert_file, key_file = write_pair(pki.server, tmp_path, "tls")
    metrics = Metrics()
    managed = ManagedServerTls.load(
        TlsConfig(str(cert_file), str(key_file)), metrics=metrics.tls
    )
    loaded = managed.certificate.fingerprint_sha256
    other = pki.server_ca.issue_cert("127.0.0.1", "localhost")

    async def scenario() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(managed.watch(stop))
        # A certificate that does not match the key beside it.
        cert_file.write_bytes(b"".join(p.bytes() for p in other.cert_chain_pems))
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(watcher, 5)

    asyncio.run(scenario())

    assert managed.certificate.fingerprint_sha256 == loaded
    exposition = generate_latest(metrics.registry).decode()
    failed = [
        line
        for line in exposition.splitlines()
        if line.startswith("kratos_webhooks_tls_reloads_total")
        and 'outcome="failed"' in line
    ]
    assert len(failed) == 1
    assert failed[0].endswith(" 1.0")
