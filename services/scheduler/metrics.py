"""The scheduler service's metrics."""

from __future__ import annotations

import prometheus_client as prom


class SchedulerMetrics:
    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.active = prom.Gauge(
            "lookout_scheduler_active",
            "1 while this replica holds the scheduler's lease (runs the watches), else 0",
            registry=r,
        )
        self.runs = prom.Counter(
            "lookout_scheduler_runs", "Scheduled lookup jobs submitted for watches", registry=r
        )
        self.runs_skipped = prom.Counter(
            "lookout_scheduler_runs_skipped",
            "Due watch runs skipped because the watch's previous job had not finished "
            "(waiting for a quota): runs never pile up",
            registry=r,
        )
        self.run_failures = prom.Counter(
            "lookout_scheduler_run_failures",
            "Due watches whose job could not be submitted (tried again at the next tick)",
            registry=r,
        )
        results = prom.Counter(
            "lookout_history_results",
            "Lookup results read by the history indexer, by outcome (indexed, skipped: not "
            "final or already indexed, failed: tried again later)",
            ["outcome"],
            registry=r,
        )
        self.indexed = results.labels("indexed")
        self.skipped = results.labels("skipped")
        self.failed = results.labels("failed")
        self.changes = prom.Counter(
            "lookout_verdict_changes",
            "verdict_changed notifications published for watched indicators",
            registry=r,
        )
