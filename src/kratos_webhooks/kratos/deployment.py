"""Write the Kratos hooks, the relay configuration and the receiver routes together.

All three come from one `Deployment`, so paths, modes and secret references
agree: the relay route a Kratos hook calls forwards to the receiver route of
the same path, signed with the key the receiver route verifies. Secrets appear
only as references (`env:NAME`) or `${NAME}` placeholders, never as values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import yaml

from .templates import (
    PASSTHROUGH_TEMPLATE,
    HookPoint,
    base64_uri,
    kratos_env_variable,
    kratos_hooks,
    mac_template,
    placeholder,
    web_hook_entry,
)

__all__ = [
    "DEFAULT_HOOKS",
    "KRATOS_FILE",
    "MAC_TEMPLATE_FILE",
    "RECEIVER_FILE",
    "RELAY_FILE",
    "Deployment",
    "render_files",
]

DEFAULT_HOOKS: Final = (
    "registration.before",
    "registration.after",
    "login.after",
    "settings.after",
    "recovery.after",
    "verification.after",
)
KRATOS_FILE: Final = "kratos-hooks.yaml"
RELAY_FILE: Final = "relay.yaml"
RECEIVER_FILE: Final = "receiver-routes.yaml"
MAC_TEMPLATE_FILE: Final = "webhook-mac.jsonnet"


@dataclass(frozen=True, slots=True)
class Deployment:
    """The hook points, URLs and secret variable names (`*_env`) of one deployment."""

    hooks: Sequence[HookPoint]
    receiver_url: str
    upstream_url: str
    relay_url: str = "http://127.0.0.1:4480"
    auth: Literal["api_key", "basic_auth"] = "api_key"
    api_key_name: str = "X-Webhook-Key"
    api_key_in: Literal["header", "cookie"] = "header"
    basic_user: str = "kratos"
    kratos_secret_env: str = "KRATOS_WEBHOOKS_KRATOS_KEY"  # noqa: S105 - a variable name
    signing_secret_env: str = "KRATOS_WEBHOOKS_RELAY_SECRET"  # noqa: S105 - a variable name
    upstream_secret_env: str = "KRATOS_WEBHOOKS_UPSTREAM_SECRET"  # noqa: S105 - a variable name
    jsonnet_mac: bool = False
    mac_secret_env: str = "KRATOS_WEBHOOKS_MAC_SECRET"  # noqa: S105 - a variable name
    template_dir: str = "/etc/kratos/webhooks"
    allow_private_targets: bool = False


def render_files(deployment: Deployment) -> dict[str, str]:
    """Return each file name with its text.

    Raises:
        ValueError: a URL or an environment variable name is invalid.
    """
    for url in (deployment.receiver_url, deployment.upstream_url, deployment.relay_url):
        parts = urlsplit(url)

        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")

    files = {
        KRATOS_FILE: _kratos_file(deployment),
        RECEIVER_FILE: _receiver_file(deployment),
    }

    if deployment.jsonnet_mac:
        files[MAC_TEMPLATE_FILE] = mac_template(deployment.mac_secret_env)
    else:
        files[RELAY_FILE] = _relay_file(deployment)

    return files


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _kratos_auth(deployment: Deployment) -> dict[str, Any]:
    secret = placeholder(deployment.kratos_secret_env)

    if deployment.auth == "basic_auth":
        config = {"user": deployment.basic_user, "password": secret}
        return {"type": "basic_auth", "config": config}

    config = {
        "name": deployment.api_key_name,
        "value": secret,
        "in": deployment.api_key_in,
    }
    return {"type": "api_key", "config": config}


def _kratos_file(deployment: Deployment) -> str:
    entries = []

    for point in deployment.hooks:
        if deployment.jsonnet_mac:
            template = (
                f"file://{deployment.template_dir.rstrip('/')}/{MAC_TEMPLATE_FILE}"
            )
            url = _join(deployment.receiver_url, point.path)
            entry = web_hook_entry(point, url=url, body=template, auth=None)
        else:
            url = _join(deployment.relay_url, point.path)
            body = base64_uri(PASSTHROUGH_TEMPLATE)
            entry = web_hook_entry(
                point, url=url, body=body, auth=_kratos_auth(deployment)
            )

        entries.append((point, entry))

    variables = sorted({kratos_env_variable(point) for point in deployment.hooks})
    secret = (
        deployment.mac_secret_env
        if deployment.jsonnet_mac
        else deployment.kratos_secret_env
    )
    header = [
        "# Web hook entries for Kratos' configuration: merge them into kratos.yml.",
        "# Kratos does not expand ${...} in its configuration file. Render this file",
        "# with the secret at deploy time (envsubst, Helm, ...), or set each hooks",
        "# list as JSON through Kratos' own environment variables:",
        *(f"#   {name}" for name in variables),
    ]

    if deployment.jsonnet_mac:
        header += [
            f"# The body template {MAC_TEMPLATE_FILE} must be copied to",
            f"# {deployment.template_dir}/ with the {secret} secret filled in.",
        ]
    else:
        header.append(
            f"# The placeholder ${{{secret}}} is Kratos' credential for the relay."
        )

    return "\n".join(header) + "\n" + _dump(kratos_hooks(entries))


def _receiver_file(deployment: Deployment) -> str:
    routes = []

    for point in deployment.hooks:
        if deployment.jsonnet_mac:
            verify: dict[str, Any] = {
                "scheme": "kratos-jsonnet-mac",
                "secrets": [f"env:{deployment.mac_secret_env}"],
            }
        else:
            verify = {
                "scheme": "standard-webhooks",
                "secrets": [f"env:{deployment.signing_secret_env}"],
            }

        routes.append(
            {
                "path": point.path,
                "verify": verify,
                "mode": point.mode,
                "upstream": _join(deployment.upstream_url, point.path),
                "upstream_secrets": [f"env:{deployment.upstream_secret_env}"],
            }
        )

    header = (
        "# Receiver routes matching the Kratos hooks: add them to the receiver's\n"
        "# configuration under its routes key.\n"
    )
    return header + _dump({"routes": routes})


def _relay_file(deployment: Deployment) -> str:
    host = urlsplit(deployment.receiver_url).hostname or ""
    relay_listen = urlsplit(deployment.relay_url)
    listen = f"{relay_listen.hostname}:{relay_listen.port or 80}"

    if ":" in (relay_listen.hostname or ""):
        listen = f"[{relay_listen.hostname}]:{relay_listen.port or 80}"

    routes = [
        {
            "path": point.path,
            "target": _join(deployment.receiver_url, point.path),
            "mode": point.mode,
            "kratos_auth": _relay_kratos_auth(deployment),
            "signing": {"secrets": [f"env:{deployment.signing_secret_env}"]},
        }
        for point in deployment.hooks
    ]
    document = {
        "relay": {"listen": listen},
        "outbound": {
            "allow_loopback_targets": _is_loopback(host),
            "allow_private_targets": deployment.allow_private_targets
            or _is_private(host),
        },
        "storage": "sqlite:///var/lib/kratos-webhooks/relay.db",
        "routes": routes,
    }
    header = "# The relay beside Kratos: kratos-webhooks relay --config relay.yaml\n"
    return header + _dump(document)


def _relay_kratos_auth(deployment: Deployment) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": deployment.auth,
        "secrets": [f"env:{deployment.kratos_secret_env}"],
    }

    if deployment.auth == "api_key":
        auth["name"] = deployment.api_key_name
        auth["in"] = deployment.api_key_in
    else:
        auth["user"] = deployment.basic_user

    return auth


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_private(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False

    return address.is_private and not address.is_loopback and not address.is_link_local
