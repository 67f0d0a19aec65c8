"""The NATS connection and idempotent provisioning of streams and durable consumers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
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
from nats.js.errors import APIError, BadRequestError, NotFoundError

from shared import direct
from shared import logging as log
from shared.config import ConfigError, Settings
from shared.schemas import PROVIDER_KINDS

NOTIFICATIONS = "NOTIFICATIONS"
DEADLETTERS = "DEADLETTERS"
LOOKUPS = "LOOKUPS"
LOOKUP_RESULTS = "LOOKUP_RESULTS"
JOBS_BUCKET = "lookup_jobs"
RESULTS_BUCKET = "lookup_results"
CACHE_BUCKET = "lookup_cache"
QUOTA_BUCKET = "provider_quota"
STATUS_BUCKET = "delivery_status"
PACE_BUCKET = "sink_pace"
SESSIONS_BUCKET = "ui_sessions"
SESSION_TTL = 12 * 3600.0  # a web UI session's lifetime, and its bucket's TTL
DAY = 86400.0
KV_STREAM = "KV_{bucket}"  # the stream behind a KV bucket (nats-py's naming)
_NON_CLUSTERED = 10074  # JetStream error code: "replicas > 1 not supported in non-clustered mode"

_log = log.get("bus")


def safe_url(url: str) -> str:
    """``url`` without credentials, for logs and messages: every server of a
    comma-separated ``NATS_URL`` (``user:password@`` or ``token@`` becomes ``***@``).
    Never raises, whatever the text."""
    return ",".join(_safe_server(server.strip()) for server in url.split(","))


def _safe_server(server: str) -> str:
    scheme, sep, rest = server.partition("://")
    if not sep:
        scheme, rest = "", server
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{rest[end:]}"


class BusUnavailable(Exception):
    pass


async def connect(url: str, name: str, *, wait: float | None = None) -> NATS:
    """Connect with unlimited reconnects. nats-py keeps retrying the first connection
    too; we log while it waits and give up after ``wait`` seconds (never when ``None``)."""
    client: list[NATS] = []
    last_note = 0.0

    async def on_error(exc: Exception) -> None:
        nonlocal last_note
        if client:
            _log.warning("nats error", error=str(exc) or type(exc).__name__)
        elif time.monotonic() - last_note > 5:
            last_note = time.monotonic()
            _log.info("waiting for nats", url=safe_url(url), error=str(exc) or type(exc).__name__)

    async def on_disconnected() -> None:
        if client and (client[0].is_closed or client[0].is_draining):
            return  # our own close, not an outage
        _log.warning("nats disconnected")

    async def on_reconnected() -> None:
        _log.info("nats reconnected")

    connecting = nats.connect(
        servers=[s.strip() for s in url.split(",")],
        name=name,
        connect_timeout=2,
        reconnect_time_wait=0.5,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        ping_interval=10,
        max_outstanding_pings=3,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    # nats-py's connect loop can lose a cancellation (asyncio.wait_for of Python 3.11 drops
    # one that meets a finished connection attempt, and the loop then tries again for
    # ever): it runs as its own task, and giving up cancels that task until it has ended.
    attempt = asyncio.ensure_future(connecting)
    try:
        shielded = asyncio.shield(attempt)
        nc = await (shielded if wait is None else asyncio.wait_for(shielded, wait))
    except BaseException as exc:
        await _end(attempt)
        if isinstance(exc, TimeoutError):
            raise BusUnavailable(f"cannot reach NATS at {safe_url(url)} within {wait:g}s") from None
        raise
    client.append(nc)
    return nc


async def _end(attempt: asyncio.Future[NATS]) -> None:
    """Cancel a connection attempt until it has ended; close the connection it made if it
    made one meanwhile."""
    while not attempt.done():
        attempt.cancel()
        await asyncio.wait({attempt}, timeout=0.1)
    if not attempt.cancelled() and attempt.exception() is None:
        with contextlib.suppress(Exception):
            await attempt.result().close()


def stream_configs(settings: Settings) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=NOTIFICATIONS,
            description="Verified notifications from Sqreen and other sources",
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
            allow_direct=True,  # listed in pages of direct gets (shared.direct)
        ),
    ]


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """Create the streams, or bring an existing one's settings up to date."""
    for config in stream_configs(settings):
        await _ensure_stream(js, config, settings.stream_replicas)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, replicas: int) -> None:
    """Create the stream with ``replicas``, or update an existing one to ``config``, its
    replica count included (JetStream scales a stream's replicas up or down in place on a
    cluster)."""
    config = dataclasses.replace(config, num_replicas=replicas)
    try:
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Exists with other settings (e.g. a changed dedup window): update in place.
            assert config.name is not None
            current = (await js.stream_info(config.name)).config.num_replicas
            if current != config.num_replicas:
                _log.info(
                    "changing stream replicas",
                    stream=config.name,
                    replicas=config.num_replicas,
                    was=current,
                )
            await js.update_stream(config)
    except APIError as exc:
        _raise_if_not_clustered(exc, config.name)
        raise


def _raise_if_not_clustered(exc: APIError, stream: str | None) -> None:
    if exc.err_code == _NON_CLUSTERED:
        raise ConfigError(
            f"LOOKOUT_STREAM_REPLICAS: stream {stream}: {exc.description}; "
            "set LOOKOUT_STREAM_REPLICAS=1 for a single nats-server"
        ) from exc


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
    whose target is slow sends "in progress" every third of it (see shared.delivery), so
    a long target timeout never causes a redelivery while the first attempt still runs.
    """
    return max(10.0, min(timeout, 30.0))


def provider_durable(provider: str) -> str:
    return f"provider-{provider}"


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig, replicas: int) -> None:
    """Create the bucket with ``replicas``, or bring an existing one to ``replicas``,
    ``config.ttl`` and, when ``config.direct``, ``allow_direct``. nats-py has no KV update,
    and creating it again with other settings fails, so those are changed on the bucket's
    backing stream (its other settings are left as they are): a release that changes a
    lifetime (e.g. the web UI sessions') applies it to buckets made by the one before, and
    buckets made before reads went through direct gets (shared.direct) can be read so."""
    config = dataclasses.replace(config, replicas=replicas)
    stream = KV_STREAM.format(bucket=config.bucket)
    try:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            await js.create_key_value(config)
            return
        current = info.config
        wanted_age = float(config.ttl or 0.0)  # 0: keys never expire
        changed: dict[str, object] = {}
        if current.num_replicas != config.replicas:
            changed["replicas"] = (current.num_replicas, config.replicas)
            current.num_replicas = config.replicas
        if abs(float(current.max_age or 0.0) - wanted_age) > 0.001:
            changed["ttl"] = (current.max_age, wanted_age)
            current.max_age = wanted_age
        if config.direct and not current.allow_direct:
            changed["allow_direct"] = (False, True)
            current.allow_direct = True
        if changed:
            _log.info("changing bucket settings", bucket=config.bucket, **changed)
            await js.update_stream(current)
    except APIError as exc:
        _raise_if_not_clustered(exc, stream)
        raise


async def provision_lookups(js: JetStreamContext, settings: Settings) -> None:
    """Streams, KV buckets and one durable consumer per provider, for host lookups."""
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
        await _ensure_stream(js, config, settings.stream_replicas)
    for bucket in (
        KeyValueConfig(
            bucket=JOBS_BUCKET,
            description="lookup jobs",
            direct=True,  # read with direct gets (shared.direct), never a watch
            ttl=settings.job_ttl,
            storage=StorageType.FILE,
        ),
        KeyValueConfig(
            bucket=RESULTS_BUCKET,
            description="lookup results by job",
            direct=True,  # read with direct gets (shared.direct), never a watch
            ttl=settings.job_ttl,
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
        await _ensure_bucket(js, bucket, settings.stream_replicas)
    for provider in PROVIDER_KINDS:
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


async def provision(js: JetStreamContext, settings: Settings) -> None:
    await ensure_streams(js, settings)
    for bucket in (
        KeyValueConfig(
            bucket=STATUS_BUCKET,
            description="delivery state per notification and target",
            direct=True,  # read with direct gets (shared.direct), never a watch
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
            bucket=SESSIONS_BUCKET,
            description="web UI sessions by SHA-256 of the session id",
            ttl=SESSION_TTL,
            storage=StorageType.FILE,
        ),
    ):
        await _ensure_bucket(js, bucket, settings.stream_replicas)
    for target in settings.targets:
        await ensure_sink_consumer(js, target.name, ack_wait_for(target.timeout))
    await provision_lookups(js, settings)


READ_STREAMS = (
    KV_STREAM.format(bucket=JOBS_BUCKET),
    KV_STREAM.format(bucket=RESULTS_BUCKET),
    KV_STREAM.format(bucket=STATUS_BUCKET),
    DEADLETTERS,
)
"""The streams the gateway reads with direct gets (shared.direct)."""


async def refusal(js: JetStreamContext, reader: direct.Reader) -> str | None:
    """Why the bus would refuse the gateway's work now, or None: the JetStream API must
    answer for the notification streams, and every stream the gateway reads must answer a
    direct get. A few small requests, cheap enough for every ``/readyz``."""
    for name in (NOTIFICATIONS, DEADLETTERS):
        try:
            await js.stream_info(name)
        except NotFoundError:
            return f"JetStream stream {name} is missing"
        except Exception as exc:
            return f"JetStream API does not answer: {str(exc) or type(exc).__name__}"
    probes = await asyncio.gather(
        *(reader.probe(name) for name in READ_STREAMS), return_exceptions=True
    )
    for failed in probes:
        if isinstance(failed, BaseException):
            return str(failed) or type(failed).__name__
    return None


# --------------------------------------------------------------------------- publishing


class PublishAck(msgspec.Struct):
    """JetStream's answer to a publish: where the message is stored, or why it is not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_publish_ack = msgspec.json.Decoder(PublishAck)


class PublishRefused(Exception):
    """JetStream answered a publish with an error, or no stream takes the subject."""


class Publisher:
    """JetStream publishes that wait for their ack, for a hot path.

    ``JetStreamContext.publish`` makes a random reply token (a system call), parses the ack
    with the stdlib ``json`` into a dataclass and waits with ``asyncio.wait_for``. Here the
    acks of every publish come to one reply subscription, made once; a publish takes a counter
    token, decodes the ack with msgspec and times out with one timer: about a third less CPU
    per publish (see BENCHMARKS.md). Only nats-py's public API is used, so a reconnect keeps
    the subscription; an ack lost on the way ends as a timeout, as with ``js.publish``.
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count(1)

    @property
    def max_payload(self) -> int:
        """The most bytes the connected server stores in one message, headers included
        (its ``max_payload``; nats-py checks only the payload, the server both)."""
        return self._nc.max_payload

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._prefix + "*", cb=self._on_ack)

    async def _on_ack(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str], timeout: float
    ) -> PublishAck:
        """Publish and wait for JetStream to store it; :class:`PublishRefused` when it will
        not, ``TimeoutError`` when no ack comes within ``timeout`` seconds, and nats-py's
        errors when the message cannot be sent."""
        if not self._prefix:
            raise PublishRefused("publisher not started")
        token = f"{next(self._tokens):x}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = future
        timer = loop.call_later(timeout, _expire, future, timeout)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            msg = await future
        finally:
            timer.cancel()
            del self._waiting[token]
        if not msg.data:  # a status message: 503 when no stream takes the subject
            status = (msg.headers or {}).get("Status", "")
            raise PublishRefused(f"no stream took {subject} (status {status or 'unknown'})")
        ack = _publish_ack.decode(msg.data)
        if ack.error is not None:
            raise PublishRefused(str(ack.error.get("description") or ack.error))
        return ack


def _expire(future: asyncio.Future[Msg], timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"no ack from JetStream within {timeout:g}s"))
