"""Lookup jobs: submit one, follow its results, render it. Shared by the gateway's API and
the ``lookout lookup`` command, so both create and show jobs the same way."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import time
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus import cas, direct, messages
from shared.core.settings import Settings
from shared.lookups import catalog, indicators
from shared.lookups import schemas as lookup_schemas
from shared.lookups import streams as lookup_streams
from shared.lookups.schemas import Job, JobIndicator, LookupRequest, LookupResult
from shared.lookups.verdicts import judge

PUBLISH_CHUNK = 256
REJECTED_KEPT = 100
"""The rejected items a job keeps and an answer lists; ``rejected_total`` counts them all."""
CHUNK_BYTES = 128 * 1024
"""The largest stored part of a job: a job of any size is kept in parts that each fit in a
NATS message (``max_payload``, 1 MB by default), read back with batched direct gets."""


MAX_EXPANSION = 50
"""The most indicators ``"expand": true`` adds to a job (its indicators' pivots)."""
ADD_ATTEMPTS = 10
"""Compare-and-set attempts of an addition to a job before giving up (busy)."""


class SubmitError(Exception):
    """The bus did not store the whole job (the caller should retry)."""


class NoSuchJob(Exception):
    """The job does not exist (or expired)."""


def new_job_id() -> str:
    # Sortable by creation time, unguessable enough to share in a ticket.
    return f"{int(time.time() * 1000):012x}{os.urandom(6).hex()}"


def rejected_items(parsed: indicators.Parsed) -> tuple[list[dict[str, str]], int]:
    """The first :data:`REJECTED_KEPT` rejected items with their reasons, and how many
    there are in all."""
    kept = [{"item": r.item, "reason": r.reason} for r in parsed.rejected[:REJECTED_KEPT]]
    return kept, len(parsed.rejected)


class _Chunk(msgspec.Struct, frozen=True):
    """One stored part of a job's indicators (key ``<job id>.<n>``)."""

    indicators: list[JobIndicator]


def _chunks(items: list[JobIndicator]) -> list[list[JobIndicator]]:
    parts: list[list[JobIndicator]] = []
    size = 0
    for item in items:
        cost = len(messages.encode(item)) + 1
        if not parts or size + cost > CHUNK_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += cost
    return parts


async def _store(js: JetStreamContext, job: Job) -> None:
    """The job under its id; its indicators in parts first when it would not fit in one
    message, so that whoever reads the job finds every part."""
    bucket = await js.key_value(lookup_streams.JOBS_BUCKET)
    body = messages.encode(job)
    if len(body) <= CHUNK_BYTES:
        await bucket.put(job.id, body)
        return
    parts = _chunks(job.indicators)
    for start in range(0, len(parts), PUBLISH_CHUNK):
        await asyncio.gather(
            *(
                bucket.put(f"{job.id}.{n}", messages.encode(_Chunk(part)))
                for n, part in enumerate(parts[start : start + PUBLISH_CHUNK], start)
            )
        )
    head = msgspec.structs.replace(job, indicators=[], chunks=len(parts))
    await bucket.put(job.id, messages.encode(head))


async def submit(
    js: JetStreamContext,
    settings: Settings,
    parsed: indicators.Parsed,
    providers: list[str],
    fresh: bool,
    *,
    request_id: str,
    watch: str | None = None,
    expand: bool = False,
) -> Job:
    """Store the job, add it to the recent-jobs index (``lookup.created``) and publish one
    ``lookup.requested.<kind>`` per indicator, each with ``request_id`` in its
    ``Lookout-Request-Id`` header (the providers log it). With ``watch``, the job is that
    watch's scheduled re-lookup: its requests spend the quotas after interactive ones. With
    ``expand``, the providers add their answers' pivots to the job (:func:`add`)."""
    rejected, rejected_total = rejected_items(parsed)
    wanted = set(providers) or set(catalog.active_names(settings))
    kinds = {i.kind for i in parsed.indicators}
    job = Job(
        id=new_job_id(),
        created_at=messages.utc_now(),
        indicators=[JobIndicator(i.value, i.kind, i.scope) for i in parsed.indicators],
        providers={
            k: [p.name for p in catalog.specs() if p.name in wanted and k in p.kinds]
            for k in sorted(kinds)
        },
        rejected=rejected,
        fresh=fresh,
        request_id=request_id,
        rejected_total=rejected_total,
        scheduled=watch is not None,
        watch=watch,
        count=len(parsed.indicators),
        sample=lookup_schemas.sample_of(
            [i.value for i in parsed.indicators[: lookup_schemas.SAMPLE]]
        ),
        only=sorted(wanted) if providers else [],
        expand=expand,
    )
    try:
        await _store(js, job)
        await js.publish(
            lookup_schemas.LOOKUP_CREATED_SUBJECT,
            messages.encode(lookup_schemas.summary_of(job)),
            headers={
                messages.SCHEMA_HEADER: lookup_schemas.LOOKUP_CREATED_SCHEMA,
                messages.REQUEST_ID_HEADER: request_id,
                "Nats-Msg-Id": job.id,
            },
            timeout=settings.publish_timeout,
        )
    except Exception as exc:
        raise SubmitError(
            f"message bus did not store the job ({str(exc) or type(exc).__name__}), retry later"
        ) from exc
    await _publish_requests(js, settings, job, parsed.indicators, request_id, expand=expand)
    return job


async def _publish_requests(
    js: JetStreamContext,
    settings: Settings,
    job: Job,
    items: list[indicators.Indicator],
    request_id: str,
    *,
    expand: bool,
) -> None:
    requests = [
        LookupRequest(
            job_id=job.id,
            indicator=i.value,
            kind=i.kind,
            host=i.host,
            registered_domain=i.registered_domain,
            scope=i.scope,
            providers=job.only,
            fresh=job.fresh,
            requested_at=messages.utc_now() if job.additions else job.created_at,
            scheduled=job.scheduled,
            expand=expand,
        )
        for i in items
    ]
    headers = {
        messages.SCHEMA_HEADER: lookup_schemas.LOOKUP_REQUEST_SCHEMA,
        messages.REQUEST_ID_HEADER: request_id,
    }
    for start in range(0, len(requests), PUBLISH_CHUNK):
        results = await asyncio.gather(
            *(
                js.publish(
                    r.subject,
                    messages.encode(r),
                    headers={**headers, "Nats-Msg-Id": f"{job.id}:{r.key}"},
                    timeout=settings.publish_timeout,
                )
                for r in requests[start : start + PUBLISH_CHUNK]
            ),
            return_exceptions=True,
        )
        if any(isinstance(r, BaseException) for r in results):
            raise SubmitError("message bus did not store every request, retry later")


def _providers_for(job: Job, kinds: set[str]) -> dict[str, list[str]]:
    """The job's providers per kind, with those of ``kinds`` it had none for yet."""
    wanted = set(job.only) or set(catalog.names())
    found = dict(job.providers)
    for kind in sorted(kinds - set(found)):
        found[kind] = [p.name for p in catalog.specs() if p.name in wanted and kind in p.kinds]
    return found


async def _parts_kv(bucket: KeyValue, job: Job) -> list[JobIndicator]:
    """The job's indicators read key by key from ``bucket`` (a compare-and-set writer's
    leader view): its own, its stored parts, its additions so far."""
    items = list(job.indicators)
    keys = [f"{job.id}.{n}" for n in range(job.chunks)]
    keys += [f"{job.id}.a{n}" for n in range(job.additions)]
    for key in keys:
        try:
            entry = await bucket.get(key)
        except KeyNotFoundError:
            continue
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            items.extend(msgspec.json.decode(entry.value or b"", type=_Chunk).indicators)
    return items


async def add(
    js: JetStreamContext,
    settings: Settings,
    job_id: str,
    items: list[indicators.Indicator],
    *,
    request_id: str,
    most: int,
    expansion: bool = False,
) -> list[indicators.Indicator]:
    """Add ``items`` to the job (those it has not yet, up to ``most`` indicators in all;
    with ``expansion``, up to :data:`MAX_EXPANSION` added by expansion in all) and publish
    their lookup requests, answered by the job's providers. The added ones, in order.

    The job's head is updated by compare-and-set (the count, the providers of new kinds,
    the number of additions), then the addition is stored under ``<id>.a<n>``, so two
    concurrent additions never share a key; a reader that finds the head before its
    addition sees the job without it. :class:`NoSuchJob`, or :class:`SubmitError` when
    the bus did not store it."""
    try:
        bucket = await cas.leader_bucket(js, lookup_streams.JOBS_BUCKET)
        for _ in range(ADD_ATTEMPTS):
            try:
                entry = await bucket.get(job_id)
            except KeyNotFoundError:
                raise NoSuchJob(job_id) from None
            try:
                head = lookup_schemas.decode_job(entry.value or b"")
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise NoSuchJob(job_id) from None
            held = {(i.kind, i.value) for i in await _parts_kv(bucket, head)}
            count = head.count or len(held)
            room = most - count
            if expansion:
                room = min(room, MAX_EXPANSION - head.expanded)
            new: list[indicators.Indicator] = []
            for item in items:
                if len(new) >= room:
                    break
                if (item.kind, item.value) not in held:
                    held.add((item.kind, item.value))
                    new.append(item)
            if not new:
                return []
            grown = msgspec.structs.replace(
                head,
                count=count + len(new),
                providers=_providers_for(head, {i.kind for i in new}),
                additions=head.additions + 1,
                expanded=head.expanded + (len(new) if expansion else 0),
            )
            try:
                await bucket.update(job_id, messages.encode(grown), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            part = [JobIndicator(i.value, i.kind, i.scope) for i in new]
            await bucket.put(f"{job_id}.a{head.additions}", messages.encode(_Chunk(part)))
            await _publish_requests(js, settings, grown, new, request_id, expand=False)
            return new
    except (NoSuchJob, SubmitError):
        raise
    except Exception as exc:
        raise SubmitError(
            f"message bus did not store the addition ({str(exc) or type(exc).__name__}), "
            "retry later"
        ) from exc
    raise SubmitError("the job is being changed by others, retry later")


_JOBS_STREAM = direct.kv_stream(lookup_streams.JOBS_BUCKET)
_RESULTS_STREAM = direct.kv_stream(lookup_streams.RESULTS_BUCKET)


async def _latest(reader: direct.Reader, key: str) -> bytes | None:
    """The value of a key of ``lookup_jobs``. A replica answering a direct get may not have
    the job its client just created yet: a miss is asked again of the stream's leader."""
    subject = direct.kv_subject(lookup_streams.JOBS_BUCKET, key)
    found = await reader.last(_JOBS_STREAM, subject)
    if found is None:
        found = await reader.leader_last(_JOBS_STREAM, subject)
    if found is None or found.removed or not found.data:
        return None
    return found.data


async def load(reader: direct.Reader, job_id: str) -> Job | None:
    """The job, its indicators put together again, or None when there is no such job (or
    it expired)."""
    head = await _latest(reader, job_id)
    if head is None:
        return None
    try:
        job = lookup_schemas.decode_job(head)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not job.chunks and not job.additions:
        return job
    parts: dict[int, list[JobIndicator]] = {}
    added: dict[int, list[JobIndicator]] = {}
    prefix = f"{job_id}."
    stored = await reader.scan(
        _JOBS_STREAM, direct.kv_subject(lookup_streams.JOBS_BUCKET, f"{job_id}.*")
    )
    for msg in stored:
        index = direct.kv_key(lookup_streams.JOBS_BUCKET, msg.subject).removeprefix(prefix)
        into, number = (added, index[1:]) if index.startswith("a") else (parts, index)
        if msg.removed or not number.isdigit():
            continue
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            into[int(number)] = msgspec.json.decode(msg.data, type=_Chunk).indicators
    for n in range(job.chunks):
        if n not in parts and (data := await _latest(reader, f"{job_id}.{n}")) is not None:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                parts[n] = msgspec.json.decode(data, type=_Chunk).indicators
        if n not in parts:
            return None  # expired part by part
    items = list(job.indicators) + [item for n in range(job.chunks) for item in parts[n]]
    seen = {(i.kind, i.value) for i in items}
    for n in range(job.additions):  # one not stored yet (or lost) adds nothing
        for item in added.get(n, []):
            if (item.kind, item.value) not in seen:
                seen.add((item.kind, item.value))
                items.append(item)
    return msgspec.structs.replace(job, indicators=items)


async def grown(reader: direct.Reader, job: Job) -> Job | None:
    """The job read again when indicators were added to it since ``job`` was read (by
    ``POST …/indicators`` or its expansion), else None."""
    found = await load(reader, job.id)
    if found is None or len(found.indicators) <= len(job.indicators):
        return None
    return found


def _result_of(data: bytes | None, headers: dict[str, str] | None) -> LookupResult | None:
    if not data or (headers or {}).get(direct.KV_OPERATION) in ("DEL", "PURGE"):
        return None
    try:
        return lookup_schemas.decode_lookup_result(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def stored_results(reader: direct.Reader, job_id: str) -> list[LookupResult]:
    """Every result of the job stored so far."""
    subjects = direct.kv_subject(lookup_streams.RESULTS_BUCKET, f"{job_id}.>")
    found = []
    for msg in await reader.scan(_RESULTS_STREAM, subjects):
        if (result := _result_of(msg.data, msg.headers)) is not None:
            found.append(result)
    return found


async def current(reader: direct.Reader, job: Job) -> JobView:
    """The job with every result stored so far."""
    view = JobView(job)
    for result in await stored_results(reader, job.id):
        view.add(result)
    return view


class Follower:
    """A job's results as they are stored: those stored so far (:meth:`start`), then each
    new one (:meth:`next`).

    No consumer: a core NATS subscription on the job's keys in ``lookup_results``, opened
    before the stored ones are read so that nothing falls in between, and the store read
    again (:meth:`resync`) for whatever the subscription missed (e.g. during a reconnect).
    A result replaces one of the same indicator and provider unless it is older
    (``updated_at``), so a stale copy never hides a newer one."""

    def __init__(self, nc: NATS, reader: direct.Reader, job_id: str) -> None:
        self._reader = reader
        self._job_id = job_id
        self._follow = direct.Follow(
            nc, direct.kv_subject(lookup_streams.RESULTS_BUCKET, f"{job_id}.>")
        )
        self._seen: dict[str, LookupResult] = {}

    def _take(self, result: LookupResult) -> bool:
        held = self._seen.get(result.kv_key)
        if held is not None and (held == result or held.updated_at > result.updated_at):
            return False
        self._seen[result.kv_key] = result
        return True

    async def start(self) -> list[LookupResult]:
        """Subscribe, then every result stored so far (with any that arrived meanwhile)."""
        await self._follow.start()
        try:
            stored = await stored_results(self._reader, self._job_id)
        except BaseException:
            await self._follow.stop()
            raise
        found = [r for r in stored if self._take(r)]
        for msg in self._follow.ready():
            if (result := _result_of(msg.data, msg.headers)) is not None and self._take(result):
                found.append(result)
        return found

    async def next(self, timeout: float) -> list[LookupResult]:
        """The new results: the first one to come within ``timeout`` seconds (none: an empty
        list) and every other that has come meanwhile, so a busy job is read in batches."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            msg = await self._follow.next(left)
            if msg is None:
                return []
            found = [
                result
                for msg in (msg, *self._follow.ready())
                if (result := _result_of(msg.data, msg.headers)) is not None and self._take(result)
            ]
            if found:
                return found
        return []

    async def resync(self) -> list[LookupResult]:
        """Results in the store this follower has not seen (newer than what it holds)."""
        return [r for r in await stored_results(self._reader, self._job_id) if self._take(r)]

    async def stop(self) -> None:
        await self._follow.stop()


def indicator_json(item: JobIndicator) -> dict[str, Any]:
    """An indicator as the API shows it: ``value``, ``kind``, ``scope`` and, for a hash,
    ``data.algorithm`` (``md5``, ``sha1`` or ``sha256``)."""
    shown: dict[str, Any] = {"value": item.value, "kind": item.kind, "scope": item.scope}
    if item.kind == "hash":
        shown["data"] = {"algorithm": indicators.hash_algorithm(item.value)}
    return shown


def _final(result: LookupResult) -> bool:
    return result.status not in ("pending", "queued")


class JobView:
    """A job's results, one per indicator and provider, filled in as they arrive."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.results: dict[tuple[str, str], LookupResult] = {}
        self.expected = {lookup_schemas.indicator_key(i.kind, i.value): i for i in job.indicators}
        self._keys = {(i.kind, i.value): key for key, i in self.expected.items()}
        """Each indicator's key by its kind and value: hashed once per job, not per result."""
        self._asked = {kind: frozenset(names) for kind, names in job.providers.items()}
        self._cells = sum(len(self._asked.get(i.kind, ())) for i in self.expected.values())
        self._finished = 0
        """Cells (an indicator and a provider asked) whose result is final: counted as results
        come, so :attr:`complete` costs nothing however large the job (it is asked after
        every result of an event stream)."""

    def add(self, result: LookupResult) -> bool:
        key = self._keys.get((result.kind, result.indicator))
        if key is None:
            return False
        item = self.expected[key]
        cell = (key, result.provider)
        before = self.results.get(cell)
        self.results[cell] = result
        if result.provider in self._asked.get(item.kind, ()):
            self._finished += _final(result) - (before is not None and _final(before))
        return True

    def entry(self, item: JobIndicator, provider: str) -> LookupResult:
        key = self._keys.get((item.kind, item.value))
        found = None if key is None else self.results.get((key, provider))
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
    def finished(self) -> int:
        """How many of the job's results are final (neither pending nor queued)."""
        return self._finished

    @property
    def complete(self) -> bool:
        """Every provider asked has a final result for every indicator."""
        return self._finished >= self._cells

    def rows(self) -> list[tuple[JobIndicator, list[LookupResult]]]:
        return [
            (i, [self.entry(i, p) for p in self.job.providers.get(i.kind, [])])
            for i in self.job.indicators
        ]

    def as_json(self) -> dict[str, Any]:
        """The job as the API shows it, in plain JSON values."""
        shown = self.answer()
        shown["results"] = [msgspec.to_builtins(r) for r in shown["results"]]
        return shown

    def answer(self) -> dict[str, Any]:
        """:meth:`as_json` with the results left as they are (``LookupResult``), for a
        msgspec encoder: it writes them as ``to_builtins`` would, without the copy."""
        rows = self.rows()
        indicators = []
        for item, results in rows:
            verdict, reasons = judge(results)
            indicators.append(
                {
                    **indicator_json(item),
                    "verdict": verdict,
                    "verdict_reasons": reasons,
                }
            )
        return {
            "id": self.job.id,
            "created_at": self.job.created_at,
            "request_id": self.job.request_id,
            "scheduled": self.job.scheduled,
            "watch": self.job.watch,
            "expand": self.job.expand,
            "complete": self.complete,
            "providers": self.job.providers,
            "rejected": self.job.rejected,
            "rejected_total": max(self.job.rejected_total, len(self.job.rejected)),
            "indicators": indicators,
            "results": [r for _, results in rows for r in results],
        }


CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in text that came from outside."""
    return "'" + value if value.startswith(CSV_RISKY) else value


def csv_text(view: JobView) -> str:
    """One row per indicator: overall verdict and its reasons (``"; "``-separated), then
    status, verdict, summary per provider (an error's cause where there is no summary)."""
    job = view.job
    providers = [p for p in catalog.names() if any(p in ps for ps in job.providers.values())]
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
