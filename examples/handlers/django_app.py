"""A Django application, in one file, that receives Kratos web hooks.

Run it with `python django_app.py runserver 127.0.0.1:8000` after setting the
secrets listed in kratos_hooks.py. In a project, the views below go in a
views.py and the patterns in urls.py.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.urls import path
from kratos_hooks import (
    audit,
    check_registration,
    record_login,
    record_settings,
    record_verification,
    route_checks,
)

from kratos_webhooks.integrations.django import kratos_webhook

SETTINGS = {
    "DEBUG": False,
    "ALLOWED_HOSTS": ["127.0.0.1", "localhost", "testserver"],
    "ROOT_URLCONF": __name__,
    # Kratos does not send Django's CSRF token: the views are CSRF-exempt.
    "MIDDLEWARE": [
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    "INSTALLED_APPS": [],
    "SECRET_KEY": "only-signs-django-sessions-which-this-example-does-not-use",
}


def build_urlpatterns() -> list[object]:
    checks = route_checks()
    return [
        path(
            "hooks/registration",
            kratos_webhook(checks["standard-webhooks"])(check_registration),
        ),
        path("hooks/login", kratos_webhook(checks["kratos-api-key"])(record_login)),
        path("hooks/settings", kratos_webhook(checks["kratos-basic"])(record_settings)),
        path(
            "hooks/verification",
            kratos_webhook(checks["kratos-jsonnet-mac"])(record_verification),
        ),
        path(
            "hooks/audit",
            kratos_webhook(checks["standard-webhooks"], payload_type=dict)(audit),
        ),
    ]


urlpatterns = build_urlpatterns()


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    settings.configure(**SETTINGS)
    execute_from_command_line(sys.argv)
