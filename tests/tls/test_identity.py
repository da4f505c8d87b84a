"""Per-route client certificate rules: subjects, SANs and fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kratos_webhooks.errors import ClientCertificateRejected
from kratos_webhooks.tls.certificates import CertificateInfo
from kratos_webhooks.tls.identity import (
    ClientCertificateRules,
    normalise_fingerprint,
    normalise_san,
)

FINGERPRINT = "ab" * 32


def _certificate(
    common_names: tuple[str, ...] = ("relay.internal",),
    sans: tuple[str, ...] = (),
    fingerprint: str = "cd" * 32,
) -> CertificateInfo:
    return CertificateInfo(
        subject="CN=" + ",".join(common_names),
        common_names=common_names,
        issuer="CN=test CA",
        sans=sans,
        fingerprint_sha256=fingerprint,
        serial_number=1,
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2040, 1, 1, tzinfo=UTC),
    )


ACCEPTED = [
    ({"subjects": ["relay.internal"]}, _certificate()),
    ({"sans": ["dns:relay.internal"]}, _certificate(sans=("dns:relay.internal",))),
    ({"sans": ["DNS:Relay.Internal"]}, _certificate(sans=("dns:relay.internal",))),
    (
        {"sans": ["email:ops@example.com"]},
        _certificate(sans=("email:Ops@Example.com",)),
    ),
    (
        {"sans": ["uri:spiffe://example/relay"]},
        _certificate(sans=("uri:spiffe://example/relay",)),
    ),
    ({"fingerprints": [FINGERPRINT.upper()]}, _certificate(fingerprint=FINGERPRINT)),
    (
        {"fingerprints": [":".join(FINGERPRINT[i : i + 2] for i in range(0, 64, 2))]},
        _certificate(fingerprint=FINGERPRINT),
    ),
    (
        {"subjects": ["other"], "sans": ["dns:relay.internal"]},
        _certificate(sans=("dns:relay.internal",)),
    ),
]

REJECTED = [
    ({"subjects": ["relay.internal"]}, _certificate(("intruder",))),
    ({"subjects": ["relay.internal"]}, _certificate(("Relay.Internal",))),
    ({"sans": ["dns:relay.internal"]}, _certificate(sans=("dns:relay.internal.evil",))),
    (
        {"sans": ["uri:spiffe://example/relay"]},
        _certificate(sans=("uri:spiffe://EXAMPLE/relay",)),
    ),
    ({"sans": ["dns:relay.internal"]}, _certificate(sans=("email:relay.internal",))),
    ({"fingerprints": [FINGERPRINT]}, _certificate()),
    ({"subjects": ["relay.internal"]}, None),
]


@pytest.mark.parametrize(("rules", "certificate"), ACCEPTED)
def test_rules_accept(
    rules: dict[str, list[str]], certificate: CertificateInfo
) -> None:
    ClientCertificateRules.build(**rules).check(certificate)


@pytest.mark.parametrize(("rules", "certificate"), REJECTED)
def test_rules_reject(
    rules: dict[str, list[str]], certificate: CertificateInfo | None
) -> None:
    with pytest.raises(ClientCertificateRejected) as caught:
        ClientCertificateRules.build(**rules).check(certificate)

    assert caught.value.status == 403
    assert caught.value.code == "client_certificate_rejected"


@pytest.mark.parametrize("text", ["ab" * 31, "zz" * 32, "", "ab" * 33])
def test_bad_fingerprint(text: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        normalise_fingerprint(text)


@pytest.mark.parametrize("text", ["relay.internal", "ip:10.0.0.1", "dns:", "cn:relay"])
def test_bad_san(text: str) -> None:
    with pytest.raises(ValueError, match="SAN rule"):
        normalise_san(text)
