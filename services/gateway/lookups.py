"""The lookups API: submit indicators, read results (JSON, CSV, server-sent events), and
the providers that answer them; each operation documented beside its handler (:data:`DOCS`).

Mounted under ``/api`` (see :mod:`services.gateway.api`): every route needs
``Authorization: Bearer <token>`` when ``LOOKOUT_API_TOKENS`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final, get_args

import msgspec
import nats.errors
from aiohttp import web

from services.gateway import hardening, upload
from services.gateway.answers import (
    api_error,
    api_json,
    bus_js,
    bus_nc,
    bus_reader,
    json_input,
    with_request_id,
)
from services.gateway.apispec import (
    JSON,
    KINDS,
    PROVIDER,
    REQUEST_ID_HEADERS,
    REQUEST_ID_PARAM,
    Operations,
    answer,
    path_pattern,
    ref,
    struct_schemas,
)
from services.gateway.state import SETTINGS
from shared.bus import direct
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import catalog, display, indicators, jobs
from shared.lookups.config import lookups
from shared.lookups.jobs import REJECTED_KEPT
from shared.lookups.schemas import Job, JobIndicator, LookupResult
from shared.lookups.verdicts import VERDICT_ORDER

_log = log.get("gateway")
JOB_ID = "{id:[0-9a-f]{8,40}}"
_json = msgspec.json.Encoder()

DOCS = Operations("lookups", "Host lookups: submit, follow, export.")
_JOB_ID_PARAM: Final[JSON] = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The job id from `POST /api/v1/lookups`.",
    "schema": {"type": "string", "pattern": path_pattern(JOB_ID)},
}
_NO_JOB: Final = answer("No such job (or it expired, after `LOOKOUT_JOB_TTL`).")
_REJECTED: Final[JSON] = {
    "type": "array",
    "items": ref("Rejected"),
    "maxItems": REJECTED_KEPT,
    "description": f"The first {REJECTED_KEPT} items that could not be read, with the reason.",
}
_REJECTED_TOTAL: Final[JSON] = {
    "type": "integer",
    "minimum": 0,
    "description": f"How many items could not be read (`rejected` lists {REJECTED_KEPT} at most).",
}


_Input = upload.LookupInput
_MALFORMED_MULTIPART = upload.MALFORMED_MULTIPART


def nothing_read(rejected: list[dict[str, str]], rejected_total: int) -> web.Response:
    """The 400 for input in which no indicator could be read, with what was refused."""
    return api_error(
        400,
        "no indicator could be read from the input",
        rejected=rejected,
        rejected_total=rejected_total,
    )


@DOCS.post(
    "/api/v1/lookups",
    DOCS.api(
        "createLookup",
        "Submit indicators for lookup",
        "Indicators are refanged, normalised, deduplicated and classified (ipv4, ipv6, "
        "domain, url, email, hash: an MD5, SHA-1 or SHA-256 in hex, normalised to lower case "
        "with `data.algorithm`); one lookup request per indicator is published and answered "
        "by every provider of its kind. Input that is not an indicator is listed in "
        "`rejected` with a reason; the job is refused only when nothing could be read, with "
        "more than `LOOKOUT_MAX_INDICATORS` indicators, or with unknown providers. The job "
        "keeps the request id (`X-Request-Id`, given or made), which goes with every lookup "
        "request to the providers and into their log lines.",
        {
            "202": answer("The job is created.", "LookupCreated", REQUEST_ID_HEADERS),
            "400": answer(
                "Nothing could be read, too many indicators, unknown providers, malformed "
                "JSON or a multipart body without a file.",
                "LookupError",
                REQUEST_ID_HEADERS,
            ),
            "413": answer(
                "A JSON body larger than `LOOKOUT_MAX_JSON_BYTES`, or an upload larger than "
                "`LOOKOUT_MAX_BODY_BYTES`.",
                headers=REQUEST_ID_HEADERS,
            ),
            "503": answer(
                "The message bus is unavailable or did not store every lookup request; "
                "retry later.",
                headers=REQUEST_ID_HEADERS,
            ),
        },
        parameters=[REQUEST_ID_PARAM],
        requestBody={
            "required": True,
            "content": {
                "application/json": {"schema": ref("LookupInput")},
                "multipart/form-data": {
                    "schema": ref("LookupUpload"),
                    "encoding": {"file": {"contentType": "text/plain, text/csv"}},
                },
            },
        },
    ),
)
async def create_lookup(request: web.Request, request_id: str) -> web.Response:
    """Every answer carries the request id (``X-Request-Id``), the one the job and its
    lookup requests carry too."""
    settings: Settings = request.config_dict[SETTINGS]
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise hardening.body_too_large(limit)
    if request.content_type.startswith("multipart/"):
        try:
            parsed, options = await upload.read_multipart(request, limit)
        except _MALFORMED_MULTIPART as exc:
            return api_error(400, f"malformed multipart body: {exc}")
    else:
        decoded = await json_input(
            request, _Input, 'expected {"indicators": [...]} or {"text": "..."}'
        )
        if isinstance(decoded, web.Response):
            return decoded
        options = decoded
        if (options.indicators is None) == (options.text is None):
            return api_error(400, "give exactly one of 'indicators' (a list) or 'text'")
        if options.indicators is not None:
            parsed = indicators.parse_items(options.indicators)
        else:
            parsed = indicators.extract_text((options.text or "").splitlines())
    refused = catalog.refused(settings, options.providers)
    if refused is not None:
        return api_error(400, refused, providers=list(catalog.active_names(settings)))
    rejected, rejected_total = jobs.rejected_items(parsed)
    if not parsed.indicators:
        return nothing_read(rejected, rejected_total)
    most = lookups(settings).max_indicators
    if len(parsed.indicators) > most:
        return api_error(
            400,
            f"{len(parsed.indicators)} indicators; at most {most} per job",
        )
    js = bus_js(request)

    try:
        job = await jobs.submit(
            js,
            settings,
            parsed,
            options.providers,
            options.fresh,
            request_id=request_id,
            expand=options.expand,
        )
    except jobs.SubmitError as exc:
        _log.warning("lookup job not stored", request_id=request_id, error=str(exc))
        return api_error(503, str(exc))
    _log.info(
        "lookup job created",
        request_id=request_id,
        job=job.id,
        indicators=len(job.indicators),
        rejected=rejected_total,
    )
    return api_json(
        202,
        {
            "id": job.id,
            "indicators": [jobs.indicator_json(i) for i in job.indicators],
            "rejected": rejected,
            "rejected_total": rejected_total,
            "providers": job.providers,
            "links": {
                "self": f"/api/v1/lookups/{job.id}",
                "events": f"/api/v1/lookups/{job.id}/events",
                "csv": f"/api/v1/lookups/{job.id}.csv",
            },
        },
    )


async def _load_job(request: web.Request) -> Job:
    found = await jobs.load(bus_reader(request), request.match_info["id"])
    if found is None:
        raise web.HTTPNotFound(reason="no such lookup job (or it expired)")
    return found


async def _current_view(request: web.Request) -> jobs.JobView:
    """The job with every result stored so far (direct gets: no consumer is made)."""
    return await jobs.current(bus_reader(request), await _load_job(request))


@DOCS.get(
    "/api/v1/lookups/{id}",
    DOCS.api(
        "getLookup",
        "A lookup job and its results",
        "One result per indicator and provider, `pending` until the provider answered.",
        {"200": answer("The job.", "LookupJob"), "404": _NO_JOB},
        parameters=[_JOB_ID_PARAM],
    ),
)
async def get_lookup(request: web.Request) -> web.Response:
    return api_json(200, (await _current_view(request)).answer())


@DOCS.get(
    "/api/v1/lookups/{id}.csv",
    DOCS.api(
        "lookupCsv",
        "A lookup job as CSV",
        "One row per indicator: `indicator`, `kind`, `scope`, `verdict`, `verdict_reasons` "
        "(joined with `; `), then `<provider>_status`, `<provider>_verdict`, "
        "`<provider>_summary` (an error's cause when it failed) per provider. "
        "Cells a spreadsheet would run as a formula are prefixed with `'`.",
        {
            "200": {
                "description": "The CSV file (`Content-Disposition: attachment`).",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            "404": _NO_JOB,
        },
        parameters=[_JOB_ID_PARAM],
    ),
)
async def get_lookup_csv(request: web.Request) -> web.Response:
    view = await _current_view(request)
    return web.Response(
        text=jobs.csv_text(view),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="lookout-{view.job.id}.csv"'},
    )


STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set when the gateway begins to shut down: open event streams end at once."""
RECONNECT_MS = 1000
"""The ``retry:`` an event stream ending at shutdown gives: when the browser reconnects."""


KEEP_ALIVE = 15.0
"""Seconds of silence after which an event stream sends a keep-alive (and reads the store
again, for any result its subscription missed)."""


class _ShuttingDown(Exception):
    pass


async def _next_update(follower: jobs.Follower, stopping: asyncio.Event) -> list[LookupResult]:
    """The next new results (none: a keep-alive is due); :class:`_ShuttingDown` as soon as
    the gateway stops, instead of waiting for results that may never come."""
    if stopping.is_set():
        raise _ShuttingDown
    step = asyncio.ensure_future(follower.next(KEEP_ALIVE))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await step
    if step.cancelled():
        raise _ShuttingDown
    return step.result()


@DOCS.get(
    "/api/v1/lookups/{id}/events",
    DOCS.api(
        "lookupEvents",
        "A lookup job's results as server-sent events",
        "Every result stored so far, then each new one as it lands: `event: result` with a "
        "`LookupResult` as `data`; finally `event: done` with the indicators and their "
        "overall verdicts (`IndicatorVerdict` list) once nothing is pending, or `event: "
        "grown` when indicators were added to the job (read it again). A comment line "
        "(`: keep-alive`) is sent every 15 s of silence. The job is loaded and followed "
        "before the stream begins, so an unknown job is a 404 and a bus that refuses the "
        "read a 503, both as JSON. When the gateway shuts down, an open stream ends at once "
        "with `event: shutdown` (after `retry: 1000`): reconnect, to another replica or to "
        "the restarted gateway.",
        {
            "200": {
                "description": "The event stream.",
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "example": 'event: result\ndata: {"job_id": "…"}\n\n',
                    }
                },
            },
            "404": _NO_JOB,
        },
        parameters=[_JOB_ID_PARAM],
    ),
)
async def lookup_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every result stored so far, then each new one as it lands;
    ``event: done`` when nothing is pending any more.

    The job is loaded and its results followed (a core NATS subscription, then the stored
    results: no consumer) *before* the 200 is sent, so a missing job is a 404 and a bus
    that refuses the read a 503, never an error inside a stream already begun.

    When the gateway shuts down, an open stream ends at once with ``event: shutdown``
    (and ``retry:``), so a browser's EventSource reconnects (to another replica, or to this
    one once it is back) instead of holding the shutdown until the job completes."""
    job = await _load_job(request)
    stopping = request.config_dict[STOPPING]
    view = jobs.JobView(job)
    follower = jobs.Follower(bus_nc(request), bus_reader(request), job.id)
    found = await follower.start()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )

    def event(name: str, body: Any) -> bytes:
        return f"event: {name}\ndata: ".encode() + _json.encode(body) + b"\n\n"

    async def send(name: str, body: Any) -> None:
        await response.write(event(name, body))

    async def send_new(results: list[LookupResult]) -> bool:
        """Send the results of the job's indicators, in one write; False when one is of an
        indicator added to the job since it was read (those before it are sent)."""
        events = []
        growing = True
        for result in results:
            if view.add(result):
                events.append(event("result", result))
            elif await jobs.grown(bus_reader(request), view.job) is not None:
                growing = False
                break
        if events:
            await response.write(b"".join(events))
        return growing

    try:
        await response.prepare(request)
        growing = await send_new(found)
        while growing and not view.complete:
            update = await _next_update(follower, stopping)
            if update:
                growing = await send_new(update)
                continue
            await response.write(b": keep-alive\n\n")
            try:
                growing = await send_new(await follower.resync())
            except (direct.ReadRefused, nats.errors.Error) as exc:
                _log.info("event stream could not re-read the job", job=job.id, error=str(exc))
        if not growing or await jobs.grown(bus_reader(request), job) is not None:
            await send("grown", {"reason": "indicators were added to the job: read it again"})
        else:
            await send("done", view.as_json()["indicators"])
    except _ShuttingDown:
        with contextlib.suppress(ConnectionResetError):
            await response.write(f"retry: {RECONNECT_MS}\n".encode())
            await send("shutdown", {"reason": "the server is shutting down: reconnect"})
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    except (direct.ReadRefused, nats.errors.Error) as exc:
        # The bus did not answer a read (overloaded, reconnecting): no fault of the
        # stream's; the client reconnects and reads the job again.
        cause = str(exc) or type(exc).__name__
        _log.warning("event stream ended: the bus did not answer", job=job.id, error=cause)
        with contextlib.suppress(ConnectionResetError):
            await response.write(f"retry: {RECONNECT_MS}\n".encode())
            await send("error", {"error": f"the bus did not answer ({cause}): reconnect"})
    except Exception:
        # The 200 is sent: no other status can follow. Say so in the stream and end it.
        _log.exception("event stream failed", job=job.id)
        with contextlib.suppress(ConnectionResetError):
            await send("error", {"error": "internal error: reload to continue"})
    finally:
        await follower.stop()
    return response


def provider_list(settings: Settings) -> list[dict[str, Any]]:
    """Every provider the launcher registered that is on, in column order: its name, how people call
    it, the indicator kinds it answers for (in the order of ``indicators.Kind``), how its
    results' details are laid out and its links per kind (see shared.lookups.display)."""
    order = get_args(indicators.Kind)
    return [
        {
            "name": spec.name,
            "label": spec.label,
            "kinds": [kind for kind in order if kind in spec.kinds],
            "details": spec.details.as_json(),
            "links": {kind: spec.links[kind] for kind in order if kind in spec.links},
        }
        for spec in catalog.active(settings)
    ]


@DOCS.components
def _provider_schemas() -> dict[str, JSON]:
    """What :func:`provider_list` gives for each provider (a field added there is added
    here: a test compares them)."""
    return {
        "Provider": {
            "title": "Provider",
            "description": "A lookup provider and what it answers for.",
            "type": "object",
            "properties": {
                "name": PROVIDER,
                "label": {"type": "string", "description": "How people call it."},
                "kinds": {
                    "type": "array",
                    "items": {"enum": KINDS},
                    "description": "The indicator kinds it answers for.",
                },
                "details": ref("ProviderDetails"),
                "links": {
                    "type": "object",
                    "propertyNames": {"enum": KINDS},
                    "additionalProperties": {"type": "string", "format": "uri-template"},
                    "description": "Per kind, the provider's own page about an indicator: "
                    "`{value}` is the indicator, `{host}` its host (URL-encoded).",
                },
            },
            "required": ["name", "label", "kinds", "details", "links"],
        },
        "ProviderDetails": {
            "title": "ProviderDetails",
            "description": (
                "How the web UI lays out a result's `data`: notes shown when a value says "
                "so, then titled sections of labelled fields (`path`: keys joined by dots; "
                "`template`: `{}` the value, `{key}` one of its keys), a section left out "
                "when none of its fields has a value or its `when` path has none."
            ),
            "type": "object",
            "properties": {
                "sections": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "title": {"type": "string"},
                            "when": {"type": "string"},
                            "fields": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "label": {"type": "string"},
                                        "path": {"type": "string"},
                                        "format": {"enum": list(display.FORMATS)},
                                        "template": {"type": "string"},
                                        "missing": {"type": "string"},
                                    },
                                    "required": ["label", "path", "format", "template", "missing"],
                                },
                            },
                        },
                        "required": ["title", "when", "fields"],
                    },
                },
                "notes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "when": {"type": "string"},
                            "text": {"type": "string"},
                            "equals": {"type": ["string", "integer", "boolean", "null"]},
                        },
                        "required": ["when", "text", "equals"],
                    },
                },
            },
            "required": ["sections", "notes"],
        },
        "Providers": {
            "title": "Providers",
            "type": "object",
            "properties": {"providers": {"type": "array", "items": ref("Provider")}},
            "required": ["providers"],
        },
    }


@DOCS.get(
    "/api/v1/providers",
    DOCS.api(
        "listProviders",
        "The lookup providers",
        "Every provider lookout runs (those turned off by `LOOKOUT_PROVIDERS` or "
        "`[providers.<name>] enabled = false` are not listed), in the order of the web "
        "UI's columns: its name (for `providers` of `POST /api/v1/lookups`), how people "
        "call it, the indicator kinds it answers for, how its results' details are laid "
        "out and its links per kind.",
        {"200": answer("The providers.", "Providers")},
    ),
)
async def list_providers(request: web.Request) -> web.Response:
    """``GET /api/v1/providers``: the providers, for the web UI's columns and any client."""
    return api_json(200, {"providers": provider_list(request.config_dict[SETTINGS])})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/lookups", with_request_id(create_lookup))
    app.router.add_get("/v1/providers", list_providers)
    app.router.add_get(f"/v1/lookups/{JOB_ID}.csv", get_lookup_csv)
    app.router.add_get(f"/v1/lookups/{JOB_ID}/events", lookup_events)
    app.router.add_get(f"/v1/lookups/{JOB_ID}", get_lookup)


@DOCS.components
def _schemas() -> dict[str, JSON]:
    """The jobs' schemas: the message Structs a job's answers hold, and the rest."""
    overall = list(VERDICT_ORDER)
    components = struct_schemas([LookupResult, JobIndicator, indicators.Rejected])
    components["LookupResult"]["description"] = (
        "What one provider found for one indicator (the `lookup-result/1` message schema)."
    )
    components["LookupResult"]["properties"]["kind"]["enum"] = KINDS
    components["LookupResult"]["properties"]["provider"].update(PROVIDER)
    components["JobIndicator"]["properties"]["kind"]["enum"] = KINDS
    components["JobIndicator"]["properties"]["scope"]["enum"] = list(get_args(indicators.Scope))
    components["JobIndicator"]["properties"]["data"] = {
        "type": "object",
        "description": "A hash only: `algorithm`, one of `md5`, `sha1`, `sha256`.",
        "properties": {"algorithm": {"enum": ["md5", "sha1", "sha256"]}},
    }
    return {
        **components,
        "LookupError": {
            "title": "LookupError",
            "description": (
                "Why a lookup job was refused: the reason, and when it applies the items "
                "that could not be read (`rejected`) or the known providers (`providers`)."
            ),
            "allOf": [ref("Error")],
            "properties": {
                "rejected": _REJECTED,
                "rejected_total": _REJECTED_TOTAL,
                "providers": {"type": "array", "items": PROVIDER},
            },
        },
        "LookupInput": {
            "title": "LookupInput",
            "description": (
                "Exactly one of `indicators` (a list, one indicator per item) or `text` "
                "(free text: indicators are found in it, defanged forms included)."
            ),
            "type": "object",
            "properties": {
                "indicators": {"type": "array", "items": {"type": "string"}},
                "text": {"type": "string"},
                "providers": {
                    "type": "array",
                    "items": PROVIDER,
                    "description": "Only these providers (default: every provider of each kind).",
                },
                "fresh": {
                    "type": "boolean",
                    "default": False,
                    "description": "Bypass the result cache.",
                },
                "expand": {
                    "type": "boolean",
                    "default": False,
                    "description": (
                        "Add the first-level pivots of every indicator's answers to the job "
                        f"(at most {jobs.MAX_EXPANSION} in all; theirs are not expanded)."
                    ),
                },
            },
            "oneOf": [{"required": ["indicators"]}, {"required": ["text"]}],
            "additionalProperties": False,
        },
        "LookupUpload": {
            "title": "LookupUpload",
            "description": (
                "A file of indicators (text or CSV, read line by line) in the part `file` "
                "(a part named `text`, or any part with a file name, is read the same way)."
            ),
            "type": "object",
            "properties": {
                "file": {"type": "string", "contentMediaType": "text/plain"},
                "providers": {
                    "type": "string",
                    "description": "Comma-separated provider names.",
                    "examples": ["dns,whois"],
                },
                "fresh": {
                    "type": "string",
                    "description": "`1`, `true`, `on` or `yes` bypass the result cache.",
                    "examples": ["true"],
                },
                "expand": {
                    "type": "string",
                    "description": "`1`, `true`, `on` or `yes`: as `expand` in JSON.",
                    "examples": ["true"],
                },
            },
            "required": ["file"],
        },
        "LookupLinks": {
            "title": "LookupLinks",
            "type": "object",
            "properties": {
                "self": {"type": "string"},
                "events": {"type": "string"},
                "csv": {"type": "string"},
            },
            "required": ["self", "events", "csv"],
        },
        "JobProviders": {
            "title": "JobProviders",
            "description": "Per indicator kind, the providers that answer for it.",
            "type": "object",
            "propertyNames": {"enum": KINDS},
            "additionalProperties": {"type": "array", "items": PROVIDER},
        },
        "LookupCreated": {
            "title": "LookupCreated",
            "description": (
                "The job is stored and one request per indicator published; results arrive "
                "as providers answer (follow `links`)."
            ),
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": path_pattern(JOB_ID)},
                "indicators": {"type": "array", "items": ref("JobIndicator")},
                "rejected": _REJECTED,
                "rejected_total": _REJECTED_TOTAL,
                "providers": ref("JobProviders"),
                "links": ref("LookupLinks"),
            },
            "required": ["id", "indicators", "rejected", "rejected_total", "providers", "links"],
        },
        "IndicatorVerdict": {
            "title": "IndicatorVerdict",
            "description": (
                "An indicator with its overall verdict: the first of "
                f"{', '.join(overall)} that its results count as. A `done` result "
                "counts with its verdict; an `error` or `quota_exhausted` one (it could not "
                "be checked) as `error`; a `pending` or `queued` one as `pending`; a "
                "`not_configured` one not at all. So `error` is the verdict when every "
                "provider that applies failed, and never hides behind `unknown`."
            ),
            "allOf": [ref("JobIndicator")],
            "properties": {
                "verdict": {"enum": overall},
                "verdict_reasons": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": (
                        "Why: each provider whose result gave the verdict, with its summary "
                        "or, for `error`, its error (`VirusTotal: 9/74 engines`, `WHOIS: "
                        "cannot connect: Connection refused (RDAP, WHOIS)`). When no result "
                        "counts, the providers not configured, with why."
                    ),
                    "examples": [["VirusTotal: 9/74 engines", "AbuseIPDB: score 100"]],
                },
            },
            "required": ["verdict", "verdict_reasons"],
        },
        "LookupJob": {
            "title": "LookupJob",
            "description": (
                "A lookup job with one result per indicator and provider (`pending` until "
                "the provider answered); `complete` once nothing is pending or queued."
            ),
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "created_at": {"type": "string"},
                "request_id": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "description": (
                        "The request that created the job (the `X-Request-Id` answered by "
                        "`POST /api/v1/lookups`); the providers log it with each lookup."
                    ),
                },
                "complete": {"type": "boolean"},
                "providers": ref("JobProviders"),
                "rejected": _REJECTED,
                "rejected_total": _REJECTED_TOTAL,
                "indicators": {"type": "array", "items": ref("IndicatorVerdict")},
                "results": {"type": "array", "items": ref("LookupResult")},
                "scheduled": {
                    "type": "boolean",
                    "description": "Run by a watch, not by a person.",
                },
                "watch": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "description": "The watch that ran it, if any.",
                },
                "expand": {
                    "type": "boolean",
                    "description": "Created with `expand`: its indicators' pivots are added.",
                },
            },
            "required": [
                "id",
                "created_at",
                "request_id",
                "complete",
                "providers",
                "rejected",
                "rejected_total",
                "indicators",
                "results",
            ],
        },
    }
