"""One provider's metrics (label ``provider``)."""

from __future__ import annotations

import prometheus_client as prom

from shared.core.metrics import SLOW


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
            "What is left of the shared quota, by window (minute, day): read from the shared "
            "store at each scrape, so every replica tells the same",
            ["provider", "window"],
            registry=r,
        )
        paused = prom.Gauge(
            "lookout_provider_paused_until",
            "Unix time until which an upstream's 429 pauses every replica of the provider "
            "(in the past or 0: not paused), read from the shared store at each scrape",
            ["provider"],
            registry=r,
        )
        upstream = prom.Histogram(
            "lookout_provider_upstream_seconds",
            "Duration of one upstream lookup, whatever its outcome",
            ["provider"],
            registry=r,
            buckets=SLOW,
        )
        self.cache_hits = hits.labels(provider)
        self.cache_misses = misses.labels(provider)
        self.ratelimit_waits = waits.labels(provider)
        self.ratelimit_wait_seconds = wait_seconds.labels(provider)
        self.upstream = upstream.labels(provider)
        self.paused_until = paused.labels(provider)

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
