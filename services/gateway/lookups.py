"""The lookups API: submit indicators, read results (JSON, CSV, server-sent events).

Mounted under ``/api``: every route needs ``Authorization: Bearer <token>`` when
``LOOKOUT_API_TOKENS`` is set (lookout refuses to listen beyond loopback without tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hmac
import io
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import BodyPartReader, web
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from services.gateway.state import BUS, SETTINGS
from shared import bus, indicators, schemas
from shared import logging as log
from shared.config import Settings
from shared.providers import overall_verdict
from shared.schemas import PROVIDER_KINDS, Job, JobIndicator, LookupRequest, LookupResult

_log = log.get("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JOB_ID = "{id:[0-9a-f]{8,40}}"
_json = msgspec.json.Encoder()
PUBLISH_CHUNK = 256


def api_error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.Response(
        status=status,
        body=_json.encode({"error": reason, **extra}),
        content_type="application/json",
    )


def api_json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=_json.encode(body), content_type="application/json")


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer-token check, and every error as JSON with a short reason."""
    settings: Settings = request.config_dict[SETTINGS]
    if settings.api_tokens:
        given = request.headers.get("Authorization", "")
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        ok = False
        for expected in settings.api_tokens:
            ok |= hmac.compare_digest(token.encode(), expected.reveal().encode())
        if not token or not ok:
            return api_error(401, "missing or invalid bearer token")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return api_error(exc.status, exc.reason)
    except Exception:
        _log.exception("unhandled API error", path=request.path)
        return api_error(500, "internal error")


def _new_job_id() -> str:
    # Sortable by creation time, unguessable enough to share in a ticket.
    return f"{int(time.time() * 1000):012x}{os.urandom(6).hex()}"


def _js(request: web.Request) -> JetStreamContext | None:
    the_bus = request.config_dict[BUS]
    js: JetStreamContext | None = the_bus.js
    return js if js is not None and the_bus.usable else None


class _Input(msgspec.Struct, forbid_unknown_fields=True):
    indicators: list[str] | None = None
    text: str | None = None
    providers: list[str] = []
    fresh: bool = False


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
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=seen)
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
            text = (await part.text()).strip()
            options = msgspec.structs.replace(
                options, providers=[p.strip() for p in text.split(",") if p.strip()]
            )
        elif part.name == "fresh":
            options = msgspec.structs.replace(
                options, fresh=(await part.text()).strip().lower() in ("1", "true", "on", "yes")
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


async def create_lookup(request: web.Request) -> web.Response:
    settings: Settings = request.config_dict[SETTINGS]
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return api_error(413, f"body larger than {limit} bytes")
    if request.content_type.startswith("multipart/"):
        parsed, options = await _read_multipart(request, limit)
    else:
        try:
            options = msgspec.json.decode(await request.read(), type=_Input)
        except web.HTTPRequestEntityTooLarge:
            return api_error(413, f"body larger than {limit} bytes")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return api_error(400, f'expected {{"indicators": [...]}} or {{"text": "..."}}: {exc}')
        if (options.indicators is None) == (options.text is None):
            return api_error(400, "give exactly one of 'indicators' (a list) or 'text'")
        if options.indicators is not None:
            parsed = indicators.parse_items(options.indicators)
        else:
            parsed = indicators.extract(options.text or "")
    unknown = [p for p in options.providers if p not in PROVIDER_KINDS]
    if unknown:
        return api_error(
            400, f"unknown providers: {', '.join(unknown)}", providers=list(PROVIDER_KINDS)
        )
    rejected = [{"item": r.item, "reason": r.reason} for r in parsed.rejected]
    if not parsed.indicators:
        return api_error(400, "no indicator could be read from the input", rejected=rejected)
    if len(parsed.indicators) > settings.max_indicators:
        return api_error(
            400,
            f"{len(parsed.indicators)} indicators; at most {settings.max_indicators} per job",
        )
    js = _js(request)
    if js is None:
        return api_error(503, "message bus unavailable, retry later")

    wanted = set(options.providers) or set(PROVIDER_KINDS)
    kinds = {i.kind for i in parsed.indicators}
    job = Job(
        id=_new_job_id(),
        created_at=schemas.utc_now(),
        indicators=[JobIndicator(i.value, i.kind, i.scope) for i in parsed.indicators],
        providers={
            k: [p for p in PROVIDER_KINDS if p in wanted and k in PROVIDER_KINDS[p]]
            for k in sorted(kinds)
        },
        rejected=rejected,
        fresh=options.fresh,
    )
    jobs = await js.key_value(bus.JOBS_BUCKET)
    await jobs.put(job.id, schemas.encode(job))
    requests = [
        LookupRequest(
            job_id=job.id,
            indicator=i.value,
            kind=i.kind,
            host=i.host,
            registered_domain=i.registered_domain,
            scope=i.scope,
            providers=sorted(wanted) if options.providers else [],
            fresh=options.fresh,
            requested_at=job.created_at,
        )
        for i in parsed.indicators
    ]
    headers = {schemas.SCHEMA_HEADER: schemas.LOOKUP_REQUEST_SCHEMA}
    for start in range(0, len(requests), PUBLISH_CHUNK):
        results = await asyncio.gather(
            *(
                js.publish(
                    r.subject,
                    schemas.encode(r),
                    headers={**headers, "Nats-Msg-Id": f"{job.id}:{r.key}"},
                    timeout=settings.publish_timeout,
                )
                for r in requests[start : start + PUBLISH_CHUNK]
            ),
            return_exceptions=True,
        )
        if any(isinstance(r, BaseException) for r in results):
            return api_error(503, "message bus did not store every request, retry later")
    _log.info("lookup job created", job=job.id, indicators=len(requests), rejected=len(rejected))
    return api_json(
        202,
        {
            "id": job.id,
            "indicators": [
                {"value": i.value, "kind": i.kind, "scope": i.scope} for i in job.indicators
            ],
            "rejected": rejected,
            "providers": job.providers,
            "links": {
                "self": f"/api/v1/lookups/{job.id}",
                "events": f"/api/v1/lookups/{job.id}/events",
                "csv": f"/api/v1/lookups/{job.id}.csv",
            },
        },
    )


async def _load_job(request: web.Request) -> tuple[Job, KeyValue]:
    js = _js(request)
    if js is None:
        raise web.HTTPServiceUnavailable(reason="message bus unavailable, retry later")
    jobs = await js.key_value(bus.JOBS_BUCKET)
    try:
        entry = await jobs.get(request.match_info["id"])
    except KeyNotFoundError:
        raise web.HTTPNotFound(reason="no such lookup job (or it expired)") from None
    if entry.value is None:
        raise web.HTTPNotFound(reason="no such lookup job (or it expired)")
    return schemas.decode_job(entry.value), await js.key_value(bus.RESULTS_BUCKET)


class JobView:
    """A job's results, one per indicator and provider, filled in as they arrive."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.results: dict[tuple[str, str], LookupResult] = {}
        self.expected = {schemas.indicator_key(i.kind, i.value): i for i in job.indicators}

    def add(self, result: LookupResult) -> bool:
        key = schemas.indicator_key(result.kind, result.indicator)
        if key not in self.expected:
            return False
        self.results[(key, result.provider)] = result
        return True

    def entry(self, item: JobIndicator, provider: str) -> LookupResult:
        found = self.results.get((schemas.indicator_key(item.kind, item.value), provider))
        if found is not None:
            return found
        return LookupResult(
            job_id=self.job.id,
            indicator=item.value,
            kind=item.kind,
            provider=provider,
            status="pending",
        )

    @property
    def complete(self) -> bool:
        return all(
            self.entry(i, p).status not in ("pending", "queued")
            for i in self.job.indicators
            for p in self.job.providers.get(i.kind, [])
        )

    def rows(self) -> list[tuple[JobIndicator, list[LookupResult]]]:
        return [
            (i, [self.entry(i, p) for p in self.job.providers.get(i.kind, [])])
            for i in self.job.indicators
        ]

    def as_json(self) -> dict[str, Any]:
        rows = self.rows()
        return {
            "id": self.job.id,
            "created_at": self.job.created_at,
            "complete": self.complete,
            "providers": self.job.providers,
            "rejected": self.job.rejected,
            "indicators": [
                {
                    "value": item.value,
                    "kind": item.kind,
                    "scope": item.scope,
                    "verdict": overall_verdict([r.verdict for r in results if r.status == "done"]),
                }
                for item, results in rows
            ],
            "results": [msgspec.to_builtins(r) for _, results in rows for r in results],
        }


async def _next(watcher: KeyValue.KeyWatcher, timeout: float) -> KeyValue.Entry | None:
    entry: KeyValue.Entry | None = await watcher.updates(timeout=timeout)  # type: ignore[no-untyped-call]
    return entry


async def _stop(watcher: KeyValue.KeyWatcher) -> None:
    await watcher.stop()  # type: ignore[no-untyped-call]


async def _snapshot(
    results: KeyValue, job_id: str
) -> tuple[list[LookupResult], KeyValue.KeyWatcher]:
    """Every result stored so far, and the watcher that will carry the next ones."""
    watcher = await results.watch(f"{job_id}.>")
    found: list[LookupResult] = []
    while True:
        entry = await _next(watcher, 10.0)
        if entry is None:
            return found, watcher
        if entry.value:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                found.append(schemas.decode_lookup_result(entry.value))


async def _current_view(request: web.Request) -> JobView:
    """The job with every result stored so far."""
    job, results = await _load_job(request)
    view = JobView(job)
    found, watcher = await _snapshot(results, job.id)
    await _stop(watcher)
    for result in found:
        view.add(result)
    return view


async def get_lookup(request: web.Request) -> web.Response:
    return api_json(200, (await _current_view(request)).as_json())


_CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in text that came from outside."""
    return "'" + value if value.startswith(_CSV_RISKY) else value


async def get_lookup_csv(request: web.Request) -> web.Response:
    view = await _current_view(request)
    job = view.job
    providers = [p for p in PROVIDER_KINDS if any(p in ps for ps in job.providers.values())]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["indicator", "kind", "scope", "verdict"]
        + [f"{p}_{field}" for p in providers for field in ("status", "verdict", "summary")]
    )
    for item, row in view.rows():
        by_provider = {r.provider: r for r in row}
        cells = [
            item.value,
            item.kind,
            item.scope,
            overall_verdict([r.verdict for r in row if r.status == "done"]),
        ]
        for p in providers:
            r = by_provider.get(p)
            cells += [r.status, r.verdict, r.summary or (r.error or "")] if r else ["", "", ""]
        writer.writerow([_cell(c) for c in cells])
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="lookout-{job.id}.csv"'},
    )


async def lookup_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every result stored so far, then each new one as it lands;
    ``event: done`` when nothing is pending any more."""
    job, results = await _load_job(request)
    view = JobView(job)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)

    async def send(event: str, body: Any) -> None:
        await response.write(f"event: {event}\ndata: ".encode() + _json.encode(body) + b"\n\n")

    found, watcher = await _snapshot(results, job.id)
    try:
        for result in found:
            if view.add(result):
                await send("result", msgspec.to_builtins(result))
        if not view.complete:
            async for update in _updates(watcher):
                if update is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                if view.add(update):
                    await send("result", msgspec.to_builtins(update))
                    if view.complete:
                        break
        await send("done", view.as_json()["indicators"])
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        await _stop(watcher)
    return response


async def _updates(watcher: KeyValue.KeyWatcher) -> AsyncIterator[LookupResult | None]:
    """Results as they arrive; ``None`` every 15 s of silence (a keep-alive)."""
    while True:
        try:
            entry = await _next(watcher, 15.0)
        except Exception:
            yield None
            continue
        if entry is None or not entry.value:
            continue
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            yield schemas.decode_lookup_result(entry.value)


def api_app() -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app.router.add_post("/v1/lookups", create_lookup)
    app.router.add_get(f"/v1/lookups/{JOB_ID}.csv", get_lookup_csv)
    app.router.add_get(f"/v1/lookups/{JOB_ID}/events", lookup_events)
    app.router.add_get(f"/v1/lookups/{JOB_ID}", get_lookup)
    return app
