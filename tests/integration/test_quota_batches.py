"""Concurrent grants and settles of one replica share compare-and-sets, and the shared
quota's guarantee still holds across replicas, on a real nats-server KV bucket.

Each replica is a :class:`SharedQuota` on its own NATS connection, like separate
processes; "upstream requests" are simulated: a worker that is granted a slot notes the
time (its request's arrival upstream), sleeps a random latency, and settles. The window is
shortened to 1 s (the production window is 60 s, the logic the same).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from helpers import make_settings
from nats.aio.client import Client

from shared.bus.kvtime import Wait
from shared.core.natsserver import NatsServer
from shared.lookups import streams as lookup_streams
from shared.lookups.config import Quota
from shared.lookups.quota import TICKS, Granted, SharedQuota, Window, tick

QUOTA_STREAM = f"KV_{lookup_streams.QUOTA_BUCKET}"


async def replica(
    url: str, tmp_path: Path, quota: Quota, **options: float
) -> tuple[Client, SharedQuota]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await lookup_streams.provision(js, make_settings(tmp_path, url))
    kv = await js.key_value(lookup_streams.QUOTA_BUCKET)
    return nc, SharedQuota(kv, "vt", quota, smooth=False, **options)


def stamps(counts: Window) -> list[float]:
    """The window as one time per grant (seconds), oldest first."""
    return sorted(at / TICKS for at, n in counts.items() for _ in range(n))


async def writes(nc: Client) -> int:
    """Every write to the quota bucket so far (the last sequence of its stream)."""
    return (await nc.jetstream().stream_info(QUOTA_STREAM)).state.last_seq


async def test_concurrent_grants_and_settles_share_compare_and_sets(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """32 lookups in flight in one replica: a few writes of the minute window, not one per
    grant and one per settle (each a read and a compare-and-set that conflicts with the
    others: what made the lookup-job benchmark wait on the quota)."""
    nc, quota = await replica(nats_server.url, tmp_path, Quota(per_minute=1000), hold=30.0)
    before = await writes(nc)
    grants = await asyncio.gather(*(quota.acquire() for _ in range(32)))
    assert all(isinstance(g, Granted) and g.stamp is not None for g in grants)
    granting = await writes(nc) - before
    assert granting <= 4, granting  # the first call's turn, then the 31 that joined it
    in_flight = sorted(g.stamp for g in grants if isinstance(g, Granted) and g.stamp)
    assert stamps((await quota._read_minute())[0]) == in_flight

    before = await writes(nc)
    ended = time.time()
    await asyncio.gather(
        *(quota.settle(g, now=ended + i) for i, g in enumerate(grants) if isinstance(g, Granted))
    )
    settling = await writes(nc) - before
    assert settling <= 4, settling
    # every in-flight stamp was replaced by its request's end time (rounded up to a tick)
    expected = [tick(ended + i) / TICKS for i in range(32)]
    assert stamps((await quota._read_minute())[0]) == expected
    assert all(0 <= at - (ended + i) <= 1 / TICKS for i, at in enumerate(expected))
    assert await quota.remaining() == {"per_minute": 1000 - 32, "per_day": None}
    await nc.close()


async def test_a_large_quota_keeps_a_small_window(nats_server: NatsServer, tmp_path: Path) -> None:
    """A quota of a million a minute, 3,000 grants settled over 15 s: the window keeps one
    count per tenth of a second (at most 151 here), not one time per grant, so a turn
    reads and writes a few KB whatever the quota."""
    nc, quota = await replica(nats_server.url, tmp_path, Quota(per_minute=1_000_000), hold=30.0)
    start = time.time()
    for batch in range(30):
        now = start + batch * 0.5
        grants = await asyncio.gather(*(quota.acquire(now=now) for _ in range(100)))
        assert all(isinstance(g, Granted) for g in grants)
        ends = [now + i * 0.005 for i in range(100)]  # answers 5 ms apart
        await asyncio.gather(
            *(
                quota.settle(g, now=e)
                for g, e in zip(grants, ends, strict=True)
                if isinstance(g, Granted)
            )
        )
    counts, _ = await quota._read_minute()
    assert sum(counts.values()) == 3000
    assert len(counts) <= 151, len(counts)
    entry = await quota.kv.get("vt.minute")
    assert entry.value is not None
    assert len(entry.value) < 151 * 20
    assert await quota.remaining(now=start + 15) == {
        "per_minute": 1_000_000 - 3000,
        "per_day": None,
    }
    await nc.close()


async def test_rounded_up_a_grant_counts_a_little_longer_never_shorter(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A grant settled at ``ended`` counts until ``ended + span`` at least, and no more than
    one tick after; and a window written by a release before the ticks (one time in
    seconds per grant) is read as those grants."""
    nc, quota = await replica(nats_server.url, tmp_path, Quota(per_minute=10), hold=5.0)
    ended = time.time() + 0.0123
    [grant] = [await quota.acquire(now=ended - 0.5)]
    assert isinstance(grant, Granted)
    await quota.settle(grant, now=ended)
    span = quota.span
    assert (await quota.remaining(now=ended + span - 0.001))["per_minute"] == 9
    assert (await quota.remaining(now=ended + span + 1 / TICKS))["per_minute"] == 10

    old = [ended + 1.0, ended + 1.0, ended + 2.5]  # the format before: one float per grant
    await quota.kv.put("vt.minute", json.dumps(old).encode())
    assert (await quota.remaining(now=ended + 3))["per_minute"] == 10 - 3
    waited = await quota.acquire(now=ended + 3)  # 3 old ones and 7 new ones fill it
    assert isinstance(waited, Granted)
    for _ in range(6):
        assert isinstance(await quota.acquire(now=ended + 3), Granted)
    told = await quota.acquire(now=ended + 3)
    assert isinstance(told, Wait)
    # the oldest of the ten (an old-format one, ended + 1.0) frees first
    assert told.until == pytest.approx(tick(ended + 1.0) / TICKS + span)
    await nc.close()


def busiest_window(arrivals: list[float], window: float) -> int:
    """The most arrivals any ``window``-second interval holds."""
    ordered = sorted(arrivals)
    return max(
        (sum(1 for t in ordered if first <= t < first + window) for first in ordered), default=0
    )


@dataclass
class Upstream:
    """The simulated upstream: when each granted request arrived, and whose it was."""

    arrivals: list[tuple[float, str, bool]] = field(default_factory=list)

    def times(self, *, scheduled: bool | None = None, replica: str | None = None) -> list[float]:
        return [
            t
            for t, r, s in self.arrivals
            if (scheduled is None or s == scheduled) and (replica is None or r == replica)
        ]


async def worker(
    quota: SharedQuota,
    name: str,
    upstream: Upstream,
    *,
    scheduled: bool,
    wanted: int | None,
    stop: asyncio.Event,
) -> int:
    """Ask, as a provider runner does: granted, the request arrives upstream, takes a
    while and is settled; told to wait, come back then. Returns the grants it had."""
    had = 0
    while not stop.is_set() and (wanted is None or had < wanted):
        decision = await quota.acquire(scheduled=scheduled)
        if isinstance(decision, Granted):
            upstream.arrivals.append((time.time(), name, scheduled))
            had += 1
            await asyncio.sleep(random.uniform(0.0, 0.1))
            await quota.settle(decision)
        else:
            assert isinstance(decision, Wait), decision
            delay = max(0.0, decision.until - time.time())
            await asyncio.sleep(min(delay, 0.5) + random.uniform(0.0, 0.05))
    return had


async def test_two_replicas_hammering_one_quota_keep_every_window_and_serve_interactive(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    window, per_minute = 1.0, 8  # the default reserve keeps 2 of 8 for interactive requests
    quota = Quota(per_minute=per_minute)
    replicas = [
        await replica(nats_server.url, tmp_path, quota, window=window, hold=1.0) for _ in "ab"
    ]
    assert replicas[0][1].limit(per_minute, scheduled=True) == 6
    upstream = Upstream()
    stop = asyncio.Event()
    scheduled = [
        asyncio.create_task(worker(q, name, upstream, scheduled=True, wanted=None, stop=stop))
        for name, (_, q) in zip("ab", replicas, strict=True)
        for _ in range(12)
    ]
    await asyncio.sleep(2 * window)  # the scheduled workers fill every window first
    started = time.time()
    interactive = [
        asyncio.create_task(worker(q, name, upstream, scheduled=False, wanted=3, stop=stop))
        for name, (_, q) in zip("ab", replicas, strict=True)
        for _ in range(2)
    ]
    try:
        served = await asyncio.wait_for(asyncio.gather(*interactive), 120)
        await asyncio.sleep(window)
    finally:
        stop.set()
        await asyncio.gather(*scheduled)
        for nc, _ in replicas:
            await nc.close()
    # every interactive worker had its 3 grants although 24 scheduled ones kept asking
    assert served == [3, 3, 3, 3]
    assert all(t > started for t in upstream.times(scheduled=False))
    # no window of arrivals upstream holds more than the quota, nor more than the
    # scheduled requests' share of it
    assert busiest_window(upstream.times(), window) <= per_minute, sorted(upstream.times())
    assert busiest_window(upstream.times(scheduled=True), window) <= 6
    # both replicas were granted slots
    assert upstream.times(replica="a")
    assert upstream.times(replica="b")
    assert len(upstream.times(scheduled=True)) >= 2 * 6
