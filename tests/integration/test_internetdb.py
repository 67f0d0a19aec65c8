"""The internetdb provider as its own service on the real bus, through the real runner,
against a loopback InternetDB serving the published bodies (tests/fakes/internetdb.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fakes.internetdb import FakeInternetDb
from helpers import api, make_settings, running_gateway, running_provider, wait_job

from shared.core.natsserver import NatsServer

PUBLISHED = "1.2.3.4"  # the address of the published body
C2 = "45.9.148.3"
HONEYPOT = "185.220.101.50"


async def lookup(base: str, indicators: list[str]) -> dict[str, dict[str, Any]]:
    status, created = await api(
        "POST",
        f"{base}/api/v1/lookups",
        json={"indicators": indicators, "providers": ["internetdb"], "fresh": True},
    )
    assert status == 202, created
    job = await wait_job(base, created["id"], within=30)
    return {r["indicator"]: r for r in job["results"]}


async def test_internetdb_through_the_runner(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeInternetDb(
        {C2: {"tags": ["c2", "self-signed"]}, HONEYPOT: {"tags": ["honeypot", "scanner", "tor"]}}
    ) as idb:
        where = idb.base_url
        settings = make_settings(tmp_path, nats_server.url, INTERNETDB_URL=where)
        async with running_gateway(settings) as base, running_provider(settings, "internetdb"):
            got = await lookup(base, [PUBLISHED, C2, HONEYPOT, "8.8.8.8", "2001:4860:4860::8888"])
            # upstream trouble: 429 with Retry-After waits and asks again; 503 is an error
            idb.fail(429, retry_after="1", detail="Too many requests")
            throttled = await lookup(base, [PUBLISHED])
            idb.fail(503)
            failed = await lookup(base, [C2])
    published = got[PUBLISHED]
    # open ports, CVEs and neutral tags alone are not a finding
    assert published["verdict"] == "undetected"
    assert published["summary"] == "3 ports, 2 CVEs, tags: starttls, self-signed, eol-os"
    assert published["data"]["ports"] == [25, 80, 443]
    assert published["data"]["vulns"] == ["CVE-2021-26857", "CVE-2021-26855"]
    assert got[C2]["verdict"] == "malicious"
    assert got[C2]["summary"].startswith("tagged c2; 3 ports")
    assert got[HONEYPOT]["verdict"] == "undetected"
    assert (got["8.8.8.8"]["verdict"], got["8.8.8.8"]["summary"]) == ("undetected", "no data")
    assert got["8.8.8.8"]["data"]["detail"] == "No information available"
    assert got["2001:4860:4860::8888"]["summary"] == "no data"
    assert ("GET", "/8.8.8.8") in [(r.method, r.path) for r in idb.requests]
    assert throttled[PUBLISHED]["status"] == "done"
    assert 429 in idb.answers
    assert failed[C2]["status"] == "error"
    assert failed[C2]["error"].startswith("HTTP 503")
    assert failed[C2]["data"]["upstream"] == where
