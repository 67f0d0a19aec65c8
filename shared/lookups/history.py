"""The indicator history: what lookout found about each indicator, kept beyond its jobs.

KV bucket ``indicator_history`` (TTL ``LOOKOUT_HISTORY_TTL`` after the last update, at most
``LOOKOUT_HISTORY_MAX_BYTES``: the indicators updated least recently go first), one key per
indicator (:func:`shared.lookups.schemas.indicator_key`), holding an :class:`Entry`: its
kind, when it was first and last seen, the latest result of each provider (and the last
*finding*, a ``done`` result, which an error later does not erase), the overall verdict
each time it changed, the jobs it was in (newest first), and the jobs whose results are
still coming in (:class:`Open`). Every list is bounded.

Only the indexer writes it (``services/scheduler``: a durable consumer of
``lookup.result.>`` shared by every replica, compare-and-set updates, :func:`apply`). A
job's verdict is taken when every provider it asked has answered for the indicator (or,
for a provider that never does, a day later or when newer jobs crowd it out): then the
overall verdict is compared with the last one, each provider's finding with its previous
one, and a change the ``rule`` wants told is put in the entry's ``outbox`` in the same write,
to be published and removed after (so a crash between the two loses no alert). The API
and ``lookout history`` read it with direct gets (no consumer). History never asks a
provider anything: it spends no quota.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus import direct, messages
from shared.bus.kvtime import MAX_TRIES
from shared.lookups import catalog
from shared.lookups import streams as lookup_streams
from shared.lookups.schemas import (
    LOOKUP_CREATED_SUBJECT,
    Job,
    JobCreated,
    LookupResult,
    Status,
    Verdict,
    decode_job_created,
    indicator_key,
    summary_of,
)
from shared.lookups.verdicts import OverallVerdict, judge
from shared.lookups.watches import parse_duration

FINAL: frozenset[str] = frozenset({"done", "error", "not_configured", "quota_exhausted"})
"""The statuses a provider ends a lookup with (``pending`` and ``queued`` are not kept)."""
KEPT_VERDICTS = 50
KEPT_JOBS = 50
KEPT_OPEN = 5
KEPT_OUTBOX = 20
OPEN_MAX_AGE = 86400.0
"""Seconds after which a job still waiting for a provider is judged without it."""
DATA_BYTES = 32 * 1024
"""The largest ``data`` of a result the history keeps (a larger one is left out)."""
WORSE_RANK = {"malicious": 2, "suspicious": 1}


class Latest(msgspec.Struct, kw_only=True, frozen=True):
    """A provider's latest final result for the indicator."""

    status: Status
    verdict: Verdict
    summary: str = ""
    error: str | None = None
    cached: bool = False
    data: dict[str, Any] = {}
    data_left_out: bool = False
    """``data`` was larger than :data:`DATA_BYTES` and is not kept."""
    at: str
    job_id: str


class Finding(msgspec.Struct, kw_only=True, frozen=True):
    """A provider's latest ``done`` result: its verdict stands until another ``done`` one."""

    verdict: Verdict
    summary: str = ""
    at: str
    job_id: str


class ProviderState(msgspec.Struct, kw_only=True, frozen=True):
    latest: Latest
    finding: Finding | None = None


class VerdictEntry(msgspec.Struct, kw_only=True, frozen=True):
    """The overall verdict from ``at`` on (until the next entry)."""

    verdict: OverallVerdict
    reasons: list[str] = []
    at: str
    job_id: str


class Change(msgspec.Struct, kw_only=True, frozen=True):
    """A provider's finding changed."""

    provider: str
    label: str
    old_verdict: Verdict
    new_verdict: Verdict
    old_summary: str = ""
    new_summary: str = ""


class Open(msgspec.Struct, kw_only=True, frozen=True):
    """A job whose results for the indicator are coming in."""

    job_id: str
    opened_at: float
    """Epoch seconds of its first result here."""
    expected: list[str]
    answered: list[str] = []
    changes: list[Change] = []
    scheduled: bool = False
    watch: str | None = None


class Alert(msgspec.Struct, kw_only=True, frozen=True):
    """A verdict change to tell (the scheduler publishes it as ``verdict_changed``)."""

    id: str
    indicator: str
    kind: str
    job_id: str
    at: str
    old_verdict: OverallVerdict
    new_verdict: OverallVerdict
    reasons: list[str] = []
    changes: list[Change] = []
    watches: list[str] = []
    scheduled: bool = False


class Entry(msgspec.Struct, kw_only=True, frozen=True):
    value: str
    kind: str
    first_seen: str
    last_seen: str
    providers: dict[str, ProviderState] = {}
    verdicts: list[VerdictEntry] = []
    """Oldest first: one entry each time the overall verdict changed."""
    jobs: list[JobCreated] = []
    """Newest first."""
    open: list[Open] = []
    outbox: list[Alert] = []


@dataclass(frozen=True)
class Closing:
    """A job judged: what the ``rule`` of :func:`apply` decides on."""

    job_id: str
    old_verdict: OverallVerdict | None
    """The overall verdict before it (None: the indicator had none yet)."""
    new_verdict: OverallVerdict
    reasons: list[str]
    changes: list[Change]
    scheduled: bool
    watch: str | None

    @property
    def overall_changed(self) -> bool:
        return self.old_verdict is not None and self.old_verdict != self.new_verdict

    @property
    def changed(self) -> bool:
        return self.overall_changed or bool(self.changes)

    @property
    def worse(self) -> bool:
        """The overall verdict got worse (harmless → suspicious or malicious, …)."""
        old = WORSE_RANK.get(self.old_verdict or "", 0)
        return self.overall_changed and WORSE_RANK.get(self.new_verdict, 0) > old


Rule = Callable[[Entry, Closing], list[str]]
"""Which watches to tell of a judged job that changed something (none: no alert)."""

_entry_decoder = msgspec.json.Decoder(Entry)


def decode(data: bytes) -> Entry:
    return _entry_decoder.decode(data)


def key_of(kind: str, value: str) -> str:
    return indicator_key(kind, value)


def _order(name: str) -> int:
    names = catalog.names()
    return names.index(name) if name in names else len(names)


def _counted(entry: Entry) -> list[LookupResult]:
    """Each provider as it counts for the overall verdict: its finding, else its latest
    result (an error counts only while the provider never found anything)."""
    out = []
    for name in sorted(entry.providers, key=_order):
        state = entry.providers[name]
        latest = state.latest
        counted = LookupResult(
            job_id=latest.job_id,
            indicator=entry.value,
            kind=entry.kind,
            provider=name,
            status=latest.status,
            verdict=latest.verdict,
            summary=latest.summary,
            error=latest.error,
        )
        if state.finding is not None:
            counted = msgspec.structs.replace(
                counted,
                status="done",
                verdict=state.finding.verdict,
                summary=state.finding.summary,
                error=None,
            )
        out.append(counted)
    return out


def overall(entry: Entry) -> tuple[OverallVerdict, list[str]]:
    """The indicator's overall verdict and why, from what each provider last found
    (:func:`shared.lookups.verdicts.judge`)."""
    return judge(_counted(entry))


def _latest(result: LookupResult) -> Latest:
    data, left_out = result.data, False
    if data and len(msgspec.json.encode(data)) > DATA_BYTES:
        data, left_out = {}, True
    return Latest(
        status=result.status,
        verdict=result.verdict,
        summary=result.summary,
        error=result.error,
        cached=result.cached,
        data=data,
        data_left_out=left_out,
        at=result.updated_at,
        job_id=result.job_id,
    )


def _with_change(changes: list[Change], found: Change) -> list[Change]:
    """``changes`` with ``found`` merged in: a provider keeps its first old verdict; a
    change back to it is no change."""
    others = [c for c in changes if c.provider != found.provider]
    earlier = next((c for c in changes if c.provider == found.provider), None)
    if earlier is not None:
        found = msgspec.structs.replace(
            found, old_verdict=earlier.old_verdict, old_summary=earlier.old_summary
        )
    if found.old_verdict == found.new_verdict:
        return others
    return sorted([*others, found], key=lambda c: _order(c.provider))


def _job_ref(result: LookupResult, job: Job | None) -> JobCreated:
    if job is not None:
        return summary_of(job)
    return JobCreated(id=result.job_id, created_at=result.updated_at, indicators=0)


def apply(
    entry: Entry | None, result: LookupResult, job: Job | None, now: float, rule: Rule
) -> Entry | None:
    """``entry`` (None: never seen) with ``result`` of ``job`` (None: expired, or unknown)
    taken in, at epoch ``now``; None when nothing changes (not a final result, or one
    already taken in: a redelivered result changes nothing). Jobs that are complete (or
    stale) are judged on the way, ``rule`` saying which of their changes to tell."""
    if result.status not in FINAL:
        return None
    state = entry.providers.get(result.provider) if entry is not None else None
    if (
        state is not None
        and state.latest.job_id == result.job_id
        and state.latest.at >= result.updated_at
    ):
        return None
    if entry is None:
        entry = Entry(
            value=result.indicator,
            kind=result.kind,
            first_seen=result.updated_at,
            last_seen=result.updated_at,
        )
    providers = dict(entry.providers)
    jobs = entry.jobs
    if not any(j.id == result.job_id for j in jobs):
        jobs = sorted([_job_ref(result, job), *jobs], key=lambda j: j.created_at, reverse=True)
        jobs = jobs[:KEPT_JOBS]
    opens = list(entry.open)
    current = next((o for o in opens if o.job_id == result.job_id), None)
    if current is None:
        expected = job.providers.get(result.kind, []) if job is not None else []
        current = Open(
            job_id=result.job_id,
            opened_at=now,
            expected=sorted(set(expected) | {result.provider}, key=_order),
            scheduled=job.scheduled if job is not None else False,
            watch=job.watch if job is not None else None,
        )
        opens.append(current)
    changes = current.changes
    if state is None or result.updated_at > state.latest.at:  # never let an older one win
        finding = state.finding if state is not None else None
        if result.status == "done":
            if finding is not None and finding.verdict != result.verdict:
                changes = _with_change(
                    changes,
                    Change(
                        provider=result.provider,
                        label=catalog.label(result.provider),
                        old_verdict=finding.verdict,
                        new_verdict=result.verdict,
                        old_summary=finding.summary,
                        new_summary=result.summary,
                    ),
                )
            finding = Finding(
                verdict=result.verdict,
                summary=result.summary,
                at=result.updated_at,
                job_id=result.job_id,
            )
        providers[result.provider] = ProviderState(latest=_latest(result), finding=finding)
    answered = sorted(set(current.answered) | {result.provider}, key=_order)
    current = msgspec.structs.replace(current, answered=answered, changes=changes)
    opens = [current if o.job_id == current.job_id else o for o in opens]
    entry = msgspec.structs.replace(
        entry,
        providers=providers,
        jobs=jobs,
        open=opens,
        first_seen=min(entry.first_seen, result.updated_at),
        last_seen=max(entry.last_seen, result.updated_at),
    )
    by_age = sorted(entry.open, key=lambda o: o.opened_at)
    crowded = {o.job_id for o in by_age[: max(0, len(by_age) - KEPT_OPEN)]}
    for item in by_age:
        complete = set(item.expected) <= set(item.answered)
        if complete or item.opened_at < now - OPEN_MAX_AGE or item.job_id in crowded:
            entry = _close(entry, item, result.updated_at, rule)
    return entry


_NONE: Final = ("error", "pending")
"""Overall verdicts that are no verdict for telling a change (see :func:`_close`)."""


def _close(entry: Entry, item: Open, at: str, rule: Rule) -> Entry:
    """Judge the job ``item``: a new overall verdict joins the history, and a change the
    ``rule`` wants told joins the outbox."""
    verdict, reasons = overall(entry)
    previous = entry.verdicts[-1].verdict if entry.verdicts else None
    verdicts = entry.verdicts
    if verdict != previous:
        judged = VerdictEntry(verdict=verdict, reasons=reasons, at=at, job_id=item.job_id)
        verdicts = [*verdicts, judged][-KEPT_VERDICTS:]
    # The verdict a change is told against: the last that was not "could not check" or
    # "not checked yet". Lookups that could only fail are no verdict, so the first real
    # one after them (error → harmless once the upstream is back) is the first verdict.
    told = next((v.verdict for v in reversed(entry.verdicts) if v.verdict not in _NONE), None)
    closing = Closing(
        job_id=item.job_id,
        old_verdict=told,
        new_verdict=verdict,
        reasons=reasons,
        changes=item.changes,
        scheduled=item.scheduled,
        watch=item.watch,
    )
    entry = msgspec.structs.replace(
        entry, verdicts=verdicts, open=[o for o in entry.open if o.job_id != item.job_id]
    )
    watches = rule(entry, closing) if closing.changed else []
    if not watches:
        return entry
    alert = Alert(
        id=f"verdict-{key_of(entry.kind, entry.value)}-{item.job_id}",
        indicator=entry.value,
        kind=entry.kind,
        job_id=item.job_id,
        at=at,
        old_verdict=told or verdict,
        new_verdict=verdict,
        reasons=reasons,
        changes=item.changes,
        watches=sorted(set(watches)),
        scheduled=item.scheduled,
    )
    return msgspec.structs.replace(entry, outbox=[*entry.outbox, alert][-KEPT_OUTBOX:])


def sent(entry: Entry | None, ids: set[str]) -> Entry | None:
    """``entry`` without the alerts ``ids`` in its outbox (None when none is there)."""
    if entry is None or not any(a.id in ids for a in entry.outbox):
        return None
    return msgspec.structs.replace(entry, outbox=[a for a in entry.outbox if a.id not in ids])


class Contended(Exception):
    """Other writers kept changing the key: try again later."""


async def update(
    kv: KeyValue, key: str, change: Callable[[Entry | None], Entry | None]
) -> Entry | None:
    """Apply ``change`` to the entry under ``key`` by compare-and-set (read again and
    retry when another writer came first); the entry as written, or as read when
    ``change`` changed nothing. An entry that no longer decodes starts again."""
    for attempt in range(MAX_TRIES):
        try:
            found = await kv.get(key)
            revision: int | None = found.revision
            try:
                entry = decode(found.value) if found.value else None
            except (msgspec.DecodeError, msgspec.ValidationError):
                entry = None
        except KeyNotFoundError:
            entry, revision = None, None
        changed = change(entry)
        if changed is None:
            return entry
        body = messages.encode(changed)
        try:
            if revision is None:
                await kv.create(key, body)
            else:
                await kv.update(key, body, last=revision)
        except KeyWrongLastSequenceError:
            await asyncio.sleep(min(0.2, 0.005 * attempt))
            continue
        return changed
    raise Contended(f"history entry {key} kept changing")


_HISTORY_STREAM = direct.kv_stream(lookup_streams.HISTORY_BUCKET)


async def read(reader: direct.Reader, kind: str, value: str) -> Entry | None:
    """The history of the indicator (``kind``, normalised ``value``), or None."""
    found = await reader.last(
        _HISTORY_STREAM,
        direct.kv_subject(lookup_streams.HISTORY_BUCKET, key_of(kind, value)),
    )
    if found is None or found.removed or not found.data:
        return None
    try:
        return decode(found.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def read_many(
    reader: direct.Reader, items: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Entry]:
    """The histories of many indicators (``(kind, normalised value)``, at most
    :data:`direct.MULTI_LAST`) in one read, by indicator; those never seen are left out."""
    subjects = {
        direct.kv_subject(lookup_streams.HISTORY_BUCKET, key_of(kind, value)): (kind, value)
        for kind, value in items
    }
    found: dict[tuple[str, str], Entry] = {}
    for subject, stored in (await reader.last_of(_HISTORY_STREAM, list(subjects))).items():
        if stored.removed or not stored.data or subject not in subjects:
            continue
        try:
            found[subjects[subject]] = decode(stored.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return found


async def recent(reader: direct.Reader, limit: int, since: str | None = None) -> list[JobCreated]:
    """The newest ``limit`` jobs (created at ``since`` or later), newest first."""
    stored, _ = await reader.newest(lookup_streams.RECENT_LOOKUPS, LOOKUP_CREATED_SUBJECT, limit)
    found = []
    for msg in stored:
        try:
            job = decode_job_created(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if since is not None and job.created_at < since:
            break  # newest first: every one after is older still
        found.append(job)
    return found


def jobs_of(entry: Entry, limit: int, since: str | None = None) -> list[JobCreated]:
    """The jobs ``entry``'s indicator was in, newest first."""
    return [j for j in entry.jobs if since is None or j.created_at >= since][:limit]


def as_json(entry: Entry) -> dict[str, Any]:
    """The history as the API and ``lookout history --json`` show it."""
    verdict, reasons = overall(entry)
    providers = []
    for name in sorted(entry.providers, key=_order):
        state = entry.providers[name]
        latest = state.latest
        providers.append(
            {
                "provider": name,
                "label": catalog.label(name),
                "status": latest.status,
                "verdict": latest.verdict,
                "summary": latest.summary,
                "error": latest.error,
                "cached": latest.cached,
                "data": latest.data,
                "data_left_out": latest.data_left_out,
                "checked_at": latest.at,
                "job_id": latest.job_id,
                "finding": msgspec.to_builtins(state.finding),
            }
        )
    return {
        **brief_json(entry, None, verdict),
        "verdict_reasons": reasons,
        "providers": providers,
        "pending_jobs": [o.job_id for o in entry.open],
    }


def brief_json(
    entry: Entry, kept: int | None, verdict: OverallVerdict | None = None
) -> dict[str, Any]:
    """The history in short (no provider results): the overall verdict now, and the newest
    ``kept`` verdict changes and jobs (None: all of them), newest first."""
    verdicts = entry.verdicts if kept is None else entry.verdicts[len(entry.verdicts) - kept :]
    return {
        "value": entry.value,
        "kind": entry.kind,
        "first_seen": entry.first_seen,
        "last_seen": entry.last_seen,
        "verdict": overall(entry)[0] if verdict is None else verdict,
        "verdict_history": [msgspec.to_builtins(v) for v in reversed(verdicts)],
        "jobs": [job_json(j) for j in entry.jobs[:kept]],
    }


def job_json(job: JobCreated) -> dict[str, Any]:
    """A job in a listing (``GET /api/v1/lookups``)."""
    return {**msgspec.to_builtins(job), "links": {"self": f"/api/v1/lookups/{job.id}"}}


def parse_since(text: str, now: float) -> str:
    """``since`` as the UTC timestamp jobs are compared with: an RFC 3339 time, or an age
    such as ``90s``, ``30m``, ``24h``, ``7d`` (that long before ``now``). ValueError with
    the reason otherwise."""
    text = text.strip()
    try:
        age = parse_duration(text)
    except ValueError:
        age = None
    if age is not None:
        try:
            moment = datetime.fromtimestamp(now - age, UTC)
        except (ValueError, OverflowError, OSError):  # before year 1: every job is younger
            moment = datetime.min.replace(tzinfo=UTC)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"since must be an RFC 3339 time (2026-01-02T03:04:05Z) or an age "
                f"(90s, 30m, 24h, 7d), not {text[:64]!r}"
            ) from None
        if moment.tzinfo is None:
            raise ValueError("since needs a time zone (e.g. Z or +02:00)")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
