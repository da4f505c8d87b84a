"""A Python handler for the mutual TLS tests: it returns the client certificate."""

from __future__ import annotations

from kratos_webhooks.hooks import HookEvent
from kratos_webhooks.kratos.answers import UpdateIdentity


def echo_client_certificate(event: HookEvent) -> UpdateIdentity:
    extension = event.client_certificate
    described = extension["client_cert"] if extension is not None else None
    return UpdateIdentity(metadata_admin={"client_certificate": described})
