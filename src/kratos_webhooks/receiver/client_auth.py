"""Stage 1, per route: the client certificate must match the route's rules (403)."""

from __future__ import annotations

from typing import Any

import structlog

from ..errors import ClientCertificateRejected
from ..observability.logging import SERVER_LOGGER
from ..tls.certificates import CertificateInfo
from ..tls.identity import ClientCertificateRules

__all__ = ["check_client_certificate", "client_certificate"]

log = structlog.stdlib.get_logger(SERVER_LOGGER)


def client_certificate(scope: dict[str, Any]) -> CertificateInfo | None:
    """Return the verified client certificate of the request's connection."""
    tls = scope.get("extensions", {}).get("tls")
    document = tls.get("client_cert") if tls else None
    return CertificateInfo.from_dict(document) if document else None


def check_client_certificate(
    rules: ClientCertificateRules | None,
    certificate: CertificateInfo | None,
    route: str,
) -> None:
    """Apply a route's rules, logging a rejection with the certificate's identity.

    Raises:
        ClientCertificateRejected: the certificate is missing or not allowed.
    """
    if rules is None:
        return

    try:
        rules.check(certificate)
    except ClientCertificateRejected:
        log.warning(
            "client_certificate_rejected",
            route=route,
            reason="client_certificate_rejected",
            subject=certificate.subject if certificate else None,
            fingerprint=certificate.fingerprint_sha256 if certificate else None,
        )
        raise
