"""One target sink's metrics (label ``target``)."""

from __future__ import annotations

from datetime import datetime

import prometheus_client as prom

from shared.core.metrics import E2E, SLOW


class SinkMetrics:
    """One target sink's metrics (label ``target``)."""

    def __init__(self, target: str) -> None:
        self.registry = prom.CollectorRegistry()
        self.target = target
        r = self.registry
        self._deliveries = prom.Counter(
            "lookout_deliveries",
            "Notification outcomes by target: delivered, retrying, dead, skipped, silenced",
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
            buckets=SLOW,
        )
        e2e = prom.Histogram(
            "lookout_delivery_end_to_end_seconds",
            "From the notification stored in JetStream to delivered by the target",
            ["target"],
            registry=r,
            buckets=E2E,
        )
        digests = prom.Counter(
            "lookout_digests_sent",
            "Digests (several notifications in one message) delivered",
            ["target"],
            registry=r,
        )
        paused = prom.Gauge(
            "lookout_target_paused",
            "1 while the target is paused (consecutive failures or 410 Gone), else 0",
            ["target"],
            registry=r,
        )
        failures = prom.Gauge(
            "lookout_target_consecutive_failures",
            "Failed deliveries to the target since its last success",
            ["target"],
            registry=r,
        )
        pauses = prom.Counter(
            "lookout_target_pauses",
            "Times this sink paused the target",
            ["target"],
            registry=r,
        )
        self.paused = paused.labels(target)
        self.consecutive_failures = failures.labels(target)
        self.pauses = pauses.labels(target)
        self.delivered = self._deliveries.labels(target, "delivered")
        self.retrying = self._deliveries.labels(target, "retrying")
        self.dead = self._deliveries.labels(target, "dead")
        self.skipped = self._deliveries.labels(target, "skipped")
        self.silenced = self._deliveries.labels(target, "silenced")
        self.attempts = attempts.labels(target)
        self.dead_letters = dead.labels(target)
        self.duration = duration.labels(target)
        self.end_to_end = e2e.labels(target)
        self.digests = digests.labels(target)

    def observe_end_to_end(self, stored: datetime | None, now: datetime) -> None:
        if stored is not None:
            self.end_to_end.observe(max(0.0, (now - stored).total_seconds()))
