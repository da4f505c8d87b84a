"""A Flask application that receives Kratos web hooks.

Run it with `python flask_app.py` after setting the secrets listed in
kratos_hooks.py; it listens on 127.0.0.1:8000.
"""

from __future__ import annotations

from flask import Flask
from kratos_hooks import (
    audit,
    check_registration,
    record_login,
    record_settings,
    record_verification,
    route_checks,
)

from kratos_webhooks.integrations.flask import KratosWebhooks


def create_app() -> Flask:
    checks = route_checks()
    app = Flask(__name__)
    # Keeps the raw bytes even if something parses the form first.
    webhooks = KratosWebhooks(app)

    routes = [
        ("/hooks/registration", checks["standard-webhooks"], check_registration, None),
        ("/hooks/login", checks["kratos-api-key"], record_login, None),
        ("/hooks/settings", checks["kratos-basic"], record_settings, None),
        (
            "/hooks/verification",
            checks["kratos-jsonnet-mac"],
            record_verification,
            None,
        ),
        ("/hooks/audit", checks["standard-webhooks"], audit, dict),
    ]

    for path, check, handler, payload_type in routes:
        view = webhooks.verified(check, payload_type=payload_type)(handler)
        app.add_url_rule(path, view_func=view, methods=["POST"])

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=8000)
