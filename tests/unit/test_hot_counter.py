"""The gateway's lock-free counters and histogram are exposed exactly as prometheus_client's."""

from __future__ import annotations

import prometheus_client as prom
import pytest

from shared.core.metrics import HotCounter, HotHistogram


def _samples(registry: prom.CollectorRegistry) -> list[str]:
    text = prom.generate_latest(registry).decode()
    return sorted(line for line in text.splitlines() if "_created" not in line)


def test_hot_counter_exposition_matches_a_prometheus_counter() -> None:
    hot, reference = prom.CollectorRegistry(), prom.CollectorRegistry()
    a = HotCounter("lookout_things", "Things by kind", ["kind", "source"], registry=hot)
    b = prom.Counter("lookout_things", "Things by kind", ["kind", "source"], registry=reference)
    for kind, source, amount in (("x", "s", 1), ("y", "s", 2.5), ("x", "s", 3), ("x", "t", 1)):
        a.labels(kind, source).inc(amount)
        b.labels(kind, source).inc(amount)
    assert _samples(hot) == _samples(reference)
    assert hot.get_sample_value("lookout_things_total", {"kind": "x", "source": "s"}) == 4.0
    assert a.labels("x", "s") is a.labels("x", "s")  # one child per label set


def test_a_name_taken_twice_is_refused() -> None:
    registry = prom.CollectorRegistry()
    HotCounter("lookout_dup", "first", ["a"], registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        prom.Counter("lookout_dup", "second", ["a"], registry=registry)


def test_hot_histogram_exposition_matches_a_prometheus_histogram() -> None:
    hot, reference = prom.CollectorRegistry(), prom.CollectorRegistry()
    bounds = (0.001, 0.01, 0.1, 1, 5)
    a = HotHistogram("lookout_wait_seconds", "Waits", bounds, registry=hot)
    b = prom.Histogram("lookout_wait_seconds", "Waits", buckets=bounds, registry=reference)
    # on a bound (le is inclusive), between bounds, above the last, zero
    for amount in (0.001, 0.0005, 0.05, 1.0, 4.99, 7.5, 0.0, 0.1):
        a.observe(amount)
        b.observe(amount)
    assert _samples(hot) == _samples(reference)
    assert hot.get_sample_value("lookout_wait_seconds_bucket", {"le": "0.001"}) == 3.0
    assert hot.get_sample_value("lookout_wait_seconds_count") == 8.0
