"""Django: the example application, with Django's test client and real servers."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import pytest

from kratos_webhooks.integrations.endpoint import BodyUnavailable

from .cases import (
    ENVIRONMENT,
    FORM,
    JSON,
    Response,
    Send,
    all_cases,
    run_cases,
    sample,
    standard_webhooks,
)
from .servers import http_sender, uvicorn_server, wsgi_server

READ_STREAM_HEADER = "X-Test-Read-Stream"


class ReadsPostMiddleware:
    """Parse the form before the view, as many applications' middleware do, or
    read the raw stream when a test asks for it."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        from django.core.exceptions import BadRequest

        if request.headers.get(READ_STREAM_HEADER):
            request.read()
            return self.get_response(request)

        # Django refuses form data labelled with a charset other than UTF-8;
        # the view still reads the untouched body.
        with contextlib.suppress(BadRequest):
            request.POST.get("email")

        return self.get_response(request)


@pytest.fixture(scope="module")
def django_settings() -> None:
    """Configure Django once for this process, without a project on disk."""
    import django
    import django_app as example
    from django.conf import settings

    assert set(ENVIRONMENT) <= set(os.environ)

    if not settings.configured:
        configuration = dict(example.SETTINGS)
        configuration["MIDDLEWARE"] = [
            *configuration["MIDDLEWARE"],
            f"{__name__}.ReadsPostMiddleware",
        ]
        settings.configure(**configuration)
        django.setup()


def _client_sender() -> Send:
    from django.test import Client

    client = Client()

    def send(path: str, body: bytes, headers: dict[str, str]) -> Response:
        headers = dict(headers)
        content_type = headers.pop("Content-Type", JSON)
        # Client.post would re-encode the bytes to the charset label; generic()
        # sends them untouched, as Kratos does.
        response = client.generic(
            "POST", path, data=body, content_type=content_type, headers=headers
        )
        lowered = {k.lower(): v for k, v in response.headers.items()}
        return response.status_code, response.content, lowered

    return send


@pytest.mark.usefixtures("django_settings")
def test_example_with_test_client() -> None:
    assert run_cases(_client_sender()) == len(all_cases())


@pytest.mark.slow
@pytest.mark.usefixtures("django_settings")
def test_example_on_django_server() -> None:
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_wsgi_application())

    with wsgi_server(server) as url, http_sender(url) as send:
        assert run_cases(send) == len(all_cases())


@pytest.mark.slow
@pytest.mark.usefixtures("django_settings")
def test_example_on_uvicorn_asgi() -> None:
    from django.core.asgi import get_asgi_application

    with uvicorn_server(get_asgi_application()) as url, http_sender(url) as send:
        assert run_cases(send) == len(all_cases())


@pytest.mark.usefixtures("django_settings")
def test_stream_read_by_middleware_named() -> None:
    body = b"email=zo%C3%AB%40example.com"
    headers = {**standard_webhooks(body, FORM), READ_STREAM_HEADER: "1"}
    content_type = headers.pop("Content-Type")
    from django.test import Client

    with pytest.raises(BodyUnavailable, match=r"request\.body"):
        Client().generic(
            "POST",
            "/hooks/registration",
            data=body,
            content_type=content_type,
            headers=headers,
        )


@pytest.mark.usefixtures("django_settings")
def test_method_not_allowed() -> None:
    from django.test import Client

    response = Client().get("/hooks/registration")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response["Allow"] == "POST"


@pytest.mark.usefixtures("django_settings")
def test_views_are_csrf_exempt_and_async_where_asked() -> None:
    import asyncio

    import django_app as example

    views = {str(p.pattern): p.callback for p in example.urlpatterns}

    assert all(getattr(view, "csrf_exempt", False) for view in views.values())
    assert asyncio.iscoroutinefunction(views["hooks/login"])
    assert not asyncio.iscoroutinefunction(views["hooks/registration"])


@pytest.mark.usefixtures("django_settings")
def test_body_limit() -> None:
    from django.test import RequestFactory
    from kratos_hooks import audit, route_checks

    from kratos_webhooks.integrations.django import kratos_webhook

    view = kratos_webhook(
        route_checks()["standard-webhooks"], payload_type=dict, max_body_bytes=100
    )(audit)
    body = sample("05-login-before-api.passthrough.json")
    headers = standard_webhooks(body)
    del headers["Content-Type"]
    request = RequestFactory().post(
        "/hook", data=body, content_type=JSON, headers=headers
    )
    response = view(request)

    assert response.status_code == 413
    assert b"payload_too_large" in response.content


@pytest.mark.usefixtures("django_settings")
def test_client_certificate_from_meta() -> None:
    from django.test import RequestFactory
    from kratos_hooks import route_checks

    from kratos_webhooks.integrations.django import kratos_webhook

    seen: list[Any] = []

    @kratos_webhook(route_checks()["standard-webhooks"], payload_type=dict)
    def hook(event: Any) -> None:
        seen.append(event.client_certificate)

    body = b'{"a": 1}'
    headers = standard_webhooks(body)
    del headers["Content-Type"]
    factory = RequestFactory()
    hook(factory.post("/hook", data=body, content_type=JSON, headers=headers))
    hook(
        factory.post(
            "/hook",
            data=body,
            content_type=JSON,
            headers=headers,
            SSL_CLIENT_CERT="PEM",
            SSL_CLIENT_S_DN="CN=relay",
        )
    )

    assert seen == [
        None,
        {"client_cert_chain": ["PEM"], "client_cert_name": "CN=relay"},
    ]


@pytest.mark.usefixtures("django_settings")
def test_rejection_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    body = sample("06-settings-after-profile-postpersist-spa.passthrough.json")
    headers = standard_webhooks(body)

    with caplog.at_level(logging.DEBUG):
        status, _, _ = _client_sender()("/hooks/registration", body + b" ", headers)

    assert status == 401
    assert "signature_mismatch" in caplog.text
    assert "FAKE" not in caplog.text
    assert headers["webhook-signature"].split(",", 1)[1] not in caplog.text


@pytest.mark.slow
def test_example_runs_as_script() -> None:
    import subprocess
    import sys

    from .cases import EXAMPLES

    result = subprocess.run(
        [sys.executable, "django_app.py", "check"],
        cwd=EXAMPLES,
        env={**os.environ, **ENVIRONMENT},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
