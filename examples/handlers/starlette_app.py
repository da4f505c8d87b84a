"""A Starlette application that receives Kratos web hooks.

Run it with `python starlette_app.py` after setting the secrets listed in
kratos_hooks.py; it listens on 127.0.0.1:8000.
"""

from __future__ import annotations

from kratos_hooks import (
    audit,
    check_registration,
    record_login,
    record_settings,
    record_verification,
    route_checks,
)
from starlette.applications import Starlette
from starlette.routing import Route

from kratos_webhooks.integrations.starlette import KratosWebhook, RawBodyMiddleware


def create_app() -> Starlette:
    checks = route_checks()
    webhooks = {
        "/hooks/registration": KratosWebhook(
            checks["standard-webhooks"], check_registration
        ),
        "/hooks/login": KratosWebhook(checks["kratos-api-key"], record_login),
        "/hooks/settings": KratosWebhook(checks["kratos-basic"], record_settings),
        "/hooks/verification": KratosWebhook(
            checks["kratos-jsonnet-mac"], record_verification
        ),
        "/hooks/audit": KratosWebhook(
            checks["standard-webhooks"], audit, payload_type=dict
        ),
    }
    routes = [
        Route(path, webhook.endpoint, methods=["POST"])
        for path, webhook in webhooks.items()
    ]
    app = Starlette(routes=routes)
    # Keeps the raw bytes even if another middleware reads the body first.
    app.add_middleware(RawBodyMiddleware, paths=["/hooks/"])
    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
