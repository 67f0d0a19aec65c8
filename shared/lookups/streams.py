"""The lookups' streams, buckets and consumers: LOOKUPS and LOOKUP_RESULTS, the jobs,
results, cache and quota buckets, one durable consumer per provider; and their memory: the
indicator history bucket with its indexer's consumer, the recent-jobs stream
RECENT_LOOKUPS, the watches and the scheduler's bucket."""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from shared.bus.manage import DAY, KV_STREAM, ensure_bucket, ensure_stream
from shared.core.settings import Settings
from shared.lookups import catalog
from shared.lookups.config import lookups

LOOKUPS = "LOOKUPS"
LOOKUP_RESULTS = "LOOKUP_RESULTS"
JOBS_BUCKET = "lookup_jobs"
RESULTS_BUCKET = "lookup_results"
CACHE_BUCKET = "lookup_cache"
QUOTA_BUCKET = "provider_quota"
HISTORY_BUCKET = "indicator_history"
RECENT_LOOKUPS = "RECENT_LOOKUPS"
RECENT_KEPT = 10_000
"""Jobs the recent-jobs index keeps (the oldest go first; also at most the history TTL)."""
WATCHES_BUCKET = "watches"
SCHEDULER_BUCKET = "scheduler"
HISTORY_DURABLE = "lookup-history"
"""The indexer's durable consumer on the ``lookup_results`` bucket's stream (every scheduler
replica shares it)."""
RESULTS_STREAM = KV_STREAM.format(bucket=RESULTS_BUCKET)
RESULTS_REPUBLISH = RePublish(
    src=f"$KV.{RESULTS_BUCKET}.*.*.*", dest="lookup.result.{{wildcard(3)}}"
)
"""Every result stored in ``lookup_results`` (key ``<job>.<indicator key>.<provider>``) is
published again by nats-server on ``lookup.result.<provider>``, where LOOKUP_RESULTS stores
it: one write by the runner, not a KV put and a publish, each awaited."""


LOOKUPS_MAX_AGE = 3 * DAY
"""How long the LOOKUPS stream keeps a request. A request queued behind a quota or an
upstream's pause comes back when its time comes (a delayed nak, at most about a day: the
next UTC midnight, a ``Retry-After`` capped at a day); one whose return would fall past
half of this is put back as a fresh copy instead (see shared.lookups.runner), so a request
waits as long as it has to and is never dropped by the stream's age limit."""


def provider_durable(provider: str) -> str:
    return f"provider-{provider}"


async def provision(js: JetStreamContext, settings: Settings) -> None:
    """Streams, KV buckets and one durable consumer per provider, for host lookups."""
    config = lookups(settings)
    job_ttl = config.job_ttl
    for stream in (
        StreamConfig(
            name=LOOKUPS,
            description="Lookup requests, one per indicator of a job",
            subjects=["lookup.requested.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=LOOKUPS_MAX_AGE,
            duplicate_window=min(600.0, LOOKUPS_MAX_AGE),
        ),
        StreamConfig(
            name=LOOKUP_RESULTS,
            description="Lookup results, one per indicator and provider",
            subjects=["lookup.result.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=DAY,
        ),
        StreamConfig(
            name=RECENT_LOOKUPS,
            description="A summary of every new lookup job, the newest kept",
            subjects=["lookup.created"],  # LOOKUP_CREATED_SUBJECT
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            max_age=config.history_ttl,
            max_msgs=RECENT_KEPT,
            duplicate_window=min(120.0, config.history_ttl),
            allow_direct=True,  # read with direct gets (shared.bus.direct)
        ),
    ):
        await ensure_stream(js, stream, settings.stream_replicas)
    for bucket in (
        KeyValueConfig(
            bucket=JOBS_BUCKET,
            description="lookup jobs",
            direct=True,  # read with direct gets (shared.bus.direct), never a watch
            ttl=job_ttl,
            storage=StorageType.FILE,
        ),
        KeyValueConfig(
            bucket=RESULTS_BUCKET,
            description="lookup results by job",
            direct=True,  # read with direct gets (shared.bus.direct), never a watch
            ttl=job_ttl,
            storage=StorageType.FILE,
            republish=RESULTS_REPUBLISH,
        ),
        KeyValueConfig(
            bucket=CACHE_BUCKET,
            description="provider answers, per provider TTL",
            ttl=7 * DAY,
            storage=StorageType.FILE,
        ),
        KeyValueConfig(
            bucket=QUOTA_BUCKET,
            description="provider quotas shared by every replica",
            ttl=2 * DAY,
            storage=StorageType.FILE,
        ),
        KeyValueConfig(
            bucket=HISTORY_BUCKET,
            description="indicator history by indicator key",
            direct=True,  # read with direct gets (shared.bus.direct), never a watch
            ttl=config.history_ttl,
            storage=StorageType.FILE,
        ),
        KeyValueConfig(
            bucket=WATCHES_BUCKET,
            description="watch lists: indicators re-looked up on a schedule",
            direct=True,
            storage=StorageType.FILE,
        ),
        KeyValueConfig(
            bucket=SCHEDULER_BUCKET,
            description="the scheduler's lease and when each watch runs next",
            direct=True,
            storage=StorageType.FILE,
        ),
    ):
        await ensure_bucket(js, bucket, settings.stream_replicas)
    await bound_history(js, config.history_max_bytes)
    # Before the results were republished, the indexer read LOOKUP_RESULTS; it reads the
    # bucket now, which has every result for certain (a republished copy the server cannot
    # store in LOOKUP_RESULTS is not sent again).
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(LOOKUP_RESULTS, HISTORY_DURABLE)
    await _ensure_consumer(
        js,
        RESULTS_STREAM,
        ConsumerConfig(
            durable_name=HISTORY_DURABLE,
            description="the indicator history's indexer (the scheduler service)",
            filter_subject=f"$KV.{RESULTS_BUCKET}.>",
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_deliver=-1,
            max_ack_pending=10_000,
        ),
    )
    for provider in catalog.active_names(settings):
        await _ensure_consumer(
            js,
            LOOKUPS,
            ConsumerConfig(
                durable_name=provider_durable(provider),
                description=f"lookups by provider {provider}",
                # only the kinds it answers: the others are not delivered to it at all
                filter_subjects=requested_subjects(provider),
                deliver_policy=DeliverPolicy.NEW,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60.0,
                max_deliver=-1,
                max_ack_pending=20_000,
            ),
        )


def requested_subjects(provider: str) -> list[str]:
    """The request subjects of the kinds ``provider`` answers (``lookup.requested.<kind>``)."""
    return sorted(f"lookup.requested.{kind}" for kind in catalog.kinds(provider))


async def _ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create the durable consumer, or bring its subject filter up to date (a provider that
    answers a new kind, a consumer created before filters were per kind)."""
    assert config.durable_name is not None
    try:
        info = await js.consumer_info(stream, config.durable_name)
    except NotFoundError:
        await js.add_consumer(stream, config)
        return
    wanted = sorted(config.filter_subjects or [config.filter_subject or ""])
    held = sorted(info.config.filter_subjects or [info.config.filter_subject or ""])
    if wanted != held:
        await js.add_consumer(stream, config)  # same durable: the server updates it


async def bound_history(js: JetStreamContext, max_bytes: int) -> None:
    """Bound the history bucket: at most ``max_bytes``, the keys written least recently
    dropped first (its stream discards old messages instead of refusing new ones, so the
    indexer never stops)."""
    info = await js.stream_info(KV_STREAM.format(bucket=HISTORY_BUCKET))
    current = info.config
    if current.discard == DiscardPolicy.OLD and current.max_bytes == max_bytes:
        return
    current.discard = DiscardPolicy.OLD
    current.max_bytes = max_bytes
    await js.update_stream(current)
