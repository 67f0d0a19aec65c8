"""The lookups' streams, buckets and consumers: LOOKUPS and LOOKUP_RESULTS, the jobs,
results, cache and quota buckets, and one durable consumer per provider."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from shared.bus.manage import DAY, ensure_bucket, ensure_stream
from shared.core.settings import Settings
from shared.lookups import catalog
from shared.lookups.config import lookups

LOOKUPS = "LOOKUPS"
LOOKUP_RESULTS = "LOOKUP_RESULTS"
JOBS_BUCKET = "lookup_jobs"
RESULTS_BUCKET = "lookup_results"
CACHE_BUCKET = "lookup_cache"
QUOTA_BUCKET = "provider_quota"


def provider_durable(provider: str) -> str:
    return f"provider-{provider}"


async def provision(js: JetStreamContext, settings: Settings) -> None:
    """Streams, KV buckets and one durable consumer per provider, for host lookups."""
    job_ttl = lookups(settings).job_ttl
    for config in (
        StreamConfig(
            name=LOOKUPS,
            description="Lookup requests, one per indicator of a job",
            subjects=["lookup.requested.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=DAY,
            duplicate_window=600.0,
        ),
        StreamConfig(
            name=LOOKUP_RESULTS,
            description="Lookup results, one per indicator and provider",
            subjects=["lookup.result.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=DAY,
        ),
    ):
        await ensure_stream(js, config, settings.stream_replicas)
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
    ):
        await ensure_bucket(js, bucket, settings.stream_replicas)
    for provider in catalog.active_names(settings):
        durable = provider_durable(provider)
        try:
            await js.consumer_info(LOOKUPS, durable)
        except NotFoundError:
            await js.add_consumer(
                LOOKUPS,
                ConsumerConfig(
                    durable_name=durable,
                    description=f"lookups by provider {provider}",
                    filter_subject="lookup.requested.>",
                    deliver_policy=DeliverPolicy.NEW,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=60.0,
                    max_deliver=-1,
                    max_ack_pending=20_000,
                ),
            )
