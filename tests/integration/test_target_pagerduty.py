"""The pagerduty target end to end: real nats-server, gateway and sink, a loopback
PagerDuty Events API v2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fakes.pagerduty import FakePagerDuty, check_event
from helpers import (
    dead_letters,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    sqreen_fixture,
    wait_for,
)

from services.sinks.pagerduty import (
    BODY_MAX,
    DEDUP_KEY_MAX,
    FIELD_MAX,
    IPS_MAX,
    SUMMARY_MAX,
    build,
    build_event,
    dedup_key,
    severity_for,
)
from services.sinks.pagerduty.config import PagerDutyTargetConfig
from shared.core.errors import ConfigError
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.relay import schemas
from shared.relay.config import relay

TARGET = "soc-pagerduty"


def pagerduty_target(
    api_url: str,
    routing_key: str,
    extra: str = "",
    retry: str = "max_attempts = 3, initial_backoff = 0.2, max_backoff = 1, jitter = 0",
) -> str:
    return f"""
[[targets]]
name = "{TARGET}"
type = "pagerduty"
routing_key = "{routing_key}"
api_url = "{api_url}"
timeout = 2
retry = {{ {retry} }}
{extra}
"""


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    async with FakePagerDuty() as fake:
        yield fake


def assert_key_not_logged(
    out: str, caplog: pytest.LogCaptureFixture, routing_key: str, expect: str
) -> None:
    """The routing key nowhere in the sink's output (structlog writes to stdout, libraries to
    stdlib logging), and not even a redacted attempt to log it."""
    assert expect in out, "the sink's log lines were not captured"
    for text in (out, caplog.text):
        assert routing_key not in text
        assert "[REDACTED]" not in text


def by_risk(pagerduty: FakePagerDuty) -> dict[int, dict[str, Any]]:
    return {e["payload"]["custom_details"]["risk"]: e for e in pagerduty.events}


async def test_security_events_trigger_with_severity_by_risk(
    nats_server: NatsServer,
    tmp_path: Path,
    pagerduty: FakePagerDuty,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    toml = pagerduty_target(pagerduty.api_url, pagerduty.routing_key)
    settings = make_settings(tmp_path, nats_server.url, toml)
    body = sqreen_fixture("v2_security_event.json")
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        status, answer = await post_webhook(base, body)
        assert status == 200
        await wait_for(lambda: len(pagerduty.incidents) == 2)
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert pagerduty.answers == [202, 202]
    assert pagerduty.rejections == []
    sent = json.loads(body)
    originals = {m["message"]["risk_coefficient"]: m["message"] for m in sent}
    ids = {
        m["message"]["risk_coefficient"]: m["message_id"] or m["message"]["event_id"] for m in sent
    }
    assert set(ids.values()) == set(answer["ids"])
    events = by_risk(pagerduty)
    assert sorted(events) == [30, 80]
    timestamps = {80: "2021-03-04T11:40:03.118Z", 30: "2021-03-04T09:14:47.302Z"}
    for risk, severity in ((80, "critical"), (30, "warning")):
        event, original = events[risk], originals[risk]
        app, env, url = original["application_name"], original["environment"], original["event_url"]
        key = f"lookout-sqreen-{ids[risk]}"
        assert event["routing_key"] == pagerduty.routing_key
        assert event["event_action"] == "trigger"
        assert event["dedup_key"] == key
        assert event["client"] == "lookout"
        assert event["links"] == [{"href": url, "text": "View event"}]
        payload = event["payload"]
        details = payload.pop("custom_details")
        assert payload == {
            "summary": f"Security event in {app} ({env}): risk {risk}",
            "source": app,
            "severity": severity,
            "timestamp": timestamps[risk],
            "component": "sqreen",
            "group": env,
            "class": "security_event",
        }
        assert details["body"].startswith(original["humanized_description"])
        assert f"Id: {ids[risk]}" in details["body"]
        assert {k: v for k, v in details.items() if k != "body"} == {
            "notification_id": ids[risk],
            "risk": risk,
            "application": app,
            "environment": env,
            "ips": [original["ips"][0]["address"]],
            "url": url,
        }
        incident = pagerduty.incident(key)
        assert incident is not None
        assert incident.severity == severity
        assert len(incident.events) == 1
    assert await dead_letters(nats_server.url, TARGET) == []
    assert_key_not_logged(capsys.readouterr().out, caplog, pagerduty.routing_key, "delivered")


async def test_custom_severity_by_risk(
    nats_server: NatsServer, tmp_path: Path, pagerduty: FakePagerDuty
) -> None:
    extra = "severity_by_risk = { critical = 90, error = 75, warning = 50 }"
    toml = pagerduty_target(pagerduty.api_url, pagerduty.routing_key, extra)
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        await post_webhook(base, sqreen_fixture("v2_security_event.json"))
        await wait_for(lambda: len(pagerduty.incidents) == 2)
    severities = {risk: e["payload"]["severity"] for risk, e in by_risk(pagerduty).items()}
    assert severities == {80: "error", 30: "info"}


async def test_a_redelivery_pages_only_once(
    nats_server: NatsServer, tmp_path: Path, pagerduty: FakePagerDuty
) -> None:
    # PagerDuty takes the event, but lookout sees a 500 and sends it again.
    pagerduty.fail_after_accept = [500]
    toml = pagerduty_target(pagerduty.api_url, pagerduty.routing_key)
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
        await wait_for(lambda: pagerduty.answers == [500, 202])
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert len(pagerduty.events) == 2
    assert len(pagerduty.incidents) == 1
    [incident] = pagerduty.incidents
    first, second = pagerduty.events
    assert first == second  # the very same event, twice
    assert incident.dedup_key == f"lookout-sqreen-{answer['ids'][0]}"
    assert incident.events == [first, second]
    assert incident.severity == "warning"  # the test message has risk 42
    assert await dead_letters(nats_server.url, TARGET) == []


async def test_an_unknown_routing_key_is_dead_lettered_at_once(
    nats_server: NatsServer,
    tmp_path: Path,
    pagerduty: FakePagerDuty,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    revoked = FakePagerDuty.new_routing_key()  # well formed, but no integration has it
    settings = make_settings(
        tmp_path, nats_server.url, pagerduty_target(pagerduty.api_url, revoked)
    )
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))

        async def dead() -> bool:
            return len(await dead_letters(nats_server.url, TARGET)) == 1

        await wait_for(dead)
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert pagerduty.answers == [400]  # permanent: never retried
    assert pagerduty.incidents == []
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.attempts == 1
    assert record.error == (
        "HTTP 400: invalid event: Event object is invalid (Invalid routing key)"
    )
    assert revoked not in record.error
    assert record.notification is not None
    assert record.notification.id == answer["ids"][0]
    assert_key_not_logged(capsys.readouterr().out, caplog, revoked, "dead-lettered")


async def test_throttled_then_delivered(nats_server: NatsServer, tmp_path: Path) -> None:
    # One event per second for the routing key: of the fixture's two, one gets a 429 and
    # comes back after the backoff (PagerDuty sends no Retry-After).
    async with FakePagerDuty(rate_limit=1, rate_limit_window=1.0) as pagerduty:
        retry = "max_attempts = 6, initial_backoff = 0.2, max_backoff = 1, jitter = 0"
        toml = pagerduty_target(pagerduty.api_url, pagerduty.routing_key, retry=retry)
        settings = make_settings(tmp_path, nats_server.url, toml)
        async with running_gateway(settings) as base, running_sink(settings, TARGET):
            await post_webhook(base, sqreen_fixture("v2_security_event.json"))
            await wait_for(lambda: len(pagerduty.incidents) == 2)
            await wait_for(lambda: settled(nats_server.url, TARGET))
    assert 429 in pagerduty.answers
    assert pagerduty.answers.count(202) == 2
    assert len(pagerduty.events) == 2
    answered = zip(pagerduty.requests, pagerduty.answers, strict=True)
    accepted = [request.at for request, status in answered if status == 202]
    assert max(accepted) - min(accepted) >= 0.9  # the second waited out the window
    assert await dead_letters(nats_server.url, TARGET) == []


async def test_a_429_is_retried_with_the_backoff(
    nats_server: NatsServer, tmp_path: Path, pagerduty: FakePagerDuty
) -> None:
    pagerduty.fail_next = [429]
    toml = pagerduty_target(pagerduty.api_url, pagerduty.routing_key)
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        await post_webhook(base, sqreen_fixture("v2_test.json"))
        await wait_for(lambda: len(pagerduty.incidents) == 1)
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert pagerduty.answers == [429, 202]
    first, second = pagerduty.requests
    assert second.at - first.at >= 0.15  # initial_backoff = 0.2, jitter 0
    assert first.body == second.body
    assert await dead_letters(nats_server.url, TARGET) == []


# ------------------------------------------------------------------ without a bus


def notification(
    message: dict[str, Any], kind: str = "security_event", ident: str = "n-1"
) -> schemas.Notification:
    return schemas.Notification(
        id=ident,
        type=kind,
        source="sqreen",
        timestamp="2026-01-02T03:04:05.000Z",
        data=msgspec.Raw(json.dumps({"message_type": kind, "message": message}).encode()),
    )


def with_key(event: dict[str, Any]) -> dict[str, Any]:
    return {"routing_key": FakePagerDuty.new_routing_key(), **event}


def pagerduty_config(settings: Settings) -> PagerDutyTargetConfig:
    config = relay(settings).target(TARGET)
    assert isinstance(config, PagerDutyTargetConfig)
    return config


def test_severity_by_risk() -> None:
    defaults = {"critical": 80, "error": 60, "warning": 30}
    assert [severity_for(r, defaults) for r in (100, 80, 79, 60, 59, 30, 29, 0, None)] == [
        "critical",
        "critical",
        "error",
        "error",
        "warning",
        "warning",
        "info",
        "info",
        "info",
    ]
    assert severity_for(95, {"warning": 50}) == "warning"  # a severity left out is never used
    assert severity_for(95, {}) == "info"


def test_dedup_key_is_stable_and_fits() -> None:
    short = notification({}, ident="abc")
    assert dedup_key(short) == "lookout-sqreen-abc"
    assert dedup_key(short) == dedup_key(notification({"risk": 1}, ident="abc"))
    long_a, long_b = notification({}, ident="a" * 256), notification({}, ident="a" * 255 + "b")
    assert len(dedup_key(long_a)) <= DEDUP_KEY_MAX
    assert dedup_key(long_a) == dedup_key(notification({}, ident="a" * 256))
    assert dedup_key(long_a) != dedup_key(long_b)


def test_a_minimal_notification_and_long_texts_are_still_valid_events() -> None:
    bare = build_event(notification({"description": "hi"}, kind="alert"))
    assert check_event(with_key(bare)) == []
    assert bare["payload"]["severity"] == "info"
    assert bare["payload"]["source"] == "sqreen"
    assert "component" not in bare["payload"]
    assert "group" not in bare["payload"]
    assert bare["payload"]["timestamp"] == "2026-01-02T03:04:05.000Z"
    assert "links" not in bare
    assert "risk" not in bare["payload"]["custom_details"]

    long = notification(
        {
            "risk_coefficient": 99,
            "application_name": "a" * 2000,
            "ips": [f"198.51.100.{i}" for i in range(250)],
        }
    )
    event = build_event(long, title_template="{{ application }}", body_template="y" * 20_000)
    assert check_event(with_key(event)) == []
    payload = event["payload"]
    assert len(payload["summary"]) <= SUMMARY_MAX
    assert len(payload["source"]) == FIELD_MAX
    assert payload["source"].endswith("…")
    assert len(payload["custom_details"]["body"]) == BODY_MAX
    assert len(payload["custom_details"]["ips"]) == IPS_MAX
    assert len(msgspec.json.encode(event)) < 64 * 1024  # far below PagerDuty's 512 KB


@pytest.mark.parametrize(
    ("extra", "routing_key", "message"),
    [
        ("", "s3cr3t-but-short", "routing_key must be the 32-character"),
        ("", "x" * 31 + "!", "routing_key must be the 32-character"),
        ("severity_by_risk = { fatal = 90 }", "k" * 32, r"severity_by_risk\.fatal: not a"),
        ("severity_by_risk = { critical = 101 }", "k" * 32, "a risk from 0 to 100"),
    ],
)
def test_bad_settings_are_refused_without_showing_the_key(
    tmp_path: Path, extra: str, routing_key: str, message: str
) -> None:
    toml = pagerduty_target("https://events.pagerduty.com", routing_key, extra)
    settings = make_settings(tmp_path, "nats://127.0.0.1:4222", toml)
    with pytest.raises(ConfigError, match=message) as caught:
        build(pagerduty_config(settings), settings)
    assert routing_key not in str(caught.value)
