"""A FastAPI application that receives Kratos web hooks through a dependency.

Run it with `python fastapi_app.py` after setting the secrets listed in
kratos_hooks.py; it listens on 127.0.0.1:8000.
"""

# No `from __future__ import annotations`: FastAPI reads the Depends() in the
# annotations of the routes below, which name variables local to create_app.
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form
from kratos_hooks import (
    audit,
    check_registration,
    record_login,
    record_settings,
    record_verification,
    route_checks,
)
from starlette.responses import Response

from kratos_webhooks.hooks import HookEvent
from kratos_webhooks.integrations.starlette import KratosWebhook, install


def create_app() -> FastAPI:
    checks = route_checks()
    registration = KratosWebhook(checks["standard-webhooks"], check_registration)
    login = KratosWebhook(checks["kratos-api-key"], record_login)
    settings = KratosWebhook(checks["kratos-basic"], record_settings)
    verification = KratosWebhook(checks["kratos-jsonnet-mac"], record_verification)
    audit_hook = KratosWebhook(checks["standard-webhooks"], audit, payload_type=dict)

    app = FastAPI()
    # Adds the rejection handler and the raw-body middleware.
    install(app)

    @app.post("/hooks/registration")
    async def on_registration(
        event: Annotated[HookEvent[Any], Depends(registration)],
    ) -> Response:
        return await registration.respond(event)

    @app.post("/hooks/registration-form")
    async def on_registration_form(
        event: Annotated[HookEvent[Any], Depends(registration)],
        email: Annotated[str, Form()],
    ) -> Response:
        # FastAPI parses the form before the dependency runs; the middleware
        # installed above kept the raw bytes for the signature.
        if event.payload["email"] != email:
            return Response(status_code=500)

        return await registration.respond(event)

    @app.post("/hooks/login")
    async def on_login(event: Annotated[HookEvent[Any], Depends(login)]) -> Response:
        return await login.respond(event)

    @app.post("/hooks/settings")
    async def on_settings(
        event: Annotated[HookEvent[Any], Depends(settings)],
    ) -> Response:
        return await settings.respond(event)

    @app.post("/hooks/verification")
    async def on_verification(
        event: Annotated[HookEvent[Any], Depends(verification)],
    ) -> Response:
        return await verification.respond(event)

    @app.post("/hooks/audit")
    async def on_audit(
        event: Annotated[HookEvent[Any], Depends(audit_hook)],
    ) -> Response:
        return await audit_hook.respond(event)

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
