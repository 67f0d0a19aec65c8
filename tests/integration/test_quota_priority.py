"""Scheduled lookups spend the shared quotas after interactive ones, on a real nats-server.

The end-to-end test runs the VirusTotal provider (the real runner) against the fake
VirusTotal with a quota of 3 requests per window, the window shortened to 2 s through the
runner's test-only ``quota_window`` (production: 60 s, the same logic), and records the
order in which requests reach the fake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
from fakes.virustotal import FakeVirusTotal
from helpers import api, make_settings, running_gateway, running_task, wait_for

from services.providers import virustotal
from shared.bus.kvtime import Wait
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.lookups import indicators, jobs
from shared.lookups import streams as lookup_streams
from shared.lookups.config import Quota
from shared.lookups.quota import PRIORITY_SLACK, Exhausted, Granted, SharedQuota
from shared.lookups.runner import ProviderRunner

VT_KEY = "vt-test-key-0123456789abcdef"
WINDOW = 2.0
QUOTA = 3
START = 1_700_000_000.0


@contextlib.asynccontextmanager
async def provider(settings: Settings) -> AsyncIterator[None]:
    nc = await nats.connect(settings.effective_nats_url)
    runner = ProviderRunner(
        nc.jetstream(), virustotal.build(settings), settings, quota_window=WINDOW
    )
    try:
        async with running_task(runner.run):
            yield
    finally:
        await nc.close()


async def test_interactive_lookups_go_before_scheduled_ones_submitted_first(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    warm = [f"warm{i}.example.com" for i in range(QUOTA)]
    scheduled = [f"watched{i}.example.com" for i in range(2 * QUOTA)]
    interactive = [f"analyst{i}.example.com" for i in range(QUOTA)]
    names = warm + scheduled + interactive
    async with FakeVirusTotal(
        {n: FakeVirusTotal.stats() for n in names},
        api_key=VT_KEY,
        quota_per_minute=QUOTA,  # the fake enforces the quota over the same window
        minute_window=WINDOW,
    ) as vt:
        toml = (
            "[providers.virustotal]\nquota_slack = 0\ntimeout = 5\n"
            f"[providers.virustotal.quota]\nper_minute = {QUOTA}\nper_day = 1000\n"
        )
        settings = make_settings(
            tmp_path,
            nats_server.url,
            toml,
            VIRUSTOTAL_API_KEY=VT_KEY,
            VIRUSTOTAL_URL=vt.base_url,
            LOOKOUT_API_RATE="0",
        )
        async with running_gateway(settings) as base, provider(settings):
            # an analyst's first lookups fill the window …
            status, _first = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={"indicators": warm, "providers": ["virustotal"]},
            )
            assert status == 202
            await wait_for(lambda: len(vt.arrivals) == QUOTA)
            # … then a watch list's run is submitted, and after it the analyst's next job
            nc = await nats.connect(nats_server.url)
            try:
                watch_job = await jobs.submit(
                    nc.jetstream(),
                    settings,
                    indicators.parse_items(scheduled),
                    ["virustotal"],
                    True,
                    request_id="watch-test",
                    watch="0123456789abcdef01234567",
                )
            finally:
                await nc.close()
            assert watch_job.scheduled
            await asyncio.sleep(0.3)  # the scheduled requests are queued first
            status, second = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={"indicators": interactive, "providers": ["virustotal"]},
            )
            assert status == 202

            async def done(job_id: str) -> bool:
                _, job = await api("GET", f"{base}/api/v1/lookups/{job_id}")
                return bool(job["complete"])

            await wait_for(lambda: done(second["id"]), within=30)
            await wait_for(lambda: done(watch_job.id), within=60)
            _, analyst = await api("GET", f"{base}/api/v1/lookups/{second['id']}")
            _, watched = await api("GET", f"{base}/api/v1/lookups/{watch_job.id}")
    asked = [r.path.rsplit("/", 1)[-1] for r in vt.requests]
    assert len(asked) == len(names)  # each asked once: the fake never answered 429
    assert sorted(asked[:QUOTA]) == sorted(warm)
    # the analyst's lookups reached the upstream before any of the watch's
    assert sorted(asked[QUOTA : 2 * QUOTA]) == sorted(interactive), asked
    assert sorted(asked[2 * QUOTA :]) == sorted(scheduled), asked
    assert {r["status"] for r in analyst["results"] + watched["results"]} == {"done"}
    last_interactive = max(r["updated_at"] for r in analyst["results"])
    assert all(r["updated_at"] > last_interactive for r in watched["results"])
    assert watched["scheduled"] is True
    assert analyst["scheduled"] is False


async def quota(nats_server: NatsServer, tmp_path: Path, given: Quota) -> SharedQuota:
    settings = make_settings(tmp_path, nats_server.url)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await lookup_streams.provision(js, settings)
    return SharedQuota(await js.key_value(lookup_streams.QUOTA_BUCKET), "vt", given, smooth=False)


async def test_scheduled_requests_leave_the_reserve_and_wait_for_interactive_ones(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    shared = await quota(nats_server, tmp_path, Quota(per_minute=4, per_day=8, reserve=0.25))
    # a quarter of 4 a minute (1) and of 8 a day (2) is left to interactive requests
    taken = [await shared.acquire(now=START, scheduled=True) for _ in range(4)]
    assert [type(d) for d in taken] == [Granted, Granted, Granted, Wait]
    assert isinstance(taken[3], Wait)
    assert "3 of 4 requests per minute" in taken[3].reason
    assert isinstance(await shared.acquire(now=START), Granted)  # the reserved slot
    # an interactive request that has to wait holds every scheduled one back
    waiting = await shared.acquire(now=START + 1)
    assert isinstance(waiting, Wait)
    held = await shared.acquire(now=START + 61, scheduled=True)
    assert isinstance(held, Wait)
    assert held.reason == "interactive lookups first"
    assert held.until == waiting.until + PRIORITY_SLACK
    # past that, a scheduled request may go, until only the day's reserve is left
    later = waiting.until + PRIORITY_SLACK + 1
    for _ in range(2):  # the 5th and 6th of the day's 8
        assert isinstance(await shared.acquire(now=later, scheduled=True), Granted)
    kept = await shared.acquire(now=later, scheduled=True)
    assert isinstance(kept, Exhausted)
    assert "kept for interactive lookups" in kept.reason
    assert isinstance(await shared.acquire(now=later), Granted)  # 7
    assert isinstance(await shared.acquire(now=later), Granted)  # 8
    used = await shared.acquire(now=later)
    assert isinstance(used, Exhausted)
    assert used.reason == "daily quota used"


async def test_a_reserve_of_zero_leaves_every_slot_to_scheduled_requests(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    shared = await quota(nats_server, tmp_path, Quota(per_minute=3, reserve=0.0))
    taken = [await shared.acquire(now=START, scheduled=True) for _ in range(3)]
    assert all(isinstance(d, Granted) for d in taken)
    # and the default reserve (0.25) rounds down to nothing for 3 a minute
    assert shared.limit(3, scheduled=True) == 3
    assert SharedQuota(shared.kv, "x", Quota(per_minute=4)).limit(4, scheduled=True) == 3
