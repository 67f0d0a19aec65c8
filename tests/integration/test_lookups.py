"""Host lookups end to end on a real bus: gateway API → provider-dns → loopback DNS server."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from dnsserver import ZoneServer
from helpers import (
    LOOKOUT,
    api,
    make_settings,
    provider_job,
    running_gateway,
    running_provider,
    wait_for,
    wait_job,
)

from shared.bus import direct
from shared.core.natsserver import NatsServer, free_port
from shared.lookups import jobs

ZONE = """
$ORIGIN example.com.
$TTL 600
@        IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300
@        IN NS  ns1.example.com.
@        IN A   192.0.2.10
@        IN AAAA 2001:db8::10
@        IN MX  10 mail.example.com.
@        IN TXT "v=spf1 mx -all"
www      IN CNAME example.com.
mail     IN A   192.0.2.25
evil     IN A   203.0.113.66
1.0.0.10.in-addr.arpa. IN PTR files.corp.example.com.
"""


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as server:
        yield server


def dns_settings(tmp_path: Path, nats: NatsServer, zone: ZoneServer, **env: str):  # type: ignore[no-untyped-def]
    return make_settings(
        tmp_path, nats.url, LOOKOUT_DNS_NAMESERVERS=zone.nameserver, LOOKOUT_DNS_TIMEOUT="1", **env
    )


def by_indicator(job: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["indicator"]: r for r in job["results"]}


async def test_defanged_text_job_is_looked_up(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    settings = dns_settings(tmp_path, nats_server, zone)
    text = (
        "Phish reported: hxxps://www.example[.]com/login?u=1 sent from "
        "ceo[at]mail.example[.]com, beaconing to evil[.]example[.]com and 10.0.0[.]1; "
        "also nosuch.example.com."
    )
    async with running_gateway(settings) as base, running_provider(settings, "dns"):
        status, created = await api(
            "POST", f"{base}/api/v1/lookups", json={"text": text, "providers": ["dns"]}
        )
        assert status == 202, created
        kinds = {i["value"]: i["kind"] for i in created["indicators"]}
        assert kinds == {
            "https://www.example.com/login?u=1": "url",
            "ceo@mail.example.com": "email",
            "evil.example.com": "domain",
            "10.0.0.1": "ipv4",
            "nosuch.example.com": "domain",
        }
        job = await wait_job(base, created["id"])
    results = by_indicator(job)
    assert all(r["provider"] == "dns" and r["status"] == "done" for r in results.values())
    url = results["https://www.example.com/login?u=1"]
    assert url["data"]["host"] == "www.example.com"
    assert url["data"]["records"]["CNAME"] == ["example.com"]
    assert url["data"]["records"]["A"] == ["192.0.2.10"]
    email = results["ceo@mail.example.com"]
    assert email["data"]["records"]["A"] == ["192.0.2.25"]
    assert results["evil.example.com"]["summary"] == "A 203.0.113.66"
    ptr = results["10.0.0.1"]
    assert ptr["data"]["ptr"] == ["files.corp.example.com"]  # private IP: DNS still asks
    assert results["nosuch.example.com"]["summary"] == "NXDOMAIN"
    assert results["nosuch.example.com"]["data"]["nxdomain"] is True
    assert {i["value"]: i["verdict"] for i in job["indicators"]}["evil.example.com"] == "unknown"
    www = [q for q in zone.queries if q[0] == "www.example.com"]
    assert {t for _, t in www} == {"A", "AAAA", "MX", "NS", "TXT", "SOA", "CNAME"}


async def test_cache_hit_makes_no_upstream_query_and_fresh_bypasses_it(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    settings = dns_settings(tmp_path, nats_server, zone)
    async with running_gateway(settings) as base, running_provider(settings, "dns"):
        _, first = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com"], "providers": ["dns"]},
        )
        job = await wait_job(base, first["id"])
        assert job["results"][0]["cached"] is False
        asked = len(zone.queries)
        assert asked >= 7

        _, second = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["EXAMPLE.com."], "providers": ["dns"]},
        )
        job = await wait_job(base, second["id"])
        assert job["results"][0]["cached"] is True
        assert job["results"][0]["data"]["records"]["A"] == ["192.0.2.10"]
        assert len(zone.queries) == asked  # zero upstream queries

        _, third = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com"], "fresh": True, "providers": ["dns"]},
        )
        job = await wait_job(base, third["id"])
        assert job["results"][0]["cached"] is False
        assert len(zone.queries) > asked


async def test_unreachable_dns_is_an_error_not_a_hang(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings = make_settings(
        tmp_path, nats_server.url, LOOKOUT_DNS_NAMESERVERS=dead, LOOKOUT_DNS_TIMEOUT="1"
    )
    async with running_gateway(settings) as base, running_provider(settings, "dns"):
        _, created = await api(
            "POST", f"{base}/api/v1/lookups", json={"indicators": ["a.com"], "providers": ["dns"]}
        )
        started = time.monotonic()
        job = await wait_job(base, created["id"])
    assert time.monotonic() - started < 10
    [result] = job["results"]
    assert result["status"] == "error"
    assert result["verdict"] == "error"
    assert result["error"] == "timeout after 1 s: no DNS answer for a.com"  # the cause first
    assert result["data"]["upstream"] == dead  # whom it asked: in the details
    [indicator] = job["indicators"]
    assert indicator["verdict"] == "error"
    assert indicator["verdict_reasons"] == ["DNS: timeout after 1 s: no DNS answer for a.com"]


async def test_a_name_every_query_fails_for_is_an_error_not_no_records(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    """SERVFAIL for every record type: an error with its cause (it was shown as a done
    "no address records", grey, as if the name had none)."""
    zone.fail_names.add("example.com.")
    settings = dns_settings(tmp_path, nats_server, zone)
    result = (await provider_job(settings, "dns", ["example.com"]))["example.com"]
    assert result["status"] == "error"
    assert result["error"] == (
        "DNS server failure (SERVFAIL or no server answered): no DNS answer for example.com"
    )
    assert set(result["data"]["failed"].values()) == {"servfail"}


async def test_first_nameserver_silent_the_second_answers_every_dns_provider(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    """One DNS client, one failover order: with a silent server first in
    ``LOOKOUT_DNS_NAMESERVERS``, the ``dns`` and ``emailsec`` workers both get their
    answers from the second, complete."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.setblocking(False)
        dead = f"127.0.0.1:{silent.getsockname()[1]}"
        settings = make_settings(
            tmp_path,
            nats_server.url,
            LOOKOUT_DNS_NAMESERVERS=f"{dead},{zone.nameserver}",
            LOOKOUT_DNS_TIMEOUT="2",
        )
        async with (
            running_gateway(settings) as base,
            running_provider(settings, "dns"),
            running_provider(settings, "emailsec"),
        ):
            body = {"indicators": ["example.com"], "providers": ["dns", "emailsec"]}
            _, created = await api("POST", f"{base}/api/v1/lookups", json=body)
            job = await wait_job(base, created["id"])
        asked_first = 0
        with contextlib.suppress(BlockingIOError):
            while silent.recv(4096):
                asked_first += 1
    results = {r["provider"]: r for r in job["results"]}
    assert {p: r["status"] for p, r in results.items()} == {"dns": "done", "emailsec": "done"}
    assert results["dns"]["data"]["records"]["A"] == ["192.0.2.10"]
    assert "failed" not in results["dns"]["data"]
    assert results["emailsec"]["data"]["spf"]["valid"] is True
    assert results["emailsec"]["data"]["spf"]["record"] == "v=spf1 mx -all"
    assert asked_first > 0  # the silent server was asked first


async def test_a_failed_provider_makes_the_overall_verdict_error_everywhere(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    """DNS answered (``unknown``: it does not judge), WHOIS could not be asked: the
    indicator is ``error``, not ``unknown``, in the JSON, the event stream and the CSV."""
    settings = dns_settings(
        tmp_path,
        nats_server,
        zone,
        LOOKOUT_RDAP_URL=f"http://127.0.0.1:{free_port()}",
        LOOKOUT_WHOIS_SERVER=f"127.0.0.1:{free_port()}",
    )
    async with (
        running_gateway(settings) as base,
        running_provider(settings, "dns"),
        running_provider(settings, "whois"),
    ):
        _, created = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com"], "providers": ["dns", "whois"]},
        )
        job = await wait_job(base, created["id"])
        done: list[Any] = []
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/api/v1/lookups/{created['id']}/events") as response,
        ):
            event = ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "done":
                    done = json.loads(line[6:])
                    break
        _, text = await api("GET", f"{base}/api/v1/lookups/{created['id']}.csv")
    results = {r["provider"]: r for r in job["results"]}
    assert (results["dns"]["status"], results["dns"]["verdict"]) == ("done", "unknown")
    whois = results["whois"]
    assert whois["status"] == "error"
    assert whois["error"] == "cannot connect: Connection refused (RDAP, WHOIS)"
    assert [a["protocol"] for a in whois["data"]["attempts"]] == ["rdap", "whois"]
    reasons = ["WHOIS: cannot connect: Connection refused (RDAP, WHOIS)"]
    [indicator] = job["indicators"]
    assert (indicator["verdict"], indicator["verdict_reasons"]) == ("error", reasons)
    assert [(i["verdict"], i["verdict_reasons"]) for i in done] == [("error", reasons)]
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert list(row)[:5] == ["indicator", "kind", "scope", "verdict", "verdict_reasons"]
    assert (row["verdict"], row["verdict_reasons"]) == ("error", reasons[0])
    assert row["whois_summary"] == whois["error"]


async def test_server_sent_events_stream_results_then_done(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    settings = dns_settings(tmp_path, nats_server, zone)
    async with running_gateway(settings) as base:
        _, created = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com", "mail.example.com"], "providers": ["dns"]},
        )
        events: list[tuple[str, object]] = []

        async def listen() -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{base}/api/v1/lookups/{created['id']}/events") as response,
            ):
                assert response.headers["Content-Type"].startswith("text/event-stream")
                event = ""
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        events.append((event, json.loads(line[6:])))
                        if event == "done":
                            return

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.5)  # the stream is open before any result exists
        assert not listener.done()
        async with running_provider(settings, "dns"):
            await asyncio.wait_for(listener, 20)
    names = [e for e, _ in events]
    assert names == ["result", "result", "done"]
    assert {d["indicator"] for e, d in events if e == "result"} == {  # type: ignore[index]
        "example.com",
        "mail.example.com",
    }


async def test_an_event_stream_the_bus_fails_ends_with_the_cause(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every result sent, then the last read before ``done`` refused (the bus overloaded):
    an ``error`` event with the cause and a reconnect delay, not "internal error"."""
    settings = dns_settings(tmp_path, nats_server, zone)

    async def refused(*_: object) -> None:
        raise direct.ReadRefused("no answer from stream KV_lookup_jobs in 5s")

    async with running_gateway(settings) as base, running_provider(settings, "dns"):
        _, created = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com"], "providers": ["dns"]},
        )
        await wait_job(base, created["id"])
        monkeypatch.setattr(jobs, "grown", refused)
        _, text = await api("GET", f"{base}/api/v1/lookups/{created['id']}/events")
    assert "event: result" in text
    assert "retry: " in text
    assert "event: error" in text
    assert "the bus did not answer (no answer from stream KV_lookup_jobs in 5s)" in text


async def test_csv_export(nats_server: NatsServer, tmp_path: Path, zone: ZoneServer) -> None:
    settings = dns_settings(tmp_path, nats_server, zone)
    async with running_gateway(settings) as base, running_provider(settings, "dns"):
        _, created = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": ["example.com", "10.0.0.1"], "providers": ["dns"]},
        )
        await wait_job(base, created["id"])
        status, text = await api("GET", f"{base}/api/v1/lookups/{created['id']}.csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["indicator"] for r in rows] == ["example.com", "10.0.0.1"]
    assert rows[0]["dns_status"] == "done"
    assert rows[0]["dns_summary"] == "A 192.0.2.10"
    assert (rows[0]["verdict"], rows[0]["verdict_reasons"]) == ("unknown", "DNS: A 192.0.2.10")
    assert rows[1]["scope"] == "private"


async def test_file_upload(nats_server: NatsServer, tmp_path: Path, zone: ZoneServer) -> None:
    settings = dns_settings(tmp_path, nats_server, zone)
    content = "ip,domain,note\n192.0.2.1,evil[.]example[.]com,seen twice\n" * 50
    form = aiohttp.FormData()
    form.add_field("file", content.encode(), filename="iocs.csv", content_type="text/csv")
    async with running_gateway(settings) as base:
        status, created = await api("POST", f"{base}/api/v1/lookups", data=form)
    assert status == 202, created
    assert [i["value"] for i in created["indicators"]] == ["192.0.2.1", "evil.example.com"]


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "expected"),
        ({"json": {"indicators": ["a.com"], "text": "b.com"}}, 400, "exactly one"),
        ({"json": {}}, 400, "exactly one"),
        ({"json": {"indicators": ["a.com"], "colour": 1}}, 400, "colour"),
        ({"json": {"indicators": ["not a thing", "999.1.1.1"]}}, 400, "no indicator"),
        ({"json": {"indicators": ["a.com"], "providers": ["nope"]}}, 400, "unknown providers"),
    ],
)
async def test_bad_input_is_400_with_a_reason(
    nats_server: NatsServer,
    tmp_path: Path,
    kwargs: dict,
    status: int,
    reason: str,  # type: ignore[type-arg]
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        got, body = await api("POST", f"{base}/api/v1/lookups", **kwargs)
    assert got == status
    assert reason in body["error"]


async def test_rejected_items_are_listed_and_the_rest_accepted(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        status, body = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={
                "indicators": ["a.com", "999.1.1.1", "co.uk", None, 5, {"ip": "1.2.3.4"}],
                "providers": ["dns"],
            },
        )
    assert status == 202
    assert [i["value"] for i in body["indicators"]] == ["a.com"]
    # an item that is no string is rejected alone, shown as its JSON
    assert {r["item"] for r in body["rejected"]} == {
        "999.1.1.1",
        "co.uk",
        "null",
        "5",
        '{"ip":"1.2.3.4"}',
    }
    assert all(r["reason"] for r in body["rejected"])


async def test_pasted_and_uploaded_lines_nothing_was_read_from_are_rejected_with_why(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Text and files: each non-empty line that gave no indicator is named with its number
    and why (a 400 when nothing at all could be read), as ``lookout lookup --file`` does."""
    settings = make_settings(tmp_path, nats_server.url)
    junk = "intranet\nbogus!!\n"
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/lookups"
        status, body = await api("POST", url, json={"text": junk})
        assert status == 400, body
        assert "no indicator" in body["error"]
        assert [(r["item"], r["reason"].split(":")[0]) for r in body["rejected"]] == [
            ("intranet", "line 1"),
            ("bogus!!", "line 2"),
        ]
        assert "no known public suffix" in body["rejected"][0]["reason"]

        form = aiohttp.FormData()
        upload = "8.8.4.4\n" + junk + "10.0.0.1x\n"
        form.add_field("file", upload.encode(), filename="iocs.txt", content_type="text/plain")
        form.add_field("providers", "dns")
        status, body = await api("POST", url, data=form)
        assert status == 202, body
        assert [i["value"] for i in body["indicators"]] == ["8.8.4.4"]
        assert [r["item"] for r in body["rejected"]] == ["intranet", "bogus!!", "10.0.0.1x"]
        assert [r["reason"].split(":")[0] for r in body["rejected"]] == [
            "line 2",
            "line 3",
            "line 4",
        ]
        assert body["rejected_total"] == 3


async def test_limits(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, LOOKOUT_MAX_INDICATORS="3", LOOKOUT_MAX_BODY_BYTES="4096"
    )
    async with running_gateway(settings) as base:
        status, body = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": [f"h{i}.com" for i in range(4)], "providers": ["dns"]},
        )
        assert status == 400
        assert "at most 3" in body["error"]
        status, body = await api("POST", f"{base}/api/v1/lookups", json={"text": "a.com " * 2000})
        assert status == 413
        status, body = await api("GET", f"{base}/api/v1/lookups/0123456789abcdef")
        assert status == 404


async def test_api_tokens(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS="tok-one,tok-two")
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/lookups"
        assert (await api("POST", url, json={"indicators": ["a.com"], "providers": ["dns"]}))[
            0
        ] == 401
        assert (
            await api("POST", url, "wrong", json={"indicators": ["a.com"], "providers": ["dns"]})
        )[0] == 401
        assert (
            await api("POST", url, "tok-two", json={"indicators": ["a.com"], "providers": ["dns"]})
        )[0] == 202
        # the webhook and health endpoints are not behind API tokens
        async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as r:
            assert r.status == 200
        # a refusal names the scheme (RFC 6750); two Authorization headers are refused,
        # whichever holds the right token (a proxy might read the other one)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api/v1/providers") as r:
                assert r.status == 401
                assert r.headers["WWW-Authenticate"] == 'Bearer realm="lookout"'
            for pair in (("tok-one", "wrong"), ("wrong", "tok-one")):
                headers = [("Authorization", f"Bearer {token}") for token in pair]
                async with session.get(f"{base}/api/v1/providers", headers=headers) as r:
                    assert r.status == 401
                    assert (await r.json())["error"] == "more than one Authorization header"


async def test_results_survive_a_bus_restart(tmp_path: Path, zone: ZoneServer) -> None:
    server = NatsServer(tmp_path / "nats", port=free_port())
    server.start()
    try:
        settings = dns_settings(tmp_path, server, zone)
        async with running_gateway(settings) as base, running_provider(settings, "dns"):
            _, created = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={"indicators": ["example.com"], "providers": ["dns"]},
            )
            await wait_job(base, created["id"])
        server.stop()
        server.start()
        async with running_gateway(settings) as base:
            job = await wait_job(base, created["id"])
        assert job["results"][0]["data"]["records"]["A"] == ["192.0.2.10"]
    finally:
        server.stop()


async def test_cache_key_follows_settings_that_change_answers(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    other_zone = ZONE.replace("192.0.2.10", "192.0.2.99")
    with ZoneServer(other_zone) as other:
        first = dns_settings(tmp_path, nats_server, zone)
        second = dns_settings(tmp_path, nats_server, other)
        body = {"indicators": ["example.com"], "providers": ["dns"]}
        async with running_gateway(first) as base:
            async with running_provider(first, "dns"):
                _, created = await api("POST", f"{base}/api/v1/lookups", json=body)
                job = await wait_job(base, created["id"])
            assert job["results"][0]["data"]["records"]["A"] == ["192.0.2.10"]
            # the same indicator through other nameservers is not answered from the cache
            async with running_provider(second, "dns"):
                _, created = await api("POST", f"{base}/api/v1/lookups", json=body)
                job = await wait_job(base, created["id"])
    assert job["results"][0]["cached"] is False
    assert job["results"][0]["data"]["records"]["A"] == ["192.0.2.99"]
    assert other.queries


# ------------------------------------------------------------------------ request ids


@contextlib.asynccontextmanager
async def provider_process(
    settings_env: dict[str, str], name: str
) -> AsyncIterator[list[dict[str, Any]]]:
    """``lookout service provider-<name>`` as its own process, as a container runs it;
    yields the JSON log lines it printed so far (filled in as they come, complete once the
    block is left and the process stopped)."""
    proc = await asyncio.create_subprocess_exec(
        LOOKOUT,
        "service",
        f"provider-{name}",
        env={**os.environ, **settings_env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[dict[str, Any]] = []
    raw: list[bytes] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            raw.append(line)
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))

    reader = asyncio.create_task(read())
    try:
        await wait_for(
            lambda: any(line.get("event") == "provider started" for line in lines), within=30
        )
        yield lines
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        await asyncio.wait_for(reader, 10)
        assert proc.returncode == 0, b"".join(raw).decode(errors="replace")[-4000:]


async def post_lookup(base: str, body: dict[str, Any], **headers: str) -> tuple[int, str, Any]:
    """(status, X-Request-Id of the answer, JSON body) of ``POST /api/v1/lookups``."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/api/v1/lookups", json=body, headers=headers) as response,
    ):
        return response.status, response.headers.get("X-Request-Id", ""), await response.json()


async def test_request_id_reaches_the_provider_log_lines(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    env = {
        "NATS_URL": nats_server.url,
        "LOOKOUT_DATA_DIR": str(tmp_path / "provider"),
        "LOOKOUT_DNS_NAMESERVERS": zone.nameserver,
        "LOOKOUT_DNS_TIMEOUT": "1",
        "LOOKOUT_LOG_LEVEL": "info",  # each lookup leaves a line at info
    }
    settings = dns_settings(tmp_path, nats_server, zone)
    given = "ticket-4711/lookup"
    async with provider_process(env, "dns") as logged, running_gateway(settings) as base:
        # the client's id is kept, answered, stored on the job
        status, answered, created = await post_lookup(
            base, {"indicators": ["example.com"], "providers": ["dns"]}, **{"X-Request-Id": given}
        )
        assert status == 202, created
        assert answered == given
        job = await wait_job(base, created["id"])
        assert job["request_id"] == given

        # none given (or one that is not sane): a new one, answered and stored likewise
        status, generated, created = await post_lookup(
            base,
            {"indicators": ["mail.example.com"], "providers": ["dns"]},
            **{"X-Request-Id": "x" * 129},
        )
        assert status == 202, created
        assert re.fullmatch(r"[0-9a-f]{17,}", generated), generated
        second = await wait_job(base, created["id"])
        assert second["request_id"] == generated
        _, again, _ = await post_lookup(base, {"indicators": ["evil.example.com"]})
        assert again not in ("", generated), "one id per request"

        # refused requests answer one too
        status, refused, _ = await post_lookup(
            base, {"indicators": ["not a thing"]}, **{"X-Request-Id": "bad-input-1"}
        )
        assert (status, refused) == (400, "bad-input-1")

    def lines_about(indicator: str) -> list[dict[str, Any]]:
        return [line for line in logged if line.get("indicator") == indicator]

    for indicator, request_id in (("example.com", given), ("mail.example.com", generated)):
        about = lines_about(indicator)
        assert about, f"provider-dns logged nothing about {indicator}: {logged}"
        assert all(line.get("request_id") == request_id for line in about), about
        assert all(line.get("provider") == "dns" for line in about), about
        done = [line for line in about if line.get("event") == "looked up"]
        assert len(done) == 1, about
        assert done[0]["verdict"] in ("harmless", "undetected", "unknown"), done
    # bound per message: the lines outside any lookup carry none
    started = [line for line in logged if line.get("event") == "provider started"]
    assert started
    assert all("request_id" not in line for line in started), started


async def test_upload_caps_answer_with_the_limit(nats_server: NatsServer, tmp_path: Path) -> None:
    """Streamed without a Content-Length, an upload is refused once it passes the cap, with
    the same reason as a JSON body; a form field is capped too."""
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_MAX_BODY_BYTES="4096")
    async with running_gateway(settings) as base, aiohttp.ClientSession() as session:
        url = f"{base}/api/v1/lookups"
        big = aiohttp.FormData()
        big.add_field("file", b"example.com\n" * 1000, filename="hosts.txt")
        async with session.post(url, data=big, chunked=True) as response:
            assert response.status == 413
            assert (await response.json())["error"] == "body larger than 4096 bytes"
        long_field = aiohttp.FormData()
        long_field.add_field("file", b"example.com\n", filename="hosts.txt")
        long_field.add_field("providers", "dns," * 1500)
        async with session.post(url, data=long_field, chunked=True) as response:
            assert response.status == 400
            answer = await response.json()
            assert answer["error"] == "form field 'providers' longer than 4096 bytes"
        fine = aiohttp.FormData()
        fine.add_field("file", b"example.com\n", filename="hosts.txt")
        fine.add_field("providers", "dns")
        async with session.post(url, data=fine, chunked=True) as response:
            assert response.status == 202, await response.text()
            assert (await response.json())["indicators"][0]["value"] == "example.com"
