"""Attacks on the target guard: metadata and link-local in every disguise.

No test here dials anything: configurations are only loaded, and the guard is
wrapped by a resolver that records the addresses the guard lets through and
gives the client none of them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from kratos_webhooks.errors import ConfigError
from kratos_webhooks.receiver.upstream_client import UpstreamClient, UpstreamError
from kratos_webhooks.relay.config import parse_relay_config
from kratos_webhooks.relay.target import GuardedResolver, TargetPolicy, TargetRejected

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


class Recording:
    """Wraps the guard and records every address it lets the client dial.

    It returns none of them, so even an allowed address is never dialled.
    """

    def __init__(self, guard: GuardedResolver) -> None:
        self.guard = guard
        self.dialled: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.dialled += await self.guard(host, port)
        return []


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

    recording = Recording(GuardedResolver(TargetPolicy(), resolver=resolver))
    client = UpstreamClient("http://receiver.example/hook", resolver=recording)

    async def scenario() -> None:
        with pytest.raises(UpstreamError) as raised:
            await client.send("POST", b"{}", [], max_answer_bytes=1024)

        assert raised.value.kind == "ConnectError"

    asyncio.run(scenario())
    assert recording.dialled == []


@pytest.mark.parametrize(
    "host",
    ["2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.169.254."],
)
def test_numeric_host_forms_resolve_then_refused(host: str) -> None:
    """Odd spellings of 169.254.169.254 go through the resolver, then the guard."""
    seen: list[str] = []

    async def resolver(name: str, port: int) -> list[Any]:
        seen.append(name)
        return [ipaddress.ip_address("169.254.169.254")]

    recording = Recording(GuardedResolver(TargetPolicy(), resolver=resolver))

    async def scenario() -> None:
        with pytest.raises(TargetRejected):
            await recording(host, 80)

    asyncio.run(scenario())
    assert seen == [host]
    assert recording.dialled == []
