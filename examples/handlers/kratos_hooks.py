"""Hook handlers shared by the framework examples, and the checks of their routes.

Secrets come from the environment:

- KRATOS_WEBHOOKS_SECRET: the Standard Webhooks key (`whsec_...`) of the relay;
- KRATOS_WEBHOOKS_API_KEY: the value of Kratos' `X-Webhook-Secret` api_key;
- KRATOS_WEBHOOKS_BASIC: Kratos' basic_auth credential, as `user:password`;
- KRATOS_WEBHOOKS_MAC_SECRET: the secret of the generated Jsonnet MAC template.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kratos_webhooks.hooks import HookEvent, HookRegistry
from kratos_webhooks.integrations.endpoint import RouteCheck, route_check
from kratos_webhooks.kratos.answers import Answer, Interrupt, NoChange, UpdateIdentity
from kratos_webhooks.kratos.models import LoginContext, SettingsContext

BLOCKED_DOMAINS = {"blocked.example.com"}

# Phone numbers never reach a log line, on top of cookies and tokens.
hooks = HookRegistry(redact=["/identity/traits/phone"])


class VerificationDigest(msgspec.Struct):
    """The body of a custom template for verification.after."""

    event: str
    flow_id: str
    identity_id: str
    email: str
    verified_addresses: list[str]


def route_checks() -> dict[str, RouteCheck]:
    """Build one check per verification scheme from the environment."""
    return {
        "standard-webhooks": route_check(
            "standard-webhooks", ["env:KRATOS_WEBHOOKS_SECRET"]
        ),
        "kratos-api-key": route_check(
            "kratos-api-key",
            ["env:KRATOS_WEBHOOKS_API_KEY"],
            api_key_name="X-Webhook-Secret",
        ),
        "kratos-basic": route_check("kratos-basic", ["env:KRATOS_WEBHOOKS_BASIC"]),
        "kratos-jsonnet-mac": route_check(
            "kratos-jsonnet-mac", ["env:KRATOS_WEBHOOKS_MAC_SECRET"]
        ),
    }


def _email(event: HookEvent[Any]) -> str:
    # A form-encoded template sends a flat map; a passthrough template, the ctx.
    if isinstance(event.payload, dict):
        return str(event.payload.get("email", ""))

    identity = event.identity
    return str(identity.traits.get("email", "")) if identity else ""


@hooks.on("registration.after")
def check_registration(event: HookEvent[Any]) -> Answer:
    """Refuse sign-ups from blocked domains; record the e-mail otherwise."""
    email = _email(event)

    if email.rpartition("@")[2] in BLOCKED_DOMAINS:
        return Interrupt(status=422).error(
            "Sign-ups from this e-mail domain are not allowed.",
            id=4000001,
            field="traits.email",
        )

    return UpdateIdentity(metadata_public={"email": email})


@hooks.on("login.after")
async def record_login(event: HookEvent[LoginContext]) -> Answer:
    """Accept every login; an async handler, as an application would await I/O."""
    return NoChange()


@hooks.on("settings.after")
def record_settings(event: HookEvent[SettingsContext]) -> Answer:
    """Store the id of the last settings flow in the public metadata."""
    return UpdateIdentity(
        metadata_public={"last_settings_flow": str(event.payload.flow.id)}
    )


@hooks.on("verification.after", payload_type=VerificationDigest)
def record_verification(event: HookEvent[VerificationDigest]) -> Answer:
    """Accept a verification digest from a custom template."""
    return NoChange(status=204)


def audit(event: HookEvent[dict[str, Any]]) -> Answer:
    """Accept any JSON body; the route decodes it as plain JSON."""
    return NoChange(status=204)
