"""Messages of the host lookups. Each is versioned by the ``Lookout-Schema`` header.

``lookup.requested.<kind>`` (stream LOOKUPS) — schema ``lookup-request/1``: one indicator of
one job. Every provider has its own durable consumer on this stream, so every provider sees
every request; replicas of one provider share its consumer.

``lookup.result.<provider>`` (stream LOOKUP_RESULTS) — schema ``lookup-result/1``: what the
provider found. The same record is kept in the KV bucket ``lookup_results`` under
``<job id>.<indicator key>.<provider>`` for the API, the event stream and the UI.

``lookup.created`` (stream RECENT_LOOKUPS) — schema ``lookup-created/1``: a summary of each
new job, the recent-jobs index (``GET /api/v1/lookups``), kept as long as the history.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from shared.bus.messages import Text

LOOKUP_REQUEST_SCHEMA = "lookup-request/1"
LOOKUP_RESULT_SCHEMA = "lookup-result/1"
LOOKUP_CREATED_SCHEMA = "lookup-created/1"
LOOKUP_CREATED_SUBJECT = "lookup.created"
SAMPLE = 3
"""Indicators a job summary names (:class:`JobCreated`, the history's jobs)."""
SAMPLE_CHARS = 200
"""The longest sample value kept (a longer one is cut, ending with ``…``)."""


def sample_of(values: list[str]) -> list[str]:
    """The first :data:`SAMPLE` values, each at most :data:`SAMPLE_CHARS` long."""
    return [v if len(v) <= SAMPLE_CHARS else v[: SAMPLE_CHARS - 1] + "…" for v in values[:SAMPLE]]


Status = Literal["pending", "queued", "done", "not_configured", "quota_exhausted", "error"]
Verdict = Literal["malicious", "suspicious", "harmless", "undetected", "unknown", "error"]


def indicator_key(kind: str, value: str) -> str:
    """A short, subject-safe key for one indicator (values hold ':', '/', '@'…)."""
    return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()[:20]


class LookupRequest(msgspec.Struct, kw_only=True, frozen=True):
    job_id: Text
    indicator: Text
    kind: Literal["ipv4", "ipv6", "domain", "url", "email", "hash"]
    host: str | None = None
    registered_domain: str | None = None
    scope: str = "public"
    providers: list[str] = []
    """Only these providers (empty: every provider that handles the kind)."""
    fresh: bool = False
    """Bypass the cache."""
    requested_at: str = ""
    scheduled: bool = False
    """A re-lookup of a watch: it spends the shared quotas after interactive lookups."""
    expand: bool = False
    """One of the indicators a job was created with, ``"expand": true``: the provider adds
    the pivots of its answer to the job (their own requests never expand: one level)."""

    @property
    def key(self) -> str:
        return indicator_key(self.kind, self.indicator)

    @property
    def subject(self) -> str:
        return f"lookup.requested.{self.kind}"


class Pivot(msgspec.Struct, frozen=True):
    """A value in a result worth looking up next (see :mod:`shared.lookups.pivots`)."""

    value: str
    """An indicator, normalised as on input."""
    kind: str
    why: str
    """What it is to the indicator looked up (``MX record``, ``name server``…)."""


class LookupResult(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=False):
    job_id: str
    indicator: str
    kind: str
    provider: str
    status: Status
    verdict: Verdict = "unknown"
    summary: str = ""
    """A few words for a table cell, e.g. ``12/94 engines`` or ``11 DNS lookups``."""
    data: dict[str, Any] = {}
    cached: bool = False
    error: str | None = None
    retry_at: str | None = None
    """``queued``: when the request is expected to go out; ``quota_exhausted``: reset time."""
    updated_at: str = ""
    pivots: list[Pivot] = []
    """Values in ``data`` worth looking up next, as the provider declares them (at most
    ``shared.lookups.pivots.MAX_PIVOTS``; only in a ``done`` result)."""

    @property
    def kv_key(self) -> str:
        return f"{self.job_id}.{indicator_key(self.kind, self.indicator)}.{self.provider}"


class JobIndicator(msgspec.Struct, frozen=True):
    value: str
    kind: str
    scope: str = "public"


class Job(msgspec.Struct, kw_only=True, frozen=True):
    """A lookup job (KV bucket ``lookup_jobs``, key = id)."""

    id: str
    created_at: str
    indicators: list[JobIndicator]
    providers: dict[str, list[str]]
    """Per indicator kind, the providers that will answer for it."""
    rejected: list[dict[str, str]] = []
    """The first of the items that could not be read (at most
    ``shared.lookups.jobs.REJECTED_KEPT``)."""
    fresh: bool = False
    request_id: str | None = None
    """The request that created it (``X-Request-Id``; sent as ``Lookout-Request-Id`` with
    each of its lookup requests). None for a job stored before request ids."""
    rejected_total: int = 0
    """How many items could not be read (0 in a job stored before it was counted)."""
    chunks: int = 0
    """Stored only: the indicators are kept apart under the keys ``<id>.0`` … ``<id>.<n-1>``
    (see shared.lookups.jobs), so a job of any size fits in NATS messages; 0 when inline."""
    scheduled: bool = False
    """Submitted by the scheduler for a watch (``watch``), not by a person."""
    watch: str | None = None
    """The watch this job re-looks up, when scheduled."""
    count: int = 0
    """How many indicators (0 in a job stored before it was counted: see ``indicators``)."""
    sample: list[str] = []
    """The first :data:`SAMPLE` indicators' values."""
    only: list[str] = []
    """The providers the job was asked for (empty: every provider of each kind): those
    that answer indicators added later."""
    additions: int = 0
    """Indicators added after creation are kept under ``<id>.a0`` … ``<id>.a<n-1>``."""
    expand: bool = False
    """Created with ``"expand": true``: its indicators' pivots are added to it."""
    expanded: int = 0
    """How many indicators the expansion added (at most ``jobs.MAX_EXPANSION``)."""


class JobCreated(msgspec.Struct, kw_only=True, frozen=True):
    """A job's summary, published on ``lookup.created`` when it is created (the recent-jobs
    index) and kept per indicator in the history."""

    id: str
    created_at: str
    indicators: int
    """How many indicators the job has."""
    sample: list[str] = []
    """The first few indicators' values (at most :data:`SAMPLE`)."""
    scheduled: bool = False
    watch: str | None = None


def summary_of(job: Job) -> JobCreated:
    return JobCreated(
        id=job.id,
        created_at=job.created_at,
        indicators=job.count or len(job.indicators),
        sample=job.sample or sample_of([i.value for i in job.indicators[:SAMPLE]]),
        scheduled=job.scheduled,
        watch=job.watch,
    )


_result_decoder = msgspec.json.Decoder(LookupResult)
_request_decoder = msgspec.json.Decoder(LookupRequest)
_job_decoder = msgspec.json.Decoder(Job)
_created_decoder = msgspec.json.Decoder(JobCreated)


def decode_lookup_request(data: bytes) -> LookupRequest:
    return _request_decoder.decode(data)


def decode_lookup_result(data: bytes) -> LookupResult:
    return _result_decoder.decode(data)


def decode_job(data: bytes) -> Job:
    return _job_decoder.decode(data)


def decode_job_created(data: bytes) -> JobCreated:
    return _created_decoder.decode(data)
