"""Which services the configuration yields, and how to start one of them in this process.

This is the launcher's table, not a service: services never import each other, the
launcher imports the one it was asked to run.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from shared.bus.connect import connect
from shared.core.errors import ConfigError
from shared.core.metrics import metrics_server
from shared.core.settings import Settings
from shared.lookups.metrics import ProviderMetrics
from shared.lookups.provider import Provider
from shared.lookups.runner import ProviderRunner
from shared.lookups.schemas import PROVIDER_KINDS
from shared.relay.config import AnyTarget
from shared.relay.metrics import SinkMetrics
from shared.relay.runner import SinkRunner
from shared.relay.target import Target

T = TypeVar("T")


class TargetModule(Protocol):
    def build(self, config: AnyTarget, settings: Settings) -> Target: ...


class ProviderModule(Protocol):
    def build(self, settings: Settings) -> Provider: ...


def service_names(settings: Settings) -> list[str]:
    return [
        "gateway",
        *(f"provider-{name}" for name in PROVIDER_KINDS),
        *(f"sink-{target.name}" for target in settings.targets),
    ]


def target_type(config: AnyTarget) -> str:
    tag = type(config).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def build_target(config: AnyTarget, settings: Settings) -> Target:
    module: TargetModule = importlib.import_module(f"services.sinks.{target_type(config)}")
    return module.build(config, settings)


async def unless_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T | None:
    """``await awaitable``, or ``None`` as soon as ``stop`` is set."""
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if work.done():
        return work.result()
    work.cancel()
    return None


async def _worker(
    settings: Settings,
    service: str,
    registry: CollectorRegistry,
    stop: asyncio.Event,
    run: Callable[[NATS], Awaitable[None]],
) -> None:
    """A worker service: its metrics listener, its own NATS connection (drained at the
    end), and ``run`` on it until ``stop``."""
    async with metrics_server(registry, settings.metrics_host, settings.metrics_port, service):
        url = settings.effective_nats_url
        nc = await unless_stopped(stop, connect(url, f"lookout-{service}"))
        if nc is None:
            return
        try:
            await run(nc)
        finally:
            await nc.drain()


def sink_main(settings: Settings, name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    config = settings.target(name)

    async def main(stop: asyncio.Event) -> None:
        target = build_target(config, settings)  # after logging is set up
        metrics = SinkMetrics(name)

        async def run(nc: NATS) -> None:
            await SinkRunner(nc, target, config, settings, metrics).run(stop)

        await _worker(settings, f"sink-{name}", metrics.registry, stop, run)

    return main


def provider_main(settings: Settings, name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    if name not in PROVIDER_KINDS:
        known = ", ".join(PROVIDER_KINDS)
        raise ConfigError(f"no provider named {name!r} (providers: {known})")

    async def main(stop: asyncio.Event) -> None:
        module: ProviderModule = importlib.import_module(f"services.providers.{name}")
        provider = module.build(settings)
        metrics = ProviderMetrics(name)

        async def run(nc: NATS) -> None:
            await ProviderRunner(nc.jetstream(), provider, settings, metrics).run(stop)

        await _worker(settings, f"provider-{name}", metrics.registry, stop, run)

    return main


def service_main(settings: Settings, name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    if name == "gateway":
        from services.gateway.app import serve

        settings.check_bind()  # refuse before starting, as a configuration error
        return lambda stop: serve(settings, stop)
    if name.startswith("provider-"):
        return provider_main(settings, name.removeprefix("provider-"))
    if name.startswith("sink-"):
        return sink_main(settings, name.removeprefix("sink-"))
    known = ", ".join(service_names(settings))
    raise ConfigError(f"unknown service {name!r}; this configuration has: {known}")
