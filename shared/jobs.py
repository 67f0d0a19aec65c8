"""Lookup jobs: submit one, follow its results, render it. Shared by the gateway's API and
the ``lookout lookup`` command, so both create and show jobs the same way."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared import bus, indicators, schemas
from shared.config import Settings
from shared.providers import judge
from shared.schemas import PROVIDER_KINDS, Job, JobIndicator, LookupRequest, LookupResult

PUBLISH_CHUNK = 256


class SubmitError(Exception):
    """The bus did not store the whole job (the caller should retry)."""


def new_job_id() -> str:
    # Sortable by creation time, unguessable enough to share in a ticket.
    return f"{int(time.time() * 1000):012x}{os.urandom(6).hex()}"


async def submit(
    js: JetStreamContext,
    settings: Settings,
    parsed: indicators.Parsed,
    providers: list[str],
    fresh: bool,
    *,
    request_id: str,
) -> Job:
    """Store the job and publish one ``lookup.requested.<kind>`` per indicator, each with
    ``request_id`` in its ``Lookout-Request-Id`` header (the providers log it)."""
    rejected = [{"item": r.item, "reason": r.reason} for r in parsed.rejected]
    wanted = set(providers) or set(PROVIDER_KINDS)
    kinds = {i.kind for i in parsed.indicators}
    job = Job(
        id=new_job_id(),
        created_at=schemas.utc_now(),
        indicators=[JobIndicator(i.value, i.kind, i.scope) for i in parsed.indicators],
        providers={
            k: [p for p in PROVIDER_KINDS if p in wanted and k in PROVIDER_KINDS[p]]
            for k in sorted(kinds)
        },
        rejected=rejected,
        fresh=fresh,
        request_id=request_id,
    )
    bucket = await js.key_value(bus.JOBS_BUCKET)
    await bucket.put(job.id, schemas.encode(job))
    requests = [
        LookupRequest(
            job_id=job.id,
            indicator=i.value,
            kind=i.kind,
            host=i.host,
            registered_domain=i.registered_domain,
            scope=i.scope,
            providers=sorted(wanted) if providers else [],
            fresh=fresh,
            requested_at=job.created_at,
        )
        for i in parsed.indicators
    ]
    headers = {
        schemas.SCHEMA_HEADER: schemas.LOOKUP_REQUEST_SCHEMA,
        schemas.REQUEST_ID_HEADER: request_id,
    }
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
            raise SubmitError("message bus did not store every request, retry later")
    return job


async def load(js: JetStreamContext, job_id: str) -> tuple[Job, KeyValue] | None:
    """The job and the results bucket, or None when there is no such job (or it expired)."""
    bucket = await js.key_value(bus.JOBS_BUCKET)
    try:
        entry = await bucket.get(job_id)
    except KeyNotFoundError:
        return None
    if entry.value is None:
        return None
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
        indicators = []
        for item, results in rows:
            verdict, reasons = judge(results)
            indicators.append(
                {
                    "value": item.value,
                    "kind": item.kind,
                    "scope": item.scope,
                    "verdict": verdict,
                    "verdict_reasons": reasons,
                }
            )
        return {
            "id": self.job.id,
            "created_at": self.job.created_at,
            "request_id": self.job.request_id,
            "complete": self.complete,
            "providers": self.job.providers,
            "rejected": self.job.rejected,
            "indicators": indicators,
            "results": [msgspec.to_builtins(r) for _, results in rows for r in results],
        }


async def next_entry(watcher: KeyValue.KeyWatcher, timeout: float) -> KeyValue.Entry | None:
    entry: KeyValue.Entry | None = await watcher.updates(timeout=timeout)  # type: ignore[no-untyped-call]
    return entry


async def stop(watcher: KeyValue.KeyWatcher) -> None:
    await watcher.stop()  # type: ignore[no-untyped-call]


async def snapshot(
    results: KeyValue, job_id: str
) -> tuple[list[LookupResult], KeyValue.KeyWatcher]:
    """Every result stored so far, and the watcher that will carry the next ones."""
    watcher = await results.watch(f"{job_id}.>")
    found: list[LookupResult] = []
    while True:
        entry = await next_entry(watcher, 10.0)
        if entry is None:
            return found, watcher
        if entry.value:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                found.append(schemas.decode_lookup_result(entry.value))


async def updates(watcher: KeyValue.KeyWatcher) -> AsyncIterator[LookupResult | None]:
    """Results as they arrive; ``None`` every 15 s of silence (a keep-alive)."""
    while True:
        try:
            entry = await next_entry(watcher, 15.0)
        except Exception:
            yield None
            continue
        if entry is None or not entry.value:
            continue
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            yield schemas.decode_lookup_result(entry.value)


CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in text that came from outside."""
    return "'" + value if value.startswith(CSV_RISKY) else value


def csv_text(view: JobView) -> str:
    """One row per indicator: overall verdict and its reasons (``"; "``-separated), then
    status, verdict, summary per provider (an error's cause where there is no summary)."""
    job = view.job
    providers = [p for p in PROVIDER_KINDS if any(p in ps for ps in job.providers.values())]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["indicator", "kind", "scope", "verdict", "verdict_reasons"]
        + [f"{p}_{field}" for p in providers for field in ("status", "verdict", "summary")]
    )
    for item, row in view.rows():
        by_provider = {r.provider: r for r in row}
        verdict, reasons = judge(row)
        cells = [item.value, item.kind, item.scope, verdict, "; ".join(reasons)]
        for p in providers:
            r = by_provider.get(p)
            cells += [r.status, r.verdict, r.summary or (r.error or "")] if r else ["", "", ""]
        writer.writerow([_cell(c) for c in cells])
    return out.getvalue()
