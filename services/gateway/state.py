"""What the gateway's handlers share: settings, the NATS connection, metrics."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared import bus, direct
from shared import logging as log
from shared.config import Settings
from shared.metrics import GatewayMetrics

_log = log.get("gateway")


class Bus:
    """The gateway's NATS connection, made in the background so HTTP answers at once
    (``/readyz`` says 503 and webhooks get 503 until it is up)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.publisher: bus.Publisher | None = None  # the webhook's publishes
        self.reader: direct.Reader | None = None  # the API's reads: no consumer ever
        self.provisioned = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        while self.nc is None:
            try:
                self.nc = await bus.connect(self.settings.effective_nats_url, "lookout-gateway")
            except Exception as exc:  # e.g. a bad server list: keep trying, stay unready
                _log.error("nats connection failed, retrying", error=str(exc) or repr(exc))
                await asyncio.sleep(2.0)
        self.js = self.nc.jetstream(timeout=self.settings.publish_timeout)
        publisher = bus.Publisher(self.nc)
        reader = direct.Reader(self.nc, self.settings.publish_timeout)
        while not self.provisioned:
            try:  # the ack subscription too: a connection lost right now is retried here
                if self.publisher is None:
                    await publisher.start()
                    self.publisher = publisher
                if self.reader is None:
                    await reader.start()
                    self.reader = reader
                await bus.provision(self.js, self.settings)
                self.provisioned = True
            except Exception as exc:
                _log.warning("provisioning failed, retrying", error=str(exc) or repr(exc))
                await asyncio.sleep(1.0)
        _log.info("connected to nats", url=bus.safe_url(self.settings.effective_nats_url))

    @property
    def usable(self) -> bool:
        return self.provisioned and self.nc is not None and self.nc.is_connected

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()


Metrics = GatewayMetrics  # the gateway's metrics live with every other in shared.metrics


SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
METRICS = web.AppKey("metrics", Metrics)
