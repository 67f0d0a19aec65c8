"""Retry policy, HTTP outcome mapping and routing rules."""

from __future__ import annotations

import email.utils
import json

import msgspec
import pytest
from helpers import sqreen_fixture

from services.gateway import sqreen
from shared.core.retryafter import parse_retry_after
from shared.relay.config import Match, RetryPolicy
from shared.relay.routing import matches
from shared.relay.runner import backoff
from shared.relay.schemas import Notification
from shared.relay.sources import attributes
from shared.relay.target import Gone, PermanentError, RetryableError, raise_for_status


def test_backoff_grows_exponentially_within_bounds() -> None:
    policy = RetryPolicy(initial_backoff=1.0, multiplier=2.0, max_backoff=30.0, jitter=0.5)
    assert [backoff(policy, n, rand=lambda: 0.0) for n in (1, 2, 3, 4, 5, 6, 7)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    # full jitter draw halves the delay, never more
    assert backoff(policy, 3, rand=lambda: 1.0) == 2.0
    for n in range(1, 20):
        assert 0.5 * min(30.0, 2 ** (n - 1)) <= backoff(policy, n) <= min(30.0, 2 ** (n - 1))


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.529") == 0.529
    assert parse_retry_after("-3") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
    # no wait longer than a day, whatever a service says (inf stopped a provider for good)
    for endless in ("inf", "Infinity", "1e308", "99999999999", "Fri, 31 Dec 9999 23:59:59 GMT"):
        assert parse_retry_after(endless) == 86_400.0, endless
    assert parse_retry_after("nan") is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 429])
def test_retryable_statuses(status: int) -> None:
    with pytest.raises(RetryableError) as info:
        raise_for_status(status, "12", "busy")
    assert info.value.retry_after == 12.0
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 301, 302])
def test_permanent_statuses(status: int) -> None:
    with pytest.raises(PermanentError):
        raise_for_status(status, None, "")


def test_success_statuses() -> None:
    for status in (200, 201, 202, 204):
        raise_for_status(status, None, "")


def notes(fixture: str) -> list[Notification]:
    body = sqreen_fixture(fixture)
    return [sqreen.parse(i, raw) for i, raw in enumerate(sqreen.split(body, 1000))]


def test_attributes_per_shape() -> None:
    low, high = notes("v2_security_event.json")
    raw = json.loads(sqreen_fixture("v2_security_event.json"))
    assert attributes(low).risk == raw[0]["message"]["risk_coefficient"]
    assert attributes(high).environment == raw[1]["message"]["environment"]
    assert attributes(high).application == raw[1]["message"]["application_name"]
    v1 = notes("v1_security_event.json")[0]
    v1_raw = json.loads(sqreen_fixture("v1_security_event.json"))[0]
    assert attributes(v1).risk == v1_raw["risk"]
    response = notes("v2_other.json")[0]
    response_raw = json.loads(sqreen_fixture("v2_other.json"))[0]["message"]["application"]
    assert attributes(response).application == response_raw["name"]
    assert attributes(response).environment == response_raw["environment"]
    assert attributes(response).risk is None


def test_match_rules() -> None:
    low, high = notes("v2_security_event.json")
    test_message = notes("v2_test.json")[0]
    assert matches(Match(), low)
    assert matches(Match(types=["security_event"]), high)
    assert not matches(Match(types=["security_event"]), test_message)
    assert matches(Match(min_risk=50), high)
    assert not matches(Match(min_risk=50), low)
    env = attributes(high).environment
    assert env is not None
    assert matches(Match(environments=[env]), high)
    assert not matches(Match(environments=["nowhere"]), high)
    assert matches(Match(sources=["sqreen"]), high)
    assert not matches(Match(sources=["other"]), high)
    # a risk threshold never lets a message without a risk through
    incident = notes("v2_incidents.json")[0]
    assert not matches(Match(min_risk=1), incident)


def test_generic_source_attributes() -> None:
    note = Notification(
        id="1",
        type="alert",
        source="ids",
        timestamp="2026-01-01T00:00:00Z",
        data=msgspec.Raw(b'{"risk": 90, "application": "vpn", "environment": "prod"}'),
    )
    attrs = attributes(note)
    assert (attrs.risk, attrs.application, attrs.environment) == (90, "vpn", "prod")


def test_overall_verdict_is_the_worst_finding() -> None:
    from shared.lookups.verdicts import overall_verdict

    assert overall_verdict(["harmless", "malicious", "undetected"]) == "malicious"
    assert overall_verdict(["harmless", "suspicious"]) == "suspicious"
    assert overall_verdict(["undetected", "harmless"]) == "harmless"
    assert overall_verdict(["unknown", "error"]) == "error"
    assert overall_verdict(["unknown", "undetected"]) == "undetected"
    assert overall_verdict([]) == "unknown"


def test_default_retry_schedule_spans_about_a_day() -> None:
    policy = RetryPolicy()
    delays = [backoff(policy, n, rand=lambda: 0.0) for n in range(1, policy.max_attempts)]
    assert delays == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    assert policy.max_attempts == 8  # the first attempt and seven retries
    assert 24 * 3600 <= sum(delays) <= 30 * 3600
    assert policy.jitter == 0.1
    assert backoff(policy, 2, rand=lambda: 1.0) == 270.0  # at most 10 % earlier
    assert backoff(policy, 50, rand=lambda: 0.0) == 36000.0  # the last delay repeats


def test_retry_schedule_or_exponential_from_the_configuration() -> None:
    given = msgspec.convert({"schedule": [1, 2.5]}, RetryPolicy)
    assert given.max_attempts == 3
    assert [given.delay(n) for n in (1, 2, 3)] == [1.0, 2.5, 2.5]
    capped = msgspec.convert({"schedule": [1], "max_attempts": 5}, RetryPolicy)
    assert capped.max_attempts == 5
    exponential = msgspec.convert({"initial_backoff": 0.5}, RetryPolicy)
    assert exponential.schedule == []
    assert exponential.max_attempts == 10
    assert exponential.jitter == 0.5
    assert [exponential.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    with pytest.raises(msgspec.ValidationError, match="either schedule or"):
        msgspec.convert({"schedule": [1], "multiplier": 3}, RetryPolicy)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"schedule": []}, RetryPolicy)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"schedule": [0]}, RetryPolicy)
    assert [RetryPolicy().probe_delay(n) for n in (0, 1, 2, 20)] == [30.0, 60.0, 120.0, 3600.0]


def test_gone_is_permanent_and_its_own_kind() -> None:
    with pytest.raises(Gone, match="HTTP 410"):
        raise_for_status(410, None, "endpoint removed")
