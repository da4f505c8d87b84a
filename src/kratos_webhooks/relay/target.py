"""The target guard: which addresses the relay may connect to, checked at connect time.

A target URL names a host; the guard resolves it once, checks every address
the resolver returns, and connects to a checked address. TLS still verifies the
certificate against the host name (SNI) and the Host header keeps the name, so
only the address is pinned. Because the check runs on the address actually
dialled, a DNS answer that changes between configuration and connection (DNS
rebinding, or a typo that resolves somewhere unexpected) cannot reach a cloud
metadata service.

Always rejected: link-local, cloud metadata, multicast, unspecified, broadcast
and other reserved ranges, also when embedded in IPv6 (IPv4-mapped
`::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
`2002::/16`) or tunnelled (Teredo, local-use NAT64). Private ranges (RFC 1918,
`fc00::/7`, `100.64.0.0/10`) need `allow_private`, loopback needs
`allow_loopback`; both default to rejected.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from ..receiver.upstream_client import UpstreamError

__all__ = [
    "Address",
    "Category",
    "GuardedResolver",
    "Resolver",
    "TargetPolicy",
    "TargetRejected",
    "classify",
    "system_resolver",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Category = Literal[
    "public",
    "private",
    "loopback",
    "link_local",
    "metadata",
    "multicast",
    "unspecified",
    "broadcast",
    "reserved",
]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[Address]]]

_net = ipaddress.ip_network

# Instance metadata services outside the link-local range, which is rejected
# whole anyway: Alibaba Cloud (100.100.100.200, inside the CGNAT range), AWS
# over IPv6 (fd00:ec2::254, inside fc00::/7), Oracle Cloud (192.0.0.192).
# Link-local ones (169.254.169.254 for AWS, GCP, Azure and OpenStack,
# 169.254.170.2 for ECS task credentials) are listed so logs name them.
_METADATA: Final = tuple(
    _net(text)
    for text in (
        "169.254.169.254/32",
        "169.254.170.2/32",
        "169.254.169.253/32",
        "100.100.100.200/32",
        "192.0.0.192/32",
        "fd00:ec2::254/128",
        "fd00:ec2::23/128",
    )
)

# Checked in order; the first match decides. Ranges are IANA special-purpose
# registry entries (RFC 6890 and its updates).
_RANGES: Final[tuple[tuple[Category, tuple[Network, ...]], ...]] = (
    ("unspecified", (_net("0.0.0.0/8"), _net("::/128"))),
    ("broadcast", (_net("255.255.255.255/32"),)),
    ("loopback", (_net("127.0.0.0/8"), _net("::1/128"))),
    ("link_local", (_net("169.254.0.0/16"), _net("fe80::/10"))),
    ("multicast", (_net("224.0.0.0/4"), _net("ff00::/8"))),
    (
        "private",
        (
            _net("10.0.0.0/8"),
            _net("172.16.0.0/12"),
            _net("192.168.0.0/16"),
            _net("100.64.0.0/10"),
            _net("fc00::/7"),
        ),
    ),
    (
        "reserved",
        (
            _net("192.0.0.0/24"),
            _net("192.0.2.0/24"),
            _net("198.18.0.0/15"),
            _net("198.51.100.0/24"),
            _net("203.0.113.0/24"),
            _net("240.0.0.0/4"),
            _net("100::/64"),
            _net("2001::/23"),
            _net("2001:db8::/32"),
            _net("3fff::/20"),
            _net("fec0::/10"),
            _net("64:ff9b:1::/48"),
        ),
    ),
)

_NAT64: Final = _net("64:ff9b::/96")
_IPV4_COMPATIBLE: Final = _net("::/96")
# Only 2000::/3 is allocated for global unicast; anything else left over is
# reserved by IANA.
_GLOBAL_UNICAST_V6: Final = _net("2000::/3")


class TargetRejected(UpstreamError):
    """The target resolves to an address the guard rejects.

    A connection error of the HTTP client, so a delivery records it as one.
    """

    def __init__(self, host: str, address: Address | None, category: str) -> None:
        where = f" ({address})" if address is not None else ""
        detail = f"target {host}{where} rejected: {category} address"
        super().__init__("ConnectError", detail)
        self.host = host
        self.address = address
        self.category = category


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address that an IPv6 address carries in a routable form."""
    if isinstance(address, ipaddress.IPv4Address):
        return None

    if address.ipv4_mapped is not None:
        return address.ipv4_mapped

    if address.sixtofour is not None:
        return address.sixtofour

    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)

    return None


def classify(address: Address) -> Category:
    """Return the category of an address, looking through embedded IPv4 forms."""
    inner = embedded_ipv4(address)

    if inner is not None:
        return classify(inner)

    if any(address in network for network in _METADATA):
        return "metadata"

    for category, networks in _RANGES:
        if any(address in network for network in networks):
            return category

    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "reserved"

    return "public"


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """The address categories, besides public ones, that the relay may connect to."""

    allow_private: bool = False
    allow_loopback: bool = False

    def allows(self, category: Category) -> bool:
        if category == "public":
            return True

        if category == "private":
            return self.allow_private

        if category == "loopback":
            return self.allow_loopback

        return False

    def check(self, host: str, address: Address) -> None:
        """Reject an address the policy does not allow.

        Raises:
            TargetRejected: the address is of a rejected category.
        """
        category = classify(address)

        if not self.allows(category):
            raise TargetRejected(host, address, category)

    def check_url(self, url: str) -> None:
        """Reject a URL whose host is an address literal the policy does not allow.

        Host names are checked only when they are resolved, at connect time.

        Raises:
            ValueError: the URL is not http:// or https:// with a host.
            TargetRejected: the host is a rejected address literal.
        """
        parts = urlsplit(url)

        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")

        address = _parse_address(parts.hostname)

        if address is not None:
            self.check(parts.hostname, address)


def _parse_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[Address]:
    """Resolve a host with the system resolver, without duplicates, in its order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[Address] = []

    for _family, _type, _proto, _name, sockaddr in infos:
        # A scope id (`%eth0`) only appears on link-local IPv6, rejected anyway.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])

        if address not in addresses:
            addresses.append(address)

    return addresses


class GuardedResolver:
    """Resolve a host once and return its addresses, each checked against the policy.

    Every resolved address must be allowed: a name that resolves to one public
    and one metadata address is rejected whole, rather than trusting the order.
    The relay's HTTP client dials only the addresses returned, so the check
    applies to the address actually connected to.
    """

    def __init__(
        self, policy: TargetPolicy, *, resolver: Resolver = system_resolver
    ) -> None:
        self.policy = policy
        self._resolve = resolver

    async def __call__(self, host: str, port: int) -> list[str]:
        """Return the addresses to dial for `host`, in the resolver's order.

        Raises:
            TargetRejected: an address is of a rejected category.
            UpstreamError: the host cannot be resolved, or resolves to nothing.
        """
        literal = _parse_address(host)

        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                raise UpstreamError("ConnectError", f"cannot resolve {host}") from exc

        if not addresses:
            raise UpstreamError("ConnectError", f"{host} resolves to no address")

        for address in addresses:
            self.policy.check(host, address)

        return [str(address) for address in addresses]
