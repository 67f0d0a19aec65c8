"""The tor provider on the real bus: the exit list downloaded on a schedule into the KV
bucket ``tor_exits`` by one replica at a time, lookups reading the bucket only, through the
real runner, against a loopback server of the published lists (tests/fakes/torlist.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fakes.torlist import BULK, COLLECTOR, FakeTorList, record
from helpers import (
    api,
    jetstream,
    make_settings,
    running_gateway,
    running_provider,
    wait_for,
    wait_job,
)

from services.providers.tor import store
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings

NOW_EXIT = "185.220.101.50"  # an exit in the list now (record() stamps it with the time)
OLD_EXIT = "162.247.74.201"  # in the 2018 CollecTor list
NOW_EXIT6 = "2a0b:f4c2::1"
DROPPED = "45.9.148.3"  # an exit now, not in the bulk list of 2022


def settings_for(tmp_path: Path, nats: NatsServer, tor: FakeTorList, toml: str = "") -> Settings:
    return make_settings(tmp_path, nats.url, "[providers.tor]\n" + toml, TOR_EXIT_LIST_URL=tor.url)


async def loaded(nats: NatsServer, generation: int = 1) -> bool:
    async with jetstream(nats.url) as js:
        try:
            kv = await js.key_value(store.BUCKET)
        except Exception:
            return False
        meta = await store.meta(kv)
        return meta is not None and meta.generation >= generation


async def lookup(base: str, indicators: list[str]) -> dict[str, dict[str, Any]]:
    status, created = await api(
        "POST", f"{base}/api/v1/lookups", json={"indicators": indicators, "providers": ["tor"]}
    )
    assert status == 202, created
    job = await wait_job(base, created["id"])
    return {r["indicator"]: r for r in job["results"]}


async def test_one_replica_downloads_lookups_read_the_bus(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeTorList(COLLECTOR.read_text() + record(NOW_EXIT) + record(NOW_EXIT6)) as tor:
        settings = settings_for(tmp_path, nats_server, tor)
        async with (
            running_gateway(settings) as base,
            running_provider(settings, "tor"),
            running_provider(settings, "tor"),
            running_provider(settings, "tor"),
        ):
            await wait_for(lambda: loaded(nats_server))
            await asyncio.sleep(0.5)  # the other replicas had their look at the bucket
            got = await lookup(
                base, [NOW_EXIT, OLD_EXIT, "8.8.8.8", "2a00:1450:4001::1", NOW_EXIT6]
            )
            again = await lookup(base, [NOW_EXIT])
            downloads = tor.downloads
    assert downloads == 1  # three replicas, one download (the lease), none per lookup
    now = got[NOW_EXIT]
    assert (now["verdict"], now["data"]["exit"]) == ("suspicious", True)
    assert now["summary"].startswith("Tor exit, last seen ")
    assert now["data"]["list_published"] == "2018-11-02T01:02:01Z"  # the list's Downloaded
    assert now["data"]["list_count"] == 864  # addresses: some relays share one
    assert got[OLD_EXIT]["verdict"] == "suspicious"
    assert got[OLD_EXIT]["data"]["last_seen"] == "2018-11-01T18:08:13Z"
    assert (got["8.8.8.8"]["verdict"], got["8.8.8.8"]["summary"]) == (
        "undetected",
        "not a Tor exit",
    )
    assert got["2a00:1450:4001::1"]["verdict"] == "undetected"
    assert got[NOW_EXIT6]["verdict"] == "suspicious"
    assert again[NOW_EXIT]["cached"] is False  # the bucket is the cache


async def test_refreshed_on_schedule(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeTorList(record(DROPPED)) as tor:
        settings = settings_for(tmp_path, nats_server, tor, "refresh_interval = 1\n")
        async with running_gateway(settings) as base, running_provider(settings, "tor"):
            await wait_for(lambda: loaded(nats_server))
            assert (await lookup(base, [DROPPED]))[DROPPED]["verdict"] == "suspicious"
            tor.body = BULK.read_bytes()  # the next download: the bulk list, without it
            await wait_for(lambda: loaded(nats_server, 2))
            got = await lookup(base, [DROPPED, "93.95.230.253"])
    dropped = got[DROPPED]
    assert (dropped["verdict"], dropped["data"]["was_exit"]) == ("undetected", True)
    assert dropped["summary"].startswith("not a current Tor exit, last seen ")
    assert got["93.95.230.253"]["verdict"] == "suspicious"
    assert got["93.95.230.253"]["summary"] == "Tor exit"  # the bulk list has no times
    assert tor.downloads >= 2


async def test_not_loaded_and_stale_are_errors(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeTorList(record(NOW_EXIT)) as tor:
        tor.fail_next = [503] * 50
        toml = "stale_after = 2\nretry_after_failure = 0.5\nrefresh_interval = 3600\n"
        settings = settings_for(tmp_path, nats_server, tor, toml)
        async with running_gateway(settings) as base, running_provider(settings, "tor"):
            await wait_for(lambda: tor.downloads >= 1)
            first = (await lookup(base, [NOW_EXIT]))[NOW_EXIT]
            tor.fail_next = []
            await wait_for(lambda: loaded(nats_server), within=10)
            fresh = (await lookup(base, [NOW_EXIT]))[NOW_EXIT]
            tor.fail_next = [503] * 50
            await asyncio.sleep(2.5)
            stale = (await lookup(base, [NOW_EXIT]))[NOW_EXIT]
    assert (first["status"], first["verdict"]) == ("error", "error")
    assert first["error"] == f"exit list not loaded yet (HTTP 503 from {tor_url(first)})"
    assert fresh["verdict"] == "suspicious"
    assert stale["status"] == "error"
    assert stale["error"].startswith("exit list stale: last downloaded ")


def tor_url(result: dict[str, Any]) -> str:
    return str(result["data"]["upstream"])


async def test_a_throttled_download_waits_its_retry_after(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeTorList(record(NOW_EXIT)) as tor:
        tor.fail(429, retry_after="3600", detail="slow down")
        toml = "retry_after_failure = 0.5\nrefresh_interval = 1\n"
        settings = settings_for(tmp_path, nats_server, tor, toml)
        async with running_gateway(settings) as base, running_provider(settings, "tor"):
            await wait_for(lambda: tor.downloads >= 1)
            await asyncio.sleep(1.5)  # ticks pass: the lease waits for Retry-After
            got = (await lookup(base, [NOW_EXIT]))[NOW_EXIT]
            downloads = tor.downloads
    assert downloads == 1
    assert got["status"] == "error"
    assert got["error"].startswith("exit list not loaded yet (HTTP 429 from ")
