"""The indicator history on a real nats-server: kept by the scheduler service's indexer
from every result, read by the API and ``lookout history``, beyond the job's lifetime and
across gateway restarts, spending no quota."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import nats
import pytest
from dnsserver import ZoneServer
from fakes.virustotal import FakeVirusTotal
from helpers import (
    api,
    make_settings,
    run_lookout,
    running_gateway,
    running_provider,
    running_service,
    wait_for,
    wait_job,
)
from nats.js.api import DiscardPolicy

from services.gateway import apidocs
from shared.bus import direct
from shared.bus.manage import KV_STREAM
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.lookups import history
from shared.lookups import streams as lookup_streams

ZONE = """
$ORIGIN example.com.
$TTL 600
@        IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300
@        IN NS  ns1.example.com.
@        IN A   192.0.2.10
"""


@contextlib.asynccontextmanager
async def stack(
    nats_server: NatsServer, tmp_path: Path, vt: FakeVirusTotal, **env: str
) -> AsyncIterator[Settings]:
    """DNS and VirusTotal providers on loopback upstreams and the scheduler service (the
    history's indexer); yields the settings (the gateway is the test's to start)."""
    with ZoneServer(ZONE) as dns:
        settings = make_settings(
            tmp_path,
            nats_server.url,
            "[providers.virustotal.quota]\nper_minute = 100\n",
            LOOKOUT_DNS_NAMESERVERS=dns.nameserver,
            VIRUSTOTAL_API_KEY=vt.api_key,
            VIRUSTOTAL_URL=vt.base_url,
            LOOKOUT_SCHEDULER_TICK="0.1",
            **env,
        )
        async with (
            running_provider(settings, "dns"),
            running_provider(settings, "virustotal"),
            running_service(settings, "scheduler"),
        ):
            yield settings


def schema_check(document: dict[str, Any], name: str, body: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


async def history_of(base: str, value: str) -> tuple[int, Any]:
    return await api("GET", f"{base}/api/v1/indicators/{quote(value, safe='')}")


async def test_history_outlives_the_job_and_a_gateway_restart(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    document = apidocs.openapi()
    async with (
        FakeVirusTotal({"example.com": FakeVirusTotal.stats(malicious=1, harmless=80)}) as vt,
        stack(nats_server, tmp_path, vt, LOOKOUT_JOB_TTL="2") as settings,
    ):
        async with running_gateway(settings) as base:
            status, created = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={
                    "text": "seen at hxxps://example[.]com/ and example[.]com",
                    "providers": ["dns", "virustotal"],
                },
            )
            assert status == 202, created
            job = await wait_job(base, created["id"])
            assert {r["status"] for r in job["results"]} == {"done"}
            [engines] = [
                r["summary"]
                for r in job["results"]
                if (r["indicator"], r["provider"]) == ("example.com", "virustotal")
            ]

            async def indexed() -> bool:
                status, body = await history_of(base, "example[.]com")
                return status == 200 and not body["pending_jobs"]

            await wait_for(indexed)
            _, before = await history_of(base, "example[.]com")
            # the job expires (LOOKOUT_JOB_TTL=2) …
            await wait_for(
                lambda: _gone(f"{base}/api/v1/lookups/{created['id']}"), within=20, every=0.2
            )
        asked = len(vt.requests)
        # … and the gateway restarts: the history is on the bus
        async with running_gateway(settings) as base:
            status, after = await history_of(base, "EXAMPLE.com.")
            assert status == 200, after
            assert after == before
            schema_check(document, "IndicatorHistory", after)
            assert after["value"] == "example.com"
            assert after["kind"] == "domain"
            assert after["verdict"] == "suspicious"  # one engine
            assert after["verdict_reasons"] == [f"VirusTotal: {engines}"]
            by = {p["provider"]: p for p in after["providers"]}
            assert set(by) == {"dns", "virustotal"}
            assert by["virustotal"]["summary"] == engines
            assert by["virustotal"]["job_id"] == created["id"]
            assert by["dns"]["data"]["records"]["A"] == ["192.0.2.10"]
            assert [v["verdict"] for v in after["verdict_history"]] == ["suspicious"]
            assert [j["id"] for j in after["jobs"]] == [created["id"]]
            assert after["jobs"][0]["indicators"] == 2
            assert after["first_seen"] <= after["last_seen"]
            assert after["links"]["page"] == "/indicator/example.com"

            # many at once, in short: one read for all of them
            status, seen = await api(
                "POST",
                f"{base}/api/v1/indicators/seen",
                json={
                    "indicators": [
                        "hxxps://example[.]com/",
                        "never.example.com",
                        "not an indicator",
                        "EXAMPLE.com.",
                    ]
                },
            )
            assert status == 200, seen
            schema_check(document, "Seen", seen)
            assert [(h["value"], h["kind"]) for h in seen["seen"]] == [
                ("https://example.com/", "url"),
                ("example.com", "domain"),
            ]
            short = seen["seen"][1]
            assert short["verdict"] == after["verdict"]
            assert short["verdict_history"] == after["verdict_history"]
            assert short["jobs"] == after["jobs"]
            assert (short["first_seen"], short["last_seen"]) == (
                after["first_seen"],
                after["last_seen"],
            )
            assert seen["not_seen"] == ["never.example.com"]
            assert [r["item"] for r in seen["rejected"]] == ["not an indicator"]

            # the jobs it was in, and the recent jobs, newest first
            status, listed = await api(
                "GET", f"{base}/api/v1/lookups?indicator={quote('https://example.com/')}"
            )
            assert status == 200
            schema_check(document, "JobList", listed)
            assert listed["indicator"] == {"value": "https://example.com/", "kind": "url"}
            assert [j["id"] for j in listed["jobs"]] == [created["id"]]
            status, recent = await api("GET", f"{base}/api/v1/lookups?limit=5")
            assert status == 200
            assert recent["indicator"] is None
            assert [j["id"] for j in recent["jobs"]] == [created["id"]]
            assert recent["jobs"][0]["sample"] == ["https://example.com/", "example.com"]
            status, later = await api("GET", f"{base}/api/v1/lookups?since=2999-01-01T00:00:00Z")
            assert (status, later["jobs"]) == (200, [])
            status, listed = await api("GET", f"{base}/api/v1/lookups?indicator=never.example.com")
            assert (status, listed["jobs"]) == (200, [])
        # reading the history asked no provider anything: no quota spent
        assert len(vt.requests) == asked

        # `lookout history` reads the same
        env = {**os.environ, "NATS_URL": nats_server.url}
        code, out, _ = await run_lookout(env, "history", "example[.]com", "--json")
        assert code == 0
        assert json.loads(out) == {k: v for k, v in before.items() if k != "links"}
        code, out, _ = await run_lookout(env, "history", "example.com")
        assert code == 0
        assert "suspicious" in out
        assert "VirusTotal" in out
        assert created["id"] in out
        code, _, err = await run_lookout(env, "history", "never-seen.example.com")
        assert code == 1
        assert "never looked up" in err
        code, _, err = await run_lookout(env, "history", "not an indicator")
        assert code == 2
        assert "not an indicator" in err


async def _gone(url: str) -> bool:
    status, _ = await api("GET", url)
    return status == 404


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/api/v1/indicators/not%20an%20indicator", 400, "not an indicator"),
        ("/api/v1/indicators/%2A", 400, "not an indicator: expected an IP address"),
        ("/api/v1/indicators/example.com", 404, "never looked up"),
        ("/api/v1/lookups?indicator=", 400, "not an indicator"),
        ("/api/v1/lookups?since=yesterday", 400, "since must be"),
        ("/api/v1/lookups?since=2026-01-01T00:00:00", 400, "time zone"),
        ("/api/v1/lookups?limit=0", 400, "limit"),
    ],
)
async def test_bad_history_requests_get_a_reason(
    nats_server: NatsServer, tmp_path: Path, path: str, status: int, reason: str
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        got, body = await api("GET", f"{base}{path}")
    assert got == status
    assert reason in body["error"]
    assert "not an indicator: not an indicator" not in body["error"]  # said once


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, 'expected {"indicators": ['),
        ({"indicators": "example.com"}, 'expected {"indicators": ['),
        ({"indicators": []}, "give 1 to 100 indicators, not 0"),
        ({"indicators": [f"h{i}.example.com" for i in range(101)]}, "not 101"),
        ({"indicators": ["a" * 9000]}, "indicator 0 longer than 8300 characters"),
        ({"indicators": ["example.com"], "extra": 1}, "unknown field"),
    ],
)
async def test_bad_seen_requests_get_a_reason(
    nats_server: NatsServer, tmp_path: Path, body: Any, reason: str
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        got, answer = await api("POST", f"{base}/api/v1/indicators/seen", json=body)
    assert got == 400, answer
    assert reason in answer["error"]


async def test_the_history_is_bounded_and_drops_the_least_recently_updated_first(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """At ``LOOKOUT_HISTORY_MAX_BYTES`` the bucket drops the indicators updated least
    recently; writing never fails (the indexer never stops)."""
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_HISTORY_MAX_BYTES="1048576")
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await lookup_streams.provision(js, settings)
        info = await js.stream_info(KV_STREAM.format(bucket=lookup_streams.HISTORY_BUCKET))
        assert info.config.discard == DiscardPolicy.OLD
        assert info.config.max_bytes == 1048576
        kv = await js.key_value(lookup_streams.HISTORY_BUCKET)
        filler = "x" * 8000
        for n in range(300):  # about 2.4 MB in all

            def entry(_: history.Entry | None, n: int = n) -> history.Entry:
                return history.Entry(
                    value=f"host{n}.example.com",
                    kind="domain",
                    first_seen=filler,
                    last_seen="2026-01-01T00:00:00Z",
                )

            await history.update(kv, f"k{n}", entry)
        reader = direct.Reader(nc, 2.0)
        await reader.start()
        stream = KV_STREAM.format(bucket=lookup_streams.HISTORY_BUCKET)
        first = await reader.last(stream, direct.kv_subject(lookup_streams.HISTORY_BUCKET, "k0"))
        last = await reader.last(stream, direct.kv_subject(lookup_streams.HISTORY_BUCKET, "k299"))
        assert first is None  # dropped
        assert last is not None
        info = await js.stream_info(stream)
        assert info.state.bytes <= 1048576
    finally:
        await nc.close()
