"""The lookups' DNS client (shared/lookups/dns/client.py): answers, cache, timeout,
failover, TCP, on the loopback DNS server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from dnsserver import ZoneServer

import shared.lookups.dns.client as dns_client_module
from shared.lookups.dns import DnsAnswer, DnsClient, reverse_name

BULK = 500
ZONE = (
    """
$ORIGIN example.com.
$TTL 300
@        SOA   ns1 hostmaster 1 3600 600 86400 60
@        MX    10 mail
@        MX    20 backup.example.net.
@        TXT   "v=spf1 -all"
mail     A     192.0.2.25
mail     AAAA  2001:db8::25
short    30 IN TXT "short ttl"
split    TXT   "part one " "part two"
alias    CNAME target
target   TXT   "the target"
target   A     192.0.2.80
dedup    TXT   "shared answer"
cached   TXT   "cached answer"
expires  TXT   "expires soon"
nocache  TXT   "not cached"
failover TXT   "from the live server"
again    TXT   "direct"
busy     TXT   "many ids"
broken   TXT   "never answered"
4.3.2.1.in-addr.arpa. PTR host.example.com.
"""
    + "".join(f'big TXT "record number {i:02d} with some padding-padding"\n' for i in range(50))
    + "".join(f"n{i}.bulk A 10.0.{i // 256}.{i % 256}\n" for i in range(BULK))
)


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


@pytest.fixture
async def client(server: ZoneServer) -> AsyncIterator[DnsClient]:
    async with DnsClient([(server.host, server.port)], timeout=2.0) as dns_client:
        yield dns_client


@pytest.fixture
def dead_server() -> Iterator[tuple[str, int]]:
    """A UDP port that receives queries and never answers (no ICMP error either)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield ("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


async def test_record_types_as_text(client: DnsClient) -> None:
    mx = await client.query("example.com", "MX")
    assert mx.rcode == "NOERROR"
    assert sorted(mx.records) == ["10 mail.example.com", "20 backup.example.net"]
    assert mx.ttl == 300
    assert (await client.query("mail.example.com.", "A")).records == ["192.0.2.25"]
    assert (await client.query("MAIL.example.com", "aaaa")).records == ["2001:db8::25"]
    assert (await client.query("4.3.2.1.in-addr.arpa", "PTR")).records == ["host.example.com"]
    assert (await client.query("alias.example.com", "CNAME")).records == ["target.example.com"]
    assert (await client.query("split.example.com", "TXT")).records == ["part one part two"]


async def test_cname_in_a_txt_answer(client: DnsClient) -> None:
    answer = await client.query("alias.example.com", "TXT")
    assert answer.rcode == "NOERROR"
    assert answer.records == ["the target"]  # the CNAME record itself is left out


async def test_negative_answers(client: DnsClient) -> None:
    nxdomain = await client.query("nothing.example.com", "TXT")
    assert nxdomain == DnsAnswer("NXDOMAIN", [], 60.0)  # min(SOA TTL, SOA minimum)
    assert nxdomain.void
    nodata = await client.query("mail.example.com", "TXT")
    assert nodata.rcode == "NOERROR"
    assert nodata.records == []
    assert nodata.void
    assert nodata.answered


async def test_servfail_is_not_cached(client: DnsClient, server: ZoneServer) -> None:
    server.fail_names.add("broken.example.com")
    try:
        first = await client.query("broken.example.com", "TXT")
        second = await client.query("broken.example.com", "TXT")
    finally:
        server.fail_names.discard("broken.example.com")
    assert first.rcode == second.rcode == "SERVFAIL"
    assert not first.answered
    assert server.query_count("broken.example.com", "TXT") == 2


async def test_bad_name(client: DnsClient) -> None:
    assert (await client.query("a" * 64 + ".example.com", "TXT")).rcode == "BADNAME"
    assert (await client.query("example.com", "NOSUCHTYPE")).rcode == "BADNAME"


async def test_many_queries_in_parallel(server: ZoneServer) -> None:
    # Its own client with a longer timeout than the fixture's 2 s: the test zone server is
    # Python, and on a loaded machine (CI, two cores) a burst of 500 can outlast 2 s.
    async with DnsClient([(server.host, server.port)], timeout=5.0) as client:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(client.query(f"n{i}.bulk.example.com", "A") for i in range(BULK))
        )
        elapsed = time.monotonic() - started
    for i, answer in enumerate(answers):
        assert answer.rcode == "NOERROR"
        assert answer.records == [f"10.0.{i // 256}.{i % 256}"]
    assert client.stats.sent >= BULK
    assert server.query_count(qtype="A") >= BULK
    assert elapsed < 5.0


async def test_identical_queries_in_flight_are_sent_once(
    client: DnsClient, server: ZoneServer
) -> None:
    answers = await asyncio.gather(*(client.query("dedup.example.com", "TXT") for _ in range(50)))
    assert all(answer.records == ["shared answer"] for answer in answers)
    assert server.query_count("dedup.example.com", "TXT") == 1
    assert client.stats.shared == 49


async def test_cache(client: DnsClient, server: ZoneServer) -> None:
    first = await client.query("cached.example.com", "TXT")
    second = await client.query("CACHED.example.com.", "TXT")
    assert first is second
    assert server.query_count("cached.example.com", "TXT") == 1
    assert client.stats.cache_hits == 1
    assert client.cached("cached.example.com", "TXT") is first


async def test_cache_entries_expire(server: ZoneServer) -> None:
    async with DnsClient([(server.host, server.port)], 2.0, max_cache_ttl=0.2) as dns_client:
        await dns_client.query("expires.example.com", "TXT")
        await dns_client.query("expires.example.com", "TXT")
        assert server.query_count("expires.example.com", "TXT") == 1
        await asyncio.sleep(0.25)
        await dns_client.query("expires.example.com", "TXT")
        assert server.query_count("expires.example.com", "TXT") == 2


async def test_cache_can_be_disabled(server: ZoneServer) -> None:
    async with DnsClient([(server.host, server.port)], 2.0, cache=False) as dns_client:
        await dns_client.query("nocache.example.com", "TXT")
        await dns_client.query("nocache.example.com", "TXT")
    assert server.query_count("nocache.example.com", "TXT") == 2


async def test_truncated_answer_falls_back_to_tcp(client: DnsClient, server: ZoneServer) -> None:
    answer = await client.query("big.example.com", "TXT")
    assert answer.rcode == "NOERROR"
    assert len(answer.records) == 50
    assert sorted(answer.records)[0] == "record number 00 with some padding-padding"
    assert client.stats.tcp == 1
    assert server.query_count("big.example.com", "TXT") == 2  # UDP (truncated), then TCP


async def test_timeout(server: ZoneServer) -> None:
    server.timeout_names.add("slow.example.com")
    try:
        async with DnsClient([(server.host, server.port)], timeout=0.4) as dns_client:
            started = time.monotonic()
            answer = await dns_client.query("slow.example.com", "TXT")
            elapsed = time.monotonic() - started
            assert dns_client.stats.retransmits == 1
            assert dns_client.stats.timeouts == 1
    finally:
        server.timeout_names.discard("slow.example.com")
    assert answer == DnsAnswer("TIMEOUT")
    assert not answer.answered
    assert 0.35 < elapsed < 2.5  # the budget, not a hang (slack for a busy machine)
    assert server.query_count("slow.example.com", "TXT") == 2  # sent, then retransmitted once


async def test_failover_to_the_next_nameserver(
    server: ZoneServer, dead_server: tuple[str, int]
) -> None:
    servers = [dead_server, (server.host, server.port)]
    # 2 s: the live server then has the second half (1 s) to answer, even beside other tests
    async with DnsClient(servers, timeout=2.0) as dns_client:
        started = time.monotonic()
        answer = await dns_client.query("failover.example.com", "TXT")
        first = time.monotonic() - started
        assert answer.records == ["from the live server"]
        assert first > 0.9  # the silent server had its share of the timeout
        assert dns_client.stats.retransmits == 1  # then the retransmission went to the live one
        # The silent server is now avoided: the next query goes to the live one first.
        again = await dns_client.query("again.example.com", "TXT")
        assert again.records == ["direct"]
        assert dns_client.stats.retransmits == 1
        assert server.query_count("again.example.com", "TXT") == 1


async def test_query_id_collision_takes_another_id(
    client: DnsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter([7, 7, 7, 8] + [9] * 10)
    monkeypatch.setattr(dns_client_module, "_random_id", lambda: next(ids))
    first, second = await asyncio.gather(
        client.query("busy.example.com", "TXT"), client.query("example.com", "TXT")
    )
    assert first.records == ["many ids"]
    assert second.records == ["v=spf1 -all"]
    assert next(ids) == 9  # 7 was taken twice before 8 was used


async def test_close(server: ZoneServer) -> None:
    server.timeout_names.add("hang.example.com")
    try:
        dns_client = DnsClient([(server.host, server.port)], timeout=5.0)
        assert (await dns_client.query("example.com", "TXT")).rcode == "NOERROR"
        pending = asyncio.ensure_future(dns_client.query("hang.example.com", "TXT"))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await dns_client.close()
        assert (await pending).rcode == "ERROR"
        assert time.monotonic() - started < 2.5  # not the 5 s timeout
        assert dns_client.closed
        with pytest.raises(RuntimeError):
            await dns_client.query("example.com", "TXT")
        await dns_client.close()  # idempotent
    finally:
        server.timeout_names.discard("hang.example.com")


def test_needs_a_nameserver() -> None:
    with pytest.raises(ValueError, match="nameserver"):
        DnsClient([], 1.0)


def test_reverse_names() -> None:
    assert reverse_name("192.0.2.1") == "1.2.0.192.in-addr.arpa"
    assert reverse_name("2001:db8::1").endswith(".8.b.d.0.1.0.0.2.ip6.arpa")
    assert reverse_name("2001:db8::1").startswith("1.0.0.0.0.0.0.0.")
    assert reverse_name("192.0.2.1", "list.example") == "1.2.0.192.list.example"
    assert reverse_name("2001:db8::1", "list.example").endswith(".8.b.d.0.1.0.0.2.list.example")
    with pytest.raises(ValueError, match="not an IP address"):
        reverse_name("example.com")


def test_query_ids_are_random_and_spread() -> None:
    """Ids come from the OS CSPRNG in blocks: over 4,096 draws (four refills) every value
    is a 16-bit id and they are not a sequence (at least 3,800 distinct, as expected of
    random draws: about 3,970)."""
    ids = [dns_client_module._random_id() for _ in range(4096)]
    assert all(0 <= i < 65536 for i in ids)
    assert len(set(ids)) > 3800
    assert sorted(ids) != ids
