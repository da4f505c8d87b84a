"""An independent scanner, sslyze, checks the running receiver's TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sslyze import (
    RobotScanResultEnum,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)

from ..tls.pki import Pki
from .harness import serving, write_config

pytestmark = pytest.mark.slow

REFUSED_PROTOCOLS = {
    "SSL 2.0": ScanCommand.SSL_2_0_CIPHER_SUITES,
    "SSL 3.0": ScanCommand.SSL_3_0_CIPHER_SUITES,
    "TLS 1.0": ScanCommand.TLS_1_0_CIPHER_SUITES,
    "TLS 1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
}
ACCEPTED_PROTOCOLS = {
    "TLS 1.2": ScanCommand.TLS_1_2_CIPHER_SUITES,
    "TLS 1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
}
CHECKS = {
    ScanCommand.TLS_COMPRESSION,
    ScanCommand.SESSION_RENEGOTIATION,
    ScanCommand.HEARTBLEED,
    ScanCommand.ROBOT,
    ScanCommand.OPENSSL_CCS_INJECTION,
    ScanCommand.HTTP_HEADERS,
}
AEAD_MARKERS = ("_GCM_", "_CHACHA20_POLY1305_", "_CCM")


def _config(tmp_path: Path, pki: Pki) -> Path:
    document: dict[str, Any] = {
        "server": {
            "listen": "127.0.0.1:0",
            "tls": {"cert_file": str(pki.cert_file), "key_file": str(pki.key_file)},
        },
        "admin": {"listen": "127.0.0.1:0"},
        "storage": f"sqlite://{tmp_path / 'state.db'}",
        "routes": [
            {
                "path": "/hooks/scan",
                "mode": "sync",
                "upstream": "http://127.0.0.1:9/never",
                "verify": {
                    "scheme": "kratos-api-key",
                    "secrets": ["env:SCAN_KEY"],
                    "name": "X-Key",
                },
            }
        ],
    }
    return write_config(tmp_path / "config.yaml", document)


def _scan(port: int) -> Any:
    location = ServerNetworkLocation("localhost", port, ip_address="127.0.0.1")
    commands = {*REFUSED_PROTOCOLS.values(), *ACCEPTED_PROTOCOLS.values(), *CHECKS}
    scanner = Scanner(per_server_concurrent_connections_limit=8)
    scanner.queue_scans([ServerScanRequest(location, scan_commands=commands)])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result
    return result.scan_result


def _result(scan: Any, command: ScanCommand) -> Any:
    attempt = getattr(scan, command.value)
    assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, (
        command,
        attempt.error_reason,
        attempt.error_trace,
    )
    return attempt.result


def _report(scan: Any) -> str:
    lines = []

    for name, command in {**REFUSED_PROTOCOLS, **ACCEPTED_PROTOCOLS}.items():
        suites = _result(scan, command).accepted_cipher_suites
        lines.append(f"{name}: {len(suites)} suite(s) accepted")
        lines.extend(f"    {suite.cipher_suite.name}" for suite in suites)

    renegotiation = _result(scan, ScanCommand.SESSION_RENEGOTIATION)
    hsts = _result(scan, ScanCommand.HTTP_HEADERS).strict_transport_security_header
    lines += [
        "compression: "
        + str(_result(scan, ScanCommand.TLS_COMPRESSION).supports_compression),
        "secure renegotiation: " + str(renegotiation.supports_secure_renegotiation),
        "client-initiated renegotiation: "
        + str(renegotiation.is_vulnerable_to_client_renegotiation_dos),
        "heartbleed: "
        + str(_result(scan, ScanCommand.HEARTBLEED).is_vulnerable_to_heartbleed),
        "ROBOT: " + _result(scan, ScanCommand.ROBOT).robot_result.name,
        "CCS injection: "
        + str(
            _result(
                scan, ScanCommand.OPENSSL_CCS_INJECTION
            ).is_vulnerable_to_ccs_injection
        ),
        f"HSTS: max-age={hsts.max_age if hsts else None}, "
        f"includeSubDomains={hsts.include_subdomains if hsts else None}",
    ]
    return "\n".join(lines)


def test_sslyze_finds_nothing(
    tmp_path: Path, record_scan_report: Callable[[str], None]
) -> None:
    pki = Pki(tmp_path)

    with serving(_config(tmp_path, pki), {"SCAN_KEY": "scan-key"}) as server:
        scan = _scan(server.https_port)

    record_scan_report(_report(scan))

    for command in REFUSED_PROTOCOLS.values():
        assert _result(scan, command).accepted_cipher_suites == [], command

    accepted = [
        suite
        for command in ACCEPTED_PROTOCOLS.values()
        for suite in _result(scan, command).accepted_cipher_suites
    ]
    assert accepted

    for suite in accepted:
        name = suite.cipher_suite.name
        assert any(marker in name for marker in AEAD_MARKERS), name
        assert name.startswith(("TLS_ECDHE_", "TLS_DHE_", "TLS_AES_", "TLS_CHACHA20_"))
        assert suite.ephemeral_key is not None, name

    assert _result(scan, ScanCommand.TLS_COMPRESSION).supports_compression is False

    renegotiation = _result(scan, ScanCommand.SESSION_RENEGOTIATION)
    # Secure renegotiation advertised, or none at all; never client-initiated.
    assert renegotiation.is_vulnerable_to_client_renegotiation_dos is False
    assert renegotiation.client_renegotiations_success_count == 0

    heartbleed = _result(scan, ScanCommand.HEARTBLEED)
    assert heartbleed.is_vulnerable_to_heartbleed is False
    assert _result(scan, ScanCommand.ROBOT).robot_result in {
        RobotScanResultEnum.NOT_VULNERABLE_NO_ORACLE,
        RobotScanResultEnum.NOT_VULNERABLE_RSA_NOT_SUPPORTED,
    }
    ccs = _result(scan, ScanCommand.OPENSSL_CCS_INJECTION)
    assert ccs.is_vulnerable_to_ccs_injection is False

    hsts = _result(scan, ScanCommand.HTTP_HEADERS).strict_transport_security_header
    assert hsts is not None
    assert hsts.max_age is not None
    assert hsts.max_age >= 31_536_000
