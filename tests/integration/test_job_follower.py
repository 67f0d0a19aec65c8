"""Following a job's results (shared/lookups/jobs.py, ``Follower``), as the gateway's event
stream and ``lookout lookup`` do: results stored meanwhile come together in one batch, a
stale copy is not handed out again, and a quiet job gives an empty batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from helpers import make_settings, wait_for

from shared.bus import direct, messages
from shared.core.natsserver import NatsServer
from shared.lookups import jobs
from shared.lookups import streams as lookup_streams
from shared.lookups.schemas import LookupResult


def result(address: str, provider: str, updated_at: str) -> LookupResult:
    return LookupResult(
        job_id="job1",
        indicator=address,
        kind="ipv4",
        provider=provider,
        status="done",
        updated_at=updated_at,
    )


async def test_results_stored_meanwhile_come_in_one_batch(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await lookup_streams.provision(js, settings)
    bucket = await js.key_value(lookup_streams.RESULTS_BUCKET)
    reader = direct.Reader(nc, 2.0)
    await reader.start()
    follower = jobs.Follower(nc, reader, "job1")
    arrived = 0

    async def count(_msg: nats.aio.msg.Msg) -> None:
        nonlocal arrived
        arrived += 1

    watch = await nc.subscribe(f"$KV.{lookup_streams.RESULTS_BUCKET}.job1.>", cb=count)
    try:
        first = result("192.0.2.1", "dns", "2026-12-07T10:00:00Z")
        await bucket.put(first.kv_key, messages.encode(first))
        assert await follower.start() == [first]

        batch = [result(f"192.0.2.{n}", "asn", "2026-12-07T10:00:01Z") for n in (1, 2, 3)]
        stale = result("192.0.2.1", "dns", "2026-12-07T09:59:00Z")  # older than `first`
        for item in (*batch, stale):
            await bucket.put(item.kv_key, messages.encode(item))
        await wait_for(lambda: arrived == 5)
        await asyncio.sleep(0.1)  # the follower's own subscription has them too
        assert await follower.next(1.0) == batch
        assert await follower.next(0.2) == []
    finally:
        await watch.unsubscribe()
        await follower.stop()
        await nc.close()
