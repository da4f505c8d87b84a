"""Mutual TLS on a running receiver: refusals, route rules, logs and protocol floors."""

from __future__ import annotations

import json
import socket
import ssl
import uuid
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from ..tls.pki import Pki, fingerprint, now
from .harness import ServeProcess, serving, wait_until, write_config

pytestmark = pytest.mark.slow

API_KEY = "mtls-api-key-" + uuid.uuid4().hex
HANDLER = "tests.receiver.tls_handlers:echo_client_certificate"
REPO = Path(__file__).resolve().parents[2]


def _route(path: str, **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "mode": "sync",
        "handler": HANDLER,
        "payload": "json",
        "verify": {
            "scheme": "kratos-api-key",
            "secrets": ["env:MTLS_API_KEY"],
            "name": "X-Api-Key",
        },
        **extra,
    }


def _config(pki: Pki, tmp_path: Path, **tls: Any) -> dict[str, Any]:
    return {
        "server": {
            "listen": "127.0.0.1:0",
            "tls": {
                "cert_file": str(pki.cert_file),
                "key_file": str(pki.key_file),
                "client_ca_file": str(pki.client_ca_file),
                "client_auth": "required",
                **tls,
            },
            "limits": {"header_timeout": 2, "body_timeout": 2},
        },
        "admin": {"listen": "127.0.0.1:0"},
        "storage": f"sqlite://{tmp_path / 'state.db'}",
        "routes": [
            _route("/hooks/any"),
            _route(
                "/hooks/subject", client_certificates={"subjects": ["relay.internal"]}
            ),
            _route(
                "/hooks/san", client_certificates={"sans": ["email:ops@example.com"]}
            ),
            _route(
                "/hooks/fingerprint",
                client_certificates={"fingerprints": [fingerprint(pki.pinned)]},
            ),
        ],
    }


class MtlsPki(Pki):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.good = self.client()
        self.intruder = self.client("intruder")
        self.mailed = self.client("mailer", "ops@example.com")
        self.pinned = self.client("pinned")
        self.foreign = self.client(ca=self.other_ca)
        self.expired = self.client(
            not_before=now() - timedelta(days=20), not_after=now() - timedelta(days=1)
        )


ENV = {"MTLS_API_KEY": API_KEY, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> MtlsPki:
    return MtlsPki(tmp_path_factory.mktemp("mtls-pki"))


@pytest.fixture(scope="module")
def receiver(
    pki: MtlsPki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    tmp_path = tmp_path_factory.mktemp("mtls")
    config_file = write_config(tmp_path / "config.yaml", _config(pki, tmp_path))

    with serving(config_file, ENV) as server:
        yield server


def _exchange(
    port: int, context: ssl.SSLContext, path: str = "/hooks/any"
) -> tuple[bytes, Exception | None]:
    """Send one POST over a new connection; return the answer bytes or the error."""
    body = b'{"identity": {}}'
    request = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {API_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body
    answer = b""

    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(request)

            while chunk := tls.recv(65536):
                answer += chunk
    except (ssl.SSLError, OSError) as error:
        return answer, error

    return answer, None


def _status_and_json(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _refusals(
    server: ServeProcess, fingerprint_hex: str | None
) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        return [
            line
            for line in list(server.log_lines)
            if line.get("event") == "tls_handshake_rejected"
            and line.get("fingerprint") == fingerprint_hex
        ]

    wait_until(lambda: bool(found()), timeout=5)
    return found()


def test_right_certificate_reaches_handler(
    receiver: ServeProcess, pki: MtlsPki
) -> None:
    answer, error = _exchange(
        receiver.https_port, pki.client_context(pki.good), "/hooks/subject"
    )

    assert error is None
    status, document = _status_and_json(answer)
    assert status == 200
    described = document["identity"]["metadata_admin"]["client_certificate"]
    assert described["fingerprint_sha256"] == fingerprint(pki.good)
    assert described["common_names"] == ["relay.internal"]
    assert described["sans"] == ["dns:relay.internal"]


@pytest.mark.parametrize(
    ("path", "holder"),
    [
        ("/hooks/san", "mailed"),
        ("/hooks/fingerprint", "pinned"),
        ("/hooks/any", "intruder"),
    ],
)
def test_route_rules_accept(
    receiver: ServeProcess, pki: MtlsPki, path: str, holder: str
) -> None:
    cert: trustme.LeafCert = getattr(pki, holder)
    answer, error = _exchange(receiver.https_port, pki.client_context(cert), path)

    assert error is None
    assert _status_and_json(answer)[0] == 200


@pytest.mark.parametrize(
    ("path", "holder"),
    [
        ("/hooks/subject", "intruder"),
        ("/hooks/san", "good"),
        ("/hooks/fingerprint", "good"),
    ],
)
def test_wrong_identity_gets_403(
    receiver: ServeProcess, pki: MtlsPki, path: str, holder: str
) -> None:
    cert: trustme.LeafCert = getattr(pki, holder)
    answer, error = _exchange(receiver.https_port, pki.client_context(cert), path)

    assert error is None
    status, document = _status_and_json(answer)
    assert status == 403
    assert document["error"]["code"] == "client_certificate_rejected"
    assert set(document["error"]) == {"code", "message"}

    def logged() -> bool:
        return any(
            line.get("event") == "client_certificate_rejected"
            and line.get("route") == path
            and line.get("fingerprint") == fingerprint(cert)
            and "CN=" in line.get("subject", "")
            for line in list(receiver.log_lines)
        )

    assert wait_until(logged, timeout=5)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_no_certificate_refused(
    receiver: ServeProcess, pki: MtlsPki, version: ssl.TLSVersion
) -> None:
    before = _count_reason(receiver, "client_certificate_missing")

    answer, error = _exchange(
        receiver.https_port, pki.client_context(maximum_version=version)
    )

    assert not answer.startswith(b"HTTP/")
    assert error is not None or answer == b""
    assert wait_until(
        lambda: _count_reason(receiver, "client_certificate_missing") > before, 5
    )


@pytest.mark.parametrize(
    ("holder", "reason"),
    [
        ("foreign", "client_certificate_untrusted"),
        ("expired", "client_certificate_expired"),
    ],
)
def test_bad_certificate_refused(
    receiver: ServeProcess, pki: MtlsPki, holder: str, reason: str
) -> None:
    cert: trustme.LeafCert = getattr(pki, holder)

    answer, error = _exchange(receiver.https_port, pki.client_context(cert))

    assert not answer.startswith(b"HTTP/")
    assert error is not None or answer == b""
    refusals = _refusals(receiver, fingerprint(cert))
    assert [line["reason"] for line in refusals] == [reason]
    assert "CN=relay.internal" in refusals[0]["subject"]
    assert refusals[0]["level"] == "warning"


def _count_reason(server: ServeProcess, reason: str) -> int:
    return sum(
        1
        for line in list(server.log_lines)
        if line.get("event") == "tls_handshake_rejected"
        and line.get("reason") == reason
    )


def _old_protocol_context(
    pki: MtlsPki, cert: trustme.LeafCert, version: ssl.TLSVersion
) -> ssl.SSLContext:
    context = pki.client_context(cert)

    # Python deprecates these versions; offering them is the point here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version

    # OpenSSL 3 does not offer TLS 1.0 or 1.1 at its default security level,
    # because they sign with SHA-1; level 0 makes the client offer them, so
    # the refusal comes from the server.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls10_and_11_refused(
    receiver: ServeProcess, pki: MtlsPki, version: ssl.TLSVersion
) -> None:
    before = _count_reason(receiver, "tls_handshake_failed")
    context = _old_protocol_context(pki, pki.good, version)

    answer, error = _exchange(receiver.https_port, context)

    assert isinstance(error, ssl.SSLError)
    assert answer == b""
    assert wait_until(
        lambda: _count_reason(receiver, "tls_handshake_failed") > before, 5
    )
    details = [
        line["detail"]
        for line in list(receiver.log_lines)
        if line.get("event") == "tls_handshake_rejected"
        and line.get("reason") == "tls_handshake_failed"
    ]
    assert "UNSUPPORTED_PROTOCOL" in details


def test_cbc_suites_refused(receiver: ServeProcess, pki: MtlsPki) -> None:
    context = pki.client_context(
        pki.good,
        maximum_version=ssl.TLSVersion.TLSv1_2,
        ciphers="ECDHE+AES128+SHA:ECDHE+AES256+SHA:AES128-SHA:AES256-SHA256",
    )

    answer, error = _exchange(receiver.https_port, context)

    assert isinstance(error, ssl.SSLError)
    assert answer == b""

    def logged() -> bool:
        return any(
            line.get("event") == "tls_handshake_rejected"
            and line.get("detail") == "NO_SHARED_CIPHER"
            for line in list(receiver.log_lines)
        )

    assert wait_until(logged, 5)


def test_tls13_only_refuses_tls12(pki: MtlsPki, tmp_path: Path) -> None:
    config_file = write_config(
        tmp_path / "config.yaml", _config(pki, tmp_path, min_version="1.3")
    )

    with serving(config_file, ENV) as server:
        tls12 = pki.client_context(pki.good, maximum_version=ssl.TLSVersion.TLSv1_2)
        answer, error = _exchange(server.https_port, tls12)

        assert isinstance(error, ssl.SSLError)
        assert answer == b""

        answer, error = _exchange(server.https_port, pki.client_context(pki.good))

        assert error is None
        assert _status_and_json(answer)[0] == 200
