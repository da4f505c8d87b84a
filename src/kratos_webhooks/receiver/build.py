"""Build the pipeline's routes and application from a validated configuration."""

from __future__ import annotations

import ssl

import httpx

from ..config import Config, RouteConfig
from ..errors import ConfigError
from ..hooks import Handler, load_handler
from ..kratos.redaction import Redactor
from ..observability.metrics import HttpMetrics
from ..secrets import KeySet, Secret
from ..signing import Signer
from ..tls.identity import ClientCertificateRules
from .access import AllowList, SourceResolver
from .authenticity import build_authenticator
from .delivery import DeliveryWorker
from .dispatch import HandlerTarget, InboxTarget, Target, UpstreamTarget
from .limits import BodyLimits
from .payload import PayloadParser, load_traits_schema
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
        ConfigError: a secret, a handler or the traits schema cannot be loaded.
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
    handler = _load_handler(route)
    parser = build_parser(route, handler)
    limits = BodyLimits(
        max_body_bytes=route.max_body_bytes or default_max_body,
        gzip=route.gzip,
        max_inflated_bytes=route.max_inflated_bytes,
        form=parser.form,
    )
    redactor = Redactor(route.redact) if route.forward_redacted else None
    return Route(
        path=route.path,
        methods=route.methods,
        allow_list=AllowList(route.allow_from),
        limits=limits,
        authenticator=authenticator,
        parser=parser,
        target=_build_target(route, handler, store=store, worker=worker, client=client),
        redactor=redactor,
        client_certificates=_client_certificate_rules(route),
    )


def build_parser(route: RouteConfig, handler: Handler | None = None) -> PayloadParser:
    """Build a route's parse and validate stage.

    A handler registered for a hook point lends it to a route that names none,
    so its body is checked against that hook point's model. A handler with a
    payload type of its own takes a custom template's body, which is parsed
    as plain JSON and then converted into that type.

    Raises:
        ConfigError: the traits schema cannot be loaded.
    """
    hook = route.hook or (handler.hook if handler is not None else None)
    schema = None

    if route.traits_schema is not None:
        schema = load_traits_schema(route.traits_schema)

    kind = route.payload_kind
    custom = handler is not None and handler.payload_type is not None

    if route.payload is None and custom:
        kind = "json"

    return PayloadParser(
        kind,
        hook=hook,
        keep_document=handler is not None or route.forward_redacted,
        traits_schema=schema,
    )


def _load_handler(route: RouteConfig) -> Handler | None:
    if route.handler is None:
        return None

    try:
        return load_handler(route.handler, route.hook)
    except ConfigError as exc:
        raise ConfigError(
            f"cannot load the handler of {route.path}",
            problems=[(f"route {route.path}: handler", str(exc))],
        ) from exc


def _client_certificate_rules(route: RouteConfig) -> ClientCertificateRules | None:
    rules = route.client_certificates

    if rules is None:
        return None

    return ClientCertificateRules.build(rules.subjects, rules.sans, rules.fingerprints)


def _build_target(
    route: RouteConfig,
    handler: Handler | None,
    *,
    store: StateStore,
    worker: DeliveryWorker,
    client: httpx.AsyncClient,
) -> Target:
    if route.mode == "async":
        return InboxTarget(store, worker)

    if handler is not None:
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
