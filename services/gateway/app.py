"""The gateway: lookout's only HTTP surface. It holds no state; JetStream does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from services.gateway import apidocs, hardening, hooks, hosts, ops, sqreen, ui, webhook
from services.gateway.api import api_app
from services.gateway.state import BUS, METRICS, SETTINGS, Bus, Metrics
from services.gateway.stored import OUTCOME, Outcome
from shared.core import logging as log
from shared.core.service import cannot_listen
from shared.core.settings import Settings

_log = log.get("gateway")


@web.middleware
async def _api_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every ``/api/*`` request by route (its pattern, e.g.
    ``/api/v1/lookups/{id}``, never the raw path) and status. Only on the API sub-app: the
    webhook route pays nothing for it."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = (resource.canonical if resource is not None else None) or "unmatched"
        metrics = request.config_dict[METRICS]
        metrics.api(route, request.method, status).inc()
        metrics.api_latency(route, request.method).observe(time.perf_counter() - started)


async def _bus_context(app: web.Application) -> AsyncIterator[None]:
    app[BUS].start()
    yield
    await app[BUS].close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[BUS] = Bus(settings)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_bus_context)
    hardening.setup(app)  # security headers on every response, /api rate limiter
    hosts.setup(app, settings)  # the Host check (DNS rebinding); not on the webhook route
    app[OUTCOME] = Outcome(settings, app[METRICS])
    sqreen_webhook = webhook.SqreenWebhook(
        settings, app[BUS], app[METRICS], app[OUTCOME], hooks.sqreen_secrets(settings)
    )
    app.router.add_post(webhook.PATH, sqreen_webhook.handle)  # first: before /webhooks/{name}
    sources = hooks.SourceWebhooks(settings, app[BUS], app[METRICS], app[OUTCOME])
    app.router.add_post(hooks.PATH, sources.handle)
    ops.add_routes(app)  # /healthz, /readyz, /metrics
    ui.setup(app)
    apidocs.setup(app)
    api = api_app()
    api.middlewares.insert(0, _api_metrics)  # outermost: sees what other middlewares answer
    api.middlewares.insert(1, hosts.api_middleware)  # before authentication and rate limit
    app.add_subapp("/api/", api)
    return app


MIN_TOKEN: Final = 16
"""API tokens shorter than this are warned about at start."""

RUNNER_OPTIONS: Final[dict[str, Any]] = {"access_log": None, "auto_decompress": False}
"""How the gateway's server runs: no access log (the handlers log what matters), request
bodies never decompressed (a compressed one is refused, see hardening.encoded)."""


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.check_bind()
    configured = hooks.sqreen_secrets(settings)
    if not (sqreen.secrets(settings) if configured is None else configured):
        _log.warning("SQREEN_WEBHOOK_SECRET is not set: /webhooks/sqreen answers 503")
    short = [n for n, t in enumerate(settings.api_tokens, 1) if len(t.reveal()) < MIN_TOKEN]
    if short:  # the API checks a bearer token per request, throttled per address only
        _log.warning(
            f"LOOKOUT_API_TOKENS: a token shorter than {MIN_TOKEN} characters can be guessed; "
            "make each one random, e.g. `openssl rand -hex 32`",
            tokens=short,
        )
    runner = web.AppRunner(create_app(settings), handle_signals=False, **RUNNER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, backlog=2048)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise cannot_listen(
            settings.http_host, settings.http_port, exc, "LOOKOUT_HTTP_PORT"
        ) from None
    _log.info("gateway listening", url=f"http://{settings.http_host}:{settings.http_port}/")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
