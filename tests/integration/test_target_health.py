"""Target health on a real nats-server: a failing target is paused (shared by its sink's
replicas), its deliveries wait and are never dead-lettered for it, probes go on, one
success resumes it; ``on_failure`` hears about it; every call is in the attempt log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    WHSEC,
    Receiver,
    api,
    dead_letters,
    jetstream,
    make_settings,
    publish_alerts,
    running_gateway,
    running_sink,
    settled,
    wait_for,
)

from shared.core.natsserver import NatsServer

FAST_PROBES = "probe_backoff = 0.3, max_probe_backoff = 0.6"


def target(url: str, name: str = "ops-http", extra: str = "", retry: str = "") -> str:
    retry = (
        retry
        or f"max_attempts = 2, initial_backoff = 0.2, max_backoff = 0.5, jitter = 0, {FAST_PROBES}"
    )
    return f"""
[[targets]]
name = "{name}"
type = "http"
url = "{url}"
secret = "{WHSEC}"
timeout = 2
retry = {{ {retry} }}
{extra}
"""


async def state_of(base: str, ident: str) -> dict[str, Any]:
    """The notification's state for ``ops-http`` (empty while nothing is recorded)."""
    status, body = await api("GET", f"{base}/api/v1/notifications/{ident}")
    return body["targets"]["ops-http"] if status == 200 else {}  # type: ignore[no-any-return]


@pytest.fixture
async def fallback() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


def envelopes(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body in receiver.requests]


async def targets(base: str) -> dict[str, dict[str, Any]]:
    status, body = await api("GET", f"{base}/api/v1/targets")
    assert status == 200
    return {item["name"]: item for item in body["targets"]}


async def notification(base: str, ident: str) -> dict[str, Any]:
    status, body = await api("GET", f"{base}/api/v1/notifications/{ident}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_paused_after_consecutive_failures_waits_probes_and_resumes(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver, fallback: Receiver
) -> None:
    toml = target(receiver.url, extra='pause_after = 3\non_failure = "fallback"') + target(
        fallback.url, name="fallback", extra='match = { sources = ["nobody"] }'
    )
    settings = make_settings(tmp_path, nats_server.url, toml)
    receiver.default = (503, {})
    async with (
        running_gateway(settings) as base,
        running_sink(settings, "ops-http"),
        running_sink(settings, "ops-http"),  # a second replica shares the pause
        running_sink(settings, "fallback"),
    ):
        async with jetstream(nats_server.url, settings) as js:
            ids = await publish_alerts(js, 4, prefix="health")

        async def paused() -> bool:
            return (await targets(base))["ops-http"]["state"] == "paused"

        await wait_for(paused, within=20)
        # Probes go on past max_attempts (2 per notification), and nothing is dead-lettered.
        await wait_for(lambda: len(receiver.requests) >= 12, within=30)
        assert await dead_letters(nats_server.url, "ops-http") == []
        shown = await targets(base)
        assert shown["ops-http"]["consecutive_failures"] >= 3
        assert "HTTP 503" in shown["ops-http"]["last_error"]
        assert shown["ops-http"]["on_failure"] == "fallback"
        assert shown["fallback"]["state"] == "active"
        _status, metrics = await api("GET", f"{base}/metrics")
        assert 'lookout_target_paused{target="ops-http"} 1.0' in metrics
        assert 'lookout_target_paused{target="fallback"} 0.0' in metrics

        async def some_paused() -> bool:
            item = await notification(base, ids[0])
            return bool(item["targets"]["ops-http"]["state"] == "paused")

        await wait_for(some_paused, within=10)

        async def waiting_show_the_next_probe() -> bool:
            """Every delivery waiting on the paused target shows the probe planned now, not
            the one planned when it began to wait (the probes moved on since)."""
            planned = (await targets(base))["ops-http"]["next_probe_at"]
            shown = [(await notification(base, i))["targets"]["ops-http"] for i in ids]
            waiting = [s["next_attempt_at"] for s in shown if s["state"] == "paused"]
            return len(waiting) >= 2 and set(waiting) == {planned}

        await wait_for(waiting_show_the_next_probe, within=10)
        item = await notification(base, ids[0])
        assert item["state"] == "paused"
        log = item["targets"]["ops-http"]["attempt_log"]
        assert log
        assert all(a["outcome"] == "failed" and a["status"] == 503 for a in log)

        receiver.default = (200, {})  # the service is back: one probe resumes the target

        async def resumed() -> bool:
            return (await targets(base))["ops-http"]["state"] == "active"

        await wait_for(resumed, within=20)
        await wait_for(lambda: settled(nats_server.url, "ops-http", "fallback"), within=20)
        await wait_for(lambda: len(fallback.requests) == 2, within=10)

        for ident in ids:
            item = await notification(base, ident)
            state = item["targets"]["ops-http"]
            assert state["state"] == "delivered"
            log = state["attempt_log"]
            assert log[-1]["outcome"] == "delivered"
            assert log[-1]["status"] == 200
            assert all(a["outcome"] == "failed" for a in log[:-1])
            assert all(a["ms"] >= 0 and a["at"].endswith("Z") for a in log)
        shown = await targets(base)
        assert shown["ops-http"]["consecutive_failures"] == 0
        assert shown["ops-http"]["resumed_at"] is not None
        _status, metrics = await api("GET", f"{base}/metrics")
        assert 'lookout_target_paused{target="ops-http"} 0.0' in metrics

    assert await dead_letters(nats_server.url, "ops-http") == []
    delivered = {b["id"] for b in envelopes(receiver) if b["source"] == "scanner"}
    assert delivered == set(ids)
    # The fallback target heard of the pause and the resume, once each, and nothing else
    # (its route takes no alert; lookout's own notifications for it pass regardless).
    told = envelopes(fallback)
    assert [(e["source"], e["type"]) for e in told] == [
        ("lookout", "target_paused"),
        ("lookout", "target_resumed"),
    ]
    assert all(e["data"]["to"] == "fallback" and e["data"]["target"] == "ops-http" for e in told)
    assert "3 consecutive failed deliveries" in told[0]["data"]["description"]
    assert "HTTP 503" in told[0]["data"]["error"]


async def test_gone_pauses_at_once_and_a_probe_resumes(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, nats_server.url, target(receiver.url))
    receiver.script = [(410, {})]  # then 200
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        async with jetstream(nats_server.url, settings) as js:
            [ident] = await publish_alerts(js, 1, prefix="gone")
        await wait_for(lambda: settled(nats_server.url, "ops-http"), within=20)
        item = await notification(base, ident)
        shown = (await targets(base))["ops-http"]
    assert await dead_letters(nats_server.url, "ops-http") == []
    log = item["targets"]["ops-http"]["attempt_log"]
    assert [(a["outcome"], a["status"]) for a in log] == [("failed", 410), ("delivered", 200)]
    assert item["targets"]["ops-http"]["state"] == "delivered"
    # paused by the single 410 (pause_after is 20 by default), resumed by the probe
    assert shown["pause_after"] == 20
    assert shown["paused_at"] is not None
    assert shown["resumed_at"] is not None
    assert shown["state"] == "active"


async def test_dead_letter_tells_on_failure_and_a_refusal_does_not_pause(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver, fallback: Receiver
) -> None:
    toml = target(receiver.url, extra='pause_after = 1\non_failure = "fallback"') + target(
        fallback.url, name="fallback", extra='match = { sources = ["nobody"] }'
    )
    settings = make_settings(tmp_path, nats_server.url, toml)
    receiver.default = (400, {})  # this payload is refused: permanent, says nothing of health
    async with (
        running_gateway(settings) as base,
        running_sink(settings, "ops-http"),
        running_sink(settings, "fallback"),
    ):
        async with jetstream(nats_server.url, settings) as js:
            [ident] = await publish_alerts(js, 1, prefix="refused")
        await wait_for(lambda: len(fallback.requests) == 1, within=20)
        shown = (await targets(base))["ops-http"]
        item = await notification(base, ident)
    [dead] = await dead_letters(nats_server.url, "ops-http")
    assert dead.notification is not None
    assert dead.notification.id == ident
    assert shown["state"] == "active"
    assert shown["consecutive_failures"] == 0
    assert [(a["outcome"], a["status"]) for a in item["targets"]["ops-http"]["attempt_log"]] == [
        ("refused", 400)
    ]
    [told] = envelopes(fallback)
    assert (told["source"], told["type"]) == ("lookout", "dead_lettered")
    assert told["data"]["notification"] == {"id": ident, "source": "scanner", "type": "http_scan"}
    assert "HTTP 400" in told["data"]["error"]


async def test_retry_schedule_from_the_configuration(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, target(receiver.url, retry="schedule = [0.2, 0.3], jitter = 0")
    )
    receiver.default = (503, {})
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        async with jetstream(nats_server.url, settings) as js:
            [ident] = await publish_alerts(js, 1, prefix="schedule")
        await wait_for(lambda: settled(nats_server.url, "ops-http"), within=20)
        item = await notification(base, ident)
    # one more attempt than the schedule has delays, then the dead letter
    [dead] = await dead_letters(nats_server.url, "ops-http")
    assert dead.attempts == 3
    assert len(receiver.requests) == 3
    log = item["targets"]["ops-http"]["attempt_log"]
    assert [(a["outcome"], a["status"]) for a in log] == [("failed", 503)] * 3


async def test_a_paused_target_stays_paused_across_a_sink_restart_and_loses_nothing(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    retry = "max_attempts = 1, initial_backoff = 0.2, jitter = 0, " + FAST_PROBES
    settings = make_settings(
        tmp_path, nats_server.url, target(receiver.url, extra="pause_after = 1", retry=retry)
    )
    receiver.default = (503, {})
    async with running_gateway(settings) as base:
        async with running_sink(settings, "ops-http"):
            async with jetstream(nats_server.url, settings) as js:
                [ident] = await publish_alerts(js, 1, prefix="restart")

            async def paused() -> bool:
                return (await state_of(base, ident)).get("state") == "paused"

            await wait_for(paused, within=20)
        # The stopped sink handed its waiting delivery back: JetStream counts that as a
        # delivery, past max_attempts = 1. The restarted sink finds the target paused (the
        # shared record) and keeps the delivery waiting instead of dead-lettering it.
        async with running_sink(settings, "ops-http"):

            async def redelivered() -> bool:
                state = await state_of(base, ident)
                return state.get("state") == "paused" and state.get("attempts", 0) >= 2

            await wait_for(redelivered, within=20)
            assert (await targets(base))["ops-http"]["state"] == "paused"
            receiver.default = (200, {})
            await wait_for(lambda: settled(nats_server.url, "ops-http"), within=20)
            item = await notification(base, ident)
    assert item["targets"]["ops-http"]["state"] == "delivered"
    assert await dead_letters(nats_server.url, "ops-http") == []


async def test_restarts_while_paused_spend_no_attempts(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    """A sink stopped while its target is paused hands its waiting deliveries back, which
    raises JetStream's delivery count. That must not spend their attempts: a rolling
    restart during an outage dead-lettered the backlog at the first failure after the
    target came back."""
    retry = f"max_attempts = 3, initial_backoff = 0.2, max_backoff = 0.5, jitter = 0, {FAST_PROBES}"
    settings = make_settings(
        tmp_path, nats_server.url, target(receiver.url, extra="pause_after = 1", retry=retry)
    )
    receiver.default = (503, {})
    async with running_gateway(settings) as base:
        async with jetstream(nats_server.url, settings) as js:
            ids = await publish_alerts(js, 3, prefix="restart")

        async def waiting() -> bool:
            if (await targets(base))["ops-http"]["state"] != "paused":
                return False
            shown = [(await notification(base, i))["targets"]["ops-http"] for i in ids]
            return all(s["state"] == "paused" for s in shown)

        for _ in range(5):  # a rolling restart during the outage, five times over
            async with running_sink(settings, "ops-http"):
                await wait_for(waiting, within=20)
        # the service comes back, flapping: one probe fails, the next succeeds, and every
        # other send after it fails once more
        receiver.default = (200, {})
        receiver.script = [(503, {}), (200, {}), (503, {}), (200, {}), (503, {})]
        async with running_sink(settings, "ops-http"):
            await wait_for(lambda: settled(nats_server.url, "ops-http"), within=30)
        shown = [(await notification(base, i))["targets"]["ops-http"] for i in ids]
    assert await dead_letters(nats_server.url, "ops-http") == []
    assert {s["state"] for s in shown} == {"delivered"}
    assert max(s["attempts"] for s in shown) > 3  # JetStream's count passed max_attempts
    assert {b["id"] for b in envelopes(receiver)} == set(ids)


async def test_what_waits_behind_a_paused_target_shows_paused(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver, fallback: Receiver
) -> None:
    """With every delivery slot of a paused target's sink holding a waiting delivery, the
    notifications behind them are not taken yet: they wait for the same thing, and show
    ``paused`` too (with the next probe), not ``pending``, so ``?state=paused`` finds them."""
    retry = "max_attempts = 1, initial_backoff = 0.2, jitter = 0, probe_backoff = 600"
    toml = target(receiver.url, extra="pause_after = 1\nconcurrency = 1", retry=retry)
    toml += target(fallback.url, name="ops-ok")
    settings = make_settings(tmp_path, nats_server.url, toml)
    receiver.default = (503, {})
    async with (
        running_gateway(settings) as base,
        running_sink(settings, "ops-http"),
        running_sink(settings, "ops-ok"),
    ):
        async with jetstream(nats_server.url, settings) as js:
            ids = await publish_alerts(js, 3, prefix="behind")
        await wait_for(lambda: settled(nats_server.url, "ops-ok"), within=20)

        async def listed() -> list[dict[str, Any]]:
            query = "target=ops-http&state=paused"
            status, body = await api("GET", f"{base}/api/v1/notifications?{query}")
            assert status == 200, body
            return body["notifications"]  # type: ignore[no-any-return]

        async def all_paused() -> bool:
            return len(await listed()) == 3

        await wait_for(all_paused, within=20)
        shown = {item["id"]: item for item in await listed()}
        one = await notification(base, ids[2])
    assert sorted(shown) == sorted(ids)
    waiting = [shown[i]["targets"]["ops-http"] for i in ids]
    assert sorted(w["attempts"] for w in waiting) == [0, 0, 1]  # one taken, two behind it
    assert all(w["state"] == "paused" and w["next_attempt_at"] for w in waiting)
    assert all(item["state"] == "paused" for item in shown.values())
    assert one["targets"]["ops-http"]["state"] == "paused"
    assert one["targets"]["ops-ok"]["state"] == "delivered"
