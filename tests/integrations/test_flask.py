"""Flask: the example application, with Flask's test client and werkzeug's server."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from kratos_webhooks.integrations.endpoint import BodyUnavailable
from kratos_webhooks.integrations.flask import KratosWebhooks, verified

from .cases import (
    FORM,
    Response,
    Send,
    all_cases,
    run_cases,
    sample,
    standard_webhooks,
)
from .servers import http_sender, wsgi_server


def _create() -> Flask:
    import flask_app

    return flask_app.create_app()


def _client_sender(app: Flask) -> Send:
    client = app.test_client()

    def send(path: str, body: bytes, headers: dict[str, str]) -> Response:
        response = client.post(path, data=body, headers=headers)
        lowered = {k.lower(): v for k, v in response.headers.items()}
        return response.status_code, response.get_data(), lowered

    return send


def test_example_with_test_client() -> None:
    assert run_cases(_client_sender(_create())) == len(all_cases())


@pytest.mark.slow
def test_example_on_werkzeug_server() -> None:
    server = make_server("127.0.0.1", 0, _create(), threaded=True)

    with wsgi_server(server) as url, http_sender(url) as send:
        assert run_cases(send) == len(all_cases())


def _reads_form_first(app: Flask) -> Flask:
    @app.before_request
    def read_form() -> None:
        request.form.get("email")

    return app


def test_form_read_before_view() -> None:
    # The extension's WSGI middleware keeps the bytes before Flask parses a form.
    app = _reads_form_first(_create())
    assert run_cases(_client_sender(app)) == len(all_cases())


def test_form_read_without_extension_named() -> None:
    from kratos_hooks import check_registration, route_checks

    app = Flask(__name__)
    view = verified(route_checks()["standard-webhooks"])(check_registration)
    app.add_url_rule("/hook", view_func=view, methods=["POST"])
    _reads_form_first(app)
    app.testing = True
    body = b"email=zo%C3%AB%40example.com"
    client = app.test_client()

    with pytest.raises(BodyUnavailable, match="KratosWebhooks"):
        client.post("/hook", data=body, headers=standard_webhooks(body, FORM))


def test_decorator_without_extension() -> None:
    from kratos_hooks import check_registration, route_checks

    app = Flask(__name__)
    view = verified(route_checks()["standard-webhooks"])(check_registration)
    app.add_url_rule("/hooks/registration", view_func=view, methods=["POST"])
    cases = [c for c in all_cases() if c.path == "/hooks/registration"]

    assert run_cases(_client_sender(app), cases) == len(cases)


def test_body_limit(caplog: pytest.LogCaptureFixture) -> None:
    from kratos_hooks import audit, route_checks

    body = sample("05-login-before-api.passthrough.json")
    check = route_checks()["standard-webhooks"]

    for extension in (True, False):
        app = Flask(__name__)
        webhooks = KratosWebhooks(app, max_body_bytes=100) if extension else None
        decorate = (
            webhooks.verified(check, payload_type=dict)
            if webhooks
            else verified(check, payload_type=dict, max_body_bytes=100)
        )
        app.add_url_rule("/hook", view_func=decorate(audit), methods=["POST"])

        with caplog.at_level(logging.WARNING):
            response = app.test_client().post(
                "/hook", data=body, headers=standard_webhooks(body)
            )

        assert response.status_code == 413
        assert response.get_json()["error"]["code"] == "payload_too_large"


def test_client_certificate_from_environ() -> None:
    from kratos_hooks import route_checks

    seen: list[Any] = []
    app = Flask(__name__)

    @app.post("/hook")
    @verified(route_checks()["standard-webhooks"], payload_type=dict)
    def hook(event: Any) -> None:
        seen.append(event.client_certificate)

    body = b'{"a": 1}'
    client = app.test_client()
    client.post("/hook", data=body, headers=standard_webhooks(body))
    client.post(
        "/hook",
        data=body,
        headers=standard_webhooks(body),
        environ_base={"SSL_CLIENT_CERT": "PEM", "SSL_CLIENT_S_DN": "CN=relay"},
    )

    assert seen == [
        None,
        {"client_cert_chain": ["PEM"], "client_cert_name": "CN=relay"},
    ]


def test_rejection_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    body = sample("06-settings-after-profile-postpersist-spa.passthrough.json")
    headers = standard_webhooks(body)

    with caplog.at_level(logging.DEBUG):
        response = (
            _create()
            .test_client()
            .post("/hooks/registration", data=body + b" ", headers=headers)
        )

    assert response.status_code == 401
    assert "signature_mismatch" in caplog.text
    assert "FAKE" not in caplog.text
    assert headers["webhook-signature"].split(",", 1)[1] not in caplog.text
