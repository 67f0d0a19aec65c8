"""The gateway's metrics (served on its own ``/metrics``)."""

from __future__ import annotations

import prometheus_client as prom

from shared.core.metrics import FAST, HotCounter, HotHistogram


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
            FAST,
            registry=r,
        )
        self.api_requests = prom.Counter(
            "lookout_api_requests",
            "API requests by route and HTTP status",
            ["route", "method", "status"],
            registry=r,
        )
        self.target_paused = prom.Gauge(
            "lookout_target_paused",
            "1 while the target is paused (consecutive failures or 410 Gone), else 0; read "
            "from the sinks' shared health records at each scrape",
            ["target"],
            registry=r,
        )
        self.target_failures = prom.Gauge(
            "lookout_target_consecutive_failures",
            "Failed deliveries to the target since its last success (as the sinks share it)",
            ["target"],
            registry=r,
        )
        self.api_seconds = prom.Histogram(
            "lookout_api_request_seconds",
            "API request latency by route",
            ["route", "method"],
            registry=r,
            buckets=FAST,
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
