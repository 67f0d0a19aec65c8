"""What the gateway's handlers share: settings, the NATS connection, metrics; and what the
gateway provisions on the bus (every domain's streams and buckets, and its own sessions
bucket) and asks of it to be ready."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import NotFoundError

from services.gateway.metrics import GatewayMetrics
from shared.bus import direct
from shared.bus.connect import connect
from shared.bus.manage import KV_STREAM, ensure_bucket
from shared.bus.publish import Publisher
from shared.core import logging as log
from shared.core.natsurl import safe_url
from shared.core.settings import Settings
from shared.lookups import streams as lookup_streams
from shared.relay import silences
from shared.relay import streams as relay_streams

_log = log.get("gateway")

SESSIONS_BUCKET = "ui_sessions"
SESSION_TTL = 12 * 3600.0  # a web UI session's lifetime, and its bucket's TTL


async def provision(js: JetStreamContext, settings: Settings) -> None:
    """Everything the gateway works with: the relay's streams, buckets and target consumers,
    the lookups' streams, buckets and provider consumers, and the web UI sessions bucket."""
    await relay_streams.provision(js, settings)
    await ensure_bucket(
        js,
        KeyValueConfig(
            bucket=SESSIONS_BUCKET,
            description="web UI sessions by SHA-256 of the session id",
            ttl=SESSION_TTL,
            storage=StorageType.FILE,
        ),
        settings.stream_replicas,
    )
    await lookup_streams.provision(js, settings)


READ_STREAMS = (
    KV_STREAM.format(bucket=lookup_streams.JOBS_BUCKET),
    KV_STREAM.format(bucket=lookup_streams.RESULTS_BUCKET),
    KV_STREAM.format(bucket=lookup_streams.HISTORY_BUCKET),
    KV_STREAM.format(bucket=lookup_streams.WATCHES_BUCKET),
    lookup_streams.RECENT_LOOKUPS,
    KV_STREAM.format(bucket=relay_streams.STATUS_BUCKET),
    KV_STREAM.format(bucket=silences.BUCKET),
    relay_streams.DEADLETTERS,
)
"""The streams the gateway reads with direct gets (shared.bus.direct)."""


async def refusal(js: JetStreamContext, reader: direct.Reader) -> str | None:
    """Why the bus would refuse the gateway's work now, or None: the JetStream API must
    answer for the notification streams, and every stream the gateway reads must answer a
    direct get. A few small requests, cheap enough for every ``/readyz``."""
    for name in (relay_streams.NOTIFICATIONS, relay_streams.DEADLETTERS):
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


def _up(nc: NATS | None) -> bool:
    return nc is not None and nc.is_connected


class Bus:
    """The gateway's two NATS connections, made in the background so HTTP answers at once
    (``/readyz`` says 503 and webhooks get 503 until they are up).

    Webhooks (and ``POST /api/v1/notifications``) publish on one connection, the API's
    reads, writes and event streams go over the other (``api_nc``): a burst of reads
    that made the server drop its connection as a slow consumer, or many event streams,
    cannot take the relay's ingest down with it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nc: NATS | None = None  # the webhooks' publishes
        self.api_nc: NATS | None = None  # the API's reads, writes and event streams
        self.js: JetStreamContext | None = None  # on api_nc
        self.publisher: Publisher | None = None  # on nc
        self.reader: direct.Reader | None = None  # on api_nc; the API's reads: no consumer ever
        self.provisioned = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect())

    async def _connection(self, name: str) -> NATS:
        while True:
            try:
                return await connect(self.settings.effective_nats_url, name)
            except Exception as exc:  # e.g. a bad server list: keep trying, stay unready
                _log.error("nats connection failed, retrying", error=str(exc) or repr(exc))
                await asyncio.sleep(2.0)

    async def _connect(self) -> None:
        if self.nc is None:
            self.nc = await self._connection("lookout-gateway")
        if self.api_nc is None:
            self.api_nc = await self._connection("lookout-gateway-api")
        self.js = self.api_nc.jetstream(timeout=self.settings.publish_timeout)
        publisher = Publisher(self.nc)
        reader = direct.Reader(self.api_nc, self.settings.publish_timeout)
        while not self.provisioned:
            try:  # the ack subscription too: a connection lost right now is retried here
                if self.publisher is None:
                    await publisher.start()
                    self.publisher = publisher
                if self.reader is None:
                    await reader.start()
                    self.reader = reader
                await provision(self.js, self.settings)
                self.provisioned = True
            except Exception as exc:
                _log.warning("provisioning failed, retrying", error=str(exc) or repr(exc))
                await asyncio.sleep(1.0)
        _log.info("connected to nats", url=safe_url(self.settings.effective_nats_url))

    @property
    def publishing(self) -> bool:
        """Whether webhooks can be stored now."""
        return self.provisioned and _up(self.nc)

    @property
    def usable(self) -> bool:
        """Whether the API can read and write now."""
        return self.provisioned and _up(self.api_nc)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for nc in (self.nc, self.api_nc):
            if nc is not None and not nc.is_closed:
                with contextlib.suppress(Exception):
                    await nc.drain()


Metrics = GatewayMetrics


SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
METRICS = web.AppKey("metrics", Metrics)
