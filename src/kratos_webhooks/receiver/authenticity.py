"""Stage 5: authenticate the raw body and headers by the route's scheme (401)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..credentials import ApiKeyCheck, BasicAuthCheck, JsonnetMacCheck
from ..secrets import KeySet, Secret
from ..signing import Verifier

__all__ = ["Authenticated", "Authenticator", "build_authenticator"]

Header = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Authenticated:
    """What authentication established.

    `webhook_id` is the verified Standard Webhooks message id, if the scheme has
    one. `payload` contains the bytes to parse: the body itself, or the payload
    string a Jsonnet MAC envelope carries. `headers_trusted` tells whether the
    credential vouches for the request's headers as much as for its body.
    """

    webhook_id: str | None
    payload: bytes
    headers_trusted: bool = False


class Authenticator:
    """One route's check; `authenticate` raises a `VerificationError` on failure."""

    def authenticate(self, body: bytes, headers: list[Header]) -> Authenticated:
        raise NotImplementedError


class StandardWebhooksAuthenticator(Authenticator):
    def __init__(self, secrets: Sequence[Secret], tolerance: int) -> None:
        self._verifier = Verifier(KeySet.from_secrets(secrets), tolerance=tolerance)

    def authenticate(self, body: bytes, headers: list[Header]) -> Authenticated:
        delivery = self._verifier.verify(body, headers)
        return Authenticated(delivery.msg_id, body)


class HeaderCredentialAuthenticator(Authenticator):
    def __init__(self, check: ApiKeyCheck | BasicAuthCheck) -> None:
        self._check = check

    def authenticate(self, body: bytes, headers: list[Header]) -> Authenticated:
        self._check.verify(headers)
        # Whoever holds an API key or a password can send any headers and any
        # body, so Kratos' trigger id is as trustworthy as the body here.
        return Authenticated(None, body, headers_trusted=True)


class JsonnetMacAuthenticator(Authenticator):
    def __init__(self, secrets: Sequence[Secret]) -> None:
        self._check = JsonnetMacCheck(secrets)

    def authenticate(self, body: bytes, headers: list[Header]) -> Authenticated:
        payload = self._check.verify_body(body)
        return Authenticated(None, payload.encode("utf-8"))


def build_authenticator(
    scheme: str,
    secrets: Sequence[Secret],
    *,
    tolerance: int,
    name: str | None = None,
    location: str = "header",
) -> Authenticator:
    """Build the check for a scheme named in the configuration.

    Raises:
        ConfigError: a secret or the api key name is unusable.
    """
    if scheme == "standard-webhooks":
        return StandardWebhooksAuthenticator(secrets, tolerance)

    if scheme == "kratos-api-key":
        where: Literal["header", "cookie"] = (
            "cookie" if location == "cookie" else "header"
        )
        return HeaderCredentialAuthenticator(
            ApiKeyCheck(name or "", secrets, location=where)
        )

    if scheme == "kratos-basic":
        return HeaderCredentialAuthenticator(BasicAuthCheck(secrets))

    if scheme == "kratos-jsonnet-mac":
        return JsonnetMacAuthenticator(secrets)

    raise ValueError(f"unknown verification scheme {scheme!r}")
