"""The gateway: lookout's only HTTP surface. It holds no state; JetStream does."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import prometheus_client as prom
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.gateway import sqreen
from shared import bus, schemas
from shared import logging as log
from shared.config import Settings

_log = log.get("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Bus:
    """The gateway's NATS connection, made in the background so HTTP answers at once
    (``/readyz`` says 503 and webhooks get 503 until it is up)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.provisioned = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        self.nc = await bus.connect(self.settings.effective_nats_url, "lookout-gateway")
        self.js = self.nc.jetstream(timeout=self.settings.publish_timeout)
        while not self.provisioned:
            try:
                await bus.provision(self.js, self.settings)
                self.provisioned = True
            except Exception as exc:
                _log.warning("provisioning failed, retrying", error=str(exc) or repr(exc))
                await asyncio.sleep(1.0)
        _log.info("connected to nats", url=bus.safe_url(self.settings.effective_nats_url))

    @property
    def usable(self) -> bool:
        return self.provisioned and self.nc is not None and self.nc.is_connected

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()


class Metrics:
    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        self.webhooks = prom.Counter(
            "lookout_webhooks",
            "Webhook requests by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.published = prom.Counter(
            "lookout_notifications_published",
            "Notifications stored in JetStream, by source and whether it was a duplicate",
            ["source", "duplicate"],
            registry=self.registry,
        )
        self.publish_seconds = prom.Histogram(
            "lookout_webhook_publish_seconds",
            "Time to store every message of one webhook request in JetStream",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
METRICS = web.AppKey("metrics", Metrics)

_json = msgspec.json.Encoder()


def json_response(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.Response(
        status=status, body=_json.encode(body), content_type="application/json", headers=headers
    )


def error(status: int, reason: str, **headers: str) -> web.Response:
    return json_response(status, {"error": reason}, **headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is JSON with a short reason; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return error(
            exc.status,
            reason or "error",
            **{k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
        )
    except Exception:
        _log.exception("unhandled error", path=request.path)
        return error(500, "internal error")


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex


async def sqreen_webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    metrics = request.app[METRICS]
    the_bus = request.app[BUS]
    request_id = _request_id(request)
    logger = _log.bind(request_id=request_id, source=sqreen.SOURCE)

    def reject(status: int, outcome: str, reason: str, **headers: str) -> web.Response:
        metrics.webhooks.labels(sqreen.SOURCE, outcome).inc()
        logger.info("webhook rejected", status=status, reason=reason)
        return error(status, reason, **{"X-Request-Id": request_id, **headers})

    if not settings.sqreen_secrets:
        return reject(503, "not_configured", "SQREEN_WEBHOOK_SECRET is not configured")
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        return reject(413, "too_large", f"body larger than {settings.max_body_bytes} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return reject(413, "too_large", f"body larger than {settings.max_body_bytes} bytes")
    try:
        sqreen.verify(body, request.headers.get(sqreen.SIGNATURE_HEADER), settings.sqreen_secrets)
    except sqreen.SignatureError as exc:
        return reject(401, "unauthorized", str(exc))
    try:
        notifications = [
            sqreen.parse(i, raw) for i, raw in enumerate(sqreen.split(body, settings.max_messages))
        ]
    except sqreen.PayloadError as exc:
        return reject(400, "bad_request", str(exc))
    if not the_bus.usable or the_bus.js is None:
        return reject(
            503, "unavailable", "message bus unavailable, retry later", **{"Retry-After": "5"}
        )

    js = the_bus.js
    headers = {
        schemas.SCHEMA_HEADER: schemas.NOTIFICATION_SCHEMA,
        schemas.REQUEST_ID_HEADER: request_id,
    }
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            js.publish(
                n.subject,
                schemas.encode(n),
                headers={**headers, "Nats-Msg-Id": n.msg_id},
                timeout=settings.publish_timeout,
            )
            for n in notifications
        ),
        return_exceptions=True,
    )
    metrics.publish_seconds.observe(time.perf_counter() - started)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        logger.warning(
            "publish failed",
            error=str(failures[0]) or type(failures[0]).__name__,
            failed=len(failures),
            total=len(results),
        )
        return reject(
            503,
            "unavailable",
            "message bus did not store every message, retry later",
            **{"Retry-After": "5"},
        )
    duplicates = sum(1 for r in results if not isinstance(r, BaseException) and r.duplicate)
    metrics.webhooks.labels(sqreen.SOURCE, "accepted").inc()
    metrics.published.labels(sqreen.SOURCE, "false").inc(len(results) - duplicates)
    if duplicates:
        metrics.published.labels(sqreen.SOURCE, "true").inc(duplicates)
    logger.info("webhook accepted", messages=len(results), duplicates=duplicates)
    return json_response(
        200,
        {
            "accepted": len(results),
            "duplicates": duplicates,
            "ids": [n.id for n in notifications],
        },
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


INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lookout</title></head>
<body><h1>lookout</h1>
<p>Security-alert relay and host lookups on NATS JetStream.</p>
<ul>
<li><code>POST /webhooks/sqreen</code> &mdash; Sqreen webhook (signed)</li>
<li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>,
<a href="/metrics">/metrics</a></li>
</ul></body></html>
"""


async def index(_request: web.Request) -> web.Response:
    return web.Response(text=INDEX, content_type="text/html")


async def _bus_context(app: web.Application) -> AsyncIterator[None]:
    app[BUS].start()
    yield
    await app[BUS].close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[errors_as_json])
    app[SETTINGS] = settings
    app[BUS] = Bus(settings)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_bus_context)
    app.router.add_post("/webhooks/sqreen", sqreen_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/", index)
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
