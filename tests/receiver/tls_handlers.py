"""A Python handler for the mutual TLS tests: it answers with the client certificate."""

from __future__ import annotations

from typing import Any

from kratos_webhooks.receiver.handlers import HookRequest


def echo_client_certificate(request: HookRequest) -> dict[str, Any]:
    certificate = request.client_certificate
    described = certificate.as_dict() if certificate is not None else None
    return {"identity": {"metadata_admin": {"client_certificate": described}}}
