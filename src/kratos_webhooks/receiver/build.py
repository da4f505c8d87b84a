"""Build the pipeline's routes and application from a validated configuration."""

from __future__ import annotations

import ssl

import httpx

from ..config import Config, RouteConfig
from ..errors import ConfigError
from ..observability.metrics import HttpMetrics
from ..secrets import KeySet, Secret
from ..signing import Signer
from ..tls.identity import ClientCertificateRules
from .access import AllowList, SourceResolver
from .authenticity import build_authenticator
from .delivery import DeliveryWorker
from .dispatch import HandlerTarget, InboxTarget, Target, UpstreamTarget
from .handlers import import_handler
from .limits import BodyLimits
from .pipeline import ReceiverApp, Route
from .ratelimit import RateLimits
from .state import StateStore

__all__ = ["build_app", "build_route", "upstream_client"]


def upstream_client(max_connections: int = 100) -> httpx.AsyncClient:
    """Make the HTTP client for sync upstream calls: no redirects, no proxies."""
    return httpx.AsyncClient(
        verify=ssl.create_default_context(),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=max_connections),
    )


def build_route(
    route: RouteConfig,
    *,
    default_max_body: int,
    store: StateStore,
    worker: DeliveryWorker,
    client: httpx.AsyncClient,
) -> Route:
    """Build one route's stages.

    Raises:
        ConfigError: a secret cannot be loaded or a handler cannot be imported.
    """
    verify = route.verify
    secrets = [Secret.load(reference) for reference in verify.secrets]
    authenticator = build_authenticator(
        verify.scheme,
        secrets,
        tolerance=verify.tolerance,
        name=verify.name,
        location=verify.in_,
    )
    limits = BodyLimits(
        max_body_bytes=route.max_body_bytes or default_max_body,
        gzip=route.gzip,
        max_inflated_bytes=route.max_inflated_bytes,
    )
    return Route(
        path=route.path,
        methods=route.methods,
        allow_list=AllowList(route.allow_from),
        limits=limits,
        authenticator=authenticator,
        target=_build_target(route, store=store, worker=worker, client=client),
        client_certificates=_client_certificate_rules(route),
    )


def _client_certificate_rules(route: RouteConfig) -> ClientCertificateRules | None:
    rules = route.client_certificates

    if rules is None:
        return None

    return ClientCertificateRules.build(rules.subjects, rules.sans, rules.fingerprints)


def _build_target(
    route: RouteConfig,
    *,
    store: StateStore,
    worker: DeliveryWorker,
    client: httpx.AsyncClient,
) -> Target:
    if route.mode == "async":
        return InboxTarget(store, worker)

    if route.handler is not None:
        try:
            handler = import_handler(route.handler)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import the handler of {route.path}",
                problems=[(f"route {route.path}: handler", str(exc))],
            ) from exc

        return HandlerTarget(handler, timeout=route.timeout)

    signer = None

    if route.upstream_secrets:
        signer = Signer(KeySet.load(route.upstream_secrets))

    assert route.upstream is not None  # the configuration checks ensure one
    return UpstreamTarget(route.upstream, client, timeout=route.timeout, signer=signer)


def build_app(
    config: Config,
    *,
    store: StateStore,
    worker: DeliveryWorker,
    metrics: HttpMetrics,
    client: httpx.AsyncClient,
) -> ReceiverApp:
    """Build the receiver's ASGI application.

    Raises:
        ConfigError: a route cannot be built.
    """
    server = config.server
    routes = [
        build_route(
            route,
            default_max_body=server.limits.max_body_bytes,
            store=store,
            worker=worker,
            client=client,
        )
        for route in config.routes
    ]
    rate_limits = RateLimits(
        overall=server.rate_limit.global_,
        per_source=server.rate_limit.per_source,
        per_route={route.path: route.rate_limit for route in config.routes},
    )
    return ReceiverApp(
        routes,
        store=store,
        sources=SourceResolver(server.trusted_proxies),
        rate_limits=rate_limits,
        metrics=metrics,
    )
