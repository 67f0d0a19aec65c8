"""The lookups API: submit indicators, read results (JSON, CSV, server-sent events).

Mounted under ``/api``: every route needs ``Authorization: Bearer <token>`` when
``LOOKOUT_API_TOKENS`` is set (lookout refuses to listen beyond loopback without tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, get_args

import msgspec
import nats.errors
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from services.gateway import deadletters_api, hardening, memory, notifications, ui
from services.gateway.answers import (
    api_error,
    api_json,
    bus_js,
    bus_nc,
    bus_reader,
    with_request_id,
)
from services.gateway.apilimit import API_LIMITER, too_many
from services.gateway.state import SETTINGS
from shared.bus import direct
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import catalog, indicators, jobs
from shared.lookups.config import lookups
from shared.lookups.schemas import Job, LookupResult

_log = log.get("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Failure = tuple[int, str]
JOB_ID = "{id:[0-9a-f]{8,40}}"
_json = msgspec.json.Encoder()


async def _authenticate(
    request: web.Request, settings: Settings
) -> tuple[str | None, Failure | None]:
    """(the authenticated client, or None; the refusal, or None when the request may pass).

    The client names the rate-limit bucket: ``token:<n>`` for the n-th API token,
    ``session:<digest>`` for a web UI session; never the secret itself."""
    if not settings.api_tokens:
        if (refused := ui.open_api_failure(request)) is not None:
            return None, (403, refused)
        return None, None
    if "Authorization" not in request.headers and ui.SESSION_COOKIE in request.cookies:
        if (failure := await ui.cookie_auth_failure(request)) is not None:
            return None, failure
        cookie = request.cookies[ui.SESSION_COOKIE].encode()
        return "session:" + hashlib.sha256(cookie).hexdigest()[:32], None
    given = request.headers.get("Authorization", "")
    token = given[7:].strip() if given[:7].lower() == "bearer " else ""
    found = ui.token_index(settings, token)
    if found is None:
        return None, (401, "missing or invalid bearer token")
    return f"token:{found}", None


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer-token check (or the web UI's session cookie with its CSRF token), the
    per-client rate limit, and every error as JSON with a short reason.

    The rate limit is taken after authentication is *decided* but before its refusal is
    sent: an authenticated client has its own bucket (its token or session); everything
    else, refused requests included, shares the bucket of its remote address. So a flood
    of bad credentials is throttled per address and cannot create a bucket per made-up
    token, and the number of buckets is bounded anyway (see :mod:`apilimit`)."""
    settings: Settings = request.config_dict[SETTINGS]
    client, failure = await _authenticate(request, settings)
    limiter = request.config_dict.get(API_LIMITER)
    if limiter is not None and limiter.enabled:
        wait = limiter.take(client or f"ip:{request.remote}")
        if wait > 0:
            return too_many(wait)
    if failure is not None:
        return api_error(*failure)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return api_error(exc.status, exc.reason)
    except (direct.ReadRefused, nats.errors.Error) as exc:
        # JetStream refused or did not answer: the client may retry, it did nothing wrong.
        reason = str(exc) or type(exc).__name__
        _log.warning("message bus refused an API request", path=request.path, error=reason)
        return api_error(503, f"message bus unavailable, retry later: {reason}")
    except ConnectionResetError:
        # The client went away while sending its body (an aborted upload): nothing is
        # wrong here and nobody reads the answer.
        _log.info("client disconnected before its request was read", path=request.path)
        return api_error(400, "the client disconnected before its request was read")
    except Exception:
        _log.exception("unhandled API error", path=request.path)
        return api_error(500, "internal error")


# What aiohttp's multipart reader raises on a malformed body (bad part headers, no or bad
# boundary, unknown charset or transfer encoding): the client's fault, a 400.
_MALFORMED_MULTIPART = (BadHttpMessage, LookupError, RuntimeError, ValueError)


class _Input(msgspec.Struct, forbid_unknown_fields=True):
    indicators: list[str] | None = None
    text: str | None = None
    providers: list[str] = []
    fresh: bool = False


OPTION_MAX_BYTES = 4096
"""Largest ``providers`` or ``fresh`` form field of an upload."""


async def _option_text(part: BodyPartReader) -> str:
    """A small form field's text; 400 past :data:`OPTION_MAX_BYTES` (the file part has its
    own cap, and a field must not make the gateway hold an unbounded body)."""
    data = b""
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > OPTION_MAX_BYTES:
            raise web.HTTPBadRequest(
                reason=f"form field {part.name!r} longer than {OPTION_MAX_BYTES} bytes"
            )
    return data.decode(part.get_charset("utf-8"), "replace")


async def _read_multipart(request: web.Request, limit: int) -> tuple[indicators.Parsed, _Input]:
    """A file upload (text or CSV) read line by line, never held whole in memory."""
    reader = await request.multipart()
    options = _Input()
    parsed: indicators.Parsed | None = None
    seen = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name in ("file", "text") or part.filename:
            lines: list[str] = []
            pending = b""
            chunks: list[indicators.Parsed] = []
            while chunk := await part.read_chunk(64 * 1024):
                seen += len(chunk)
                if seen > limit:
                    raise hardening.body_too_large(limit)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                lines.extend(line.decode("utf-8", "replace") for line in complete)
                if len(lines) > 4096:
                    chunks.append(indicators.extract_stream(lines))
                    lines = []
            lines.append(pending.decode("utf-8", "replace"))
            chunks.append(indicators.extract_stream(lines))
            parsed = _merge([*(([parsed]) if parsed else []), *chunks])
        elif part.name == "providers":
            text = (await _option_text(part)).strip()
            options = msgspec.structs.replace(
                options, providers=[p.strip() for p in text.split(",") if p.strip()]
            )
        elif part.name == "fresh":
            options = msgspec.structs.replace(
                options,
                fresh=(await _option_text(part)).strip().lower() in ("1", "true", "on", "yes"),
            )
    if parsed is None:
        raise web.HTTPBadRequest(reason="multipart upload needs a 'file' part")
    return parsed, options


def _merge(parts: list[indicators.Parsed]) -> indicators.Parsed:
    seen: set[tuple[str, str]] = set()
    found: list[indicators.Indicator] = []
    rejected: list[indicators.Rejected] = []
    for part in parts:
        for item in part.indicators:
            if (item.kind, item.value) not in seen:
                seen.add((item.kind, item.value))
                found.append(item)
        rejected.extend(part.rejected)
    return indicators.Parsed(indicators=found, rejected=rejected)


async def create_lookup(request: web.Request, request_id: str) -> web.Response:
    """Every answer carries the request id (``X-Request-Id``), the one the job and its
    lookup requests carry too."""
    settings: Settings = request.config_dict[SETTINGS]
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise hardening.body_too_large(limit)
    if request.content_type.startswith("multipart/"):
        try:
            parsed, options = await _read_multipart(request, limit)
        except _MALFORMED_MULTIPART as exc:
            return api_error(400, f"malformed multipart body: {exc}")
    else:
        try:
            options = msgspec.json.decode(
                await hardening.read_capped(request, hardening.json_limit(settings)), type=_Input
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return api_error(400, f'expected {{"indicators": [...]}} or {{"text": "..."}}: {exc}')
        if (options.indicators is None) == (options.text is None):
            return api_error(400, "give exactly one of 'indicators' (a list) or 'text'")
        if options.indicators is not None:
            parsed = indicators.parse_items(options.indicators)
        else:
            parsed = indicators.extract(options.text or "")
    unknown = [p for p in options.providers if catalog.get(p) is None]
    if unknown:
        return api_error(
            400, f"unknown providers: {', '.join(unknown)}", providers=list(catalog.names())
        )
    rejected, rejected_total = jobs.rejected_items(parsed)
    if not parsed.indicators:
        return api_error(
            400,
            "no indicator could be read from the input",
            rejected=rejected,
            rejected_total=rejected_total,
        )
    most = lookups(settings).max_indicators
    if len(parsed.indicators) > most:
        return api_error(
            400,
            f"{len(parsed.indicators)} indicators; at most {most} per job",
        )
    js = bus_js(request)

    try:
        job = await jobs.submit(
            js, settings, parsed, options.providers, options.fresh, request_id=request_id
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
            "indicators": [
                {"value": i.value, "kind": i.kind, "scope": i.scope} for i in job.indicators
            ],
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


async def get_lookup(request: web.Request) -> web.Response:
    return api_json(200, (await _current_view(request)).as_json())


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


async def _next_update(follower: jobs.Follower, stopping: asyncio.Event) -> LookupResult | None:
    """The next update (``None``: a keep-alive is due); :class:`_ShuttingDown` as soon as
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

    async def send(event: str, body: Any) -> None:
        await response.write(f"event: {event}\ndata: ".encode() + _json.encode(body) + b"\n\n")

    async def send_new(results: list[LookupResult]) -> None:
        for result in results:
            if view.add(result):
                await send("result", msgspec.to_builtins(result))

    try:
        await response.prepare(request)
        await send_new(found)
        while not view.complete:
            update = await _next_update(follower, stopping)
            if update is not None:
                await send_new([update])
                continue
            await response.write(b": keep-alive\n\n")
            try:
                await send_new(await follower.resync())
            except (direct.ReadRefused, nats.errors.Error) as exc:
                _log.info("event stream could not re-read the job", job=job.id, error=str(exc))
        await send("done", view.as_json()["indicators"])
    except _ShuttingDown:
        with contextlib.suppress(ConnectionResetError):
            await response.write(f"retry: {RECONNECT_MS}\n".encode())
            await send("shutdown", {"reason": "the server is shutting down: reconnect"})
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    except Exception:
        # The 200 is sent: no other status can follow. Say so in the stream and end it.
        _log.exception("event stream failed", job=job.id)
        with contextlib.suppress(ConnectionResetError):
            await send("error", {"error": "internal error: reload to continue"})
    finally:
        await follower.stop()
    return response


def provider_list() -> list[dict[str, Any]]:
    """Every provider the launcher registered, in column order: its name, how people call
    it and the indicator kinds it answers for (in the order of ``indicators.Kind``)."""
    order = get_args(indicators.Kind)
    return [
        {
            "name": spec.name,
            "label": spec.label,
            "kinds": [kind for kind in order if kind in spec.kinds],
        }
        for spec in catalog.specs()
    ]


async def list_providers(_request: web.Request) -> web.Response:
    """``GET /api/v1/providers``: the providers, for the web UI's columns and any client."""
    return api_json(200, {"providers": provider_list()})


async def _stop_streams(app: web.Application) -> None:
    app[STOPPING].set()


def api_app() -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)  # before aiohttp waits for open requests
    app.router.add_post("/v1/lookups", with_request_id(create_lookup))
    app.router.add_get("/v1/providers", list_providers)
    app.router.add_get("/v1/notifications", notifications.list_notifications)
    app.router.add_post("/v1/notifications", with_request_id(notifications.post_notification))
    app.router.add_get("/v1/notifications/{id}", notifications.get_notification)
    app.router.add_get(f"/v1/lookups/{JOB_ID}.csv", get_lookup_csv)
    app.router.add_get(f"/v1/lookups/{JOB_ID}/events", lookup_events)
    app.router.add_get(f"/v1/lookups/{JOB_ID}", get_lookup)
    deadletters_api.add_routes(app)
    memory.add_routes(app)
    return app
