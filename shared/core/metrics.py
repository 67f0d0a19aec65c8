"""The metric parts every service uses: lock-free counters and histograms for hot paths,
the standard histogram buckets, and the small ``/metrics`` listener of the workers.

Each service instance owns its own :class:`~prometheus_client.CollectorRegistry` (one service
per process in production; several in one test process never mix their counts). Labelled
children are looked up once and kept, so the hot paths only pay for ``inc()``/``observe()``.
Each kind of service defines its own metrics beside its code (the sink runner's, the
provider runner's, the gateway's).

Workers (sinks, providers) serve their registry on ``/metrics`` of a small aiohttp server
when ``LOOKOUT_METRICS_PORT`` is set (:func:`metrics_server`); the gateway serves its own on
its HTTP port.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import prometheus_client as prom
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from shared.core import logging as log
from shared.core.service import cannot_listen

_log = log.get("metrics")

FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
"""Histogram buckets (seconds) of quick operations: a webhook's publish, an API request."""
SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
"""Buckets of calls to the outside world: a delivery, an upstream lookup."""
E2E = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)
"""Buckets of end-to-end latencies, retries included."""


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


def url_host(host: str) -> str:
    """``host`` as written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


SCRAPE_READ_TIMEOUT = 2.0
"""At most this long a scrape waits for what a worker reads first (``before_scrape``)."""


def handler(
    registry: prom.CollectorRegistry,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving ``registry`` in the Prometheus text format, after
    ``before_scrape`` (what the worker reads so the figures are current, not as last
    seen; left as they were when it fails or takes too long)."""

    async def serve(_request: web.Request) -> web.Response:
        if before_scrape is not None:
            try:
                await asyncio.wait_for(before_scrape(), SCRAPE_READ_TIMEOUT)
            except Exception as exc:
                _log.debug("metrics read before the scrape failed", error=str(exc) or repr(exc))
        return web.Response(
            body=prom.generate_latest(registry), headers={"Content-Type": prom.CONTENT_TYPE_LATEST}
        )

    return serve


def _probes(app: web.Application, unready: Callable[[], str | None]) -> None:
    """``/healthz`` (the process answers: for a liveness probe) and ``/readyz`` (200 once
    ``unready()`` says nothing, else 503 with what it says: for a readiness probe)."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        why = unready()
        if why is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"error": why}, status=503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


@contextlib.asynccontextmanager
async def metrics_server(
    registry: prom.CollectorRegistry,
    host: str,
    port: int | None,
    service: str,
    unready: Callable[[], str | None] = lambda: None,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[int | None]:
    """Serve ``registry`` on ``http://host:port/metrics`` while inside, and the worker's
    probes ``/healthz`` and ``/readyz`` (``unready()``: why it cannot work now, or None);
    ``port`` None: no listener, 0: a free port (logged). Yields the port listened on."""
    if port is None:
        yield None
        return
    app = web.Application()
    app.router.add_get("/metrics", handler(registry, before_scrape))
    _probes(app, unready)
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
