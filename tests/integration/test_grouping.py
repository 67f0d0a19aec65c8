"""Per-target grouping (``group_window``) and send rate (``per_second``), on a real bus."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from helpers import (
    Receiver,
    dead_letters,
    http_target,
    jetstream,
    kv_keys,
    make_settings,
    publish_alerts,
    running_sink,
    settled,
    wait_for,
)
from nats.js import JetStreamContext

from shared.core.natsserver import NatsServer
from shared.relay import status, streams


async def publish(
    js: JetStreamContext, n: int, *, application: str = "shop", prefix: str = "scan", risk: int = 40
) -> list[str]:
    """``n`` alerts of ``application`` (its digests group by it), risk ``risk`` and up."""

    def alert(i: int) -> dict[str, Any]:
        return {
            "risk": risk + i,
            "application": application,
            "environment": "production",
            "ips": [f"203.0.113.{i % 250}"],
            "description": f"probe {i}",
        }

    return await publish_alerts(js, n, prefix, alert)


async def statuses(url: str) -> dict[str, str]:
    async with jetstream(url) as js:
        kv = await js.key_value(streams.STATUS_BUCKET)
        found: dict[str, str] = {}
        for key in await kv_keys(kv):
            entry = await kv.get(key)
            if entry.value:
                record = status.decode(entry.value)
                found[record.notification_id] = record.state
        return found


GROUPED = "group_window = {window}\ngroup_max = {max}\n"


async def test_burst_becomes_one_digest_with_every_member(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    toml = http_target(receiver.url, GROUPED.format(window=1.5, max=500))
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_sink(settings, "ops-http"), jetstream(nats_server.url, settings) as js:
        ids = await publish(js, 40)
        await wait_for(lambda: len(receiver.requests) >= 1)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
        await asyncio.sleep(0.5)  # nothing else arrives
    assert len(receiver.requests) == 1
    envelope = receiver.bodies()[0]
    assert (envelope["source"], envelope["type"]) == ("lookout", "digest")
    data = envelope["data"]
    assert data["count"] == 40
    assert data["type"] == "http_scan"
    assert data["source"] == "scanner"
    assert data["application"] == "shop"
    assert data["environment"] == "production"
    assert data["risk"] == 40 + 39  # the highest member risk
    assert [item["id"] for item in data["items"]] == ids
    assert [n["id"] for n in data["notifications"]] == ids
    assert data["notifications"][3]["data"]["description"] == "probe 3"  # originals kept
    assert data["items"][0]["title"] == "[scanner] http scan in shop (risk 40)"
    assert len(data["ips"]) == 40

    # status records are published without waiting for their ack: poll for them
    async def all_delivered() -> bool:
        states = await statuses(nats_server.url)
        return all(states.get(i) == "delivered" for i in ids)

    await wait_for(all_delivered)


async def test_groups_follow_group_by_and_a_lone_one_goes_as_itself(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    toml = http_target(receiver.url, GROUPED.format(window=1.0, max=500))
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_sink(settings, "ops-http"), jetstream(nats_server.url, settings) as js:
        shop = await publish(js, 5, application="shop", prefix="shop")
        blog = await publish(js, 3, application="blog", prefix="blog")
        alone = await publish(js, 1, application="admin", prefix="admin")
        await wait_for(lambda: len(receiver.requests) >= 3)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    bodies = receiver.bodies()
    assert len(bodies) == 3
    digests = {b["data"]["application"]: b for b in bodies if b["type"] == "digest"}
    assert [n["id"] for n in digests["shop"]["data"]["notifications"]] == shop
    assert [n["id"] for n in digests["blog"]["data"]["notifications"]] == blog
    single = [b for b in bodies if b["type"] != "digest"]
    assert [b["id"] for b in single] == alone
    assert single[0]["type"] == "http_scan"


async def test_group_max_sends_early(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    # A window far longer than the test: only group_max can send these.
    toml = http_target(receiver.url, GROUPED.format(window=600, max=4))
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_sink(settings, "ops-http"), jetstream(nats_server.url, settings) as js:
        ids = await publish(js, 8)
        await wait_for(lambda: len(receiver.requests) >= 2)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    counts = [b["data"]["count"] for b in receiver.bodies()]
    assert counts == [4, 4]
    sent = [n["id"] for b in receiver.bodies() for n in b["data"]["notifications"]]
    assert sorted(sent) == sorted(ids)


async def test_failed_digest_is_retried_then_delivered(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script = [(503, {})]
    toml = http_target(receiver.url, GROUPED.format(window=0.5, max=500))
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_sink(settings, "ops-http"), jetstream(nats_server.url, settings) as js:
        ids = await publish(js, 6)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    bodies = receiver.bodies()
    assert len(bodies) >= 2
    # every member reached the receiver after the failure, and none is dead
    delivered = set()
    for body in bodies[1:]:
        if body["type"] == "digest":
            delivered.update(n["id"] for n in body["data"]["notifications"])
        else:
            delivered.add(body["id"])
    assert delivered == set(ids)
    assert await dead_letters(nats_server.url, "ops-http") == []


async def test_permanently_refused_digest_dead_letters_every_member(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = (400, {})
    toml = http_target(receiver.url, GROUPED.format(window=0.5, max=500))
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_sink(settings, "ops-http"), jetstream(nats_server.url, settings) as js:
        ids = await publish(js, 5)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    letters = await dead_letters(nats_server.url, "ops-http")
    assert sorted(d.notification.id for d in letters if d.notification) == sorted(ids)
    assert all("HTTP 400" in d.error for d in letters)


async def test_group_held_at_shutdown_is_delivered_by_the_next_sink(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    toml = http_target(receiver.url, GROUPED.format(window=600, max=500))
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with jetstream(nats_server.url, settings) as js:
        async with running_sink(settings, "ops-http"):
            ids = await publish(js, 5)
            await wait_for(lambda: _ack_pending(nats_server.url, 5))
        assert receiver.requests == []  # still in its window when the sink stopped
        short = make_settings(
            tmp_path, nats_server.url, http_target(receiver.url, GROUPED.format(window=0.5, max=9))
        )
        async with running_sink(short, "ops-http"):
            await wait_for(lambda: settled(nats_server.url, "ops-http"))
    sent = [n["id"] for b in receiver.bodies() for n in b["data"]["notifications"]]
    assert sorted(sent) == sorted(ids)


async def _ack_pending(url: str, n: int) -> bool:
    async with jetstream(url) as js:
        info = await js.consumer_info(streams.NOTIFICATIONS, streams.sink_durable("ops-http"))
        return info.num_ack_pending == n


async def test_per_second_paces_any_target(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    arrivals: list[float] = []
    original = receiver._handle

    async def stamped(request):  # type: ignore[no-untyped-def]
        arrivals.append(time.monotonic())
        return await original(request)

    receiver._handle = stamped  # type: ignore[method-assign]
    await receiver.stop()
    await receiver.start()
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url, "per_second = 5"))
    async with running_sink(settings, "ops-http"), jetstream(nats_server.url, settings) as js:
        await publish(js, 8)
        await wait_for(lambda: len(arrivals) == 8)
    # 5 per second: never more than k + 1 sends in k periods of 0.2 s. Checked over every
    # span of arrivals, not gap by gap, so that the delivery's own latency (the sink and the
    # receiver share the cores with other tests) may move one arrival by up to a period
    # without failing the test, while unpaced sends (all within milliseconds) or a doubled
    # rate still fail it.
    period = 0.2
    for (i, first), (j, last) in itertools.combinations(enumerate(arrivals), 2):
        assert last - first >= (j - i - 1) * period, (i, j, [t - arrivals[0] for t in arrivals])
