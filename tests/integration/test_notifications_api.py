"""GET/POST /api/v1/notifications: delivery state per target, and generic sources."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Receiver,
    api,
    http_target,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    sqreen_fixture,
    wait_for,
)

from shared.core.natsserver import NatsServer

SLOW_RETRY = "retry = { max_attempts = 5, initial_backoff = 30, max_backoff = 60, jitter = 0 }"


async def test_state_per_target(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    broken, flaky = Receiver(), Receiver()
    broken.default = (400, {})
    flaky.default = (503, {})
    for extra in (broken, flaky):
        await extra.start()
    toml = (
        http_target(receiver.url, name="good")
        + http_target(broken.url, name="broken")
        + http_target(flaky.url, name="flaky").replace(
            "retry = { max_attempts = 4, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }",
            SLOW_RETRY,
        )
        + http_target(receiver.url, 'match = { types = ["pulse"] }', name="pulses-only")
    )
    settings = make_settings(tmp_path, nats_server.url, toml)
    names = ["good", "broken", "flaky", "pulses-only"]
    try:
        async with running_gateway(settings) as base:
            _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
            [note_id] = answer["ids"]
            url = f"{base}/api/v1/notifications/{note_id}"
            # no sink has run yet: nothing is recorded for it
            assert (await api("GET", url))[0] == 404
            sinks = contextlib.AsyncExitStack()
            for name in names:
                await sinks.enter_async_context(running_sink(settings, name))
            found: dict[str, Any] = {}

            async def all_reported() -> bool:
                nonlocal found
                code, found = await api("GET", url)
                return code == 200 and all(
                    t["state"] != "pending" for t in found["targets"].values()
                )

            try:
                await wait_for(all_reported, within=20)
            finally:
                await sinks.aclose()
            states = {name: found["targets"][name]["state"] for name in names}
            assert states == {
                "good": "delivered",
                "broken": "dead",
                "flaky": "retrying",
                "pulses-only": "skipped",
            }
            assert "HTTP 400" in found["targets"]["broken"]["last_error"]
            assert found["targets"]["flaky"]["next_attempt_at"]
            assert found["state"] == "dead"
            assert (found["type"], found["source"]) == ("test", "sqreen")

            code, listing = await api("GET", f"{base}/api/v1/notifications")
            assert code == 200
            assert [n["id"] for n in listing["notifications"]] == [note_id]
            code, listing = await api("GET", f"{base}/api/v1/notifications?state=delivered")
            assert listing["notifications"] == []
    finally:
        for extra in (broken, flaky):
            await extra.stop()


async def test_each_notification_says_when_lookout_received_it_and_what_it_is(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    """``timestamp`` is the sender's date (Sqreen's ``date_created``, 2021 here);
    ``received_at`` is when lookout stored it; title, application, environment and risk
    come with it, for the notifications page."""
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    before = datetime.now(UTC)
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        _, answer = await post_webhook(base, sqreen_fixture("v2_security_event.json"))
        first = answer["ids"][0]
        url = f"{base}/api/v1/notifications/{first}"
        found: dict[str, Any] = {}

        async def delivered() -> bool:
            nonlocal found
            code, found = await api("GET", url)
            return code == 200 and found["targets"]["ops-http"]["state"] == "delivered"

        await wait_for(delivered)
        _, listing = await api("GET", f"{base}/api/v1/notifications")
    assert found["timestamp"] == "2021-03-04T09:15:02.481133+00:00"  # the sender's
    received = datetime.fromisoformat(found["received_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= received <= datetime.now(UTC)
    assert found["received_at"].endswith("Z")
    assert (found["application"], found["environment"], found["risk"]) == (
        "shop-frontend",
        "staging",
        30,
    )
    assert found["title"] == "Security event in shop-frontend (staging): risk 30"
    listed = {n["id"]: n for n in listing["notifications"]}[first]
    assert (listed["received_at"], listed["title"]) == (found["received_at"], found["title"])


async def test_generic_source_over_http(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    toml = http_target(receiver.url, 'match = { sources = ["suricata"], min_risk = 50 }')
    settings = make_settings(tmp_path, nats_server.url, toml, LOOKOUT_API_TOKENS="t0ken-abc")
    alert = {
        "id": "ids-1",
        "type": "port_scan",
        "source": "suricata",
        "data": {"risk": 70, "ips": ["203.0.113.5"], "signature": "ET SCAN"},
    }
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        url = f"{base}/api/v1/notifications"
        assert (await api("POST", url, json=alert))[0] == 401
        code, body = await api("POST", url, "t0ken-abc", json=alert)
        assert (code, body["subject"], body["duplicate"]) == (
            202,
            "notification.suricata.port_scan",
            False,
        )
        code, body = await api("POST", url, "t0ken-abc", json=alert)
        assert body["duplicate"] is True  # the same id is stored once
        low = {**alert, "id": "ids-2", "data": {"risk": 10}}
        assert (await api("POST", url, "t0ken-abc", json=low))[0] == 202
        await wait_for(lambda: len(receiver.requests) == 1)
        code, state = await api("GET", f"{url}/ids-2", "t0ken-abc")

        async def skipped() -> bool:
            nonlocal state
            code, state = await api("GET", f"{url}/ids-2", "t0ken-abc")
            return code == 200

        await wait_for(skipped)
    [delivered] = receiver.bodies()
    assert delivered["id"] == "ids-1"
    assert delivered["source"] == "suricata"
    assert delivered["data"] == alert["data"]
    assert state["targets"]["ops-http"]["state"] == "skipped"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "x", "source": "y"}, "data"),
        ({"type": "x", "source": "Bad Source", "data": {}}, "lower-case"),
        ({"type": "x", "source": "y", "data": {}, "colour": 1}, "colour"),
        ({"type": "x", "source": "y", "data": {}, "timestamp": "yesterday"}, "RFC 3339"),
        ({"type": "x", "source": "y", "data": {}, "timestamp": "20261207T080000Z"}, "RFC 3339"),
        ({"type": "x", "source": "y", "data": {}, "timestamp": "2026-12-07"}, "RFC 3339"),
        ({"type": "x", "source": "y", "data": {}, "timestamp": "2026-12-07T08:00:00"}, "offset"),
    ],
)
async def test_bad_generic_notifications(
    nats_server: NatsServer, tmp_path: Path, body: dict[str, Any], reason: str
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        code, answer = await api("POST", f"{base}/api/v1/notifications", json=body)
    assert code == 400
    assert reason in answer["error"]


async def test_list_limit_out_of_range_is_400(nats_server: NatsServer, tmp_path: Path) -> None:
    """`limit` is 1…500, as the OpenAPI document says: anything else is refused with the
    reason, never quietly clamped."""
    settings = make_settings(tmp_path, nats_server.url)  # no config: one log target
    async with running_gateway(settings) as base, running_sink(settings, "log"):
        url = f"{base}/api/v1/notifications"
        for note in ("n-1", "n-2"):
            alert = {"id": note, "type": "test", "source": "ids", "data": {}}
            assert (await api("POST", url, json=alert))[0] == 202

        async def both_listed() -> bool:
            code, listed = await api("GET", url)
            return code == 200 and listed["total"] == 2

        await wait_for(both_listed)
        code, one = await api("GET", f"{url}?limit=1")
        assert (code, len(one["notifications"]), one["total"]) == (200, 1, 2)
        code, most = await api("GET", f"{url}?limit=500")
        assert (code, len(most["notifications"])) == (200, 2)
        for limit in ("0", "-1", "501", "100000"):
            code, answer = await api("GET", f"{url}?limit={limit}")
            assert code == 400, (limit, answer)
            assert answer["error"] == "limit must be from 1 to 500", answer
        code, answer = await api("GET", f"{url}?limit=x")
        assert (code, answer["error"]) == (400, "limit must be a number")
