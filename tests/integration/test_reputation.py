"""VirusTotal and AbuseIPDB providers on the real bus against loopback servers that speak
their API contracts, with quotas shared by several replicas."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.abuseipdb import FakeAbuseIpdb
from fakes.virustotal import FakeVirusTotal
from helpers import (
    api,
    make_settings,
    provider_job,
    running_gateway,
    running_provider,
    wait_for,
    wait_job,
)

from services.providers.virustotal.config import virustotal_settings
from shared.core.natsserver import NatsServer, free_port
from shared.core.settings import Settings
from shared.lookups import streams
from shared.lookups.quota import next_utc_midnight

VT_KEY = "vt-test-key-0123456789abcdef"
ABUSE_KEY = "abuse-test-key-0123456789"


def settings_for(
    tmp_path: Path,
    nats: NatsServer,
    vt: FakeVirusTotal | None = None,
    abuse: FakeAbuseIpdb | None = None,
    toml: str = "",
    **env: str,
) -> Settings:
    if vt is not None:
        env.update(VIRUSTOTAL_API_KEY=vt.api_key, VIRUSTOTAL_URL=vt.base_url)
    if abuse is not None:
        env.update(ABUSEIPDB_API_KEY=abuse.api_key, ABUSEIPDB_URL=abuse.base_url)
    # Unless a test is about quotas: a premium-sized quota, not the free 4 per minute.
    toml = toml or "[providers.virustotal.quota]\nper_minute = 1000\nper_day = 100000\n"
    return make_settings(tmp_path, nats.url, toml, **env)


async def submit(base: str, indicators: list[str], **extra: Any) -> str:
    status, body = await api(
        "POST", f"{base}/api/v1/lookups", json={"indicators": indicators, **extra}
    )
    assert status == 202, body
    return str(body["id"])


def results(job: dict[str, Any], provider: str) -> dict[str, dict[str, Any]]:
    return {r["indicator"]: r for r in job["results"] if r["provider"] == provider}


async def test_virustotal_verdicts(nats_server: NatsServer, tmp_path: Path) -> None:
    url = "https://evil.example.com/login"
    async with FakeVirusTotal(
        {
            "evil.example.com": FakeVirusTotal.stats(malicious=5, harmless=50, undetected=30),
            "185.220.101.7": FakeVirusTotal.stats(harmless=70, undetected=10, as_owner="EXAMPLE"),
            url: FakeVirusTotal.stats(suspicious=1, harmless=60),
            "mail.example.com": FakeVirusTotal.stats(harmless=0, undetected=80),
        },
        api_key=VT_KEY,
    ) as vt:
        settings = settings_for(tmp_path, nats_server, vt)
        async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
            job_id = await submit(
                base,
                [
                    "evil.example.com",
                    "185.220.101.7",
                    url,
                    "a@mail.example.com",
                    "fresh-domain.com",
                ],
                providers=["virustotal"],
            )
            job = await wait_job(base, job_id)
    got = results(job, "virustotal")
    assert got["evil.example.com"]["verdict"] == "malicious"
    assert got["evil.example.com"]["summary"] == "5/85 engines"
    assert len(got["evil.example.com"]["data"]["flagged_by"]) == 5
    assert got["185.220.101.7"]["verdict"] == "harmless"
    assert got["185.220.101.7"]["data"]["as_owner"] == "EXAMPLE"
    assert got[url]["verdict"] == "suspicious"
    assert got["a@mail.example.com"]["verdict"] == "undetected"
    assert got["fresh-domain.com"]["verdict"] == "undetected"
    assert got["fresh-domain.com"]["summary"] == "not in VirusTotal"
    overall = {i["value"]: i["verdict"] for i in job["indicators"]}
    assert overall["evil.example.com"] == "malicious"
    paths = {r.path for r in vt.requests}
    assert f"/api/v3/urls/{FakeVirusTotal.url_id(url)}" in paths
    assert "/api/v3/domains/mail.example.com" in paths
    assert all(r.headers.get("x-apikey") == VT_KEY for r in vt.requests)


async def test_missing_keys_say_not_configured(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with (
        running_gateway(settings) as base,
        running_provider(settings, "virustotal"),
        running_provider(settings, "abuseipdb"),
    ):
        job = await wait_job(
            base, await submit(base, ["185.220.101.7"], providers=["virustotal", "abuseipdb"])
        )
    by_provider = {r["provider"]: r for r in job["results"] if r["provider"] != "dns"}
    assert by_provider["virustotal"]["status"] == "not_configured"
    assert by_provider["virustotal"]["summary"] == (
        "VIRUSTOTAL_API_KEY is not set (free key: https://www.virustotal.com/gui/join-us)"
    )
    assert by_provider["virustotal"]["data"] == {
        "variable": "VIRUSTOTAL_API_KEY",
        "signup_url": "https://www.virustotal.com/gui/join-us",
    }
    assert by_provider["abuseipdb"]["status"] == "not_configured"
    assert by_provider["abuseipdb"]["data"]["variable"] == "ABUSEIPDB_API_KEY"
    assert by_provider["abuseipdb"]["data"]["signup_url"].startswith("https://")


async def test_abuseipdb_verdicts_and_private_addresses(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeAbuseIpdb(
        {
            "185.220.102.9": {"abuseConfidenceScore": 92, "totalReports": 340, "isTor": True},
            "185.220.102.10": {"abuseConfidenceScore": 30, "totalReports": 4},
            "185.220.102.11": {"abuseConfidenceScore": 0, "totalReports": 0},
        },
        api_key=ABUSE_KEY,
    ) as abuse:
        settings = settings_for(tmp_path, nats_server, abuse=abuse)
        async with running_gateway(settings) as base, running_provider(settings, "abuseipdb"):
            job = await wait_job(
                base,
                await submit(
                    base,
                    ["185.220.102.9", "185.220.102.10", "185.220.102.11", "10.1.2.3"],
                    providers=["abuseipdb"],
                ),
            )
    got = results(job, "abuseipdb")
    assert (got["185.220.102.9"]["verdict"], got["185.220.102.9"]["summary"]) == (
        "malicious",
        "score 92, 340 reports, Tor",
    )
    assert got["185.220.102.10"]["verdict"] == "suspicious"
    assert got["185.220.102.11"]["verdict"] == "undetected"
    assert got["10.1.2.3"]["summary"] == "private address: not looked up"
    asked = {r.path for r in abuse.requests}
    assert len(abuse.requests) == 3
    assert all("10.1.2.3" not in p for p in asked)
    assert all(r.headers.get("Key") == ABUSE_KEY for r in abuse.requests)


async def test_cached_reputation_makes_no_upstream_call(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeVirusTotal({"a.example.com": FakeVirusTotal.stats()}, api_key=VT_KEY) as vt:
        settings = settings_for(tmp_path, nats_server, vt)
        async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
            await wait_job(base, await submit(base, ["a.example.com"], providers=["virustotal"]))
            assert len(vt.requests) == 1
            job = await wait_job(
                base, await submit(base, ["a.example.com"], providers=["virustotal"])
            )
            assert results(job, "virustotal")["a.example.com"]["cached"] is True
            assert len(vt.requests) == 1


QUOTA_TOML = """
[providers.virustotal.quota]
per_minute = 2
per_day = {per_day}
"""


@contextlib.asynccontextmanager
async def replicas(settings: Settings, count: int):  # type: ignore[no-untyped-def]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(running_provider(settings, "virustotal"))
        yield


async def test_three_replicas_share_the_minute_quota(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    names = [f"h{i}.example.com" for i in range(6)]
    # the fake enforces the same quota: a single 429 would mean lookout overspent
    async with FakeVirusTotal(
        {n: FakeVirusTotal.stats() for n in names}, api_key=VT_KEY, quota_per_minute=2
    ) as vt:
        settings = settings_for(tmp_path, nats_server, vt, toml=QUOTA_TOML.format(per_day=100))
        async with running_gateway(settings) as base, replicas(settings, 3):
            job_id = await submit(base, names, providers=["virustotal"])
            started = time.time()

            async def settled() -> bool:
                _, job = await api("GET", f"{base}/api/v1/lookups/{job_id}")
                statuses = [r["status"] for r in job["results"]]
                return statuses.count("done") == 2 and statuses.count("queued") == 4

            await wait_for(settled, within=15)
            _, job = await api("GET", f"{base}/api/v1/lookups/{job_id}")
    assert len(vt.requests) == 2  # never more than the quota, whatever the replicas
    queued = [r for r in job["results"] if r["status"] == "queued"]
    for result in queued:
        retry_at = time.mktime(time.strptime(result["retry_at"], "%Y-%m-%dT%H:%M:%SZ"))
        retry_at -= time.timezone
        assert started + 50 <= retry_at <= started + 62  # when the first grant leaves the window
        assert result["summary"].startswith("queued until")


async def test_daily_quota_exhausted_says_until_when(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    names = [f"d{i}.example.com" for i in range(4)]
    async with FakeVirusTotal({n: FakeVirusTotal.stats() for n in names}, api_key=VT_KEY) as vt:
        toml = "[providers.virustotal.quota]\nper_minute = 100\nper_day = 2\n"
        settings = settings_for(tmp_path, nats_server, vt, toml=toml)
        async with running_gateway(settings) as base, replicas(settings, 2):
            job_id = await submit(base, names, providers=["virustotal"])
            job = await wait_job(base, job_id)
    statuses = sorted(r["status"] for r in job["results"])
    assert statuses == ["done", "done", "quota_exhausted", "quota_exhausted"]
    midnight = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_utc_midnight(time.time())))
    assert {r["retry_at"] for r in job["results"] if r["status"] == "quota_exhausted"} == {midnight}
    # another day than today: the summary says which
    said = f"quota used until {midnight[:10]} 00:00:00 UTC"
    assert {r["summary"] for r in job["results"] if r["status"] == "quota_exhausted"} == {said}
    assert len(vt.requests) == 2


async def test_upstream_429_pauses_the_pool(nats_server: NatsServer, tmp_path: Path) -> None:
    ips = ["185.220.102.1", "185.220.102.2", "185.220.102.3"]
    async with FakeAbuseIpdb(api_key=ABUSE_KEY, daily_limit=1) as abuse:
        settings = settings_for(tmp_path, nats_server, abuse=abuse)
        async with running_gateway(settings) as base, running_provider(settings, "abuseipdb"):
            job_id = await submit(base, ips, providers=["abuseipdb"])

            async def settled() -> bool:
                _, job = await api("GET", f"{base}/api/v1/lookups/{job_id}")
                statuses = sorted(r["status"] for r in job["results"])
                return statuses == ["done", "queued", "queued"]

            await wait_for(settled, within=15)
            _, job = await api("GET", f"{base}/api/v1/lookups/{job_id}")
            # the requests already in flight got 429; after that nobody asks during the pause
            asked = len(abuse.requests)
            await asyncio.sleep(2.0)
            assert len(abuse.requests) == asked
    assert asked <= len(ips)
    queued = [r for r in job["results"] if r["status"] == "queued"]
    assert all(r["retry_at"] for r in queued)
    assert any("upstream" in r["data"]["reason"] for r in queued)


async def test_unreachable_upstream_is_an_error(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        "[providers.virustotal]\ntimeout = 2\n",
        VIRUSTOTAL_API_KEY=VT_KEY,
        VIRUSTOTAL_URL=f"http://127.0.0.1:{free_port()}/api/v3",
    )
    async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
        started = time.monotonic()
        job = await wait_job(base, await submit(base, ["x.example.com"], providers=["virustotal"]))
    assert time.monotonic() - started < 10
    [result] = job["results"]
    assert result["status"] == "error"
    # the cause first, in words; where it asked in the details, never the key
    assert result["error"] == "cannot connect: Connection refused", result
    assert (
        result["data"]["upstream"] == f"{virustotal_settings(settings).url}/domains/x.example.com"
    )
    assert VT_KEY not in str(result)
    # nothing could be checked: the indicator says error, and why
    [indicator] = job["indicators"]
    assert indicator["verdict"] == "error"
    assert indicator["verdict_reasons"] == ["VirusTotal: cannot connect: Connection refused"]


async def test_upstream_5xx_is_an_error(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeVirusTotal(api_key=VT_KEY, fail_next=[503]) as vt:
        settings = settings_for(tmp_path, nats_server, vt)
        async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
            job = await wait_job(
                base, await submit(base, ["y.example.com"], providers=["virustotal"])
            )
    [result] = job["results"]
    assert result["status"] == "error"
    assert result["error"].startswith("HTTP 503"), result
    assert result["data"]["upstream"].endswith("/domains/y.example.com")


async def test_an_answer_of_the_wrong_shape_says_so(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Valid JSON that is not what the API documents: an error naming what is wrong (it
    was "internal error: AttributeError" and a traceback)."""
    odd_vt = {"odd.example.com": {"last_analysis_results": "x"}}
    odd_abuse = {"8.8.4.4": {"abuseConfidenceScore": "high", "totalReports": 3}}
    async with (
        FakeVirusTotal(odd_vt, api_key=VT_KEY) as vt,
        FakeAbuseIpdb(odd_abuse, api_key=ABUSE_KEY) as abuse,
    ):
        settings = settings_for(tmp_path, nats_server, vt, abuse)
        async with (
            running_gateway(settings) as base,
            running_provider(settings, "virustotal"),
            running_provider(settings, "abuseipdb"),
        ):
            job = await wait_job(
                base,
                await submit(
                    base, ["odd.example.com", "8.8.4.4"], providers=["virustotal", "abuseipdb"]
                ),
            )
    errors = {r["provider"]: r["error"] for r in job["results"] if r["status"] == "error"}
    assert errors == {
        "virustotal": "not a VirusTotal answer: last_analysis_results is not an object",
        "abuseipdb": "not an AbuseIPDB answer: abuseConfidenceScore is not a number",
    }


async def test_an_endless_answer_is_cut_off(nats_server: NatsServer, tmp_path: Path) -> None:
    """A 200 of 17 MiB is no answer of the API: an error, read no further than 16 MiB."""
    huge = '{"data": {"attributes": {"x": "' + "a" * (17 * 2**20) + '"}}}'
    async with FakeVirusTotal(api_key=VT_KEY, fail_next=[(200, huge)]) as vt:
        settings = settings_for(tmp_path, nats_server, vt)
        got = await provider_job(settings, "virustotal", ["big.example.com"])
    result = got["big.example.com"]
    assert result["status"] == "error"
    assert result["error"] == "answer larger than 16 MiB"


async def test_refused_key_says_so_first_and_never_shows_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with (
        FakeVirusTotal(api_key="the-right-vt-key") as vt,
        FakeAbuseIpdb(api_key="the-right-abuse-key") as abuse,
    ):
        abuse_url = abuse.base_url
        settings = settings_for(
            tmp_path,
            nats_server,
            VIRUSTOTAL_API_KEY=VT_KEY,
            VIRUSTOTAL_URL=vt.base_url,
            ABUSEIPDB_API_KEY=ABUSE_KEY,
            ABUSEIPDB_URL=abuse.base_url,
        )
        async with (
            running_gateway(settings) as base,
            running_provider(settings, "virustotal"),
            running_provider(settings, "abuseipdb"),
        ):
            job = await wait_job(
                base, await submit(base, ["185.220.101.9"], providers=["virustotal", "abuseipdb"])
            )
    failed = {r["provider"]: r for r in job["results"]}
    assert failed["virustotal"]["error"] == "HTTP 401: API key refused (WrongCredentialsError)"
    assert failed["abuseipdb"]["error"].startswith("HTTP 401: API key refused")
    assert failed["abuseipdb"]["data"]["upstream"] == f"{abuse_url}/check"
    assert VT_KEY not in str(job)
    assert ABUSE_KEY not in str(job)
    [indicator] = job["indicators"]
    assert indicator["verdict"] == "error"
    assert [r.split(":")[0] for r in indicator["verdict_reasons"]] == ["VirusTotal", "AbuseIPDB"]


async def test_slow_upstream_says_timeout_after(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeVirusTotal(api_key=VT_KEY) as vt:
        vt.delay = 5.0
        settings = settings_for(
            tmp_path,
            nats_server,
            vt,
            toml="[providers.virustotal]\ntimeout = 1\nquota = { per_minute = 100 }\n",
        )
        async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
            job = await wait_job(
                base, await submit(base, ["z.example.com"], providers=["virustotal"])
            )
    [result] = job["results"]
    assert (result["status"], result["error"]) == ("error", "timeout after 1 s")


async def test_a_request_waiting_past_the_streams_age_limit_is_put_back_not_lost(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LOOKUPS stream keeps a request for ``LOOKUPS_MAX_AGE`` (3 days; 8 s here). A
    request whose delayed return (a daily quota, a long ``Retry-After``) would fall past
    half of that is put back as a fresh copy, so the stream's age limit never drops it:
    here it waited 6 s before its provider ran, then a 429 said 3 s more (9 s > 8 s)."""
    monkeypatch.setattr(streams, "LOOKUPS_MAX_AGE", 8.0)
    name = "late.example.com"
    async with FakeVirusTotal({name: FakeVirusTotal.stats(malicious=3)}, api_key=VT_KEY) as vt:
        vt.retry_after = "3"
        vt.fail_next = [429]
        settings = settings_for(tmp_path, nats_server, vt)
        async with running_gateway(settings) as base:
            job_id = await submit(base, [name], providers=["virustotal"])
            await asyncio.sleep(6.0)  # no worker yet: the request ages in the stream
            async with running_provider(settings, "virustotal"):
                job = await wait_job(base, job_id, within=20)
    [result] = job["results"]
    assert (result["status"], result["verdict"]) == ("done", "malicious"), result
    assert vt.answers == [429, 200]


async def test_a_request_whose_job_expired_while_it_waited_is_dropped(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Put back only while its job is kept (``LOOKOUT_JOB_TTL``): nobody can read the
    result of an expired job, so it spends no more quota."""
    monkeypatch.setattr(streams, "LOOKUPS_MAX_AGE", 8.0)
    name = "late.example.com"
    async with FakeVirusTotal({name: FakeVirusTotal.stats(malicious=3)}, api_key=VT_KEY) as vt:
        vt.retry_after = "3"
        vt.fail_next = [429]
        settings = settings_for(tmp_path, nats_server, vt, LOOKOUT_JOB_TTL="2")
        async with running_gateway(settings) as base:
            await submit(base, [name], providers=["virustotal"])
            await asyncio.sleep(6.0)
            async with running_provider(settings, "virustotal"):
                await wait_for(lambda: bool(vt.answers), within=20)
                await asyncio.sleep(5.0)  # the 429's 3 s, and then some
    assert vt.answers == [429]
