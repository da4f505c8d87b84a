"""Failed handshakes are reported with a reason and the rejected client certificate."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path

import pytest

from kratos_webhooks.config import TlsConfig
from kratos_webhooks.tls.context import build_server_context
from kratos_webhooks.tls.handshake import HandshakeRefusal, first_certificate

from .pki import Pki, fingerprint, handshake, now

VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def _server(
    pki: Pki, refusals: list[HandshakeRefusal], **options: str
) -> ssl.SSLContext:
    tls = TlsConfig(
        str(pki.cert_file),
        str(pki.key_file),
        client_auth=options.pop("client_auth", "required"),  # type: ignore[arg-type]
        client_ca_file=str(pki.client_ca_file),
        **options,  # type: ignore[arg-type]
    )
    return build_server_context(tls, on_refusal=refusals.append)


@pytest.mark.parametrize("version", VERSIONS)
def test_right_certificate_accepted(pki: Pki, version: ssl.TLSVersion) -> None:
    refusals: list[HandshakeRefusal] = []
    cert = pki.client()
    client = pki.client_context(cert, maximum_version=version)

    pair = handshake(_server(pki, refusals), client)

    assert pair.error is None
    assert refusals == []
    assert (
        pair.server.version()
        == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
    )
    assert pair.server.getpeercert(binary_form=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_certificate_refused(pki: Pki, version: ssl.TLSVersion) -> None:
    refusals: list[HandshakeRefusal] = []
    client = pki.client_context(maximum_version=version)

    pair = handshake(_server(pki, refusals), client)

    assert isinstance(pair.error, ssl.SSLError)
    assert [r.reason for r in refusals] == ["client_certificate_missing"]
    assert refusals[0].certificate is None


@pytest.mark.parametrize("version", VERSIONS)
def test_other_ca_refused_with_identity(pki: Pki, version: ssl.TLSVersion) -> None:
    refusals: list[HandshakeRefusal] = []
    cert = pki.client(ca=pki.other_ca)
    client = pki.client_context(cert, maximum_version=version)

    pair = handshake(_server(pki, refusals), client)

    assert isinstance(pair.error, ssl.SSLCertVerificationError)
    assert [r.reason for r in refusals] == ["client_certificate_untrusted"]
    certificate = refusals[0].certificate
    assert certificate is not None
    assert certificate.common_names == ("relay.internal",)
    assert certificate.fingerprint_sha256 == fingerprint(cert)


@pytest.mark.parametrize("version", VERSIONS)
def test_expired_certificate_refused(pki: Pki, version: ssl.TLSVersion) -> None:
    refusals: list[HandshakeRefusal] = []
    cert = pki.client(
        not_before=now() - timedelta(days=30), not_after=now() - timedelta(days=1)
    )
    client = pki.client_context(cert, maximum_version=version)

    pair = handshake(_server(pki, refusals), client)

    assert isinstance(pair.error, ssl.SSLCertVerificationError)
    assert [r.reason for r in refusals] == ["client_certificate_expired"]
    assert refusals[0].detail == "certificate has expired"
    assert refusals[0].certificate is not None
    assert refusals[0].certificate.fingerprint_sha256 == fingerprint(cert)


def test_not_yet_valid_certificate_refused(pki: Pki) -> None:
    refusals: list[HandshakeRefusal] = []
    cert = pki.client(
        not_before=now() + timedelta(days=1), not_after=now() + timedelta(days=30)
    )

    pair = handshake(_server(pki, refusals), pki.client_context(cert))

    assert isinstance(pair.error, ssl.SSLCertVerificationError)
    assert [r.reason for r in refusals] == ["client_certificate_not_yet_valid"]


def test_optional_accepts_no_certificate(pki: Pki) -> None:
    refusals: list[HandshakeRefusal] = []
    server = _server(pki, refusals, client_auth="optional")

    pair = handshake(server, pki.client_context())

    assert pair.error is None
    assert refusals == []
    assert pair.server.getpeercert(binary_form=True) is None


def test_optional_still_refuses_other_ca(pki: Pki) -> None:
    refusals: list[HandshakeRefusal] = []
    server = _server(pki, refusals, client_auth="optional")
    client = pki.client_context(pki.client(ca=pki.other_ca))

    pair = handshake(server, client)

    assert isinstance(pair.error, ssl.SSLCertVerificationError)
    assert [r.reason for r in refusals] == ["client_certificate_untrusted"]


def test_protocol_failure_reported(pki: Pki) -> None:
    refusals: list[HandshakeRefusal] = []
    server = _server(pki, refusals, min_version="1.3")
    client = pki.client_context(pki.client(), maximum_version=ssl.TLSVersion.TLSv1_2)

    pair = handshake(server, client)

    assert isinstance(pair.error, ssl.SSLError)
    assert [r.reason for r in refusals] == ["tls_handshake_failed"]
    assert refusals[0].detail == "UNSUPPORTED_PROTOCOL"


@pytest.mark.parametrize(
    ("message", "tls13"),
    [
        (b"", False),
        (b"\x0b\x00\x00\x03\x00\x00\x00", False),
        (b"\x0b\x00\x00\x04\x00\x00\x00\x00", True),
        (b"\x0b\x00\x00\x09\x00\x00\x06\x00\x00\x09abc", False),
        (b"\x0b", True),
    ],
)
def test_first_certificate_malformed(message: bytes, tls13: bool) -> None:
    assert first_certificate(message, tls13=tls13) is None


def test_first_certificate_layouts() -> None:
    tls12 = b"\x0b\x00\x00\x0b" + b"\x00\x00\x08" + b"\x00\x00\x03abc" + b"\x00\x00\x02"
    tls13 = (
        b"\x0b\x00\x00\x0e" + b"\x01X" + b"\x00\x00\x08" + b"\x00\x00\x03abc\x00\x00"
    )

    assert first_certificate(tls12, tls13=False) == b"abc"
    assert first_certificate(tls13, tls13=True) == b"abc"
