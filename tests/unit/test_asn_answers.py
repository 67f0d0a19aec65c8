"""The asn provider against Team Cymru's documented DNS answers, served by the loopback DNS
server (tests/fixtures/asn, tests/fakes/dnszones.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from dnsserver import ZoneServer
from fakes.dnszones import cymru_zone

from services.providers.asn import AsnProvider, build, parse_as_name, parse_origin, summary
from shared.core.settings import load
from shared.lookups.provider import ProviderError
from shared.lookups.schemas import LookupRequest

MORE = """
$ORIGIN test.
@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300
"""


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(cymru_zone() + MORE) as zone_server:
        yield zone_server


@pytest.fixture
async def provider(server: ZoneServer) -> AsyncIterator[AsnProvider]:
    settings = load({"LOOKOUT_DNS_NAMESERVERS": server.nameserver, "LOOKOUT_DNS_TIMEOUT": "1"})
    asn = build(settings)
    await asn.open()
    yield asn
    await asn.close()


def request(address: str) -> LookupRequest:
    kind = "ipv6" if ":" in address else "ipv4"
    return LookupRequest(job_id="job", indicator=address, kind=kind, host=address)


def test_parse_the_documented_answers() -> None:
    origin = parse_origin("23028 | 216.90.108.0/24 | US | arin | 1998-09-25")
    assert origin is not None
    assert (origin.asns, origin.prefix, origin.country, origin.registry, origin.allocated) == (
        (23028,),
        "216.90.108.0/24",
        "US",
        "arin",
        "1998-09-25",
    )
    peers = parse_origin("701 1239 3549 3561 7132 | 216.90.108.0/24 | US | arin | 1998-09-25")
    assert peers is not None
    assert peers.asns == (701, 1239, 3549, 3561, 7132)
    assert parse_as_name("23028 | US | arin | 2002-01-04 | TEAMCYMRU - SAUNET") == (
        "TEAMCYMRU - SAUNET"
    )
    assert parse_origin("not | an answer") is None
    assert parse_as_name("23028 | US") is None


def test_summary_names_the_country_once() -> None:
    assert summary(15169, "GOOGLE - Google Inc., US", "US") == "AS15169 GOOGLE - Google Inc., US"
    assert summary(23028, "TEAMCYMRU - SAUNET", "US") == "AS23028 TEAMCYMRU - SAUNET, US"
    assert summary(64501, None, "DE") == "AS64501, DE"


async def test_ipv4_origin_and_name(provider: AsnProvider, server: ZoneServer) -> None:
    answer = await provider.lookup(request("216.90.108.31"))
    assert answer.verdict == "unknown"
    assert answer.summary == "AS23028 TEAMCYMRU - SAUNET, US"
    assert answer.data["asn"] == 23028
    assert answer.data["prefix"] == "216.90.108.0/24"
    assert answer.data["registry"] == "arin"
    assert answer.data["allocated"] == "1998-09-25"
    # the documented names, asked through the one DNS client
    assert ("31.108.90.216.origin.asn.cymru.com", "TXT") in server.queries
    assert ("as23028.asn.cymru.com", "TXT") in server.queries


async def test_ipv6_origin(provider: AsnProvider, server: ZoneServer) -> None:
    answer = await provider.lookup(request("2001:4860:b002::68"))
    assert answer.summary == "AS15169 GOOGLE - Google Inc., US"
    assert answer.data["prefix"] == "2001:4860::/32"
    name = "8.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.b.0.6.8.4.1.0.0.2.origin6.asn.cymru.com"
    assert (name, "TXT") in server.queries


async def test_not_announced_is_nxdomain(provider: AsnProvider) -> None:
    answer = await provider.lookup(request("216.90.109.1"))
    assert (answer.verdict, answer.summary) == ("unknown", "not announced")
    assert answer.data["announced"] is False


async def test_the_most_specific_prefix_wins(server: ZoneServer) -> None:
    # two covering prefixes answer at once (Team Cymru sends one TXT record per prefix)
    zone = cymru_zone() + (
        "$ORIGIN origin.asn.cymru.com.\n"
        '9.9.9.198 IN TXT "64500 | 198.0.0.0/8 | US | arin | 1990-01-01"\n'
        '9.9.9.198 IN TXT "64501 64502 | 198.9.9.0/24 | NL | ripencc | 2001-01-01"\n'
    )
    with ZoneServer(zone) as two:
        asn = build(load({"LOOKOUT_DNS_NAMESERVERS": two.nameserver}))
        try:
            answer = await asn.lookup(request("198.9.9.9"))
        finally:
            await asn.close()
    assert answer.data["asn"] == 64501
    assert answer.data["other_asns"] == ["AS64502"]
    assert answer.data["as_name"] is None  # no AS64501 record: no name, asked again soon
    assert answer.summary == "AS64501, NL"
    assert answer.ttl == 300.0


async def test_failures_say_their_cause(server: ZoneServer) -> None:
    server.timeout_names = {"1.1.168.192.origin.asn.cymru.com"}
    server.fail_names = {"2.1.168.192.origin.asn.cymru.com"}
    asn = build(load({"LOOKOUT_DNS_NAMESERVERS": server.nameserver, "LOOKOUT_DNS_TIMEOUT": "0.3"}))
    try:
        with pytest.raises(ProviderError, match=r"^timeout after 0.3 s \(origin of 192.168.1.1\)"):
            await asn.lookup(request("192.168.1.1"))
        with pytest.raises(ProviderError, match=r"^DNS server failure \(SERVFAIL\)"):
            await asn.lookup(request("192.168.1.2"))
    finally:
        server.timeout_names = set()
        server.fail_names = set()
        await asn.close()


def test_not_configured_without_servers() -> None:
    asn = build(load({"LOOKOUT_DNS_NAMESERVERS": ""}))
    asn.upstream.nameservers = []
    assert asn.configured() == "no DNS server: set LOOKOUT_DNS_NAMESERVERS"


def test_zones_are_configurable(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "lookout.toml"
    path.write_text('[providers.asn]\norigin_zone = "origin.asn.example"\n')
    asn = build(load({"LOOKOUT_CONFIG": str(path), "LOOKOUT_DNS_NAMESERVERS": "127.0.0.1:53"}))
    assert asn.config.origin_zone == "origin.asn.example"
    assert "origin.asn.example" in asn.cache_salt()
