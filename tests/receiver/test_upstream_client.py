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
    UpstreamClient,
    UpstreamError,
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
        self.port = 0

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1

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
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
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
