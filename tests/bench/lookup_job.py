"""``make bench``: an end-to-end lookup job of 1,000 mixed indicators.

Measures the time from ``POST /api/v1/lookups`` until every result is in (the job's event
stream says ``done``, as the web UI's live table hears it; ``--poll``: until a read of the
whole job, repeated every 50 ms, says ``complete``), with the real
gateway and every provider service as separate processes on a real nats-server, against
loopback upstreams (NSD for every DNS zone the providers ask; RDAP, VirusTotal, AbuseIPDB,
URLhaus, ThreatFox, MalwareBazaar, OTX, InternetDB and Tor exit list fakes). Baseline, in the
same run and against the same upstreams: the same providers called directly in one process
with the same concurrency, no bus, no cache. Rounds alternate (baseline, job), medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import aiohttp
import nats

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import importlib  # noqa: E402

from fakes.abuseipdb import FakeAbuseIpdb  # noqa: E402
from fakes.dnszones import SOA, cymru_zone, spamhaus_zone  # noqa: E402
from fakes.internetdb import FakeInternetDb  # noqa: E402
from fakes.malwarebazaar import FakeMalwareBazaar  # noqa: E402
from fakes.otx import FakeOtx  # noqa: E402
from fakes.rdap import FakeRdapServer  # noqa: E402
from fakes.threatfox import FakeThreatFox  # noqa: E402
from fakes.torlist import COLLECTOR, FakeTorList  # noqa: E402
from fakes.urlhaus import FakeUrlhaus  # noqa: E402
from fakes.virustotal import FakeVirusTotal  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402
from nsd import Nsd  # noqa: E402

from services import registry  # noqa: E402
from shared.core import settings as config  # noqa: E402
from shared.core.natsserver import NatsServer, free_port  # noqa: E402
from shared.lookups import catalog, indicators  # noqa: E402
from shared.lookups.config import lookups  # noqa: E402
from shared.lookups.dns import reverse_name  # noqa: E402
from shared.lookups.schemas import LookupRequest  # noqa: E402

LOOKOUT = str(Path(sys.executable).parent / "lookout")
registry.register()  # as the launcher does first in every process


def corpus(count: int) -> tuple[list[str], str]:
    """``count`` mixed indicators (3 in 10 domains, 2 URLs, 2 IPv4, 1 e-mail address, 1 IPv6,
    1 file hash: MD5, SHA-1 and SHA-256 in turn) and a zone that answers for their names."""
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
        if kind < 3:
            items.append(name)
        elif kind < 5:
            items.append(f"https://{name}/path/{i}?q=1")
        elif kind < 7:
            items.append(f"185.{220 + i % 20}.{(i // 20) % 250}.{1 + i % 250}")
        elif kind < 8:
            items.append(f"user{i}@{name}")
        elif kind < 9:
            items.append(f"2a0{1 + i % 8}:db9:{i:x}::1")
        else:
            algorithm = ("md5", "sha1", "sha256")[(i // 10) % 3]
            items.append(hashlib.new(algorithm, f"sample {i}".encode()).hexdigest())
        zone += [
            f"h{i} IN A 192.0.2.{1 + i % 250}",
            f'h{i} IN TXT "v=spf1 ip4:192.0.2.0/24 -all"',
            f'_dmarc.h{i} IN TXT "v=DMARC1; p=reject"',
        ]
    return items, "\n".join(zone) + "\n"


def zones(items: list[str], bench_zone: str) -> dict[str, str]:
    """Every zone the DNS providers ask, for NSD: the corpus' names (dns, emailsec), the
    reverse zones with a PTR for every other address (dns; the others NXDOMAIN), Team
    Cymru's (asn) with an origin for each address of the corpus and a name for each of their
    ASes, Spamhaus ZEN and DBL (dnsbl) with one address in 20 and one domain in 30 listed.
    The answers' formats and codes are the documented ones (tests/fakes/dnszones.py); the
    ASes and prefixes are ours, from the documentation ranges."""
    origins, names, listed, pointers = [], {}, {}, []
    for n, item in enumerate(items):
        if n // 10 % 2 and (item.count(".") == 3 or ":" in item) and "/" not in item:
            pointers.append(f"{reverse_name(item)}. 300 IN PTR h{n}.bench-zone.com.")
        if item.count(".") == 3 and item.replace(".", "").isdigit():
            asn = 64500 + int(item.split(".")[1]) % 20
            prefix = ".".join(item.split(".")[:3]) + ".0/24"
            zone = "origin.asn.cymru.com"
            if n % 20 == 5:
                listed[item] = "127.0.0.4"
        elif ":" in item and "/" not in item:
            asn = 65500 + n % 8
            prefix = item.split("::")[0] + "::/48"
            zone = "origin6.asn.cymru.com"
        else:
            if n % 30 == 0 and item.endswith(".bench-zone.com"):
                listed[item] = "127.0.1.4"
            continue
        origins.append(
            f'{reverse_name(item, zone)}. 300 IN TXT "{asn} | {prefix} | DE | ripencc | 2017-06-01"'
        )
        name = f"{asn} | DE | ripencc | 2017-06-01 | BENCH-{asn}, DE"
        names[asn] = f'AS{asn}.asn.cymru.com. 300 IN TXT "{name}"'
    ns = "@ 300 IN NS ns1\nns1 300 IN A 127.0.0.1\n"
    cymru = cymru_zone().replace(SOA + "\n", f"{SOA}\n{ns}", 1)
    out = {
        "bench-zone.com": bench_zone,
        "asn.cymru.com": cymru + "\n".join([*origins, *names.values()]) + "\n",
    }
    for arpa in ("in-addr.arpa", "ip6.arpa"):  # (dns) PTR of every other address
        ptrs = [p for p in pointers if p.split(" ", 1)[0].endswith(f".{arpa}.")]
        out[arpa] = "\n".join([f"$ORIGIN {arpa}.", SOA, ns, *ptrs]) + "\n"
    for zone in ("zen.spamhaus.org", "dbl.spamhaus.org"):
        out[zone] = spamhaus_zone((zone,), listed).replace(SOA + "\n", f"{SOA}\n{ns}", 1)
    return {name: "$TTL 300\n" + text for name, text in out.items()}


def env_for(
    nats: str,
    zone: Nsd,
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


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) processes ``pids`` have used so far (0 for one gone)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def cpu_report(before: dict[str, float], after: dict[str, float], wall: float) -> str:
    """Where the CPU time of a timed run went, per process, busiest first."""
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(used.values())
    busiest = sorted(used.items(), key=lambda item: -item[1])
    return f"  CPU s (total {total:.1f} over {wall:.1f} s wall, {total / wall:.2f} cores): " + (
        ", ".join(f"{name} {seconds:.1f}" for name, seconds in busiest if seconds >= 0.05)
    )


async def until_done(session: aiohttp.ClientSession, url: str) -> None:
    """Follow the job's event stream (as the web UI's live table does) until ``event: done``."""
    async with session.get(f"{url}/events") as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"event: done"):
                return
            assert not line.startswith((b"event: error", b"event: grown")), line
    raise AssertionError("the event stream ended before the job was done")


async def until_complete(session: aiohttp.ClientSession, url: str) -> None:
    """Read the whole job every 50 ms until it says ``complete`` (every read reads and
    sends every result stored so far)."""
    while True:
        async with session.get(url) as response:
            if (await response.json())["complete"]:
                return
        await asyncio.sleep(0.05)


async def through_the_bus(
    base: str, items: list[str], poll: bool = False, done: Callable[[], object] = lambda: None
) -> tuple[float, dict[str, int]]:
    """Submit the job and wait for it: by its event stream, or with ``poll`` by reading it
    whole every 50 ms; ``done()`` is called the moment it is. The job is then read whole once
    more, untimed, for its results."""
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.post(
            f"{base}/api/v1/lookups", json={"indicators": items, "fresh": True}
        ) as response:
            created = await response.json()
            assert response.status == 202, created
        accepted = time.perf_counter() - started
        url = f"{base}/api/v1/lookups/{created['id']}"
        await (until_complete if poll else until_done)(session, url)
        elapsed = time.perf_counter() - started
        done()
        async with session.get(url) as response:
            job = await response.json()
        assert job["complete"], "done, but the job's read says it is not complete"
    statuses: dict[str, int] = {}
    finished: dict[str, float] = {}  # per provider, seconds from the job's creation
    created_at = datetime.fromisoformat(job["created_at"])
    for result in job["results"]:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        if result["status"] != "done":
            cause = (result["error"] or result["summary"] or "")[:40]
            key = f"{result['provider']}:{result['status']}:{cause}"
            statuses[key] = statuses.get(key, 0) + 1
        if result["updated_at"]:
            at = (datetime.fromisoformat(result["updated_at"]) - created_at).total_seconds()
            finished[result["provider"]] = max(finished.get(result["provider"], 0.0), at)
    statuses["_accepted_ms"] = round(accepted * 1000)
    last = sorted(finished.items(), key=lambda item: -item[1])
    print("  last result per provider, s:", ", ".join(f"{p} {t:.1f}" for p, t in last))
    return elapsed, statuses


# --no-quota (a what-if): no per-minute or daily quota at all, so no shared quota
# bookkeeping in the bus, only the same concurrency.
NO_QUOTA = CONFIG.replace("per_minute = 1000000, per_day = 1000000", "").replace(
    "per_day = 1000000", ""
)


async def main(count: int, rounds: int, no_quota: bool = False, poll: bool = False) -> None:
    load_before = os.getloadavg()[0]
    items, zone_text = corpus(count)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config_path = tmp / "lookout.toml"
        config_path.write_text(NO_QUOTA if no_quota else CONFIG)
        server = NatsServer(tmp / "nats")
        server.start()
        port = free_port()
        processes: list[subprocess.Popen[bytes]] = []
        with Nsd(tmp / "nsd", zones(items, zone_text), probe="h0.bench-zone.com") as zone:
            async with (
                FakeRdapServer() as rdap,
                FakeVirusTotal() as vt,
                FakeAbuseIpdb(daily_limit=10**9) as abuse,
                FakeInternetDb() as idb,
                FakeTorList(COLLECTOR.read_text()) as tor,
                FakeUrlhaus() as urlhaus,
                FakeThreatFox() as threatfox,
                FakeMalwareBazaar() as bazaar,
                FakeOtx() as otx,
            ):
                env = env_for(server.url, zone, rdap, vt, abuse, config_path, port)
                env.update(
                    INTERNETDB_URL=idb.base_url,
                    TOR_EXIT_LIST_URL=tor.url,
                    ABUSECH_API_KEY=urlhaus.api_key,
                    URLHAUS_URL=urlhaus.base_url,
                    THREATFOX_URL=threatfox.base_url,
                    MALWAREBAZAAR_URL=bazaar.base_url,
                    OTX_API_KEY=otx.api_key,
                    OTX_URL=otx.base_url,
                )
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
                    pids = {"bench (fakes, client)": [os.getpid()], "nsd": zone.pids()}
                    pids["nats-server"] = [server.pid or 0]
                    names = ["gateway", *(f"provider-{p}" for p in registry.PROVIDERS)]
                    pids.update(zip(names, ([p.pid] for p in processes), strict=True))

                    def sample() -> dict[str, float]:
                        return {name: cpu_seconds(pid) for name, pid in pids.items()}

                    def sample_into(into: dict[str, float]) -> None:
                        into.update(sample())

                    for round_no in range(rounds):
                        before = sample()
                        baseline.append(await direct(settings, items, nc.jetstream()))
                        print(cpu_report(before, sample(), baseline[-1]))
                        before = sample()
                        after: dict[str, float] = {}  # when the job is done
                        elapsed, statuses = await through_the_bus(
                            base, items, poll, functools.partial(sample_into, after)
                        )
                        print(cpu_report(before, after, elapsed))
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
        f"{count} indicators, {rounds} alternating rounds, medians; 1-minute load "
        f"{load_before:.1f} before (the job's 16 processes lose more than the one-process "
        "baseline to other work: compare runs on an otherwise idle machine, see BENCHMARKS.md)"
    )
    print()
    print("| run | seconds | indicators/s |")
    print("|---|---|---|")
    print(f"| baseline: providers called directly, no bus | {b:.2f} | {count / b:.0f} |")
    services = f"gateway + {len(registry.PROVIDERS)} provider services"
    print(f"| lookout job: {services} | {j:.2f} | {count / j:.0f} |")
    flags = [flag for flag, on in (("--no-quota", no_quota), ("--poll", poll)) if on]
    print(f"\nratio job / direct: {j / b:.2f}" + (f" ({' '.join(flags)})" if flags else ""))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--indicators", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-quota",
        action="store_true",
        help="what-if: no quotas (no shared quota bookkeeping in the bus) for any provider",
    )
    parser.add_argument(
        "--poll",
        action="store_true",
        help="wait for the job by reading it whole every 50 ms instead of by its event stream",
    )
    args = parser.parse_args()
    asyncio.run(main(args.indicators, args.rounds, args.no_quota, args.poll))
