"""The asn provider as its own service on the real bus, through the real runner, asking
Team Cymru's documented names of the loopback DNS server (tests/fakes/dnszones.py)."""

from __future__ import annotations

from pathlib import Path

from dnsserver import ZoneServer
from fakes.dnszones import cymru_zone
from helpers import api, make_settings, running_gateway, running_provider, wait_job

from shared.core.natsserver import NatsServer


async def test_asn_through_the_runner(nats_server: NatsServer, tmp_path: Path) -> None:
    with ZoneServer(cymru_zone()) as dns:
        dns.fail_names = {"5.5.5.5.origin.asn.cymru.com"}
        settings = make_settings(
            tmp_path,
            nats_server.url,
            LOOKOUT_DNS_NAMESERVERS=dns.nameserver,
            LOOKOUT_DNS_TIMEOUT="1",
        )
        async with running_gateway(settings) as base, running_provider(settings, "asn"):
            status, created = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={
                    "indicators": [
                        "216.90.108.31",
                        "2001:4860:b002::68",
                        "8.8.4.4",
                        "5.5.5.5",
                    ],
                    "providers": ["asn"],
                },
            )
            assert status == 202, created
            job = await wait_job(base, created["id"])
            # asked again: the answer comes from the shared cache
            before = dns.query_count("31.108.90.216.origin.asn.cymru.com")
            status, again = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={"indicators": ["216.90.108.31"], "providers": ["asn"]},
            )
            second = await wait_job(base, again["id"])
            assert dns.query_count("31.108.90.216.origin.asn.cymru.com") == before
    cell = {r["indicator"]: r for r in job["results"] if r["provider"] == "asn"}
    assert set(cell) == {"216.90.108.31", "2001:4860:b002::68", "8.8.4.4", "5.5.5.5"}
    assert cell["216.90.108.31"]["verdict"] == "unknown"
    assert cell["216.90.108.31"]["summary"] == "AS23028 TEAMCYMRU - SAUNET, US"
    assert cell["216.90.108.31"]["data"]["prefix"] == "216.90.108.0/24"
    assert cell["2001:4860:b002::68"]["summary"] == "AS15169 GOOGLE - Google Inc., US"
    assert cell["8.8.4.4"]["summary"] == "not announced"
    assert cell["5.5.5.5"]["status"] == "error"
    assert cell["5.5.5.5"]["error"].startswith("DNS server failure (SERVFAIL)")
    hit = next(r for r in second["results"] if r["provider"] == "asn")
    assert hit["cached"] is True
    assert hit["summary"] == "AS23028 TEAMCYMRU - SAUNET, US"
