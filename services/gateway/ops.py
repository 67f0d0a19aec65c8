"""``/healthz``, ``/readyz`` and ``/metrics``: what orchestrators' probes and Prometheus
call. Public (no token) and outside the ``Host`` check: machine endpoints, reached by
address, with nothing but counters in them."""

from __future__ import annotations

import prometheus_client as prom
from aiohttp import web

from services.gateway import state as gateway_state
from services.gateway import targets_api
from services.gateway.answers import api_error, api_json
from services.gateway.apispec import JSON, Operations, answer, json_content
from services.gateway.state import BUS, METRICS, SETTINGS
from shared.core import logging as log

_log = log.get("gateway")

DOCS = Operations("operations", "Health, readiness, metrics.")


def _status_schema(value: str) -> JSON:
    return {
        "type": "object",
        "properties": {"status": {"const": value}},
        "required": ["status"],
    }


@DOCS.get(
    "/healthz",
    DOCS.public(
        "healthz",
        "Liveness",
        "The process is alive (says nothing about NATS).",
        {"200": {"description": "Alive.", "content": json_content(_status_schema("ok"))}},
    ),
)
async def healthz(_request: web.Request) -> web.Response:
    return api_json(200, {"status": "ok"})


@DOCS.get(
    "/readyz",
    DOCS.public(
        "readyz",
        "Readiness",
        "Connected to NATS, the JetStream API answers, its streams exist, and every stream "
        "the API reads answers a direct get (the reads make no consumer): a bus that would "
        "refuse the API's work is not ready.",
        {
            "200": {"description": "Ready.", "content": json_content(_status_schema("ready"))},
            "503": answer(
                "Not ready, with the reason: not connected to NATS, a stream missing, or "
                "JetStream refusing or not answering reads."
            ),
        },
    ),
)
async def readyz(request: web.Request) -> web.Response:
    """200 once the bus is connected, provisioned and serving: 503 with the reason while it
    is not, or while JetStream refuses the work the gateway gives it (see
    :func:`services.gateway.state.refusal`)."""
    the_bus = request.app[BUS]
    ready = the_bus.publishing and the_bus.usable
    if not ready or the_bus.js is None or the_bus.reader is None:
        return api_error(503, "not connected to NATS")
    refused = await gateway_state.refusal(the_bus.js, the_bus.reader)
    if refused is not None:
        return api_error(503, refused)
    return api_json(200, {"status": "ready"})


@DOCS.get(
    "/metrics",
    DOCS.public(
        "metrics",
        "Prometheus metrics",
        "Prometheus text exposition format.",
        {
            "200": {
                "description": "The metrics.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    ),
)
async def metrics_endpoint(request: web.Request) -> web.Response:
    await _target_health(request)
    body = prom.generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": prom.CONTENT_TYPE_LATEST})


async def _target_health(request: web.Request) -> None:
    """The targets' paused gauges, from the sinks' shared health records (left as they
    were when the bus does not answer)."""
    the_bus = request.app[BUS]
    if not the_bus.usable or the_bus.reader is None:
        return
    try:
        records = await targets_api.healths(the_bus.reader)
    except Exception as exc:
        _log.debug("target health not read for /metrics", error=str(exc) or repr(exc))
        return
    metrics = request.app[METRICS]
    for item in targets_api.describe(request.app[SETTINGS], records):
        metrics.target_paused.labels(item["name"]).set(1 if item["state"] == "paused" else 0)
        metrics.target_failures.labels(item["name"]).set(item["consecutive_failures"])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
