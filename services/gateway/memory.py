"""lookout's memory over HTTP: an indicator's history, past jobs, and watch lists.

- ``GET /api/v1/indicators/{value}``: what lookout found about one indicator (its value
  refanged and normalised as on input), kept beyond its jobs (``LOOKOUT_HISTORY_TTL``).
- ``GET /api/v1/lookups?indicator=&since=&limit=``: past jobs, newest first: those of one
  indicator, or without ``indicator`` the most recent ones.
- ``POST /api/v1/watches``, ``GET /api/v1/watches``, ``DELETE /api/v1/watches/{id}``:
  indicators the scheduler service looks up again every ``every``, telling when their
  verdict changes.

Reads are direct gets (no consumer); nothing here asks a provider, so none of it spends
quota. The OpenAPI parts of these routes are in :mod:`services.gateway.memory_docs`.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from services.gateway import hardening
from services.gateway.answers import (
    api_error,
    api_json,
    bus_js,
    bus_reader,
    query_limit,
    with_request_id,
)
from services.gateway.state import SETTINGS
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import history, indicators, watches
from shared.lookups.config import lookups

_log = log.get("gateway")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_VALUE = 8300
"""The longest indicator value read from a path or a query (a URL of 8192 characters,
defanged)."""
_WATCH_ID = re.compile(watches.WATCH_ID)


def one_indicator(text: str) -> indicators.Indicator:
    """``text`` as one indicator, refanged and normalised as on input; 400 otherwise."""
    if len(text) > MAX_VALUE:
        raise web.HTTPBadRequest(reason=f"indicator longer than {MAX_VALUE} characters")
    parsed = indicators.parse_items([text])
    if parsed.rejected:
        raise web.HTTPBadRequest(reason=f"not an indicator: {parsed.rejected[0].reason}")
    if len(parsed.indicators) != 1:
        raise web.HTTPBadRequest(reason="give one indicator")
    return parsed.indicators[0]


def links(value: str) -> dict[str, str]:
    quoted = quote(value, safe="")
    return {
        "self": f"/api/v1/indicators/{quoted}",
        "lookups": f"/api/v1/lookups?indicator={quoted}",
        "page": f"/indicator/{quoted}",
    }


async def get_indicator(request: web.Request) -> web.Response:
    item = one_indicator(request.match_info["value"])
    entry = await history.read(bus_reader(request), item.kind, item.value)
    if entry is None:
        raise web.HTTPNotFound(
            reason=f"{item.value} was never looked up (or its history expired, after "
            "LOOKOUT_HISTORY_TTL)"
        )
    return api_json(200, {**history.as_json(entry), "links": links(entry.value)})


async def list_lookups(request: web.Request) -> web.Response:
    limit = query_limit(request, DEFAULT_LIMIT, MAX_LIMIT)
    since: str | None = None
    if "since" in request.query:
        try:
            since = history.parse_since(request.query["since"], time.time())
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=str(exc)) from None
    reader = bus_reader(request)
    if "indicator" in request.query:
        item = one_indicator(request.query["indicator"])
        entry = await history.read(reader, item.kind, item.value)
        found = history.jobs_of(entry, limit, since) if entry is not None else []
        indicator: dict[str, Any] | None = {"value": item.value, "kind": item.kind}
    else:
        found = await history.recent(reader, limit, since)
        indicator = None
    return api_json(200, {"indicator": indicator, "jobs": [history.job_json(job) for job in found]})


async def create_watch(request: web.Request, request_id: str) -> web.Response:
    settings: Settings = request.config_dict[SETTINGS]
    body = await hardening.read_capped(request, hardening.json_limit(settings))
    try:
        given = msgspec.json.decode(body, type=watches.WatchInput)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return api_error(400, f'expected {{"indicators": [...], "every": "6h"}}: {exc}')
    try:
        watch = watches.build(given, lookups(settings).watch_min_every, request_id)
    except watches.Invalid as exc:
        extra = {"rejected": exc.rejected} if exc.rejected else {}
        return api_error(400, str(exc), **extra)
    try:
        await watches.create(bus_js(request), bus_reader(request), watch)
    except watches.TooMany as exc:
        return api_error(400, str(exc))
    _log.info(
        "watch created",
        request_id=request_id,
        watch=watch.id,
        indicators=len(watch.indicators),
        every=watch.every,
    )
    return api_json(
        201, watches.as_json(watch, None), headers={"Location": f"/api/v1/watches/{watch.id}"}
    )


async def list_watches(request: web.Request) -> web.Response:
    reader = bus_reader(request)
    found = await watches.load_all(reader)
    states = await watches.states(reader) if found else {}
    return api_json(200, {"watches": [watches.as_json(w, states.get(w.id)) for w in found]})


async def delete_watch(request: web.Request) -> web.StreamResponse:
    watch_id = request.match_info["id"]
    if not _WATCH_ID.fullmatch(watch_id) or not await watches.remove(
        bus_js(request), bus_reader(request), watch_id
    ):
        raise web.HTTPNotFound(reason="no such watch")
    _log.info("watch removed", watch=watch_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/indicators/{value:.+}", get_indicator)
    app.router.add_get("/v1/lookups", list_lookups)
    app.router.add_post("/v1/watches", with_request_id(create_watch))
    app.router.add_get("/v1/watches", list_watches)
    app.router.add_delete("/v1/watches/{id}", delete_watch)
