"""Certificate descriptions and the checks of a server's certificate and key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kratos_webhooks.errors import ConfigError
from kratos_webhooks.tls.certificates import (
    check_server_pair,
    describe_certificate,
    key_file_exposed,
    load_private_key,
)

from .pki import Pki, certificate_with_uri, fingerprint, now, write_pair


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def test_describe_names_and_fingerprint(pki: Pki) -> None:
    cert = pki.client("relay.internal", "relay.internal", "ops@example.com", "10.0.0.7")
    pem = cert.cert_chain_pems[0].bytes()

    info = describe_certificate(x509.load_pem_x509_certificate(pem))

    assert info.common_names == ("relay.internal",)
    assert info.sans == ("dns:relay.internal", "email:ops@example.com", "ip:10.0.0.7")
    assert info.fingerprint_sha256 == fingerprint(cert)
    assert "CN=relay.internal" in info.subject


def test_describe_uri_san(pki: Pki) -> None:
    info = describe_certificate(
        certificate_with_uri(pki.client_ca, "spiffe://ex/relay")
    )

    assert info.sans == ("uri:spiffe://ex/relay",)


def test_describe_round_trip(pki: Pki) -> None:
    info = check_server_pair(str(pki.cert_file), str(pki.key_file), None)

    assert type(info).from_dict(info.as_dict()) == info


def test_server_pair_valid(pki: Pki) -> None:
    info = check_server_pair(str(pki.cert_file), str(pki.key_file), None)

    assert info.fingerprint_sha256 == fingerprint(pki.server)


def test_server_pair_expired(pki: Pki, tmp_path: Path) -> None:
    leaf = pki.server_ca.issue_cert(
        "localhost",
        not_before=now() - timedelta(days=10),
        not_after=now() - timedelta(days=1),
    )
    cert_file, key_file = write_pair(leaf, tmp_path, "expired")

    with pytest.raises(ConfigError, match=r"expired on .* renew it"):
        check_server_pair(str(cert_file), str(key_file), None)


def test_server_pair_not_yet_valid(pki: Pki, tmp_path: Path) -> None:
    leaf = pki.server_ca.issue_cert(
        "localhost",
        not_before=now() + timedelta(days=1),
        not_after=now() + timedelta(days=10),
    )
    cert_file, key_file = write_pair(leaf, tmp_path, "early")

    with pytest.raises(ConfigError, match="is not valid before"):
        check_server_pair(str(cert_file), str(key_file), None)


def test_server_pair_key_mismatch(pki: Pki, tmp_path: Path) -> None:
    other = pki.server_ca.issue_cert("localhost")
    _, other_key = write_pair(other, tmp_path, "other")

    with pytest.raises(ConfigError, match="does not match the server certificate"):
        check_server_pair(str(pki.cert_file), str(other_key), None)


def test_encrypted_key_needs_password(pki: Pki, tmp_path: Path) -> None:
    key = load_private_key(str(pki.key_file), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )

    check_server_pair(str(pki.cert_file), str(encrypted), b"correct horse")

    with pytest.raises(ConfigError, match=r"is encrypted: set server\.tls"):
        check_server_pair(str(pki.cert_file), str(encrypted), None)

    with pytest.raises(ConfigError, match="wrong key_password"):
        check_server_pair(str(pki.cert_file), str(encrypted), b"wrong")


def test_password_for_plain_key(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="is not encrypted"):
        check_server_pair(str(pki.cert_file), str(pki.key_file), b"secret")


def test_not_a_certificate(tmp_path: Path, pki: Pki) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")

    with pytest.raises(ConfigError, match="no valid PEM certificate"):
        check_server_pair(str(bogus), str(pki.key_file), None)


@pytest.mark.parametrize(
    ("mode", "exposed"),
    [(0o600, False), (0o400, False), (0o640, True), (0o604, True), (0o620, False)],
)
def test_key_file_exposed(pki: Pki, mode: int, exposed: bool) -> None:
    pki.key_file.chmod(mode)

    assert key_file_exposed(str(pki.key_file)) is exposed


def test_key_file_exposed_follows_symlink(pki: Pki, tmp_path: Path) -> None:
    link = tmp_path / "privkey.pem"
    link.symlink_to(pki.key_file)

    assert key_file_exposed(str(link)) is False

    pki.key_file.chmod(0o644)

    assert key_file_exposed(str(link)) is True
