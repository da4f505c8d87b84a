"""Attacks on the target guard: metadata and link-local in every disguise.

No test here dials anything but loopback: configurations are only loaded, and
the guarded backend wraps a backend that records the addresses it is asked to
dial and refuses them all.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import pytest

from kratos_webhooks.errors import ConfigError
from kratos_webhooks.relay.config import parse_relay_config
from kratos_webhooks.relay.target import GuardedBackend, TargetPolicy

from .conftest import ENV, header_auth

pytestmark = pytest.mark.slow

REFUSED_LITERALS = [
    "http://169.254.169.254/latest",
    "http://169.254.170.2/v2/credentials",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b:1::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[::169.254.169.254]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    "http://192.0.0.192/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://127.0.0.2:9/",
    "http://[::1]:9/",
    "http://[::ffff:127.0.0.1]:9/",
    "http://10.0.0.1/",
    "http://[::ffff:10.0.0.1]/",
]


def _document(target: str, **outbound: Any) -> dict[str, Any]:
    return {
        "outbound": outbound,
        "storage": "sqlite:///relay.db",
        "routes": [
            {
                "path": "/hook",
                "target": target,
                "mode": "sync",
                "kratos_auth": header_auth(),
                "signing": {"secrets": ["env:RA_RELAY"]},
            }
        ],
    }


@pytest.mark.parametrize("target", REFUSED_LITERALS)
def test_literal_refused_at_load(target: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_relay_config(_document(target), environ=ENV)

    assert any(key == "routes[0].target" for key, _ in raised.value.problems)


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[fe80::1]/",
    ],
)
def test_metadata_refused_even_with_every_allowance(target: str) -> None:
    with pytest.raises(ConfigError):
        parse_relay_config(
            _document(target, allow_private_targets=True, allow_loopback_targets=True),
            environ=ENV,
        )


def test_environment_override_checked_too() -> None:
    environ = {**ENV, "KRATOS_WEBHOOKS_ROUTES__0__TARGET": "http://169.254.169.254/"}

    with pytest.raises(ConfigError):
        parse_relay_config(_document("https://receiver.example/hook"), environ=environ)


class Refusing(httpcore.AsyncNetworkBackend):
    """Records every address it is asked to dial, and dials none."""

    def __init__(self) -> None:
        self.dialled: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dialled.append(host)
        raise httpcore.ConnectError("refused by the test")


# Names that a typo, a DNS change or a rebinding attack could point anywhere.
EVIL_ANSWERS = {
    "metadata": ["169.254.169.254"],
    "mapped": ["::ffff:169.254.169.254"],
    "nat64": ["64:ff9b::a9fe:a9fe"],
    "sixtofour": ["2002:a9fe:a9fe::1"],
    "mixed": ["93.184.216.34", "169.254.169.254"],
    "mixed_last": ["2606:2800:220:1::1", "fe80::1"],
    "alibaba": ["100.100.100.200"],
    "aws_v6": ["fd00:ec2::254"],
    "unspecified": ["0.0.0.0"],  # noqa: S104 - an answer, never bound
    "loopback": ["127.0.0.1"],
    "empty": [],
}


@pytest.mark.parametrize("case", sorted(EVIL_ANSWERS))
def test_resolved_address_checked_before_dialling(case: str) -> None:
    answers = [ipaddress.ip_address(a) for a in EVIL_ANSWERS[case]]

    async def resolver(host: str, port: int) -> list[Any]:
        return answers

    inner = Refusing()
    backend = GuardedBackend(TargetPolicy(), resolver=resolver, backend=inner)

    async def scenario() -> None:
        pool = httpcore.AsyncConnectionPool(network_backend=backend)
        transport = httpx.AsyncHTTPTransport()
        transport._pool = pool
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError):
                await client.post("http://receiver.example/hook", content=b"{}")

    asyncio.run(scenario())
    assert inner.dialled == []


@pytest.mark.parametrize(
    "host",
    ["2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.169.254."],
)
def test_numeric_host_forms_resolve_then_refused(host: str) -> None:
    """Odd spellings of 169.254.169.254 go through the resolver, then the guard."""
    inner = Refusing()
    seen: list[str] = []

    async def resolver(name: str, port: int) -> list[Any]:
        seen.append(name)
        return [ipaddress.ip_address("169.254.169.254")]

    backend = GuardedBackend(TargetPolicy(), resolver=resolver, backend=inner)

    async def scenario() -> None:
        with pytest.raises((httpcore.ConnectError, httpcore.UnsupportedProtocol)):
            await backend.connect_tcp(host, 80)

    asyncio.run(scenario())
    assert inner.dialled == []
