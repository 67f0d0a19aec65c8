"""The launcher's table: which integrations exist, which services the configuration yields,
and how to start one of them in this process.

This is not a service: services never import each other, the launcher imports the one it
was asked to run. :func:`register` runs first in every process the launcher starts (the
gateway, each worker, every CLI command; see ``services/cli.py``): it registers each
integration's declarations with the shared catalogs, so that every process knows the same
providers, target types and sources, in the same order, from this table and the
configuration alone. Adding an integration is one line here (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from shared.bus.connect import connect
from shared.core import logging as log
from shared.core import publicurl
from shared.core.errors import ConfigError
from shared.core.metrics import metrics_server
from shared.core.settings import Section, Settings, register_section
from shared.lookups import catalog
from shared.lookups import config as lookups_config
from shared.lookups.catalog import ProviderSpec
from shared.lookups.metrics import ProviderMetrics
from shared.lookups.provider import Provider
from shared.lookups.runner import ProviderRunner
from shared.relay import config as relay_config
from shared.relay import inbound, sources
from shared.relay.config import TargetConfig, relay
from shared.relay.inbound import SourceConfig
from shared.relay.metrics import SinkMetrics
from shared.relay.runner import SinkRunner
from shared.relay.sources import SourceProfile
from shared.relay.target import Target

PROVIDERS = (
    "dns",
    "whois",
    "emailsec",
    "virustotal",
    "abuseipdb",
    "urlhaus",
    "threatfox",
    "malwarebazaar",
    "otx",
    "asn",
    "dnsbl",
    "internetdb",
    "tor",
)
"""Lookup providers, each the package ``services/providers/<name>`` (its ``SPEC`` and
``build``), run as ``provider-<name>``; this order is the order of the UI's columns."""
TARGET_TYPES = ("log", "http", "email", "sms", "slack", "teams", "discord", "pagerduty", "apprise")
"""Target types, each the package ``services/sinks/<type>`` (its ``CONFIG`` and ``build``);
every configured target runs as ``sink-<target name>``."""
FALLBACK_TARGET = "log"
"""With no ``[[targets]]`` at all, one target of this type, named after it, is active."""
SOURCES = {"sqreen": "services.gateway.sqreen"}
"""Source profiles by source name: the module's ``PROFILE`` (and its ``SECTION``), for the
sources that exist without configuration (``/webhooks/sqreen``); a ``[[sources]]`` entry
may take such a name only with the source type of the same name."""
SOURCE_TYPES = {
    "sqreen": "services.gateway.sources.sqreen",
    "standard-webhooks": "services.gateway.sources.standard_webhooks",
    "github": "services.gateway.sources.github",
    "alertmanager": "services.gateway.sources.alertmanager",
    "generic": "services.gateway.sources.generic",
}
"""Source types of ``[[sources]]`` (``POST /webhooks/<name>``): the module's ``CONFIG`` (its
Struct, its profile) and ``build`` (the gateway's receiver)."""


class TargetModule(Protocol):
    CONFIG: type[TargetConfig]

    def build(self, config: TargetConfig, settings: Settings) -> Target: ...


class ProviderModule(Protocol):
    SPEC: ProviderSpec

    def build(self, settings: Settings) -> Provider: ...


class SourceModule(Protocol):
    PROFILE: SourceProfile
    SECTION: Section[object]


class SourceTypeModule(Protocol):
    CONFIG: type[SourceConfig]


def register() -> None:
    """Register the relay's, the lookups' and the scheduler's configuration and every
    integration of the tables above; idempotent."""
    from services.scheduler import config as scheduler_config

    register_section(relay_config.SECTION)
    register_section(lookups_config.SECTION)
    register_section(scheduler_config.SECTION)
    register_section(inbound.SECTION)
    register_section(publicurl.PUBLIC_URL)
    for name in TARGET_TYPES:
        relay_config.register_target_type(
            _target_module(name).CONFIG, fallback=name == FALLBACK_TARGET
        )
    for name in PROVIDERS:
        catalog.register(_provider_module(name).SPEC)
    for source, module_name in SOURCES.items():
        module: SourceModule = importlib.import_module(module_name)
        sources.register(source, module.PROFILE)
        register_section(module.SECTION)
        inbound.reserve(source, source)  # configurable only as its own type
    for module_name in SOURCE_TYPES.values():
        source_type: SourceTypeModule = importlib.import_module(module_name)
        inbound.register_source_type(source_type.CONFIG)


def _target_module(name: str) -> TargetModule:
    module: TargetModule = importlib.import_module(f"services.sinks.{name}")
    return module


def _provider_module(name: str) -> ProviderModule:
    module: ProviderModule = importlib.import_module(f"services.providers.{name}")
    return module


T = TypeVar("T")
_log = log.get("registry")


def service_names(settings: Settings) -> list[str]:
    return [
        "gateway",
        "scheduler",
        *(f"provider-{name}" for name in catalog.active_names(settings)),
        *(f"sink-{target.name}" for target in relay(settings).targets),
    ]


def build_target(config: TargetConfig, settings: Settings) -> Target:
    return _target_module(config.type).build(config, settings)


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
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """A worker service: its metrics listener (with its probes: ready while connected to
    NATS), its own NATS connection (drained at the end), and ``run`` on it until ``stop``."""
    connected: list[NATS] = []

    def unready() -> str | None:
        if not connected:
            return "not connected to NATS yet"
        return None if connected[0].is_connected else "NATS connection lost, reconnecting"

    async with metrics_server(
        registry, settings.metrics_host, settings.metrics_port, service, unready, before_scrape
    ):
        url = settings.effective_nats_url
        nc = await unless_stopped(stop, connect(url, f"lookout-{service}"))
        if nc is None:
            return
        connected.append(nc)
        try:
            await run(nc)
        finally:
            try:
                await nc.drain()
            except Exception as exc:  # the bus is away (reconnecting): nothing to hand back
                _log.info("nats connection not drained", service=service, error=repr(exc))
                with contextlib.suppress(Exception):
                    await nc.close()


def sink_main(settings: Settings, name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    config = relay(settings).target(name)

    async def main(stop: asyncio.Event) -> None:
        target = build_target(config, settings)  # after logging is set up
        metrics = SinkMetrics(name)

        async def run(nc: NATS) -> None:
            await SinkRunner(nc, target, config, settings, metrics).run(stop)

        await _worker(settings, f"sink-{name}", metrics.registry, stop, run)

    return main


def provider_main(settings: Settings, name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    if catalog.get(name) is None:
        known = ", ".join(catalog.names())
        raise ConfigError(f"no provider named {name!r} (providers: {known})")
    if name not in catalog.active_names(settings):
        return _turned_off(name)

    async def main(stop: asyncio.Event) -> None:
        provider = _provider_module(name).build(settings)
        metrics = ProviderMetrics(name)
        runners: list[ProviderRunner] = []

        async def run(nc: NATS) -> None:
            runners.append(ProviderRunner(nc.jetstream(), provider, settings, metrics))
            await runners[0].run(stop)

        async def quota_now() -> None:  # the shared quota as it is, whoever spent it
            if runners:
                await runners[0].read_quota()

        await _worker(settings, f"provider-{name}", metrics.registry, stop, run, quota_now)

    return main


def _turned_off(name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    """The service of a provider that is off: it says so once and idles until stopped,
    without connecting to anything. Exiting instead would make a deployment that lists
    every provider (compose ``restart: unless-stopped``, a Kubernetes Deployment) start it
    again and again."""

    async def main(stop: asyncio.Event) -> None:
        _log.warning(
            "provider turned off: this service idles (no consumer, no requests)",
            service=f"provider-{name}",
            why=f"LOOKOUT_PROVIDERS or [providers.{name}] enabled = false",
        )
        await stop.wait()

    return main


def scheduler_main(settings: Settings) -> Callable[[asyncio.Event], Awaitable[None]]:
    from services.scheduler.metrics import SchedulerMetrics
    from services.scheduler.service import Service

    async def main(stop: asyncio.Event) -> None:
        metrics = SchedulerMetrics()

        async def run(nc: NATS) -> None:
            await Service(nc, settings, metrics).run(stop)

        await _worker(settings, "scheduler", metrics.registry, stop, run)

    return main


def service_main(settings: Settings, name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    if name == "scheduler":
        return scheduler_main(settings)
    if name == "gateway":
        from services.gateway.app import serve
        from services.gateway.hooks import configured

        settings.check_bind()  # refuse before starting, as a configuration error
        configured(settings)  # the sources' secrets (files) read, each source's checks
        return lambda stop: serve(settings, stop)
    if name.startswith("provider-"):
        return provider_main(settings, name.removeprefix("provider-"))
    if name.startswith("sink-"):
        return sink_main(settings, name.removeprefix("sink-"))
    known = ", ".join(service_names(settings))
    raise ConfigError(f"unknown service {name!r}; this configuration has: {known}")
