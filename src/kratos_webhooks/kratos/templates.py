"""Kratos body templates and the matching Kratos, relay and receiver settings.

Kratos renders a hook's body with go-jsonnet, passing the hook context as the
top-level argument `ctx`, and prints the result with sorted keys, a 3-space
indent and a trailing newline. The passthrough template sends `ctx` as is.
The MAC template (Kratos v25.4 and later, whose go-jsonnet 0.21 has
`std.sha3`) sends `{"payload": <ctx as compact JSON>, "mac": <hex>}`, where the
MAC is SHA3-512 over the secret followed by the payload string.

Jsonnet in Kratos cannot read the environment or import files, so the MAC
secret must be written into the template itself. The template produced here
contains a `${NAME}` placeholder instead, which the operator fills at deploy time
(with `envsubst`, for instance) into a file only Kratos can read.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "FLOWS",
    "PASSTHROUGH_TEMPLATE",
    "HookPoint",
    "base64_uri",
    "fill_placeholder",
    "kratos_env_variable",
    "kratos_hooks",
    "mac_template",
    "parse_hook_point",
    "placeholder",
]

PASSTHROUGH_TEMPLATE: Final = "function(ctx) ctx\n"

Mode = Literal["sync", "async"]

# Flows, their hook stages, and the methods whose hooks replace the generic
# `after.hooks` list (Kratos v26.2 configuration schema).
FLOWS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "registration": {
        "before": (),
        "after": ("password", "oidc", "code", "webauthn", "passkey"),
    },
    "login": {
        "before": (),
        "after": (
            "password",
            "oidc",
            "code",
            "webauthn",
            "passkey",
            "totp",
            "lookup_secret",
        ),
    },
    "settings": {
        "before": (),
        "after": (
            "profile",
            "password",
            "oidc",
            "webauthn",
            "passkey",
            "totp",
            "lookup_secret",
        ),
    },
    "recovery": {"before": (), "after": ()},
    "verification": {"before": (), "after": ()},
}

_ENV_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class HookPoint:
    """A place in a Kratos flow where a web hook runs, and the route's mode."""

    flow: str
    stage: Literal["before", "after"]
    method: str | None
    mode: Mode

    @property
    def name(self) -> str:
        """The dotted name, such as `registration.after.password`."""
        return ".".join(part for part in (self.flow, self.stage, self.method) if part)

    @property
    def path(self) -> str:
        """The route path on the relay and the receiver."""
        return "/kratos/" + self.name.replace(".", "/")

    @property
    def config_keys(self) -> tuple[str, ...]:
        """The Kratos configuration keys down to the `hooks` list."""
        keys: tuple[str, ...] = ("selfservice", "flows", self.flow, self.stage)

        if self.method is not None:
            keys += (self.method,)

        return (*keys, "hooks")


def parse_hook_point(text: str) -> HookPoint:
    """Parse `FLOW.STAGE[.METHOD][:MODE]`, such as `registration.after.password:sync`.

    The mode defaults to `sync` for `before` hooks and for registration and
    settings `after` hooks, whose responses Kratos can apply, and to `async`
    otherwise.

    Raises:
        ValueError: an unknown flow, stage, method or mode.
    """
    name, _, mode = text.partition(":")
    parts = name.split(".")

    if len(parts) not in (2, 3):
        raise ValueError(f"{text!r}: expected FLOW.STAGE[.METHOD][:sync|async]")

    flow, stage = parts[0], parts[1]
    method = parts[2] if len(parts) == 3 else None

    if flow not in FLOWS:
        raise ValueError(f"{text!r}: unknown flow; use one of {', '.join(FLOWS)}")

    if stage not in ("before", "after"):
        raise ValueError(f"{text!r}: the stage must be before or after")

    if method is not None and method not in FLOWS[flow][stage]:
        allowed = ", ".join(FLOWS[flow][stage]) or "none"
        raise ValueError(f"{text!r}: unknown method; {flow}.{stage} has {allowed}")

    if mode == "":
        applies = stage == "before" or flow in ("registration", "settings")
        mode = "sync" if applies else "async"

    if mode not in ("sync", "async"):
        raise ValueError(f"{text!r}: the mode must be sync or async")

    return HookPoint(flow, stage, method, mode)  # type: ignore[arg-type]


def placeholder(env_name: str) -> str:
    """Return the `${NAME}` placeholder that stands for a secret in generated files.

    Raises:
        ValueError: the name is not an upper-case environment variable name.
    """
    if not _ENV_NAME.fullmatch(env_name):
        raise ValueError(f"{env_name!r} is not an upper-case environment variable")

    return "${" + env_name + "}"


def mac_template(secret_env: str) -> str:
    """Return the Jsonnet source of the MAC template, the secret as a placeholder.

    The secret is placed in a Jsonnet text block, so any character but a line
    break survives unescaped; `kratos-webhooks secret new` makes suitable ones.
    """
    marker = placeholder(secret_env)
    return (
        "// Kratos v25.4 or later: signs the hook body with a SHA3-512 keyed MAC.\n"
        f"// Before Kratos reads this file, fill in the {secret_env} secret below.\n"
        "local secret = std.rstripChars(|||\n"
        f"  {marker}\n"
        '|||, "\\n");\n'
        "\n"
        "function(ctx)\n"
        "  local payload = std.manifestJsonMinified(ctx);\n"
        "  { payload: payload, mac: std.sha3(secret + payload) }\n"
    )


def fill_placeholder(template: str, env_name: str, secret: str) -> str:
    """Return the template with the secret in place of its placeholder.

    Raises:
        ValueError: the template lacks the placeholder, or the secret holds a
            line break, which would end the Jsonnet text block.
    """
    marker = placeholder(env_name)

    if marker not in template:
        raise ValueError(f"the template has no {marker} placeholder")

    if "\n" in secret or "\r" in secret:
        raise ValueError("the secret must not contain a line break")

    return template.replace(marker, secret)


def base64_uri(template: str) -> str:
    """Return a `base64://` template URI, as Kratos' `body` setting accepts."""
    return "base64://" + base64.b64encode(template.encode("utf-8")).decode("ascii")


def kratos_env_variable(point: HookPoint) -> str:
    """Return the Kratos environment variable that overrides a hooks list."""
    return "_".join(key.upper() for key in point.config_keys)


def web_hook_entry(
    point: HookPoint,
    *,
    url: str,
    body: str,
    auth: dict[str, Any] | None,
) -> dict[str, Any]:
    """Return one `hook: web_hook` entry of a Kratos hooks list."""
    config: dict[str, Any] = {"url": url, "method": "POST", "body": body}

    if auth is not None:
        config["auth"] = auth

    # `parse` lets a sync hook interrupt the flow or change the identity;
    # `ignore` makes Kratos call an async hook in the background.
    if point.mode == "sync":
        config["response"] = {"parse": True}
    else:
        config["response"] = {"ignore": True}

    return {"hook": "web_hook", "config": config}


def kratos_hooks(entries: Iterable[tuple[HookPoint, dict[str, Any]]]) -> dict[str, Any]:
    """Nest hook entries under their `selfservice.flows...hooks` keys."""
    document: dict[str, Any] = {}

    for point, entry in entries:
        node = document

        for key in point.config_keys[:-1]:
            node = node.setdefault(key, {})

        node.setdefault("hooks", []).append(entry)

    return document
