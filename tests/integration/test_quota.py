"""Shared quotas across replicas, on a real nats-server KV bucket."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import nats
import pytest
from helpers import make_settings

from shared.bus.kvtime import Wait, advance
from shared.core.natsserver import NatsServer
from shared.lookups import streams as lookup_streams
from shared.lookups.config import Quota
from shared.lookups.quota import Exhausted, Granted, SharedQuota, next_utc_midnight

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z: a simulated clock, far from midnight


async def replicas(url: str, tmp_path: Path, quota: Quota, count: int = 3) -> list[SharedQuota]:
    settings = make_settings(tmp_path, url)
    out = []
    for _ in range(count):  # one connection each, like separate processes
        nc = await nats.connect(url)
        js = nc.jetstream()
        await lookup_streams.provision(js, settings)
        out.append(
            SharedQuota(await js.key_value(lookup_streams.QUOTA_BUCKET), "vt", quota, smooth=False)
        )
    return out


async def test_three_replicas_never_exceed_any_window(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    quotas = await replicas(nats_server.url, tmp_path, Quota(per_minute=4, per_day=30))
    grants: list[float] = []
    waits: list[Wait] = []
    exhausted: list[Exhausted] = []
    for step in range(400):  # 10 simulated minutes, 1.5 s apart, 9 attempts each time
        now = START + step * 1.5
        decisions = await asyncio.gather(*(q.acquire(now=now) for q in quotas for _ in range(3)))
        for decision in decisions:
            if isinstance(decision, Granted):
                grants.append(now)
            elif isinstance(decision, Wait):
                waits.append(decision)
                assert decision.until > now
            else:
                exhausted.append(decision)
    # every sliding 60-second window holds at most 4 grants
    for first in grants:
        assert sum(1 for g in grants if first <= g < first + 60) <= 4
    # and the pool used its minute quota fully while the day allowed it
    assert len(grants) == 30
    assert exhausted
    assert {e.reset for e in exhausted} == {next_utc_midnight(START)}
    # a refused replica is told when the oldest grant leaves the window
    assert any(w.until == grants[0] + 60 for w in waits)


async def test_a_pause_stops_every_replica(nats_server: NatsServer, tmp_path: Path) -> None:
    first, second, third = await replicas(nats_server.url, tmp_path, Quota(per_minute=100))
    assert isinstance(await second.acquire(), Granted)
    until = await first.pause(30)
    for quota in (second, third):
        decision = await quota.acquire()
        assert isinstance(decision, Wait)
        assert decision.until == until
    # a shorter pause never shortens a longer one
    assert await third.pause(5) == until


async def test_a_pause_the_store_cannot_read_is_no_pause(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """An older release stored an endless pause (``Retry-After: inf``) as ``null``: it is
    read as no pause, and the next pause replaces it; an endless one is never written."""
    [quota] = await replicas(nats_server.url, tmp_path, Quota(per_minute=100), count=1)
    await quota.kv.put("vt.pause", b"null")
    assert isinstance(await quota.acquire(), Granted)
    until = await quota.pause(30)
    assert isinstance(decision := await quota.acquire(), Wait)
    assert decision.until == until
    with pytest.raises(ValueError, match="not a time"):
        await advance(quota.kv, "vt.pause", math.inf)


async def test_remaining(nats_server: NatsServer, tmp_path: Path) -> None:
    [quota] = await replicas(nats_server.url, tmp_path, Quota(per_minute=5, per_day=7), count=1)
    for _ in range(3):
        assert isinstance(await quota.acquire(now=START), Granted)
    assert await quota.remaining(now=START + 1) == {"per_minute": 2, "per_day": 4}
    assert await quota.remaining(now=START + 61) == {"per_minute": 5, "per_day": 4}


async def test_no_quota_is_unlimited(nats_server: NatsServer, tmp_path: Path) -> None:
    [quota] = await replicas(nats_server.url, tmp_path, Quota(), count=1)
    decisions = [await quota.acquire() for _ in range(50)]
    assert all(isinstance(d, Granted) for d in decisions)
