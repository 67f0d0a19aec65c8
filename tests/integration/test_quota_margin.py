"""The shared per-minute quota as the upstream counts it: by the times requests *arrive*.

Three VirusTotal provider replicas (real runners, one NATS connection each) on one real
nats-server, a job of twice the quota, and the VirusTotal fake recording when each request
arrived. The first requests of the burst reach the fake late (``arrival_delays``, the
latency of fresh connections), the later ones at once: a grant stamped when it was *taken*
let a request granted exactly one window after the first grant arrive less than a window
after the first request did (the 31st request at +59.99 s of issue 12). Stamped when the
request *ended*, no window of arrivals holds more than the quota.

The window is shortened to 2 s through the runner's test-only ``quota_window`` (the
production window is 60 s, the logic the same), and the slack set to 0 so that the
completion stamp alone is tested; :func:`test_the_slack_widens_the_window` tests the slack.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
from fakes.virustotal import FakeVirusTotal
from helpers import api, make_settings, running_gateway, wait_for

from services.providers import virustotal
from shared.bus.kvtime import Wait
from shared.core import settings as config
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.lookups import streams as lookup_streams
from shared.lookups.config import Quota, lookups
from shared.lookups.quota import WINDOW, Granted, SharedQuota
from shared.lookups.runner import ProviderRunner

VT_KEY = "vt-test-key-0123456789abcdef"
TEST_WINDOW = 2.0
QUOTA = 3
LATE = 1.0  # how late the first burst's requests arrive: more than the requeue jitter
START = 1_700_000_000.0


@contextlib.asynccontextmanager
async def replicas(settings: Settings, count: int, window: float) -> AsyncIterator[None]:
    """``count`` VirusTotal runners, each with its own NATS connection and provider."""
    stop = asyncio.Event()
    connections = [await nats.connect(settings.effective_nats_url) for _ in range(count)]
    tasks = []
    for nc in connections:
        runner = ProviderRunner(
            nc.jetstream(), virustotal.build(settings), settings, quota_window=window
        )
        tasks.append(asyncio.create_task(runner.run(stop)))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for nc in connections:
            await nc.close()


def busiest_window(arrivals: list[float], window: float) -> int:
    """The most arrivals any ``window``-second interval holds."""
    ordered = sorted(arrivals)
    return max(sum(1 for t in ordered if first <= t < first + window) for first in ordered)


async def test_no_window_of_arrivals_holds_more_than_the_quota(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    names = [f"q{i}.example.com" for i in range(2 * QUOTA)]
    async with FakeVirusTotal(
        {n: FakeVirusTotal.stats() for n in names},
        api_key=VT_KEY,
        quota_per_minute=QUOTA,  # the fake enforces the same quota over the same window
        minute_window=TEST_WINDOW,
    ) as vt:
        vt.arrival_delays = [LATE] * QUOTA
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
        )
        async with running_gateway(settings) as base, replicas(settings, 3, TEST_WINDOW):
            status, body = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={"indicators": names, "providers": ["virustotal"]},
            )
            assert status == 202, body
            job_id = body["id"]

            async def all_done() -> bool:
                _, job = await api("GET", f"{base}/api/v1/lookups/{job_id}")
                return [r["status"] for r in job["results"]] == ["done"] * len(names)

            def asked_all_or_overran() -> bool:
                arrivals = vt.arrivals
                return len(arrivals) >= len(names) or (
                    bool(arrivals) and busiest_window(arrivals, TEST_WINDOW) > QUOTA
                )

            await wait_for(asked_all_or_overran, within=30)
            assert busiest_window(vt.arrivals, TEST_WINDOW) <= QUOTA, sorted(vt.arrivals)
            await wait_for(all_done, within=30)
    assert len(vt.arrivals) == len(names)  # each asked once: no 429, no retry


async def quota_on(nats_server: NatsServer, tmp_path: Path, **options: float) -> SharedQuota:
    settings = make_settings(tmp_path, nats_server.url)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await lookup_streams.provision(js, settings)
    kv = await js.key_value(lookup_streams.QUOTA_BUCKET)
    return SharedQuota(kv, "vt", Quota(per_minute=1), smooth=False, **options)


async def test_an_unsettled_grant_holds_its_slot_and_settling_counts_from_the_end(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """While its request is in flight a grant counts whatever its age; settled, it counts
    for a window from when the request ended, not from when it was granted."""
    quota = await quota_on(nats_server, tmp_path, hold=20.0)
    granted = await quota.acquire(now=START)
    assert isinstance(granted, Granted)
    assert granted.stamp == START + 20.0
    # in flight (10 s on): the slot is taken; it may free a window after the request ends,
    # which may be any moment
    waiting = await quota.acquire(now=START + 10)
    assert isinstance(waiting, Wait)
    assert waiting.until == START + 10 + WINDOW
    # never settled (a replica died): the request ended by its hold at the latest, and the
    # slot stays taken a window after that, longer than a window after the grant
    waiting = await quota.acquire(now=START + 61)
    assert isinstance(waiting, Wait)
    assert waiting.until == START + 20 + WINDOW
    await quota.settle(granted, now=START + 3.0)  # the answer came back 3 s after the grant
    refused = await quota.acquire(now=START + 62.9)
    assert isinstance(refused, Wait)
    assert refused.until == START + 3.0 + WINDOW
    assert isinstance(await quota.acquire(now=START + 63.01), Granted)


async def test_the_slack_widens_the_window(nats_server: NatsServer, tmp_path: Path) -> None:
    quota = await quota_on(nats_server, tmp_path, margin=1.0)
    granted = await quota.acquire(now=START)
    assert isinstance(granted, Granted)
    await quota.settle(granted, now=START)
    refused = await quota.acquire(now=START + 60.5)
    assert isinstance(refused, Wait)
    assert refused.until == START + 61.0
    assert isinstance(await quota.acquire(now=START + 61.01), Granted)


def test_the_production_window_and_the_default_slack() -> None:
    assert WINDOW == 60.0
    providers = lookups(config.load({})).providers
    assert providers["virustotal"].quota_slack == 1.0
    assert providers["abuseipdb"].quota_slack == 1.0
