"""``make bench``: an end-to-end lookup job of 1,000 mixed indicators.

Measures the time from ``POST /api/v1/lookups`` until every result is in, with the real
gateway and every provider service as separate processes on a real nats-server, against
loopback upstreams (DNS zone server, RDAP, VirusTotal, AbuseIPDB, InternetDB and Tor exit
list fakes). Baseline, in the
same run and against the same upstreams: the same providers called directly in one process
with the same concurrency, no bus, no cache. Rounds alternate (baseline, job), medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import nats

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import importlib  # noqa: E402

from dnsserver import ZoneServer  # noqa: E402
from fakes.abuseipdb import FakeAbuseIpdb  # noqa: E402
from fakes.internetdb import FakeInternetDb  # noqa: E402
from fakes.rdap import FakeRdapServer  # noqa: E402
from fakes.torlist import COLLECTOR, FakeTorList  # noqa: E402
from fakes.virustotal import FakeVirusTotal  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402

from services import registry  # noqa: E402
from shared.core import settings as config  # noqa: E402
from shared.core.natsserver import NatsServer, free_port  # noqa: E402
from shared.lookups import catalog, indicators  # noqa: E402
from shared.lookups.config import lookups  # noqa: E402
from shared.lookups.schemas import LookupRequest  # noqa: E402

LOOKOUT = str(Path(sys.executable).parent / "lookout")
registry.register()  # as the launcher does first in every process


def corpus(count: int) -> tuple[list[str], str]:
    """``count`` mixed indicators and a zone that answers for their names."""
    zone = [
        "$ORIGIN bench-zone.com.",
        "$TTL 600",
        "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300",
        "@ IN NS ns1",
    ]
    items: list[str] = []
    for i in range(count):
        kind = i % 10
        name = f"h{i}.bench-zone.com"
        if kind < 4:
            items.append(name)
        elif kind < 6:
            items.append(f"https://{name}/path/{i}?q=1")
        elif kind < 8:
            items.append(f"185.{220 + i % 20}.{(i // 20) % 250}.{1 + i % 250}")
        elif kind < 9:
            items.append(f"user{i}@{name}")
        else:
            items.append(f"2a0{1 + i % 8}:db9:{i:x}::1")
        zone += [
            f"h{i} IN A 192.0.2.{1 + i % 250}",
            f'h{i} IN TXT "v=spf1 ip4:192.0.2.0/24 -all"',
            f'_dmarc.h{i} IN TXT "v=DMARC1; p=reject"',
        ]
    return items, "\n".join(zone) + "\n"


def env_for(
    nats: str,
    zone: ZoneServer,
    rdap: FakeRdapServer,
    vt: FakeVirusTotal,
    abuse: FakeAbuseIpdb,
    config_path: Path,
    port: int,
) -> dict[str, str]:
    return {
        **os.environ,
        "NATS_URL": nats,
        "LOOKOUT_HTTP_PORT": str(port),
        "LOOKOUT_LOG_LEVEL": "warning",
        "LOOKOUT_CONFIG": str(config_path),
        "LOOKOUT_DNS_NAMESERVERS": zone.nameserver,
        "LOOKOUT_RDAP_URL": rdap.url,
        "VIRUSTOTAL_API_KEY": vt.api_key,
        "VIRUSTOTAL_URL": vt.base_url,
        "ABUSEIPDB_API_KEY": abuse.api_key,
        "ABUSEIPDB_URL": abuse.base_url,
    }


CONFIG = """
[providers.virustotal]
quota = { per_minute = 1000000, per_day = 1000000 }
concurrency = 32
[providers.abuseipdb]
quota = { per_day = 1000000 }
concurrency = 32
"""


async def direct(settings: config.Settings, items: list[str], js: JetStreamContext) -> float:
    """Baseline: every provider's lookup() called in this process, same concurrency (a
    provider that keeps its data in the bus, as the Tor exit list, reads it there)."""
    parsed = indicators.parse_items(items)
    requests = [
        LookupRequest(
            job_id="bench",
            indicator=i.value,
            kind=i.kind,
            host=i.host,
            registered_domain=i.registered_domain,
            scope=i.scope,
        )
        for i in parsed.indicators
    ]
    started = time.perf_counter()

    async def one_provider(name: str) -> None:
        provider = importlib.import_module(f"services.providers.{name}").build(settings)
        slots = asyncio.Semaphore(lookups(settings).provider(name).concurrency)
        await provider.attach(js)
        await provider.open()

        async def one(request: LookupRequest) -> None:
            if request.kind not in catalog.kinds(name):
                return
            if request.scope != "public" and not provider.looks_up_private:
                return
            async with slots:
                with contextlib.suppress(Exception):  # errors are results here too
                    await provider.lookup(request)

        try:
            await asyncio.gather(*(one(r) for r in requests))
        finally:
            await provider.close()

    await asyncio.gather(*(one_provider(name) for name in registry.PROVIDERS))
    return time.perf_counter() - started


async def through_the_bus(base: str, items: list[str]) -> tuple[float, dict[str, int]]:
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.post(
            f"{base}/api/v1/lookups", json={"indicators": items, "fresh": True}
        ) as response:
            created = await response.json()
            assert response.status == 202, created
        accepted = time.perf_counter() - started
        while True:
            async with session.get(f"{base}/api/v1/lookups/{created['id']}") as response:
                job = await response.json()
            if job["complete"]:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    statuses: dict[str, int] = {}
    for result in job["results"]:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        if result["status"] != "done":
            key = f"{result['provider']}:{result['status']}:{result['summary']}"
            statuses[key] = statuses.get(key, 0) + 1
    statuses["_accepted_ms"] = round(accepted * 1000)
    return elapsed, statuses


async def main(count: int, rounds: int) -> None:
    items, zone_text = corpus(count)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config_path = tmp / "lookout.toml"
        config_path.write_text(CONFIG)
        server = NatsServer(tmp / "nats")
        server.start()
        port = free_port()
        processes: list[subprocess.Popen[bytes]] = []
        with ZoneServer(zone_text) as zone:
            async with (
                FakeRdapServer() as rdap,
                FakeVirusTotal() as vt,
                FakeAbuseIpdb(daily_limit=10**9) as abuse,
                FakeInternetDb() as idb,
                FakeTorList(COLLECTOR.read_text()) as tor,
            ):
                env = env_for(server.url, zone, rdap, vt, abuse, config_path, port)
                env.update(INTERNETDB_URL=idb.base_url, TOR_EXIT_LIST_URL=tor.url)
                nc = await nats.connect(server.url)
                settings = config.load(env)
                try:
                    for name in ["gateway", *(f"provider-{p}" for p in registry.PROVIDERS)]:
                        processes.append(
                            subprocess.Popen(
                                [LOOKOUT, "service", name], env=env, stdout=subprocess.DEVNULL
                            )
                        )
                    base = f"http://127.0.0.1:{port}"
                    for _ in range(600):  # a dozen processes start on a busy machine
                        try:
                            async with aiohttp.ClientSession() as s, s.get(f"{base}/readyz") as r:
                                if r.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.2)
                    await asyncio.sleep(1.0)  # providers attach to their consumers
                    await through_the_bus(base, items[:50])  # warm-up
                    baseline: list[float] = []
                    job: list[float] = []
                    for round_no in range(rounds):
                        baseline.append(await direct(settings, items, nc.jetstream()))
                        elapsed, statuses = await through_the_bus(base, items)
                        job.append(elapsed)
                        print(
                            f"round {round_no + 1}: direct {baseline[-1]:.2f} s, "
                            f"job {elapsed:.2f} s, results {statuses}",
                            flush=True,
                        )
                finally:
                    await nc.close()
                    for process in processes:
                        process.terminate()
                    for process in processes:
                        process.wait(20)
                    server.stop()
    b, j = statistics.median(baseline), statistics.median(job)
    print()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{count} indicators, {rounds} alternating rounds, medians"
    )
    print()
    print("| run | seconds | indicators/s |")
    print("|---|---|---|")
    print(f"| baseline: providers called directly, no bus | {b:.2f} | {count / b:.0f} |")
    services = f"gateway + {len(registry.PROVIDERS)} provider services"
    print(f"| lookout job: {services} | {j:.2f} | {count / j:.0f} |")
    print(f"\nratio job / direct: {j / b:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--indicators", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.indicators, args.rounds))
