"""The gateway: lookout's only HTTP surface. It holds no state; JetStream does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import prometheus_client as prom
from aiohttp import web
from aiohttp.typedefs import Handler
from nats.js.api import PubAck

from services.gateway import apidocs, hardening, sqreen, ui
from services.gateway.lookups import api_app
from services.gateway.state import BUS, METRICS, SETTINGS, Bus, Metrics
from shared import bus, requestid, schemas
from shared import logging as log
from shared.config import Settings
from shared.routing import unrouted

_log = log.get("gateway")


_json = msgspec.json.Encoder()


def json_response(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.Response(
        status=status, body=_json.encode(body), content_type="application/json", headers=headers
    )


def error(status: int, reason: str, **headers: str) -> web.Response:
    return json_response(status, {"error": reason}, **headers)


async def sqreen_webhook(request: web.Request) -> web.Response:
    # One coroutine, no helper awaits on the hot path: every extra await layer costs a
    # resume per request (see BENCHMARKS.md).
    request_id = requestid.from_headers(request.headers)
    try:
        app = request.app
        settings = app[SETTINGS]
        metrics = app[METRICS]
        metrics.received(sqreen.SOURCE).inc()
        if not settings.sqreen_secrets:
            return _reject(
                request_id,
                metrics,
                503,
                "not_configured",
                "SQREEN_WEBHOOK_SECRET is not configured",
            )
        too_large = f"body larger than {settings.max_body_bytes} bytes"
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            return _reject(request_id, metrics, 413, "too_large", too_large)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _reject(request_id, metrics, 413, "too_large", too_large)
        try:
            sqreen.verify(body, request.headers.get(sqreen.SIGNATURE_HEADER), app[SQREEN_KEYS])
        except sqreen.SignatureError as exc:
            return _reject(request_id, metrics, 401, "unauthorized", str(exc))
        metrics.verified(sqreen.SOURCE).inc()
        try:
            raws = sqreen.split(body, settings.max_messages)
            notifications = [sqreen.parse(i, raw) for i, raw in enumerate(raws)]
        except sqreen.PayloadError as exc:
            return _reject(request_id, metrics, 400, "bad_request", str(exc))
        the_bus = app[BUS]
        js = the_bus.js
        if js is None or not the_bus.usable:
            return _reject(
                request_id,
                metrics,
                503,
                "unavailable",
                "message bus unavailable, retry later",
                retry_after="5",
            )

        headers = {
            schemas.SCHEMA_HEADER: schemas.NOTIFICATION_SCHEMA,
            schemas.REQUEST_ID_HEADER: request_id,
        }
        timeout = settings.publish_timeout
        started = time.perf_counter()
        results: list[PubAck | BaseException]
        if len(notifications) == 1:  # the common case: no task, no gather
            n = notifications[0]
            headers["Nats-Msg-Id"] = n.msg_id
            try:
                results = [
                    await js.publish(n.subject, schemas.encode(n), headers=headers, timeout=timeout)
                ]
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(
                *(
                    js.publish(
                        n.subject,
                        schemas.encode(n),
                        headers={**headers, "Nats-Msg-Id": n.msg_id},
                        timeout=timeout,
                    )
                    for n in notifications
                ),
                return_exceptions=True,
            )
        metrics.publish_seconds.observe(time.perf_counter() - started)
        return _answer(settings, request_id, metrics, notifications, results)
    except Exception:
        # Never a traceback to the sender; a 500 makes Sqreen retry later.
        _log.exception("unhandled error in webhook handler", request_id=request_id)
        return error(500, "internal error", **{"X-Request-Id": request_id})


# Outcome of a refused webhook → the reason label of lookout_webhooks_rejected_total.
_REJECT_REASONS = {
    "unauthorized": "bad_signature",
    "bad_request": "malformed",
    "too_large": "too_large",
    "unavailable": "bus_unavailable",
    "not_configured": "not_configured",
}


def _reject(
    request_id: str,
    metrics: Metrics,
    status: int,
    outcome: str,
    reason: str,
    retry_after: str | None = None,
) -> web.Response:
    metrics.webhook(sqreen.SOURCE, outcome).inc()
    metrics.rejected(sqreen.SOURCE, _REJECT_REASONS.get(outcome, outcome)).inc()
    _log.info(
        "webhook rejected",
        request_id=request_id,
        source=sqreen.SOURCE,
        status=status,
        reason=reason,
    )
    headers = {"X-Request-Id": request_id}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return error(status, reason, **headers)


def _count_unrouted(
    settings: Settings,
    metrics: Metrics,
    notifications: list[schemas.Notification],
    request_id: str,
) -> None:
    """Stored, but no target will deliver it: say so (never a silent drop)."""
    for n in notifications:
        if unrouted(settings.targets, n):
            metrics.unrouted.labels(n.source).inc()
            _log.warning(
                "notification matches no target",
                request_id=request_id,
                notification_id=n.id,
                source=n.source,
                type=n.type,
            )


def _answer(
    settings: Settings,
    request_id: str,
    metrics: Metrics,
    notifications: list[schemas.Notification],
    results: list[PubAck | BaseException],
) -> web.Response:
    """200 only when JetStream acknowledged every message; else 503 so the sender retries
    (the messages that were stored are deduplicated when they come again)."""
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        metrics.stream_publish(bus.NOTIFICATIONS, "failed").inc(len(failures))
        if len(failures) < len(results):
            stored = len(results) - len(failures)
            metrics.stream_publish(bus.NOTIFICATIONS, "stored").inc(stored)
        _log.warning(
            "publish failed",
            request_id=request_id,
            error=str(failures[0]) or type(failures[0]).__name__,
            failed=len(failures),
            total=len(results),
        )
        return _reject(
            request_id,
            metrics,
            503,
            "unavailable",
            "message bus did not store every message, retry later",
            retry_after="5",
        )
    duplicates = sum(1 for r in results if isinstance(r, PubAck) and r.duplicate)
    _count_unrouted(settings, metrics, notifications, request_id)
    metrics.webhook(sqreen.SOURCE, "accepted").inc()
    metrics.published(sqreen.SOURCE, False).inc(len(results) - duplicates)
    metrics.stream_publish(bus.NOTIFICATIONS, "stored").inc(len(results) - duplicates)
    if duplicates:
        metrics.published(sqreen.SOURCE, True).inc(duplicates)
        metrics.stream_publish(bus.NOTIFICATIONS, "duplicate").inc(duplicates)
    _log.info(
        "webhook accepted",
        request_id=request_id,
        source=sqreen.SOURCE,
        messages=len(results),
        duplicates=duplicates,
    )
    return json_response(
        200,
        {"accepted": len(results), "duplicates": duplicates, "ids": [n.id for n in notifications]},
        **{"X-Request-Id": request_id},
    )


async def healthz(_request: web.Request) -> web.Response:
    return json_response(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    the_bus = request.app[BUS]
    if not the_bus.usable or the_bus.js is None:
        return error(503, "not connected to NATS")
    if not await bus.streams_present(the_bus.js):
        return error(503, "JetStream streams missing")
    return json_response(200, {"status": "ready"})


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = prom.generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": prom.CONTENT_TYPE_LATEST})


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


SQREEN_KEYS: web.AppKey[Sequence[bytes]] = web.AppKey("sqreen_keys")
"""The webhook secrets as HMAC keys, encoded once."""


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[SQREEN_KEYS] = sqreen.keys(settings.sqreen_secrets)
    app[BUS] = Bus(settings)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_bus_context)
    hardening.setup(app)  # security headers on every response, /api rate limiter
    app.router.add_post("/webhooks/sqreen", sqreen_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    ui.setup(app)
    apidocs.setup(app)
    api = api_app()
    api.middlewares.insert(0, _api_metrics)  # outermost: sees what other middlewares answer
    app.add_subapp("/api/", api)
    return app


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.check_bind()
    if not settings.sqreen_secrets:
        _log.warning("SQREEN_WEBHOOK_SECRET is not set: /webhooks/sqreen answers 503")
    runner = web.AppRunner(create_app(settings), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, backlog=2048)
    await site.start()
    _log.info("gateway listening", url=f"http://{settings.http_host}:{settings.http_port}/")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
