"""Pivots end to end on a real bus: the dns worker finds them in its answers (as its SPEC
declares) and stores them on each result; ``POST /api/v1/lookups/{id}/indicators`` adds
indicators to a job; ``"expand": true`` adds the first-level pivots (bounded, never
recursive)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import nats
import pytest
from dnsserver import ZoneServer
from helpers import (
    api,
    jetstream,
    make_settings,
    running_gateway,
    running_provider,
    wait_job,
)

import services.registry
from services.gateway import apidocs
from shared.bus import direct
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.lookups import indicators, jobs

ZONE = """
$ORIGIN example.com.
$TTL 600
@        IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300
@        IN NS  ns1.example.com.
@        IN A   192.0.2.10
@        IN AAAA 2001:db8::10
@        IN MX  10 mail.example.com.
www      IN CNAME example.com.
mail     IN A   192.0.2.25
ns1      IN A   192.0.2.53
"""
PIVOTS_OF_EXAMPLE = {
    ("192.0.2.10", "ipv4", "A record"),
    ("2001:db8::10", "ipv6", "AAAA record"),
    ("mail.example.com", "domain", "MX record"),
    ("ns1.example.com", "domain", "name server"),
}


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as server:
        yield server


def dns_settings(tmp_path: Path, nats: NatsServer, zone: ZoneServer, **env: str) -> Settings:
    return make_settings(
        tmp_path, nats.url, LOOKOUT_DNS_NAMESERVERS=zone.nameserver, LOOKOUT_DNS_TIMEOUT="1", **env
    )


def documented(name: str, body: Any) -> None:
    """``body`` is what the OpenAPI document says ``name`` is."""
    document = apidocs.openapi()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def pivots_of(job: dict[str, Any], indicator: str) -> set[tuple[str, str, str]]:
    (result,) = [r for r in job["results"] if r["indicator"] == indicator]
    return {(p["value"], p["kind"], p["why"]) for p in result["pivots"]}


async def test_results_carry_the_pivots_their_provider_declares(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    settings = dns_settings(tmp_path, nats_server, zone)
    async with running_gateway(settings) as base, running_provider(settings, "dns"):
        body = {"indicators": ["example.com", "https://www.example.com/a"], "providers": ["dns"]}
        status, created = await api("POST", f"{base}/api/v1/lookups", json=body)
        assert status == 202, created
        job = await wait_job(base, created["id"])
        assert pivots_of(job, "example.com") == PIVOTS_OF_EXAMPLE
        documented("LookupJob", job)
        # A URL: its host (what DNS was asked about) and what that host's records name
        # (through its CNAME to example.com).
        assert pivots_of(job, "https://www.example.com/a") == PIVOTS_OF_EXAMPLE | {
            ("example.com", "domain", "CNAME"),
            ("www.example.com", "domain", "host looked up"),
        }
        # An answer from the cache carries the same pivots (found again in its data).
        status, again = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com"], "providers": ["dns"]},
        )
        cached = await wait_job(base, again["id"])
        (dns,) = [r for r in cached["results"] if r["provider"] == "dns"]
        assert dns["cached"] is True
        assert pivots_of({"results": [dns]}, "example.com") == PIVOTS_OF_EXAMPLE


async def _events(base: str, job_id: str, seen: list[str]) -> None:
    """The event names of the job's stream, until it ends."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/api/v1/lookups/{job_id}/events") as response,
    ):
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"event: "):
                seen.append(line[7:].decode().strip())


async def test_indicators_added_to_a_job_are_looked_up_and_end_its_event_stream(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    settings = dns_settings(tmp_path, nats_server, zone, LOOKOUT_MAX_INDICATORS="3")
    async with running_gateway(settings) as base:
        status, created = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com"], "providers": ["dns"]},
        )
        job_id = created["id"]
        seen: list[str] = []
        stream = asyncio.create_task(_events(base, job_id, seen))
        await asyncio.sleep(0.3)  # the stream follows the job (no provider runs yet)
        status, added = await api(
            "POST",
            f"{base}/api/v1/lookups/{job_id}/indicators",
            json={"indicators": ["mail.example[.]com", "example.com", "not an indicator"]},
        )
        assert status == 200, added
        documented("IndicatorsAdded", added)
        mail = {"value": "mail.example.com", "kind": "domain", "scope": "public"}
        assert added["added"] == [mail]
        assert added["rejected_total"] == 1
        assert added["left_out"] == 1  # example.com: the job holds it already
        # At most LOOKOUT_MAX_INDICATORS in all: one more fits, the rest is left out.
        status, full = await api(
            "POST",
            f"{base}/api/v1/lookups/{job_id}/indicators",
            json={"indicators": ["192.0.2.10", "192.0.2.25", "2001:db8::10"]},
        )
        assert status == 200, full
        assert [i["value"] for i in full["added"]] == ["192.0.2.10"]
        assert full["left_out"] == 2
        async with running_provider(settings, "dns"):
            job = await wait_job(base, job_id)
            await asyncio.wait_for(stream, 10)
        assert [i["value"] for i in job["indicators"]] == [
            "example.com",
            "mail.example.com",
            "192.0.2.10",
        ]
        assert job["providers"] == {"domain": ["dns"], "ipv4": ["dns"]}  # the job's provider
        assert {r["indicator"]: r["status"] for r in job["results"]} == {
            "example.com": "done",
            "mail.example.com": "done",
            "192.0.2.10": "done",
        }
        assert "grown" in seen, seen
        assert "done" not in seen, seen
        # Refusals: a job that does not exist, a malformed body, nothing readable.
        status, missing = await api(
            "POST",
            f"{base}/api/v1/lookups/0123456789abcdef/indicators",
            json={"indicators": ["a.com"]},
        )
        assert status == 404, missing
        for bad in ({"indicators": "example.com"}, {"items": []}, {"indicators": ["no thing"]}):
            status, answer = await api(
                "POST", f"{base}/api/v1/lookups/{job_id}/indicators", json=bad
            )
            assert status == 400, (bad, answer)
            assert answer["error"]


async def test_expand_adds_the_first_level_pivots_once(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    settings = dns_settings(tmp_path, nats_server, zone)
    async with running_gateway(settings) as base, running_provider(settings, "dns"):
        status, created = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com"], "providers": ["dns"], "expand": True},
        )
        assert status == 202, created
        job = await wait_job(base, created["id"])
        assert job["expand"] is True
        values = [i["value"] for i in job["indicators"]]
        assert values[0] == "example.com"
        assert set(values[1:]) == {p[0] for p in PIVOTS_OF_EXAMPLE}
        # The added ones are looked up, their own pivots (mail's 192.0.2.25, ns1's
        # 192.0.2.53) are not added: one level only.
        assert len(job["results"]) == 5
        assert all(r["status"] == "done" for r in job["results"])
        assert pivots_of(job, "mail.example.com") == {("192.0.2.25", "ipv4", "A record")}
        assert "192.0.2.25" not in values
        # Without expand nothing is added.
        status, plain = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["www.example.com"], "providers": ["dns"]},
        )
        plain_job = await wait_job(base, plain["id"])
        assert [i["value"] for i in plain_job["indicators"]] == ["www.example.com"]


async def test_an_expansion_adds_at_most_its_bound(nats_server: NatsServer, tmp_path: Path) -> None:
    services.registry.register()
    settings = make_settings(tmp_path, nats_server.url)
    many = indicators.parse_items([f"host{n}.example.com" for n in range(jobs.MAX_EXPANSION + 20)])
    async with jetstream(nats_server.url, settings) as js:
        job = await jobs.submit(
            js,
            settings,
            indicators.parse_items(["example.com"]),
            ["dns"],
            False,
            request_id="t",
            expand=True,
        )
        first = await jobs.add(
            js, settings, job.id, many.indicators[:30], request_id="t", most=10_000, expansion=True
        )
        rest = await jobs.add(
            js, settings, job.id, many.indicators, request_id="t", most=10_000, expansion=True
        )
        assert len(first) == 30
        assert len(rest) == jobs.MAX_EXPANSION - 30  # the first 30 are held already
        # A person's addition is bounded by LOOKOUT_MAX_INDICATORS only.
        person = await jobs.add(js, settings, job.id, many.indicators, request_id="t", most=100)
        assert len(person) == len(many.indicators) - jobs.MAX_EXPANSION
        with pytest.raises(jobs.NoSuchJob):
            await jobs.add(js, settings, "0123456789ab", many.indicators, request_id="t", most=9)


async def test_concurrent_additions_each_keep_their_indicators(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Additions race on the job's head by compare-and-set: none is lost or doubled."""
    services.registry.register()
    settings = make_settings(tmp_path, nats_server.url)
    async with jetstream(nats_server.url, settings) as js:
        job = await jobs.submit(
            js, settings, indicators.parse_items(["example.com"]), [], False, request_id="t"
        )
        batches = [
            indicators.parse_items([f"h{n}-{m}.example.com" for m in range(3)]).indicators
            for n in range(8)
        ]
        added = await asyncio.gather(
            *(jobs.add(js, settings, job.id, b, request_id="t", most=1000) for b in batches)
        )
        assert all(len(a) == 3 for a in added)
    nc = await nats.connect(nats_server.url)
    try:
        reader = direct.Reader(nc, 2.0)
        await reader.start()
        loaded = await jobs.load(reader, job.id)
    finally:
        await nc.close()
    assert loaded is not None
    values = [i.value for i in loaded.indicators]
    assert len(values) == 1 + 8 * 3 == len(set(values))
    assert loaded.count == 25
    assert loaded.additions == 8
