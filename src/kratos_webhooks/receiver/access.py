"""Stage 2: the source address of a request, and the route's allow-list (403).

Forwarding headers are believed only when the peer is a trusted proxy. They are
walked from the right, the entry the nearest proxy added, past every trusted
proxy; the first address that is not a trusted proxy is the source. Anything
left of it could have been written by the client and is ignored.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Final

from ..errors import ForbiddenSource

__all__ = ["AllowList", "SourceResolver", "address_text", "parse_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Header = tuple[bytes, bytes]

# One element of RFC 7239 `Forwarded`: the `for=` parameter, quoted or not.
_FORWARDED_FOR: Final = re.compile(r'(?:^|;)\s*for\s*=\s*("[^"]*"|[^;,\s]*)', re.I)


def parse_address(text: str) -> IPAddress | None:
    """Parse an address as found in headers, or return None when it is not one.

    Accepts `[v6]`, `[v6]:port` and `v4:port` forms; an IPv4-mapped IPv6 address
    becomes the IPv4 address, so that `::ffff:10.0.0.1` matches `10.0.0.0/8`.
    """
    return _parse_address(text)


# Most requests come from a few peers and proxies, and `ipaddress` parses in
# Python, so caching recent results takes the parse off nearly every request.
# The addresses are immutable, so sharing them is safe. The bound keeps made-up
# header values from growing the cache.
@functools.lru_cache(maxsize=4096)
def _parse_address(text: str) -> IPAddress | None:
    text = text.strip().strip('"')

    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None

    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped

    return address


@functools.lru_cache(maxsize=4096)
def address_text(address: IPAddress) -> str:
    """Return `str(address)`, remembered like the parse (it runs in Python too)."""
    return str(address)


def _networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


class SourceResolver:
    """Find the client address from the peer and the trusted proxies' headers."""

    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self._trusted = _networks(trusted_proxies)

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)

    def resolve(self, peer: str | None, headers: Iterable[Header]) -> IPAddress | None:
        """Return the source address, or None when the peer has no IP address."""
        address = parse_address(peer) if peer else None

        if address is None or not self._trusted or not self._is_trusted(address):
            return address

        for hop in reversed(_forwarded_chain(headers)):
            forwarded = parse_address(hop)

            # A hop that is not an address (`unknown`, an obfuscated name) ends
            # the walk: the last trusted proxy is the best source known.
            if forwarded is None:
                return address

            address = forwarded

            if not self._is_trusted(address):
                return address

        return address


def _forwarded_chain(headers: Iterable[Header]) -> list[str]:
    """Return the hops of `Forwarded`, else of `X-Forwarded-For`, left to right."""
    forwarded: list[str] = []
    x_forwarded_for: list[str] = []

    for name, value in headers:
        if name == b"forwarded":
            text = value.decode("latin-1")

            for element in text.split(","):
                match = _FORWARDED_FOR.search(element)
                forwarded.append(match.group(1) if match else "")
        elif name == b"x-forwarded-for":
            text = value.decode("latin-1")
            x_forwarded_for += [hop.strip() for hop in text.split(",")]

    return forwarded or x_forwarded_for


class AllowList:
    """A route's allowed source networks; empty allows every source."""

    def __init__(self, networks: Sequence[str]) -> None:
        self._networks = _networks(networks)

    def check(self, source: IPAddress | None) -> None:
        """Raise `ForbiddenSource` unless the source is in an allowed network."""
        if not self._networks:
            return

        if source is None or not any(source in net for net in self._networks):
            raise ForbiddenSource()
