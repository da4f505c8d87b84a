from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trustme

from kratos_webhooks.errors import ConfigError
from kratos_webhooks.receiver.upstream_client import (
    MAX_ANSWER_BYTES,
    AnswerTooLarge,
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
)

Answer = Callable[[bytes], bytes | None]


class RawServer:
    """A loopback server that reads one request at a time and writes `answer(request)`.

    When `answer` returns None, the server closes the connection without a response.
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.close_after_answer = False
        self.port = 0

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)

        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0

                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")

                    if name.lower() == b"content-length":
                        length = int(value)

                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.answer(request)

                if answer is None:
                    break

                writer.write(answer)
                await writer.drain()

                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def raw_server(
    answer: Answer, context: ssl.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    state = RawServer(answer)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=context)
    state.port = server.sockets[0].getsockname()[1]

    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def fixed(answer: bytes) -> Answer:
    return lambda _request: answer


NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def run(coroutine: object) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


def test_request_carries_body_headers_and_host() -> None:
    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/hook?x=1")
            status = await client.post(b'{"a":1}', {"webhook-id": "msg_1"})
            await client.aclose()

        assert status == 204
        (request,) = server.requests
        head, _, body = request.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /hook?x=1 HTTP/1.1"
        assert f"host: 127.0.0.1:{server.port}".encode() in lines
        assert b"webhook-id: msg_1" in lines
        assert b"content-length: 7" in lines
        assert body == b'{"a":1}'

    run(main())


def test_connection_is_kept_alive() -> None:
    async def main() -> None:
        answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"

        async with raw_server(fixed(answer)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")

            for _ in range(5):
                assert await client.post(b"{}", {}) == 200

            await client.aclose()

        assert len(server.requests) == 5
        assert server.connections == 1

    run(main())


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (MAX_ANSWER_BYTES + 1)
        + b"x" * (MAX_ANSWER_BYTES + 1),
    ],
    ids=["connection-close", "http-1.0", "oversized-body"],
)
def test_connection_not_reused_when_it_cannot_be(answer: bytes) -> None:
    async def main() -> None:
        async with raw_server(fixed(answer)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")
            assert await client.post(b"{}", {}) == 200
            assert await client.post(b"{}", {}) == 200
            await client.aclose()

        assert server.connections == 2

    run(main())


def test_chunked_answer_is_drained_and_connection_reused() -> None:
    async def main() -> None:
        answer = (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
        )

        async with raw_server(fixed(answer)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")
            assert await client.post(b"{}", {}) == 200
            assert await client.post(b"{}", {}) == 200
            await client.aclose()

        assert server.connections == 1

    run(main())


def test_interim_answer_is_skipped() -> None:
    async def main() -> None:
        answer = b"HTTP/1.1 100 Continue\r\n\r\n" + NO_CONTENT

        async with raw_server(fixed(answer)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")
            assert await client.post(b"{}", {}) == 204
            await client.aclose()

    run(main())


def test_redirect_is_returned_not_followed() -> None:
    async def main() -> None:
        answer = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /x\r\n\r\n"

        async with raw_server(fixed(answer)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")
            assert await client.post(b"{}", {}) == 307
            await client.aclose()

        assert len(server.requests) == 1

    run(main())


def test_connection_closed_by_server_is_replaced() -> None:
    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")
            assert await client.post(b"{}", {}) == 204
            # The server now closes every connection after reading a request.
            server.answer = lambda _request: None
            error = None

            try:
                await client.post(b"{}", {})
            except UpstreamError as exc:
                error = exc

            server.answer = fixed(NO_CONTENT)
            assert await client.post(b"{}", {}) == 204
            await client.aclose()

        assert error is not None
        assert error.kind == "ReadError"

    run(main())


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: " + b"y" * 70_000 + b"\r\n\r\n",
    ],
    ids=["no-version", "bad-code", "bad-length", "huge-header"],
)
def test_malformed_answer_is_an_error(answer: bytes) -> None:
    async def main() -> None:
        async with raw_server(fixed(answer)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")

            with pytest.raises(UpstreamError) as caught:
                await client.post(b"{}", {})

            await client.aclose()

        assert caught.value.kind == "RemoteProtocolError"

    run(main())


def test_refused_connection_is_a_connect_error() -> None:
    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            port = server.port

        client = UpstreamClient(f"http://127.0.0.1:{port}/")

        with pytest.raises(UpstreamError) as caught:
            await client.post(b"{}", {})

        assert str(caught.value).startswith("ConnectError")

    run(main())


def test_line_break_in_header_is_refused() -> None:
    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")

            with pytest.raises(ValueError, match="contains a line break"):
                await client.post(b"{}", {"content-type": "a\r\nx-injected: 1"})

        assert server.requests == []

    run(main())


def test_cancelled_request_leaves_no_connection() -> None:
    async def main() -> None:
        async with raw_server(lambda _request: b"") as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")

            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.post(b"{}", {})

            server.answer = fixed(NO_CONTENT)
            assert await client.post(b"{}", {}) == 204
            await client.aclose()

        assert server.connections == 2

    run(main())


def test_https_verifies_the_certificate() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT), server_context) as server:
            url = f"https://127.0.0.1:{server.port}/"
            client = UpstreamClient(url, ssl_context=trusting)
            assert await client.post(b"{}", {}) == 204
            await client.aclose()

            stranger = UpstreamClient(url, ssl_context=ssl.create_default_context())

            with pytest.raises(UpstreamError) as caught:
                await stranger.post(b"{}", {})

        assert caught.value.kind == "ConnectError"

    run(main())


@pytest.mark.parametrize(
    "url", ["ftp://example.test/", "http:///path", "http://example.test:99999/"]
)
def test_unusable_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        UpstreamClient(url)


async def send(client: UpstreamClient, limit: int | None = 1024) -> UpstreamResponse:
    return await client.send("POST", b"{}", [], max_answer_bytes=limit)


@pytest.mark.parametrize(
    ("answer", "close", "reused"),
    [
        (
            b"HTTP/1.1 422 Unprocessable\r\ncontent-type: application/json;"
            b' charset=utf-8\r\ncontent-length: 10\r\n\r\n{"a": "b"}',
            False,
            True,
        ),
        (
            b"HTTP/1.1 422 Unprocessable\r\ncontent-type: application/json;"
            b" charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
            b'4\r\n{"a"\r\n6;x=y\r\n: "b"}\r\n0\r\n\r\n',
            False,
            True,
        ),
        (
            b"HTTP/1.1 422 Unprocessable\r\ncontent-type: application/json;"
            b' charset=utf-8\r\n\r\n{"a": "b"}',
            True,
            False,
        ),
    ],
    ids=["length", "chunked", "until-close"],
)
def test_send_returns_status_headers_and_body(
    answer: bytes, close: bool, reused: bool
) -> None:
    async def main() -> None:
        async with raw_server(fixed(answer)) as server:
            server.close_after_answer = close
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")

            for _ in range(2):
                response = await send(client)
                assert response.status == 422
                assert response.body == b'{"a": "b"}'
                assert response.header(b"content-type") == (
                    "application/json; charset=utf-8"
                )
                assert response.header(b"retry-after") is None

            await client.aclose()

        assert server.connections == (1 if reused else 2)

    run(main())


@pytest.mark.parametrize(
    ("answer", "close"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1025\r\n\r\n" + b"x" * 1025, False),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            + b"400\r\n"
            + b"x" * 1024
            + b"\r\n1\r\nx\r\n0\r\n\r\n",
            False,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1025, True),
    ],
    ids=["length", "chunked", "until-close"],
)
def test_send_rejects_longer_body(answer: bytes, close: bool) -> None:
    async def main() -> None:
        async with raw_server(fixed(answer)) as server:
            server.close_after_answer = close
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")

            with pytest.raises(AnswerTooLarge) as caught:
                await send(client, limit=1024)

            # The connection is dropped, not read to its end.
            assert client._idle == []
            await client.aclose()

        assert caught.value.kind == "AnswerTooLarge"

    run(main())


def test_send_keeps_method_and_skips_body_of_head() -> None:
    async def main() -> None:
        answer = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"

        async with raw_server(fixed(answer)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/hook")
            put = await client.send("HEAD", b"", [], max_answer_bytes=1024)
            await client.aclose()

        assert put.status == 200
        assert put.body == b""
        assert server.requests[0].startswith(b"HEAD /hook HTTP/1.1\r\n")

    run(main())


@pytest.mark.parametrize("method", ["post", "GET /x HTTP/1.1\r\n", ""])
def test_send_rejects_invalid_method(method: str) -> None:
    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")

            with pytest.raises(ValueError, match="upper-case token"):
                await client.send(method, b"{}", [], max_answer_bytes=1024)

        assert server.requests == []

    run(main())


def test_redirect_is_sent_back_not_followed() -> None:
    async def main() -> None:
        answer = (
            b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\n"
            b"content-length: 0\r\n\r\n"
        )

        async with raw_server(fixed(answer)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")
            response = await send(client)
            await client.aclose()

        assert response.status == 302
        assert response.header(b"location") == "http://169.254.169.254/"
        assert len(server.requests) == 1

    run(main())


def test_resolver_address_keeps_host_name() -> None:
    lookups: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append((host, port))
        return ["127.0.0.1"]

    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            client = UpstreamClient(
                f"http://receiver.test:{server.port}/", resolver=resolver
            )
            assert (await send(client)).status == 204
            assert (await send(client)).status == 204
            await client.aclose()

        assert lookups == [("receiver.test", server.port)]
        assert f"host: receiver.test:{server.port}".encode() in server.requests[0]

    run(main())


def test_resolver_failure_stops_the_request() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        raise UpstreamError("ConnectError", f"{host} is not allowed")

    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            client = UpstreamClient(
                f"http://receiver.test:{server.port}/", resolver=resolver
            )

            with pytest.raises(UpstreamError, match=r"receiver\.test is not allowed"):
                await send(client)

        assert server.connections == 0

    run(main())


def _mutual_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    return context


def test_client_certificate_is_presented() -> None:
    ca = trustme.CA()
    with_certificate = ssl.create_default_context()
    ca.configure_trust(with_certificate)
    ca.issue_cert("relay.internal").configure_cert(with_certificate)
    without = ssl.create_default_context()
    ca.configure_trust(without)

    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT), _mutual_tls(ca)) as server:
            url = f"https://127.0.0.1:{server.port}/"
            client = UpstreamClient(url, ssl_context=with_certificate)
            assert (await send(client)).status == 204
            await client.aclose()

            anonymous = UpstreamClient(url, ssl_context=without)

            with pytest.raises(UpstreamError) as caught:
                await send(anonymous)

            await anonymous.aclose()

        # TLS 1.3 refuses the missing certificate after the handshake, so the
        # refusal arrives as the connection ends instead of the response.
        assert caught.value.kind in ("ConnectError", "ReadError")
        assert len(server.requests) == 1

    run(main())


def test_context_minimum_tls_version_holds() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    server_context.minimum_version = ssl.TLSVersion.TLSv1_2
    server_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.minimum_version = ssl.TLSVersion.TLSv1_3

    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT), server_context) as server:
            client = UpstreamClient(
                f"https://127.0.0.1:{server.port}/", ssl_context=client_context
            )

            with pytest.raises(UpstreamError) as caught:
                await send(client)

        assert caught.value.kind == "ConnectError"

    run(main())


def test_connect_timeout_bounds_a_stalled_handshake() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(
        _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # The server accepts TCP but never replies to the TLS ClientHello.
        accepted.append(writer)

    async def main() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UpstreamClient(f"https://127.0.0.1:{port}/", connect_timeout=0.3)
        started = asyncio.get_running_loop().time()

        try:
            with pytest.raises(UpstreamError) as caught:
                await send(client)
        finally:
            for writer in accepted:
                writer.close()

            server.close()
            await server.wait_closed()

        assert caught.value.kind == "ConnectTimeout"
        assert asyncio.get_running_loop().time() - started < 2.0
        assert len(accepted) == 1

    run(main())


def test_read_timeout_bounds_a_silent_server() -> None:
    async def main() -> None:
        async with raw_server(lambda _request: b"") as server:
            client = UpstreamClient(
                f"http://127.0.0.1:{server.port}/", read_timeout=0.3
            )

            with pytest.raises(UpstreamError) as caught:
                await send(client)

            server.answer = fixed(NO_CONTENT)
            assert (await send(client)).status == 204
            await client.aclose()

        assert caught.value.kind == "ReadTimeout"
        # The timed-out connection is never used again.
        assert server.connections == 2

    run(main())


def test_slots_bound_open_connections() -> None:
    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            client = UpstreamClient(
                f"http://127.0.0.1:{server.port}/",
                slots=asyncio.Semaphore(2),
                max_idle=2,
            )
            statuses = await asyncio.gather(*(send(client) for _ in range(10)))
            await client.aclose()

        assert [response.status for response in statuses] == [204] * 10
        # Without the bound, each of the ten would open its own connection.
        assert server.connections <= 2
        assert server.most_open <= 2
        assert len(server.requests) == 10

    run(main())


def test_stale_idle_connections_are_closed() -> None:
    async def main() -> None:
        async with raw_server(fixed(NO_CONTENT)) as server:
            client = UpstreamClient(f"http://127.0.0.1:{server.port}/")
            await asyncio.gather(send(client), send(client), send(client))
            assert len(client._idle) == 3
            # The two oldest have been idle past the servers' keep-alive time.
            client._idle[0].idle_since -= 60
            client._idle[1].idle_since -= 60
            await send(client)

            assert len(client._idle) == 1
            await client.aclose()

        assert server.connections == 3

    run(main())
