"""What the gateway's handlers share: settings, the NATS connection, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import prometheus_client as prom
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared import bus
from shared import logging as log
from shared.config import Settings

_log = log.get("gateway")


class Bus:
    """The gateway's NATS connection, made in the background so HTTP answers at once
    (``/readyz`` says 503 and webhooks get 503 until it is up)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
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
        while not self.provisioned:
            try:
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


class Metrics:
    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        self._children: dict[tuple[str, ...], Any] = {}
        self.webhooks = prom.Counter(
            "lookout_webhooks",
            "Webhook requests by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.publishes = prom.Counter(
            "lookout_notifications_published",
            "Notifications stored in JetStream, by source and whether it was a duplicate",
            ["source", "duplicate"],
            registry=self.registry,
        )
        self.unrouted = prom.Counter(
            "lookout_notifications_unrouted",
            "Notifications stored that no configured target's route accepts",
            ["source"],
            registry=self.registry,
        )
        self.publish_seconds = prom.Histogram(
            "lookout_webhook_publish_seconds",
            "Time to store every message of one webhook request in JetStream",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    # Labelled children are looked up once, not on every request.
    def webhook(self, source: str, outcome: str) -> prom.Counter:
        key = ("webhook", source, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.webhooks.labels(source, outcome)
        return child

    def published(self, source: str, duplicate: bool) -> prom.Counter:
        key = ("published", source, str(duplicate).lower())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.publishes.labels(source, key[2])
        return child


SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
METRICS = web.AppKey("metrics", Metrics)
