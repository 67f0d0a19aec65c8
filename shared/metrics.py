"""Every Prometheus metric lookout exposes, one class per kind of service.

Each service instance owns its own :class:`~prometheus_client.CollectorRegistry` (one service
per process in production; several in one test process never mix their counts). Labelled
children are looked up once and kept, so the hot paths only pay for ``inc()``/``observe()``.

Workers (sinks, providers) serve their registry on ``/metrics`` of a small aiohttp server
when ``LOOKOUT_METRICS_PORT`` is set (:func:`metrics_server`); the gateway serves its own on
its HTTP port.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime

import prometheus_client as prom
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from shared import logging as log
from shared.service import cannot_listen

_log = log.get("metrics")

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_E2E = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)


class HotCounter:
    """A labelled counter for the webhook hot path: plain floats, read at scrape time.

    ``prometheus_client.Counter`` takes a lock on every ``inc()`` (it may be called from any
    thread); the gateway increments only on its event loop, which also serves ``/metrics``,
    so a plain float per label set is enough and about five times cheaper. Exposed like a
    Counter: ``<name>_total`` with the same labels."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        registry: prom.CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._children: dict[tuple[str, ...], HotCounter.Child] = {}
        registry.register(self)

    class Child:
        __slots__ = ("value",)

        def __init__(self) -> None:
            self.value = 0.0

        def inc(self, amount: float = 1.0) -> None:
            self.value += amount

    def labels(self, *values: str) -> HotCounter.Child:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = HotCounter.Child()
        return child

    def collect(self) -> list[prom.Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._children.items():
            family.add_metric(list(values), child.value)
        return [family]

    def describe(self) -> list[prom.Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]


class HotHistogram:
    """An unlabelled histogram for the webhook hot path, lock-free like :class:`HotCounter`
    (``prometheus_client.Histogram`` takes a lock twice per ``observe()``). Exposed like a
    Histogram: ``<name>_bucket{le=…}``, ``<name>_count``, ``<name>_sum``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: prom.CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = tuple(sorted(float(b) for b in buckets))
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        registry.register(self)

    def observe(self, amount: float) -> None:
        # The first bucket whose upper bound is >= amount, as Prometheus' "le".
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def collect(self) -> list[prom.Metric]:
        cumulative = list(itertools.accumulate(self._counts))
        buckets = [
            (floatToGoString(bound), float(count))  # type: ignore[no-untyped-call]
            for bound, count in zip(self._bounds, cumulative, strict=False)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        return [
            HistogramMetricFamily(
                self.name, self.documentation, buckets=buckets, sum_value=self._sum
            )
        ]

    def describe(self) -> list[prom.Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]


class GatewayMetrics:
    """The gateway's metrics (served on its own ``/metrics``)."""

    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        self._rejected: dict[tuple[str, str], prom.Counter] = {}
        self._api: dict[tuple[str, str, int], prom.Counter] = {}
        self._api_seconds: dict[tuple[str, str], prom.Histogram] = {}
        r = self.registry
        self.webhooks = HotCounter(
            "lookout_webhooks",
            "Webhook requests by source and outcome",
            ["source", "outcome"],
            registry=r,
        )
        self.webhooks_received = HotCounter(
            "lookout_webhooks_received", "Webhook requests received", ["source"], registry=r
        )
        self.webhooks_verified = HotCounter(
            "lookout_webhooks_verified",
            "Webhook requests whose signature was valid",
            ["source"],
            registry=r,
        )
        self.webhooks_rejected = prom.Counter(
            "lookout_webhooks_rejected",
            "Webhook requests refused, by reason (bad_signature, malformed, too_large, "
            "bus_unavailable, not_configured)",
            ["source", "reason"],
            registry=r,
        )
        self.publishes = HotCounter(
            "lookout_notifications_published",
            "Notifications stored in JetStream, by source and whether it was a duplicate",
            ["source", "duplicate"],
            registry=r,
        )
        self.stream_publishes = HotCounter(
            "lookout_publishes",
            "Messages published to JetStream, by stream and outcome (stored, duplicate, failed)",
            ["stream", "outcome"],
            registry=r,
        )
        self.unrouted = prom.Counter(
            "lookout_notifications_unrouted",
            "Notifications stored that no configured target's route accepts",
            ["source"],
            registry=r,
        )
        self.publish_seconds = HotHistogram(
            "lookout_webhook_publish_seconds",
            "Time to store every message of one webhook request in JetStream",
            _FAST,
            registry=r,
        )
        self.api_requests = prom.Counter(
            "lookout_api_requests",
            "API requests by route and HTTP status",
            ["route", "method", "status"],
            registry=r,
        )
        self.api_seconds = prom.Histogram(
            "lookout_api_request_seconds",
            "API request latency by route",
            ["route", "method"],
            registry=r,
            buckets=_FAST,
        )

    # A HotCounter's labels() is already a plain dict lookup; the prometheus_client
    # children are looked up once, then found in a plain dict per family.
    def webhook(self, source: str, outcome: str) -> HotCounter.Child:
        return self.webhooks.labels(source, outcome)

    def received(self, source: str) -> HotCounter.Child:
        return self.webhooks_received.labels(source)

    def verified(self, source: str) -> HotCounter.Child:
        return self.webhooks_verified.labels(source)

    def rejected(self, source: str, reason: str) -> prom.Counter:
        key = (source, reason)
        child = self._rejected.get(key)
        if child is None:
            child = self._rejected[key] = self.webhooks_rejected.labels(source, reason)
        return child

    def published(self, source: str, duplicate: bool) -> HotCounter.Child:
        return self.publishes.labels(source, "true" if duplicate else "false")

    def stream_publish(self, stream: str, outcome: str) -> HotCounter.Child:
        return self.stream_publishes.labels(stream, outcome)

    def api(self, route: str, method: str, status: int) -> prom.Counter:
        key = (route, method, status)
        child = self._api.get(key)
        if child is None:
            child = self._api[key] = self.api_requests.labels(route, method, str(status))
        return child

    def api_latency(self, route: str, method: str) -> prom.Histogram:
        key = (route, method)
        child = self._api_seconds.get(key)
        if child is None:
            child = self._api_seconds[key] = self.api_seconds.labels(route, method)
        return child


class SinkMetrics:
    """One target sink's metrics (label ``target``)."""

    def __init__(self, target: str) -> None:
        self.registry = prom.CollectorRegistry()
        self.target = target
        r = self.registry
        self._deliveries = prom.Counter(
            "lookout_deliveries",
            "Notification outcomes by target: delivered, retrying, dead, skipped",
            ["target", "outcome"],
            registry=r,
        )
        attempts = prom.Counter(
            "lookout_delivery_attempts",
            "Calls to the target (one per delivery attempt; a digest is one call)",
            ["target"],
            registry=r,
        )
        dead = prom.Counter(
            "lookout_dead_letters",
            "Notifications stored in deadletter.<target>",
            ["target"],
            registry=r,
        )
        duration = prom.Histogram(
            "lookout_delivery_seconds",
            "Duration of one call to the target, whatever its outcome",
            ["target"],
            registry=r,
            buckets=_SLOW,
        )
        e2e = prom.Histogram(
            "lookout_delivery_end_to_end_seconds",
            "From the notification stored in JetStream to delivered by the target",
            ["target"],
            registry=r,
            buckets=_E2E,
        )
        digests = prom.Counter(
            "lookout_digests_sent",
            "Digests (several notifications in one message) delivered",
            ["target"],
            registry=r,
        )
        self.delivered = self._deliveries.labels(target, "delivered")
        self.retrying = self._deliveries.labels(target, "retrying")
        self.dead = self._deliveries.labels(target, "dead")
        self.skipped = self._deliveries.labels(target, "skipped")
        self.attempts = attempts.labels(target)
        self.dead_letters = dead.labels(target)
        self.duration = duration.labels(target)
        self.end_to_end = e2e.labels(target)
        self.digests = digests.labels(target)

    def observe_end_to_end(self, stored: datetime | None, now: datetime) -> None:
        if stored is not None:
            self.end_to_end.observe(max(0.0, (now - stored).total_seconds()))


class ProviderMetrics:
    """One provider's metrics (label ``provider``)."""

    def __init__(self, provider: str) -> None:
        self.registry = prom.CollectorRegistry()
        self.provider = provider
        self._outcomes: dict[str, prom.Counter] = {}
        self._windows: dict[str, prom.Gauge] = {}
        r = self.registry
        self._lookups = prom.Counter(
            "lookout_provider_lookups",
            "Lookup results by provider and outcome (done, error, not_configured, queued, "
            "quota_exhausted)",
            ["provider", "outcome"],
            registry=r,
        )
        hits = prom.Counter(
            "lookout_provider_cache_hits", "Answers served from the cache", ["provider"], registry=r
        )
        misses = prom.Counter(
            "lookout_provider_cache_misses",
            "Cache lookups that found nothing fresh",
            ["provider"],
            registry=r,
        )
        waits = prom.Counter(
            "lookout_provider_ratelimit_waits",
            "Requests put back to wait for the rate limit (quota window, pause, upstream 429)",
            ["provider"],
            registry=r,
        )
        wait_seconds = prom.Counter(
            "lookout_provider_ratelimit_wait_seconds",
            "Seconds requests were told to wait for the rate limit",
            ["provider"],
            registry=r,
        )
        self._quota = prom.Gauge(
            "lookout_provider_quota_remaining",
            "What is left of the shared quota, by window (minute, day), as last seen",
            ["provider", "window"],
            registry=r,
        )
        upstream = prom.Histogram(
            "lookout_provider_upstream_seconds",
            "Duration of one upstream lookup, whatever its outcome",
            ["provider"],
            registry=r,
            buckets=_SLOW,
        )
        self.cache_hits = hits.labels(provider)
        self.cache_misses = misses.labels(provider)
        self.ratelimit_waits = waits.labels(provider)
        self.ratelimit_wait_seconds = wait_seconds.labels(provider)
        self.upstream = upstream.labels(provider)

    def lookup(self, outcome: str) -> prom.Counter:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self._lookups.labels(self.provider, outcome)
        return child

    def waited(self, seconds: float) -> None:
        self.ratelimit_waits.inc()
        self.ratelimit_wait_seconds.inc(max(0.0, seconds))

    def quota_remaining(self, known: dict[str, int]) -> None:
        for window, value in known.items():
            gauge = self._windows.get(window)
            if gauge is None:
                gauge = self._windows[window] = self._quota.labels(self.provider, window)
            gauge.set(value)


def url_host(host: str) -> str:
    """``host`` as written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def handler(
    registry: prom.CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving ``registry`` in the Prometheus text format."""

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(
            body=prom.generate_latest(registry), headers={"Content-Type": prom.CONTENT_TYPE_LATEST}
        )

    return serve


@contextlib.asynccontextmanager
async def metrics_server(
    registry: prom.CollectorRegistry, host: str, port: int | None, service: str
) -> AsyncIterator[int | None]:
    """Serve ``registry`` on ``http://host:port/metrics`` while inside; ``port`` None: no
    listener, 0: a free port (logged). Yields the port listened on."""
    if port is None:
        yield None
        return
    app = web.Application()
    app.router.add_get("/metrics", handler(registry))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise cannot_listen(host, port, exc, "LOOKOUT_METRICS_PORT") from None
        bound = port
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            bound = int(sockets[0].getsockname()[1])
        url = f"http://{url_host(host)}:{bound}/metrics"
        _log.info("metrics listening", service=service, url=url)
        yield bound
    finally:
        await runner.cleanup()
