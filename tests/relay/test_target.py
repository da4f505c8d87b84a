from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from kratos_webhooks.receiver.upstream_client import UpstreamClient, UpstreamError
from kratos_webhooks.relay.target import (
    Address,
    GuardedResolver,
    Resolver,
    TargetPolicy,
    TargetRejected,
    classify,
    embedded_ipv4,
    system_resolver,
)

CLASSIFIED = [
    # Public.
    ("93.184.215.14", "public"),
    ("8.8.8.8", "public"),
    ("2606:4700:4700::1111", "public"),
    # Metadata services, whatever range they sit in.
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("192.0.0.192", "metadata"),
    ("fd00:ec2::254", "metadata"),
    # The same metadata address in every IPv6 form that routes to it.
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:a9fe:a9fe", "metadata"),
    ("::169.254.169.254", "metadata"),
    ("64:ff9b::169.254.169.254", "metadata"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("2002:a9fe:a9fe::1", "metadata"),
    ("::ffff:100.100.100.200", "metadata"),
    # Link-local.
    ("169.254.1.1", "link_local"),
    ("fe80::1", "link_local"),
    ("febf:ffff::1", "link_local"),
    ("::ffff:169.254.0.1", "link_local"),
    # Loopback.
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::7f00:1", "loopback"),
    # Private.
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),
    ("100.127.255.254", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("::ffff:10.1.2.3", "private"),
    # Just outside the private ranges.
    ("172.32.0.1", "public"),
    ("100.128.0.1", "public"),
    ("11.0.0.1", "public"),
    # Multicast, unspecified, broadcast.
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("::ffff:224.0.0.251", "multicast"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - classified, never bound
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("255.255.255.255", "broadcast"),
    # Reserved and documentation ranges, tunnels and non-global IPv6.
    ("192.0.2.1", "reserved"),
    ("198.18.0.1", "reserved"),
    ("203.0.113.9", "reserved"),
    ("240.0.0.1", "reserved"),
    ("2001:db8::1", "reserved"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"),
    ("64:ff9b:1::a9fe:a9fe", "reserved"),
    ("fec0::1", "reserved"),
    ("100::1", "reserved"),
    ("4000::1", "reserved"),
]


@pytest.mark.parametrize(("text", "expected"), CLASSIFIED)
def test_classify(text: str, expected: str) -> None:
    assert classify(ipaddress.ip_address(text)) == expected


@pytest.mark.parametrize(
    ("text", "inner"),
    [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("64:ff9b::102:304", "1.2.3.4"),
        ("2002:102:304::", "1.2.3.4"),
        ("::1.2.3.4", "1.2.3.4"),
        ("::1", None),
        ("2606:4700::1", None),
        ("1.2.3.4", None),
    ],
)
def test_embedded_ipv4(text: str, inner: str | None) -> None:
    found = embedded_ipv4(ipaddress.ip_address(text))
    assert (str(found) if found else None) == inner


POLICIES = {
    "default": TargetPolicy(),
    "loopback": TargetPolicy(allow_loopback=True),
    "private": TargetPolicy(allow_private=True),
    "both": TargetPolicy(allow_private=True, allow_loopback=True),
}

ALLOWED_BY = [
    ("8.8.8.8", {"default", "loopback", "private", "both"}),
    ("127.0.0.1", {"loopback", "both"}),
    ("::1", {"loopback", "both"}),
    ("10.0.0.1", {"private", "both"}),
    ("fd12::1", {"private", "both"}),
    ("100.64.0.1", {"private", "both"}),
    # Never allowed, whatever the configuration sets.
    ("169.254.169.254", set()),
    ("fd00:ec2::254", set()),
    ("100.100.100.200", set()),
    ("64:ff9b::a9fe:a9fe", set()),
    ("fe80::1", set()),
    ("224.0.0.1", set()),
    ("0.0.0.0", set()),  # noqa: S104 - checked, never bound
    ("255.255.255.255", set()),
]


@pytest.mark.parametrize(("text", "allowed_by"), ALLOWED_BY)
def test_policy_allows(text: str, allowed_by: set[str]) -> None:
    address = ipaddress.ip_address(text)

    for name, policy in POLICIES.items():
        if name in allowed_by:
            policy.check("target.test", address)
        else:
            with pytest.raises(TargetRejected):
                policy.check("target.test", address)


@pytest.mark.parametrize(
    ("url", "rejected"),
    [
        ("https://hooks.example.com/x", False),
        ("https://8.8.8.8/x", False),
        ("http://169.254.169.254/latest/meta-data/", True),
        ("http://[::ffff:169.254.169.254]/", True),
        ("http://[fd00:ec2::254]/", True),
        ("http://127.0.0.1:8443/", True),
        ("http://10.0.0.5/", True),
    ],
)
def test_check_url_literals(url: str, rejected: bool) -> None:
    if rejected:
        with pytest.raises(TargetRejected):
            TargetPolicy().check_url(url)
    else:
        TargetPolicy().check_url(url)


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///path", "example.com"])
def test_check_url_rejects_non_http(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        TargetPolicy().check_url(url)


class _Hello(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = f"host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class ScriptedResolver:
    """A resolver that returns scripted addresses, one list per lookup."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers = list(answers)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[Address]:
        self.lookups.append(host)
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        return [ipaddress.ip_address(text) for text in answer]


def guarded_client(
    url: str,
    policy: TargetPolicy,
    resolver: Resolver = system_resolver,
    context: ssl.SSLContext | None = None,
) -> UpstreamClient:
    return UpstreamClient(
        url,
        ssl_context=context,
        resolver=GuardedResolver(policy, resolver=resolver),
        connect_timeout=5.0,
    )


async def _post(client: UpstreamClient) -> tuple[int, bytes]:
    try:
        response = await client.send("POST", b"{}", [], max_answer_bytes=1024)
    finally:
        await client.aclose()

    return response.status, response.body


def test_guard_connects_to_checked_address(local_server: ThreadingHTTPServer) -> None:
    port = local_server.server_address[1]
    resolver = ScriptedResolver(["127.0.0.1"])
    client = guarded_client(
        f"http://receiver.test:{port}/", TargetPolicy(allow_loopback=True), resolver
    )

    status, body = asyncio.run(_post(client))

    assert status == 200
    assert body == f"host=receiver.test:{port}".encode()
    assert resolver.lookups == ["receiver.test"]


def test_guard_tries_each_checked_address(local_server: ThreadingHTTPServer) -> None:
    port = local_server.server_address[1]
    # Nothing listens on 127.0.0.2 at this port, so the second address responds.
    resolver = ScriptedResolver(["127.0.0.2", "127.0.0.1"])
    client = guarded_client(
        f"http://receiver.test:{port}/", TargetPolicy(allow_loopback=True), resolver
    )

    status, _body = asyncio.run(_post(client))

    assert status == 200
    assert resolver.lookups == ["receiver.test"]


def test_guard_rejects_loopback_by_default(local_server: ThreadingHTTPServer) -> None:
    port = local_server.server_address[1]
    client = guarded_client(
        f"http://receiver.test:{port}/", TargetPolicy(), ScriptedResolver(["127.0.0.1"])
    )

    with pytest.raises(TargetRejected) as caught:
        asyncio.run(_post(client))

    assert caught.value.category == "loopback"
    assert caught.value.kind == "ConnectError"


def test_guard_rejects_after_dns_change(local_server: ThreadingHTTPServer) -> None:
    port = local_server.server_address[1]
    # The first lookup is harmless; the name then moves to the metadata service.
    resolver = ScriptedResolver(["127.0.0.1"], ["169.254.169.254"])
    client = guarded_client(
        f"http://receiver.test:{port}/",
        TargetPolicy(allow_loopback=True, allow_private=True),
        resolver,
    )

    async def scenario() -> BaseException | None:
        first = await client.send("POST", b"{}", [], max_answer_bytes=1024)
        assert first.status == 200
        # Close kept connections so the next request dials again.
        await client.aclose()

        try:
            await client.send("POST", b"{}", [], max_answer_bytes=1024)
        except TargetRejected as exc:
            return exc

        return None

    rejected = asyncio.run(scenario())

    assert isinstance(rejected, TargetRejected)
    assert rejected.category == "metadata"
    assert resolver.lookups == ["receiver.test", "receiver.test"]


def test_guard_rejects_mixed_answer(local_server: ThreadingHTTPServer) -> None:
    port = local_server.server_address[1]
    resolver = ScriptedResolver(["127.0.0.1", "::ffff:169.254.169.254"])
    client = guarded_client(
        f"http://receiver.test:{port}/", TargetPolicy(allow_loopback=True), resolver
    )

    with pytest.raises(TargetRejected) as caught:
        asyncio.run(_post(client))

    assert caught.value.category == "metadata"


def test_guard_rejects_address_literal() -> None:
    resolver = ScriptedResolver(["127.0.0.1"])
    client = guarded_client(
        "http://169.254.169.254/latest/meta-data/", TargetPolicy(), resolver
    )

    with pytest.raises(TargetRejected) as caught:
        asyncio.run(_post(client))

    assert caught.value.category == "metadata"
    # A literal is checked as it is, never looked up.
    assert resolver.lookups == []


def test_guard_keeps_name_for_tls() -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("receiver.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate.configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    class TlsServer(ThreadingHTTPServer):
        def get_request(self) -> tuple[object, object]:
            connection, address = super().get_request()
            return server_context.wrap_socket(connection, server_side=True), address

    server = TlsServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    loopback = TargetPolicy(allow_loopback=True)

    try:
        client = guarded_client(
            f"https://receiver.test:{port}/",
            loopback,
            ScriptedResolver(["127.0.0.1"]),
            client_context,
        )
        status, body = asyncio.run(_post(client))

        # The same address under a name the certificate does not carry.
        other = guarded_client(
            f"https://other.test:{port}/",
            loopback,
            ScriptedResolver(["127.0.0.1"]),
            client_context,
        )

        with pytest.raises(UpstreamError) as caught:
            asyncio.run(_post(other))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    assert status == 200
    assert body == f"host=receiver.test:{port}".encode()
    assert caught.value.kind == "ConnectError"
    assert not isinstance(caught.value, TargetRejected)


def test_guard_reports_unresolvable_host() -> None:
    async def fail(host: str, port: int) -> list[Address]:
        raise OSError("no such host")

    client = guarded_client("http://missing.test/", TargetPolicy(), fail)

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(_post(client))

    assert caught.value.kind == "ConnectError"
    assert "cannot resolve missing.test" in str(caught.value)
    assert not isinstance(caught.value, TargetRejected)


def test_guard_reports_empty_answer() -> None:
    client = guarded_client("http://empty.test/", TargetPolicy(), ScriptedResolver([]))

    with pytest.raises(UpstreamError, match="resolves to no address"):
        asyncio.run(_post(client))
