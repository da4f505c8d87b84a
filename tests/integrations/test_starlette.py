"""Starlette and FastAPI: the example applications, with the test client and uvicorn."""

# No `from __future__ import annotations`: FastAPI must evaluate the Depends()
# annotations of routes defined inside the tests.
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pytest
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from kratos_webhooks.integrations.endpoint import BodyUnavailable
from kratos_webhooks.integrations.starlette import KratosWebhook, RawBodyMiddleware

from .cases import (
    FORM,
    Send,
    all_cases,
    run_cases,
    sample,
    standard_webhooks,
)
from .cases import (
    Response as CaseResponse,
)
from .servers import http_sender, uvicorn_server

APPS = ["starlette_app", "fastapi_app"]


def _create(module: str) -> Any:
    return importlib.import_module(module).create_app()


def _client_sender(client: TestClient) -> Send:
    def send(path: str, body: bytes, headers: dict[str, str]) -> CaseResponse:
        response = client.post(path, content=body, headers=headers)
        lowered = {k.lower(): v for k, v in response.headers.items()}
        return response.status_code, response.content, lowered

    return send


@pytest.mark.parametrize("module", APPS)
def test_example_with_test_client(module: str) -> None:
    with TestClient(_create(module)) as client:
        assert run_cases(_client_sender(client)) == len(all_cases())


@pytest.mark.slow
@pytest.mark.parametrize("module", APPS)
def test_example_on_uvicorn(module: str) -> None:
    with uvicorn_server(_create(module)) as url, http_sender(url) as send:
        assert run_cases(send) == len(all_cases())


async def _reads_body(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    await request.body()
    return await call_next(request)


async def _reads_form(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    await request.form()
    return await call_next(request)


@pytest.mark.parametrize("module", APPS)
def test_body_read_by_middleware(module: str) -> None:
    # Starlette replays a body that a middleware read with request.body().
    app = _create(module)
    app.add_middleware(BaseHTTPMiddleware, dispatch=_reads_body)

    with TestClient(app) as client:
        assert run_cases(_client_sender(client)) == len(all_cases())


@pytest.mark.parametrize("module", APPS)
def test_form_read_by_middleware(module: str) -> None:
    # A form parser consumes the stream; the raw-body middleware must come first.
    app = _create(module)
    app.add_middleware(BaseHTTPMiddleware, dispatch=_reads_form)
    app.add_middleware(RawBodyMiddleware)

    with TestClient(app) as client:
        assert run_cases(_client_sender(client)) == len(all_cases())


@pytest.mark.parametrize("module", APPS)
def test_form_consumed_before_middleware_named(module: str) -> None:
    app = _create(module)
    app.add_middleware(BaseHTTPMiddleware, dispatch=_reads_form)
    body = b"email=zo%C3%AB%40example.com"

    with TestClient(app) as client, pytest.raises(BodyUnavailable, match="first"):
        client.post(
            "/hooks/registration", content=body, headers=standard_webhooks(body, FORM)
        )


def test_fastapi_form_parameter_needs_middleware() -> None:
    from fastapi import Depends, FastAPI, Form
    from kratos_hooks import check_registration, route_checks

    from kratos_webhooks.integrations.starlette import install

    webhook = KratosWebhook(route_checks()["standard-webhooks"], check_registration)
    body = b"email=zo%C3%AB%40example.com"

    def build(with_middleware: bool) -> FastAPI:
        app = FastAPI()

        if with_middleware:
            install(app)
        else:
            from kratos_webhooks import WebhookError
            from kratos_webhooks.integrations.starlette import error_response

            app.add_exception_handler(WebhookError, lambda r, e: error_response(e))

        @app.post("/hook")
        async def hook(
            event: Annotated[Any, Depends(webhook)], email: Annotated[str, Form()]
        ) -> Response:
            return await webhook.respond(event)

        return app

    with TestClient(build(True)) as client:
        response = client.post(
            "/hook", content=body, headers=standard_webhooks(body, FORM)
        )
        assert response.status_code == 200
        assert response.json() == {
            "identity": {"metadata_public": {"email": "zoë@example.com"}}
        }

    with (
        TestClient(build(False), raise_server_exceptions=True) as client,
        pytest.raises(BodyUnavailable, match="install"),
    ):
        client.post("/hook", content=body, headers=standard_webhooks(body, FORM))


def test_dependency_without_install_refused() -> None:
    from fastapi import Depends, FastAPI
    from kratos_hooks import route_checks

    webhook = KratosWebhook(route_checks()["standard-webhooks"], hook="login.after")
    app = FastAPI()

    @app.post("/hook")
    async def hook(event: Annotated[Any, Depends(webhook)]) -> Response:
        return Response(status_code=204)

    with TestClient(app) as client, pytest.raises(RuntimeError, match="install"):
        client.post("/hook", content=b"{}")


def test_body_limit(caplog: pytest.LogCaptureFixture) -> None:
    from kratos_hooks import audit, route_checks

    webhook = KratosWebhook(
        route_checks()["standard-webhooks"],
        audit,
        payload_type=dict,
        max_body_bytes=100,
    )
    body = sample("05-login-before-api.passthrough.json")
    bare = Starlette(routes=[Route("/hook", webhook.endpoint, methods=["POST"])])
    buffered = Starlette(routes=[Route("/hook", webhook.endpoint, methods=["POST"])])
    buffered.add_middleware(RawBodyMiddleware, max_body_bytes=100)

    for app in (bare, buffered):
        with TestClient(app) as client, caplog.at_level(logging.WARNING):
            declared = client.post(
                "/hook", content=body, headers=standard_webhooks(body)
            )

            def chunks() -> Any:
                yield body

            streamed = client.post(
                "/hook", content=chunks(), headers=standard_webhooks(body)
            )

        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "payload_too_large"
        assert streamed.status_code == 413

    assert "payload_too_large" in caplog.text


def test_client_certificate_reaches_handler() -> None:
    from kratos_hooks import route_checks

    seen: list[Any] = []

    def handler(event: Any) -> None:
        seen.append(event.client_certificate)

    webhook = KratosWebhook(
        route_checks()["standard-webhooks"], handler, payload_type=dict
    )
    tls = {
        "client_cert_chain": ["-----BEGIN CERTIFICATE-----"],
        "client_cert_name": "CN=relay",
    }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})["tls"] = tls
        await Starlette(routes=[Route("/hook", webhook.endpoint, methods=["POST"])])(
            scope, receive, send
        )

    body = b'{"a": 1}'

    with TestClient(app) as client:
        assert (
            client.post(
                "/hook", content=body, headers=standard_webhooks(body)
            ).status_code
            == 200
        )
        assert (
            client.post("/hook", content=body, headers=standard_webhooks(body)).json()
            == {}
        )

    assert seen == [tls, tls]


def test_rejection_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    body = sample("06-settings-after-profile-postpersist-spa.passthrough.json")
    headers = standard_webhooks(body)

    with TestClient(_create("starlette_app")) as client, caplog.at_level(logging.DEBUG):
        response = client.post(
            "/hooks/registration", content=body + b" ", headers=headers
        )

    assert response.status_code == 401
    assert "signature_mismatch" in caplog.text
    assert "FAKE" not in caplog.text
    assert headers["webhook-signature"].split(",", 1)[1] not in caplog.text
