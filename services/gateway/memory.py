"""lookout's memory over HTTP: an indicator's history, past jobs, and watch lists.

- ``GET /api/v1/indicators/{value}``: what lookout found about one indicator (its value
  refanged and normalised as on input), kept beyond its jobs (``LOOKOUT_HISTORY_TTL``).
- ``POST /api/v1/indicators/seen``: which of up to 100 indicators lookout has seen, each's
  history in short, in one read.
- ``GET /api/v1/lookups?indicator=&since=&limit=``: past jobs, newest first: those of one
  indicator, or without ``indicator`` the most recent ones.
- ``POST /api/v1/watches``, ``GET /api/v1/watches``, ``DELETE /api/v1/watches/{id}``:
  indicators the scheduler service looks up again every ``every``, telling when their
  verdict changes.

Reads are direct gets (no consumer); nothing here asks a provider, so none of it spends
quota. Each operation is documented beside its handler (:data:`DOCS`).
"""

from __future__ import annotations

import re
import time
from typing import Any, Final, get_args
from urllib.parse import quote

import msgspec
from aiohttp import web

from services.gateway.answers import (
    api_error,
    api_json,
    bus_js,
    bus_reader,
    json_input,
    query_limit,
    with_request_id,
)
from services.gateway.apispec import (
    JSON,
    KINDS,
    PROVIDER,
    Operations,
    answer,
    json_content,
    ref,
)
from services.gateway.state import SETTINGS
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import history, indicators, watches
from shared.lookups import schemas as lookup_schemas
from shared.lookups.verdicts import VERDICT_ORDER

_log = log.get("gateway")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_VALUE = 8300
"""The longest indicator value read from a path or a query (a URL of 8192 characters,
defanged)."""
_WATCH_ID = re.compile(watches.WATCH_ID)

MAX_SEEN = 100
"""Indicators one ``POST /api/v1/indicators/seen`` asks about, at most."""
SEEN_KEPT = 5
"""Verdict changes and jobs of each indicator in its answer."""

DOCS = Operations("memory", "History of indicators, past jobs, watch lists.")
VERDICTS: Final[list[str]] = list(get_args(lookup_schemas.Verdict))
STATUSES: Final[list[str]] = list(get_args(lookup_schemas.Status))
OVERALL: Final[list[str]] = list(VERDICT_ORDER)
_TIME: Final[JSON] = {"type": "string", "description": "UTC, RFC 3339."}
_TIME_OR_NULL: Final[JSON] = {"anyOf": [_TIME, {"type": "null"}]}
_TEXT_OR_NULL: Final[JSON] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_VALUE_PARAM: Final[JSON] = {
    "name": "value",
    "in": "path",
    "required": True,
    "description": (
        "An indicator as on input (defanged forms welcome), percent-encoded: "
        "`https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc` for a URL."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_VALUE},
}
_LIMIT_PARAM: Final[JSON] = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": f"At most this many jobs (1…{MAX_LIMIT}).",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
}
_SINCE_PARAM: Final[JSON] = {
    "name": "since",
    "in": "query",
    "required": False,
    "description": "Only jobs created then or later: an RFC 3339 time, or an age (`24h`).",
    "schema": {"type": "string", "examples": ["2026-01-02T03:04:05Z", "7d"]},
}
_INDICATOR_PARAM: Final[JSON] = {
    "name": "indicator",
    "in": "query",
    "required": False,
    "description": "Only the jobs this indicator was in (refanged and normalised).",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_VALUE},
}
_WATCH_ID_PARAM: Final[JSON] = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The watch's id.",
    "schema": {"type": "string"},
}


def one_indicator(text: str) -> indicators.Indicator:
    """``text`` as one indicator, refanged and normalised as on input; 400 otherwise."""
    if len(text) > MAX_VALUE:
        raise web.HTTPBadRequest(reason=f"indicator longer than {MAX_VALUE} characters")
    parsed = indicators.parse_items([text])
    if parsed.rejected:
        why = parsed.rejected[0].reason
        said = why if why.startswith("not an indicator") else f"not an indicator: {why}"
        raise web.HTTPBadRequest(reason=said)
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


@DOCS.get(
    "/api/v1/indicators/{value}",
    DOCS.api(
        "getIndicator",
        "An indicator's history",
        "What lookout found about the indicator over its lookups, kept beyond the jobs "
        "(`LOOKOUT_HISTORY_TTL`, 90 days by default). Read from the bus: asks no provider, "
        "spends no quota.",
        {
            "200": answer("The history.", "IndicatorHistory"),
            "400": answer("Not an indicator (the reason says why)."),
            "404": answer("Never looked up, or its history expired."),
        },
        parameters=[_VALUE_PARAM],
    ),
)
async def get_indicator(request: web.Request) -> web.Response:
    item = one_indicator(request.match_info["value"])
    entry = await history.read(bus_reader(request), item.kind, item.value)
    if entry is None:
        raise web.HTTPNotFound(
            reason=f"{item.value} was never looked up (or its history expired, after "
            "LOOKOUT_HISTORY_TTL)"
        )
    return api_json(200, {**history.as_json(entry), "links": links(entry.value)})


class SeenInput(msgspec.Struct, forbid_unknown_fields=True):
    indicators: list[str]


@DOCS.post(
    "/api/v1/indicators/seen",
    DOCS.api(
        "seenIndicators",
        "Which indicators were seen before",
        f"For up to {MAX_SEEN} indicators in one request (each refanged and normalised as on "
        f"input), the history in short of those lookout has seen: the overall verdict now and "
        f"the newest {SEEN_KEPT} verdict changes and jobs. One read of the bus for all of "
        "them (what the web UI's `seen before` marks use); asks no provider, spends no quota.",
        {
            "200": answer("The indicators seen, those not seen, and the items refused.", "Seen"),
            "400": answer(f"Malformed, no item, or more than {MAX_SEEN} items."),
        },
        requestBody={"required": True, "content": json_content(ref("SeenInput"))},
    ),
)
async def seen_indicators(request: web.Request) -> web.Response:
    given = await json_input(request, SeenInput, 'expected {"indicators": ["…", …]}')
    if isinstance(given, web.Response):
        return given
    if not 1 <= len(given.indicators) <= MAX_SEEN:
        return api_error(400, f"give 1 to {MAX_SEEN} indicators, not {len(given.indicators)}")
    too_long = [i for i, text in enumerate(given.indicators) if len(text) > MAX_VALUE]
    if too_long:
        return api_error(400, f"indicator {too_long[0]} longer than {MAX_VALUE} characters")
    parsed = indicators.parse_items(given.indicators)
    asked = [(item.kind, item.value) for item in parsed.indicators]
    found = await history.read_many(bus_reader(request), asked)
    return api_json(
        200,
        {
            "seen": [history.brief_json(found[key], SEEN_KEPT) for key in asked if key in found],
            "not_seen": [value for kind, value in asked if (kind, value) not in found],
            "rejected": [msgspec.to_builtins(r) for r in parsed.rejected],
        },
    )


@DOCS.get(
    "/api/v1/lookups",
    DOCS.api(
        "listLookups",
        "Past lookup jobs",
        "Newest first: the jobs an indicator was in (`indicator`; its latest 50), or the "
        "most recent jobs (the latest 10,000 are indexed, for `LOOKOUT_HISTORY_TTL` at most). "
        "A job's own results last `LOOKOUT_JOB_TTL`.",
        {
            "200": answer("The jobs.", "JobList"),
            "400": answer("`indicator` is not an indicator, or a bad `since`/`limit`."),
        },
        parameters=[_INDICATOR_PARAM, _SINCE_PARAM, _LIMIT_PARAM],
    ),
)
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


@DOCS.post(
    "/api/v1/watches",
    DOCS.api(
        "createWatch",
        "Watch indicators",
        "The scheduler service looks them up again every `every` (fresh answers; the shared "
        "quotas are spent after interactive lookups) and publishes "
        "`notification.lookout.verdict_changed` when a verdict changes, as `notify_on` says. "
        "The first run comes at once.",
        {
            "201": answer("The watch.", "Watch"),
            "400": answer(
                "Malformed, an item that is not an indicator, too many indicators, `every` "
                f"out of bounds, unknown providers, or {watches.MAX_WATCHES} watches already.",
                "WatchError",
            ),
        },
        requestBody={"required": True, "content": json_content(ref("WatchInput"))},
    ),
)
async def create_watch(request: web.Request, request_id: str) -> web.Response:
    settings: Settings = request.config_dict[SETTINGS]
    given = await json_input(
        request, watches.WatchInput, 'expected {"indicators": [...], "every": "6h"}'
    )
    if isinstance(given, web.Response):
        return given
    try:
        watch = watches.build(given, settings, request_id)
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


@DOCS.get(
    "/api/v1/watches",
    DOCS.api(
        "listWatches",
        "The watch lists",
        "Every watch, oldest first, with its schedule.",
        {"200": answer("The watches.", "WatchList")},
    ),
)
async def list_watches(request: web.Request) -> web.Response:
    reader = bus_reader(request)
    found = await watches.load_all(reader)
    states = await watches.states(reader) if found else {}
    return api_json(200, {"watches": [watches.as_json(w, states.get(w.id)) for w in found]})


@DOCS.delete(
    "/api/v1/watches/{id}",
    DOCS.api(
        "deleteWatch",
        "Stop watching",
        "The watch and its schedule are removed; its jobs stay.",
        {"204": {"description": "Removed."}, "404": answer("No such watch.")},
        parameters=[_WATCH_ID_PARAM],
    ),
)
async def delete_watch(request: web.Request) -> web.StreamResponse:
    watch_id = request.match_info["id"]
    if not _WATCH_ID.fullmatch(watch_id) or not await watches.remove(
        bus_js(request), bus_reader(request), watch_id
    ):
        raise web.HTTPNotFound(reason="no such watch")
    _log.info("watch removed", watch=watch_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/indicators/seen", seen_indicators)
    app.router.add_get("/v1/indicators/{value:.+}", get_indicator)
    app.router.add_get("/v1/lookups", list_lookups)
    app.router.add_post("/v1/watches", with_request_id(create_watch))
    app.router.add_get("/v1/watches", list_watches)
    app.router.add_delete("/v1/watches/{id}", delete_watch)


def _object(properties: JSON, required: list[str] | None = None, **extra: Any) -> JSON:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        **extra,
    }


@DOCS.components
def _history_schemas() -> dict[str, JSON]:
    """The history's and the past jobs' schemas."""
    finding = _object(
        {
            "verdict": {"enum": VERDICTS},
            "summary": {"type": "string"},
            "at": _TIME,
            "job_id": {"type": "string"},
        }
    )
    return {
        "JobSummary": {
            "title": "JobSummary",
            "description": "A past lookup job (its results: `links.self`, while the job lasts).",
            **_object(
                {
                    "id": {"type": "string"},
                    "created_at": _TIME,
                    "indicators": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "How many indicators it has (0: not known any more).",
                    },
                    "sample": {
                        "type": "array",
                        "items": {"type": "string"},
                        "maxItems": lookup_schemas.SAMPLE,
                        "description": "Its first indicators (a long one cut, ending with `…`).",
                    },
                    "scheduled": {"type": "boolean", "description": "Run by a watch."},
                    "watch": {**_TEXT_OR_NULL, "description": "The watch that ran it."},
                    "links": _object({"self": {"type": "string"}}),
                }
            ),
        },
        "JobList": {
            "title": "JobList",
            **_object(
                {
                    "indicator": {
                        "anyOf": [
                            _object({"value": {"type": "string"}, "kind": {"enum": KINDS}}),
                            {"type": "null"},
                        ],
                        "description": "The indicator asked for, normalised (null: recent jobs).",
                    },
                    "jobs": {"type": "array", "items": ref("JobSummary")},
                }
            ),
        },
        "ProviderHistory": {
            "title": "ProviderHistory",
            "description": (
                "A provider's latest final result for the indicator, and its latest finding "
                "(`done` result), which counts for the overall verdict: an error later does "
                "not erase what it found before."
            ),
            **_object(
                {
                    "provider": PROVIDER,
                    "label": {"type": "string"},
                    "status": {"enum": STATUSES},
                    "verdict": {"enum": VERDICTS},
                    "summary": {"type": "string"},
                    "error": _TEXT_OR_NULL,
                    "cached": {"type": "boolean"},
                    "data": {"type": "object"},
                    "data_left_out": {
                        "type": "boolean",
                        "description": "Its data was too large to keep (more than 32 KiB).",
                    },
                    "checked_at": _TIME,
                    "job_id": {"type": "string"},
                    "finding": {"anyOf": [finding, {"type": "null"}]},
                }
            ),
        },
        "VerdictHistoryEntry": {
            "title": "VerdictHistoryEntry",
            "description": "The overall verdict from `at` on, as the job `job_id` found it.",
            **_object(
                {
                    "verdict": {"enum": OVERALL},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                    "at": _TIME,
                    "job_id": {"type": "string"},
                }
            ),
        },
        "SeenInput": {
            "title": "SeenInput",
            "description": f"1 to {MAX_SEEN} indicators (defanged forms welcome).",
            **_object(
                {
                    "indicators": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": MAX_VALUE},
                        "minItems": 1,
                        "maxItems": MAX_SEEN,
                    }
                },
                additionalProperties=False,
            ),
        },
        "Seen": {
            "title": "Seen",
            "description": (
                "`seen`: the indicators lookout has a history of, in the order asked, each in "
                f"short (its `verdict_history` and `jobs`: the newest {SEEN_KEPT}, newest "
                "first; the whole history: `GET /api/v1/indicators/{value}`); `not_seen`: "
                "the others (normalised); `rejected`: items that are not an indicator."
            ),
            **_object(
                {
                    "seen": {
                        "type": "array",
                        "items": _object(
                            {
                                "value": {"type": "string"},
                                "kind": {"enum": KINDS},
                                "first_seen": _TIME,
                                "last_seen": _TIME,
                                "verdict": {"enum": OVERALL},
                                "verdict_history": {
                                    "type": "array",
                                    "items": ref("VerdictHistoryEntry"),
                                    "maxItems": SEEN_KEPT,
                                },
                                "jobs": {
                                    "type": "array",
                                    "items": ref("JobSummary"),
                                    "maxItems": SEEN_KEPT,
                                },
                            }
                        ),
                    },
                    "not_seen": {"type": "array", "items": {"type": "string"}},
                    "rejected": {
                        "type": "array",
                        "items": _object(
                            {"item": {"type": "string"}, "reason": {"type": "string"}}
                        ),
                    },
                }
            ),
        },
        "IndicatorHistory": {
            "title": "IndicatorHistory",
            "description": (
                "What lookout found about one indicator over time (kept "
                "`LOOKOUT_HISTORY_TTL` after its last result): its overall `verdict` now "
                "(from each provider's latest finding), the latest result per provider, "
                "`verdict_history` (each change of the overall verdict, newest first), the "
                "jobs it was in (newest first) and the jobs whose results are still coming "
                "in (`pending_jobs`)."
            ),
            **_object(
                {
                    "value": {"type": "string"},
                    "kind": {"enum": KINDS},
                    "first_seen": _TIME,
                    "last_seen": _TIME,
                    "verdict": {"enum": OVERALL},
                    "verdict_reasons": {"type": "array", "items": {"type": "string"}},
                    "providers": {"type": "array", "items": ref("ProviderHistory")},
                    "verdict_history": {"type": "array", "items": ref("VerdictHistoryEntry")},
                    "jobs": {"type": "array", "items": ref("JobSummary")},
                    "pending_jobs": {"type": "array", "items": {"type": "string"}},
                    "links": _object(
                        {
                            "self": {"type": "string"},
                            "lookups": {"type": "string"},
                            "page": {"type": "string", "description": "The web UI's page."},
                        }
                    ),
                }
            ),
        },
    }


@DOCS.components
def _watch_schemas() -> dict[str, JSON]:
    """The watch lists' schemas."""
    notify_on = {
        "enum": list(watches.NOTIFY_ON),
        "description": (
            "`any_change`: when the overall verdict or a provider's verdict changes; "
            "`worse`: only when the overall verdict gets worse (to suspicious or malicious)."
        ),
    }
    every_text = {
        "type": "string",
        "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*[smhdwSMHDW]?\s*$",
        "examples": ["6h", "30m", "1d"],
    }
    return {
        "WatchInput": {
            "title": "WatchInput",
            "description": (
                "Indicators to look up again every `every` (from `LOOKOUT_WATCH_MIN_EVERY`, "
                "5 minutes by default, to 30 days): a duration (`30m`, `6h`, `1d`, `2w`) or "
                "seconds. Every item must be an indicator (refanged and normalised as for a "
                f"lookup), at most {watches.MAX_INDICATORS}."
            ),
            "type": "object",
            "properties": {
                "indicators": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "maxItems": watches.MAX_INDICATORS,
                },
                "every": {"anyOf": [every_text, {"type": "number", "exclusiveMinimum": 0}]},
                "providers": {
                    "type": "array",
                    "items": PROVIDER,
                    "description": "Only these providers (default: every provider of each kind).",
                },
                "notify_on": {**notify_on, "default": "any_change"},
                "comment": {"type": "string", "maxLength": watches.MAX_COMMENT},
            },
            "required": ["indicators", "every"],
            "additionalProperties": False,
        },
        "Watch": {
            "title": "Watch",
            "description": (
                "A watch list and its schedule: `runs` so far, when it ran last "
                "(`last_run_at`, `last_job`) and runs next (`next_run_at`; null until the "
                "scheduler first saw it)."
            ),
            **_object(
                {
                    "id": {"type": "string", "pattern": f"^{watches.WATCH_ID}$"},
                    "created_at": _TIME,
                    "indicators": {"type": "array", "items": ref("JobIndicator")},
                    "every": {"type": "string", "examples": ["6h"]},
                    "every_seconds": {"type": "number"},
                    "providers": {"type": "array", "items": PROVIDER},
                    "notify_on": notify_on,
                    "comment": {"type": "string"},
                    "runs": {"type": "integer", "minimum": 0},
                    "last_run_at": _TIME_OR_NULL,
                    "last_job": _TEXT_OR_NULL,
                    "next_run_at": _TIME_OR_NULL,
                }
            ),
        },
        "WatchList": {
            "title": "WatchList",
            **_object({"watches": {"type": "array", "items": ref("Watch")}}),
        },
        "WatchError": {
            "title": "WatchError",
            "description": "Why a watch was refused; `rejected`: the items that are not "
            "indicators.",
            "allOf": [ref("Error")],
            "properties": {"rejected": {"type": "array", "items": ref("Rejected")}},
        },
    }
