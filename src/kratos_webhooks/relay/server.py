"""Run the relay: one uvicorn listener, the forwarders, and the outbox worker.

The listener is plain HTTP on loopback by default, because the relay sits
beside Kratos; with `relay.tls` it serves HTTPS with the receiver's TLS
settings. Its certificate, key and client CA files are reloaded for new
connections when they change and on SIGHUP, as the receiver's are. A listener
beyond loopback without TLS is logged as a warning at start. SIGTERM stops
accepting, lets in-flight calls finish, then stops the worker and closes the
outbox.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from typing import Final

import structlog
import uvicorn

from ..credentials import ApiKeyCheck, BasicAuthCheck
from ..errors import ConfigError
from ..heap import freeze_startup_heap
from ..receiver.connection import ConnectionLimits, bounded_protocol
from ..receiver.delivery import DeliveryWorker
from ..receiver.limits import BodyLimits
from ..receiver.server import ListenerServer, StartError, bind
from ..receiver.state import StateStore
from ..secrets import KeySet, Secret
from ..signing import Signer
from ..tls.managed import ManagedServerTls
from .app import RELAY_LOGGER, RelayApp, RelayRoute
from .config import KratosAuthConfig, RelayConfig, RelayRouteConfig
from .forwarder import Forwarder, RelayClient, client_context, relay_client
from .outbox import open_outbox
from .target import Resolver, system_resolver

__all__ = ["Relay", "build_relay", "kratos_credential"]

# Longer than the largest sync budget (25 s), so an in-flight call can finish.
GRACEFUL_SHUTDOWN_SECONDS: Final = 30.0

log = structlog.stdlib.get_logger(RELAY_LOGGER)


def kratos_credential(auth: KratosAuthConfig) -> ApiKeyCheck | BasicAuthCheck:
    """Build the check of Kratos' credential for a route.

    Raises:
        ConfigError: a secret cannot be loaded, or the api key name is invalid.
    """
    secrets = [Secret.load(reference) for reference in auth.secrets]

    if auth.type == "basic_auth":
        if auth.user is not None:
            # Each secret holds only the password; the check compares user:password.
            secrets = [
                Secret(s.source, s.name, f"{auth.user}:{s.reveal()}") for s in secrets
            ]

        return BasicAuthCheck(secrets)

    return ApiKeyCheck(auth.name or "", secrets, location=auth.in_)


def _build_route(
    route: RelayRouteConfig,
    *,
    default_max_body: int,
    client: RelayClient,
) -> RelayRoute:
    signer = Signer(KeySet.load(route.signing.secrets), all_keys=route.signing.all_keys)
    return RelayRoute(
        path=route.path,
        methods=route.methods,
        sync=route.mode == "sync",
        credential=kratos_credential(route.kratos_auth),
        limits=BodyLimits(max_body_bytes=route.max_body_bytes or default_max_body),
        forwarder=Forwarder(route.target, signer, client, budget=route.timeout),
    )


def build_relay(
    config: RelayConfig, *, resolver: Resolver = system_resolver
) -> tuple[RelayApp, RelayClient, StateStore | None, DeliveryWorker | None]:
    """Build the relay's application, HTTP client and, for async routes, outbox.

    Raises:
        ConfigError: a secret, a certificate or the storage URL is unusable.
    """
    outbound = config.outbound
    context = client_context(
        ca_file=outbound.ca_file,
        client_cert_file=outbound.client_cert_file,
        client_key_file=outbound.client_key_file,
    )
    budget = max((route.timeout for route in config.routes), default=20.0)
    client = relay_client(
        context,
        outbound.policy,
        connect_timeout=outbound.connect_timeout,
        read_timeout=budget,
        max_connections=outbound.max_connections,
        resolver=resolver,
    )
    store: StateStore | None = None
    worker: DeliveryWorker | None = None

    if any(route.mode == "async" for route in config.routes):
        store, worker = open_outbox(config, context, resolver=resolver)

    routes = [
        _build_route(
            route,
            default_max_body=config.relay.limits.max_body_bytes,
            client=client,
        )
        for route in config.routes
    ]
    return RelayApp(routes, store=store, worker=worker), client, store, worker


class Relay:
    """The running relay: its listener, HTTP client, outbox and worker."""

    def __init__(
        self, config: RelayConfig, *, resolver: Resolver = system_resolver
    ) -> None:
        self.config = config
        self.address: str | None = None
        self._resolver = resolver
        self._stop = asyncio.Event()
        self._started = asyncio.Event()

    def request_stop(self) -> None:
        """Begin the graceful stop; safe to call from a signal handler."""
        self._stop.set()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self, *, sock: socket.socket | None = None) -> None:
        """Serve until `request_stop`, then stop in order.

        Raises:
            StartError: the listener, the TLS files or the outbox failed to start.
        """
        config = self.config

        # httpx logs every request with its full URL at INFO, query string
        # included; the relay's own request lines name the route instead.
        logging.getLogger("httpx").setLevel(logging.WARNING)

        for path, message in config.warnings:
            log.warning("config_warning", key=path, detail=message)

        try:
            tls = _load_tls(config)
            app, client, store, worker = build_relay(config, resolver=self._resolver)
        except ConfigError as exc:
            details = "; ".join(message for _, message in exc.problems)
            raise StartError(f"{exc}: {details}" if details else str(exc)) from exc

        server = _listener(app, config, tls.context if tls else None)
        sock = sock or bind(config.relay.listen)

        if store is not None:
            try:
                await store.start()
            except Exception as exc:
                sock.close()
                await client.aclose()
                raise StartError(f"cannot open the outbox: {exc}") from exc

        await server.startup([sock])
        host, port = sock.getsockname()[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.info(
            "listening",
            address=self.address,
            tls=tls is not None,
            routes=len(config.routes),
        )

        if worker is not None:
            await worker.start()

        self._install_signal_handlers(tls)
        watch_stop = asyncio.Event()
        watcher = asyncio.create_task(tls.watch(watch_stop)) if tls else None
        tick = asyncio.create_task(server.main_loop())
        freeze_startup_heap()
        self._started.set()
        log.info("started")

        await self._stop.wait()
        log.info("stopping")
        server.should_exit = True
        watch_stop.set()
        await tick

        if watcher is not None:
            await watcher

        await server.shutdown()

        if worker is not None:
            await worker.stop()

        if store is not None:
            await store.close()

        await client.aclose()
        log.info("stopped")

    def _install_signal_handlers(self, tls: ManagedServerTls | None) -> None:
        loop = asyncio.get_running_loop()

        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)

            if tls is not None:
                loop.add_signal_handler(signal.SIGHUP, tls.reload)
        except (RuntimeError, ValueError):
            # Not the main thread, as when tests run the relay in a thread.
            return


def _load_tls(config: RelayConfig) -> ManagedServerTls | None:
    """Load the listener's TLS files with the receiver's start checks.

    Raises:
        ConfigError: a file is unreadable, the certificate is expired or not
            yet valid, or the key does not match it.
    """
    if config.relay.tls is None:
        return None

    return ManagedServerTls.load(
        config.relay.tls, listener="relay", logger_name=RELAY_LOGGER
    )


def _listener(
    app: RelayApp, config: RelayConfig, context: ssl.SSLContext | None
) -> ListenerServer:
    limits = config.relay.limits
    connection_limits = ConnectionLimits(
        header_timeout=limits.header_timeout,
        body_timeout=limits.body_timeout,
        max_header_bytes=limits.max_header_bytes,
        max_connections=limits.max_connections,
    )
    uvicorn_config = uvicorn.Config(
        app,
        http=bounded_protocol(connection_limits, logger_name=RELAY_LOGGER),
        lifespan="off",
        # No WebSocket: an Upgrade request is an ordinary request to the app.
        ws="none",
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=max(1, round(limits.idle_timeout)),
        timeout_graceful_shutdown=round(GRACEFUL_SHUTDOWN_SECONDS),
        ssl_context_factory=(lambda _config, _default: context) if context else None,
        log_config=None,
        access_log=False,
    )
    return ListenerServer(uvicorn_config, handshake_timeout=limits.header_timeout)
