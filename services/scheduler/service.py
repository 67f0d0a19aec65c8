"""The scheduler service on one NATS connection: provisioning, then its two loops."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS

from services.scheduler.config import SchedulerSettings, scheduler_settings
from services.scheduler.indexer import Indexer
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.runs import Scheduler, WatchList
from shared.bus import direct
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import streams as lookup_streams
from shared.relay import streams as relay_streams

_log = log.get("scheduler")


class Service:
    """The scheduler service on one NATS connection."""

    def __init__(self, nc: NATS, settings: Settings, metrics: SchedulerMetrics) -> None:
        self.nc = nc
        self.settings = settings
        self.config: SchedulerSettings = scheduler_settings(settings)
        self.metrics = metrics
        self.scheduler: Scheduler | None = None

    async def run(self, stop: asyncio.Event) -> None:
        js = self.nc.jetstream(timeout=self.settings.publish_timeout)
        while not stop.is_set():
            try:  # what it reads and writes, and the stream its alerts go to
                await lookup_streams.provision(js, self.settings)
                await relay_streams.ensure_streams(js, self.settings)
                break
            except Exception as exc:
                _log.warning("provisioning failed, retrying", error=str(exc) or repr(exc))
                await asyncio.sleep(1.0)
        if stop.is_set():
            return
        reader = direct.Reader(self.nc, self.settings.publish_timeout)
        await reader.start()
        watchlist = WatchList(js, reader)
        self.scheduler = Scheduler(js, reader, self.settings, self.config, watchlist, self.metrics)
        indexer = Indexer(js, reader, self.settings, self.config, watchlist, self.metrics)
        _log.info("scheduler started", tick=self.config.tick, lease=self.config.lease)
        await asyncio.gather(self.scheduler.run(stop), indexer.run(stop))
