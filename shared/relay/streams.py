"""The relay's streams, buckets and consumers: NOTIFICATIONS and DEADLETTERS, the delivery
status and send pace buckets, and one durable consumer per configured target."""

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
from nats.js.errors import BadRequestError, NotFoundError

from shared.bus.manage import DAY, ensure_bucket, ensure_stream
from shared.core import logging as log
from shared.core.settings import Settings
from shared.relay import silences
from shared.relay.config import relay

NOTIFICATIONS = "NOTIFICATIONS"
DEADLETTERS = "DEADLETTERS"
STATUS_BUCKET = "delivery_status"
PACE_BUCKET = "sink_pace"
HEALTH_BUCKET = "target_health"

_log = log.get("bus")


def stream_configs(settings: Settings) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=NOTIFICATIONS,
            description="Verified notifications from webhooks and other publishers",
            subjects=["notification.>", "replay.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * DAY,
            duplicate_window=settings.dedup_window,
        ),
        StreamConfig(
            name=DEADLETTERS,
            description="Notifications a target gave up on; list and replay them",
            subjects=["deadletter.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30 * DAY,
            duplicate_window=120.0,
            allow_direct=True,  # listed in pages of direct gets (shared.bus.direct)
        ),
    ]


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """Create the streams, or bring an existing one's settings up to date."""
    for config in stream_configs(settings):
        await ensure_stream(js, config, settings.stream_replicas)


def sink_durable(target_name: str) -> str:
    return f"sink-{target_name}"


def sink_filters(target_name: str) -> list[str]:
    """Every notification, plus the replays meant for this target alone."""
    return ["notification.>", f"replay.{target_name}"]


def sink_consumer_config(target_name: str, ack_wait: float) -> ConsumerConfig:
    # No num_replicas (0): a durable consumer has its stream's replica count and follows
    # it when LOOKOUT_STREAM_REPLICAS scales the stream.
    return ConsumerConfig(
        durable_name=sink_durable(target_name),
        description=f"deliveries to target {target_name}",
        filter_subjects=sink_filters(target_name),
        deliver_policy=DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=10_000,
    )


async def ensure_sink_consumer(js: JetStreamContext, target_name: str, ack_wait: float) -> None:
    """Create the durable consumer of a target once; it then survives every restart.

    Every service that knows the configuration calls this before it accepts or relays
    anything, so a notification published after ``make run`` started is never missed by a
    target whose sink process is still starting.
    """
    durable = sink_durable(target_name)
    try:
        info = await js.consumer_info(NOTIFICATIONS, durable)
    except NotFoundError:
        await js.add_consumer(NOTIFICATIONS, sink_consumer_config(target_name, ack_wait))
        return
    filters = info.config.filter_subjects or [info.config.filter_subject]
    if info.config.ack_wait != ack_wait or filters != sink_filters(target_name):
        # Settings changed (or an older lookout made it): update it in place.
        config = sink_consumer_config(target_name, ack_wait)
        config.deliver_policy = info.config.deliver_policy
        config.opt_start_time = info.config.opt_start_time
        config.opt_start_seq = info.config.opt_start_seq
        try:
            await js.add_consumer(NOTIFICATIONS, config)
        except BadRequestError as exc:
            _log.warning("could not update consumer", consumer=durable, error=str(exc))


def ack_wait_for(timeout: float) -> float:
    """How long a delivery may stay unacknowledged before JetStream redelivers it.

    Short, so the deliveries a crashed sink had in flight are retried soon; a live sink
    whose target is slow sends "in progress" every third of it (see shared.relay.runner), so
    a long target timeout never causes a redelivery while the first attempt still runs.
    """
    return max(10.0, min(timeout, 30.0))


async def provision(js: JetStreamContext, settings: Settings) -> None:
    """The streams, buckets (silences included) and every configured target's consumer,
    created or updated."""
    await ensure_streams(js, settings)
    for bucket in (
        KeyValueConfig(
            bucket=STATUS_BUCKET,
            description="delivery state per notification and target",
            direct=True,  # read with direct gets (shared.bus.direct), never a watch
            ttl=7 * DAY,
            storage=StorageType.FILE,
        ),
        KeyValueConfig(
            bucket=PACE_BUCKET,
            description="send slots and 429 pauses per target, shared by a sink's replicas",
            history=1,
            ttl=DAY,  # idle keys go; longer than a pause (Retry-After, capped at 1 h by default)
            storage=StorageType.FILE,  # a restarted nats-server still has it
        ),
        KeyValueConfig(
            bucket=HEALTH_BUCKET,
            description="target health: consecutive failures, pauses, probes; every replica",
            history=1,
            direct=True,  # read by the gateway with direct gets
            storage=StorageType.FILE,  # a paused target stays paused across restarts
        ),
        silences.bucket_config(),
    ):
        await ensure_bucket(js, bucket, settings.stream_replicas)
    for target in relay(settings).targets:
        await ensure_sink_consumer(js, target.name, ack_wait_for(target.timeout))
