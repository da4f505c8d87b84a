"""Run the receiver: uvicorn on its own sockets, TLS context and connection limits.

Three listeners share one event loop: HTTPS for the routes, an optional plain
HTTP listener that only redirects, and the admin listener. uvicorn's forwarded
header handling is off, because the pipeline resolves the source itself from
`trusted_proxies`. SIGTERM stops accepting, lets in-flight requests finish,
then stops the delivery worker and closes the store. SIGHUP, like a change of
the certificate, key or client CA files, reloads them for new connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
import ssl
from typing import Any, Final

import structlog
import uvicorn
from uvicorn.lifespan.off import LifespanOff

from ..config import Config
from ..config_checks import parse_listen
from ..errors import ConfigError
from ..heap import freeze_startup_heap
from ..observability.logging import SERVER_LOGGER
from ..observability.metrics import HttpMetrics, Metrics
from ..secrets import KeySet
from ..tls.managed import ManagedServerTls
from .admin import AdminApp
from .build import build_app, upstream_client
from .connection import ConnectionLimits, bounded_protocol
from .delivery import DeliveryTarget, DeliveryWorker, RetryPolicy
from .redirect import RedirectApp
from .state import StateStore

__all__ = ["HSTS", "Receiver", "StartError", "bind", "open_state"]

HSTS: Final = "max-age=31536000; includeSubDomains"
# Longer than the largest sync budget (25 s), so an in-flight call can finish.
GRACEFUL_SHUTDOWN_SECONDS: Final = 30.0
# How long a TLS close waits for the peer's close_notify; asyncio waits 30 s,
# and the connection keeps its slot under the cap until then.
TLS_SHUTDOWN_SECONDS: Final = 1.0
ADMIN_MAX_CONNECTIONS: Final = 32

log = structlog.stdlib.get_logger(SERVER_LOGGER)


class StartError(Exception):
    """The receiver could not start: a port, the TLS files or the store failed."""


class ListenerServer(uvicorn.Server):
    """A uvicorn server on a socket bound by the caller.

    Unlike uvicorn's own startup, it bounds the TLS handshake, which asyncio
    otherwise allows a full minute.
    """

    def __init__(self, config: uvicorn.Config, *, handshake_timeout: float) -> None:
        super().__init__(config)
        self._handshake_timeout = handshake_timeout

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config

        if not config.loaded:
            config.load()

        self.lifespan = LifespanOff(config)
        loop = asyncio.get_running_loop()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> Any:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state={},
                _loop=_loop,
            )

        self.servers = []

        for sock in sockets or []:
            server = await loop.create_server(
                create_protocol,
                sock=sock,
                ssl=config.ssl,
                backlog=config.backlog,
                ssl_handshake_timeout=self._handshake_timeout if config.ssl else None,
                ssl_shutdown_timeout=TLS_SHUTDOWN_SECONDS if config.ssl else None,
            )
            self.servers.append(server)

        self.started = True


def open_state(config: Config, metrics: Metrics) -> tuple[StateStore, DeliveryWorker]:
    """Make the store and the delivery worker for the async routes.

    Raises:
        ConfigError: the storage URL or an upstream secret is unusable.
    """
    store = StateStore.open(
        config.storage,
        idempotency_window=config.idempotency_window,
        metrics=metrics.state,
    )
    targets = {}

    for route in config.routes:
        if route.mode != "async" or route.upstream is None:
            continue

        delivery = route.delivery
        targets[route.path] = DeliveryTarget(
            url=route.upstream,
            keys=KeySet.load(route.upstream_secrets),
            timeout=delivery.timeout,
            retry=RetryPolicy(
                max_attempts=delivery.max_attempts,
                max_age=delivery.max_age,
                initial_backoff=delivery.initial_backoff,
                max_backoff=delivery.max_backoff,
            ),
        )

    metrics.watch_inbox(store)
    return store, DeliveryWorker(store, targets, metrics=metrics.delivery)


def bind(address: str) -> socket.socket:
    """Bind a listening TCP socket to `host:port`; `[::]` is dual-stack.

    Raises:
        StartError: the address cannot be bound.
    """
    host, port = parse_listen(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # `::` takes IPv4 clients too, as ::ffff:a.b.c.d, which the source check
    # maps back to a.b.c.d. Any other IPv6 address stays IPv6-only.
    dual_stack = host == "::" and socket.has_dualstack_ipv6()

    try:
        sock = socket.create_server(
            (host, port), family=family, backlog=2048, dualstack_ipv6=dual_stack
        )
    except OSError as exc:
        raise StartError(f"cannot listen on {address}: {exc.strerror}") from exc

    sock.setblocking(False)
    return sock


def _bound_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Receiver:
    """The running receiver: its listeners, store and delivery worker."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self._ready = False
        self.tls: ManagedServerTls | None = None
        self._redirect: RedirectApp | None = None
        self.addresses: dict[str, str] = {}

    def request_stop(self) -> None:
        """Begin the graceful stop; safe to call from a signal handler."""
        self._stop.set()

    def is_ready(self) -> bool:
        return self._ready

    async def run(self) -> None:
        """Serve until `request_stop`, then stop in order.

        Raises:
            StartError: a listener, the TLS context or the store failed to start.
        """
        config = self.config
        metrics = Metrics()

        try:
            tls = ManagedServerTls.load(config.server.tls, metrics=metrics.tls)
            self.tls = tls
            store, worker = open_state(config, metrics)
        except ConfigError as exc:
            raise StartError(_describe(exc)) from exc

        client = upstream_client()
        app = build_app(
            config, store=store, worker=worker, metrics=metrics.http, client=client
        )
        listeners = self._listeners(app, tls.context, metrics)
        sockets = [bind(address) for address, _, _ in listeners]

        if self._redirect is not None:
            # The configured port may be 0, so redirect to the bound one.
            self._redirect.https_port = sockets[0].getsockname()[1]

        try:
            await store.start()
        except Exception as exc:
            for sock in sockets:
                sock.close()

            raise StartError(f"cannot open the store: {exc}") from exc

        servers = [server for _, server, _ in listeners]

        for (_, server, name), sock in zip(listeners, sockets, strict=True):
            await server.startup([sock])
            self.addresses[name] = _bound_address(sock)
            log.info("listening", listener=name, address=self.addresses[name])

        await worker.start()
        self._install_signal_handlers(tls)
        watch_stop = asyncio.Event()
        watcher = asyncio.create_task(tls.watch(watch_stop))
        ticks = [asyncio.create_task(server.main_loop()) for server in servers]
        freeze_startup_heap()
        self._ready = True
        log.info("started", routes=len(config.routes))

        await self._stop.wait()
        self._ready = False
        log.info("stopping")

        for server in servers:
            server.should_exit = True

        watch_stop.set()
        await asyncio.gather(*ticks, watcher)
        front = [server for _, server, name in listeners if name != "admin"]
        await asyncio.gather(*(server.shutdown() for server in front))
        await worker.stop()
        await store.close()
        await client.aclose()
        await listeners[-1][1].shutdown()
        log.info("stopped")

    def _listeners(
        self, app: Any, context: ssl.SSLContext, metrics: Metrics
    ) -> list[tuple[str, ListenerServer, str]]:
        server = self.config.server
        limits = server.limits
        connection_limits = ConnectionLimits(
            header_timeout=limits.header_timeout,
            body_timeout=limits.body_timeout,
            max_header_bytes=limits.max_header_bytes,
            max_connections=limits.max_connections,
        )
        https = _listener(
            app,
            connection_limits,
            idle_timeout=limits.idle_timeout,
            context=context,
            headers=[("strict-transport-security", HSTS)],
            metrics=metrics.http,
        )
        result = [(server.listen, https, "https")]

        if server.http_listen is not None:
            host, port = parse_listen(server.listen)
            redirect_app = RedirectApp(port, _redirect_host(host))
            self._redirect = redirect_app
            redirect = _listener(redirect_app, connection_limits, idle_timeout=1.0)
            result.append((server.http_listen, redirect, "http"))

        admin_limits = ConnectionLimits(max_connections=ADMIN_MAX_CONNECTIONS)
        admin = _listener(
            AdminApp(metrics.registry, self.is_ready), admin_limits, idle_timeout=5.0
        )
        result.append((self.config.admin.listen, admin, "admin"))
        return result

    def _install_signal_handlers(self, tls: ManagedServerTls) -> None:
        loop = asyncio.get_running_loop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)

        loop.add_signal_handler(signal.SIGHUP, tls.reload)


def _describe(error: ConfigError) -> str:
    details = "; ".join(message for _, message in error.problems)
    return f"{error}: {details}" if details else str(error)


def _redirect_host(listen_host: str) -> str:
    """Return the host for redirects when the Host header is unusable."""
    try:
        unspecified = ipaddress.ip_address(listen_host).is_unspecified
    except ValueError:
        return listen_host

    return "localhost" if unspecified else listen_host


def _listener(
    app: Any,
    limits: ConnectionLimits,
    *,
    idle_timeout: float,
    context: ssl.SSLContext | None = None,
    headers: list[tuple[str, str]] | None = None,
    metrics: HttpMetrics | None = None,
) -> ListenerServer:
    config = uvicorn.Config(
        app,
        http=bounded_protocol(limits, metrics=metrics),
        lifespan="off",
        # No WebSocket: an Upgrade request is an ordinary request to the app.
        ws="none",
        proxy_headers=False,
        server_header=False,
        headers=headers or [],
        timeout_keep_alive=max(1, round(idle_timeout)),
        timeout_graceful_shutdown=round(GRACEFUL_SHUTDOWN_SECONDS),
        ssl_context_factory=(lambda _config, _default: context) if context else None,
        log_config=None,
        access_log=False,
    )
    return ListenerServer(config, handshake_timeout=limits.header_timeout)
