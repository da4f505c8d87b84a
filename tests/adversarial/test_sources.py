"""Source spoofing: forwarding headers, IPv4-mapped IPv6 and allow-list edges."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from ..receiver.harness import (
    Certificates,
    ServeProcess,
    Upstream,
    base_config,
    serving,
    wait_until,
    write_config,
)
from .conftest import ENV, Ledger, api_headers, assert_error, event_body, route

pytestmark = pytest.mark.slow

TRUSTED_PROXY = "127.0.0.2"


def _client_from(address: str, certificates: Certificates) -> httpx.Client:
    transport = httpx.HTTPTransport(
        local_address=address, verify=certificates.client_context()
    )
    return httpx.Client(transport=transport, timeout=10.0)


def _post_from(
    address: str,
    certificates: Certificates,
    url: str,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    with _client_from(address, certificates) as client:
        return client.post(url, content=body, headers=headers)


UNTRUSTED_SPOOFS = [
    {"x-forwarded-for": "10.1.2.3"},
    {"x-forwarded-for": "10.1.2.3, 10.1.2.4"},
    {"forwarded": "for=10.1.2.3"},
    {"forwarded": 'for="[::ffff:10.1.2.3]"'},
    {"x-real-ip": "10.1.2.3"},
    {"x-forwarded-for": TRUSTED_PROXY, "forwarded": "for=10.1.2.3"},
]


@pytest.mark.parametrize("spoof", UNTRUSTED_SPOOFS)
@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.3"])
def test_spoof_from_untrusted_peer_rejected(
    receiver: ServeProcess,
    certificates: Certificates,
    ledger: Ledger,
    peer: str,
    spoof: dict[str, str],
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    headers = {**api_headers(), **spoof}
    url = receiver.url("/allow/remote")
    response = _post_from(peer, certificates, url, body, headers)

    assert_error(response, 403, "forbidden_source")


TRUSTED_CASES = [
    ({"x-forwarded-for": "10.1.2.3"}, True),
    ({"x-forwarded-for": "192.0.2.1, 10.1.2.3"}, True),
    ({"x-forwarded-for": f"10.1.2.3, {TRUSTED_PROXY}"}, True),
    ({"x-forwarded-for": "10.1.2.3, 192.0.2.1"}, False),
    ({"x-forwarded-for": "garbage"}, False),
    ({"x-forwarded-for": ""}, False),
    ({"x-forwarded-for": "10.1.2.3:4711"}, True),
    ({"forwarded": "for=10.1.2.3;proto=https"}, True),
    ({"forwarded": 'for="[::ffff:10.1.2.3]:443"'}, True),
    ({"forwarded": "for=unknown"}, False),
    ({"forwarded": "for=_hidden, for=10.1.2.3"}, True),
    ({"forwarded": "for=10.1.2.3, for=192.0.2.1"}, False),
    ({"forwarded": "by=10.1.2.3;for=192.0.2.1"}, False),
    ({"forwarded": "for=192.0.2.1", "x-forwarded-for": "10.1.2.3"}, False),
]


@pytest.mark.parametrize(("headers", "allowed"), TRUSTED_CASES)
def test_forwarding_from_trusted_proxy(
    receiver: ServeProcess,
    certificates: Certificates,
    upstream: Upstream,
    ledger: Ledger,
    headers: dict[str, str],
    allowed: bool,
) -> None:
    body = event_body(ledger)
    url = receiver.url("/allow/remote")

    if not allowed:
        ledger.refused(body)

    response = _post_from(
        TRUSTED_PROXY, certificates, url, body, {**api_headers(), **headers}
    )

    if allowed:
        assert response.status_code == 204, response.text
        assert upstream.requests_to("/up/allow/remote")[-1].body == body
    else:
        assert_error(response, 403, "forbidden_source")


@pytest.mark.parametrize(
    ("peer", "headers", "allowed"),
    [
        ("127.0.0.1", {}, True),
        ("127.0.0.3", {}, False),
        ("127.0.0.3", {"x-forwarded-for": "127.0.0.1"}, False),
        (TRUSTED_PROXY, {}, False),
        (TRUSTED_PROXY, {"x-forwarded-for": "127.0.0.1"}, True),
        (TRUSTED_PROXY, {"x-forwarded-for": "::ffff:127.0.0.1"}, True),
        (TRUSTED_PROXY, {"x-forwarded-for": "127.0.0.1, 127.0.0.5"}, False),
    ],
)
def test_local_allow_list_edges(
    receiver: ServeProcess,
    certificates: Certificates,
    ledger: Ledger,
    peer: str,
    headers: dict[str, str],
    allowed: bool,
) -> None:
    body = event_body(ledger)
    url = receiver.url("/allow/local")

    if not allowed:
        ledger.refused(body)

    response = _post_from(peer, certificates, url, body, {**api_headers(), **headers})

    if allowed:
        assert response.status_code == 202, response.text
        ledger.accept("/allow/local", response.json()["webhook_id"], body)
    else:
        assert_error(response, 403, "forbidden_source")


def test_allow_list_checked_before_credential(
    client: httpx.Client, receiver: ServeProcess, ledger: Ledger
) -> None:
    body = event_body(ledger)
    ledger.refused(body)
    headers = {"content-type": "application/json"}
    response = client.post(receiver.url("/allow/remote"), content=body, headers=headers)

    assert_error(response, 403, "forbidden_source")


@pytest.fixture(scope="module")
def ipv6_receiver(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
) -> Iterator[tuple[ServeProcess, Certificates]]:
    """A receiver on `[::1]`, with a certificate that names `::1`."""
    tmp_path: Path = tmp_path_factory.mktemp("ipv6")
    ca = trustme.CA()
    issued = ca.issue_cert("::1", "127.0.0.1")
    certificates = Certificates(tmp_path / "tls.crt", tmp_path / "tls.key", ca)
    issued.cert_chain_pems[0].write_to_path(certificates.cert_file)
    issued.private_key_pem.write_to_path(certificates.key_file)
    config = base_config(tmp_path, certificates)
    config["server"]["listen"] = "[::1]:0"
    config["server"]["trusted_proxies"] = ["::1/128"]
    api = {
        "scheme": "kratos-api-key",
        "secrets": ["env:ADV_API_KEY"],
        "name": "X-Webhook-Secret",
    }
    config["routes"] = [
        route("/v6/v4-only", upstream, "sync", api, allow_from=["127.0.0.1/32"]),
        route("/v6/v6-only", upstream, "sync", api, allow_from=["::1/128"]),
        route("/v6/remote", upstream, "sync", api, allow_from=["10.0.0.0/8"]),
    ]
    config_file = write_config(tmp_path / "receiver.yaml", config)

    with serving(config_file, ENV) as server:
        yield server, certificates


@pytest.mark.parametrize(
    ("path", "forwarded_for", "status"),
    [
        ("/v6/v6-only", None, 204),
        ("/v6/v4-only", None, 403),
        ("/v6/remote", None, 403),
        ("/v6/remote", "::ffff:10.9.9.9", 204),
        ("/v6/remote", "[::ffff:a09:909]:443", 204),
        ("/v6/v4-only", "::ffff:127.0.0.1", 204),
        ("/v6/v4-only", "::ffff:127.0.0.2", 403),
        ("/v6/v6-only", "::ffff:127.0.0.1", 403),
    ],
)
def test_ipv6_peer_and_mapped_forwarding(
    ipv6_receiver: tuple[ServeProcess, Certificates],
    path: str,
    forwarded_for: str | None,
    status: int,
) -> None:
    server, certificates = ipv6_receiver
    body = b'{"flow": {"id": "v6"}}'
    headers = api_headers()

    if forwarded_for is not None:
        headers["x-forwarded-for"] = forwarded_for

    url = f"https://[::1]:{server.https_port}{path}"

    with httpx.Client(verify=certificates.client_context(), timeout=10.0) as client:
        response = client.post(url, content=body, headers=headers)

    assert response.status_code == status, response.text

    if status == 403:
        assert_error(response, 403, "forbidden_source")


@pytest.fixture(scope="module")
def dual_stack_receiver(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
) -> Iterator[tuple[ServeProcess, Certificates]]:
    """A receiver on `[::]`, which IPv4 clients reach as ::ffff:a.b.c.d."""
    tmp_path: Path = tmp_path_factory.mktemp("dual-stack")
    ca = trustme.CA()
    issued = ca.issue_cert("::1", "127.0.0.1")
    certificates = Certificates(tmp_path / "tls.crt", tmp_path / "tls.key", ca)
    issued.cert_chain_pems[0].write_to_path(certificates.cert_file)
    issued.private_key_pem.write_to_path(certificates.key_file)
    config = base_config(tmp_path, certificates)
    config["server"]["listen"] = "[::]:0"
    api = {
        "scheme": "kratos-api-key",
        "secrets": ["env:ADV_API_KEY"],
        "name": "X-Webhook-Secret",
    }
    config["routes"] = [
        route("/dual/v4", upstream, "sync", api, allow_from=["127.0.0.1/32"]),
        route("/dual/v6", upstream, "sync", api, allow_from=["::1/128"]),
    ]
    config_file = write_config(tmp_path / "receiver.yaml", config)

    with serving(config_file, ENV) as server:
        yield server, certificates


@pytest.mark.parametrize(
    ("host", "path", "status"),
    [
        ("127.0.0.1", "/dual/v4", 204),
        ("127.0.0.1", "/dual/v6", 403),
        ("[::1]", "/dual/v6", 204),
        ("[::1]", "/dual/v4", 403),
    ],
)
def test_dual_stack_listener_sees_ipv4(
    dual_stack_receiver: tuple[ServeProcess, Certificates],
    host: str,
    path: str,
    status: int,
) -> None:
    server, certificates = dual_stack_receiver
    url = f"https://{host}:{server.https_port}{path}"

    with httpx.Client(verify=certificates.client_context(), timeout=10.0) as client:
        response = client.post(url, content=b'{"flow": {}}', headers=api_headers())

    assert response.status_code == status, response.text
    # The access line names the IPv4 client as 127.0.0.1, not ::ffff:127.0.0.1.
    source = "127.0.0.1" if host == "127.0.0.1" else "::1"
    expected = {"route": path, "source": source, "status": status}
    assert wait_until(
        lambda: any(
            line.get("event") == "request"
            and {key: line.get(key) for key in expected} == expected
            for line in list(server.log_lines)
        ),
        5,
    )
