"""One failover order, one timeout budget and one cache for every provider that asks DNS
(shared/lookups/dns): the client itself, then the ``dns`` and ``emailsec`` providers built
from the same settings, against loopback DNS servers (tests/dnsserver.py), silent UDP ports
and closed ones.

No assertion here is about speed: where "at once" matters, the timeout is long (a minute)
and the test bounds its wait far below it, so waiting for the timeout's share would fail it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from dnsserver import ZoneServer

from services.providers.dns import build as build_dns
from services.providers.emailsec import build as build_emailsec
from shared.core.natsserver import free_port
from shared.core.settings import load
from shared.lookups.dns import MAX_TRIES, DnsAnswer, DnsClient
from shared.lookups.provider import ProviderError
from shared.lookups.schemas import LookupRequest

LONG = 60.0
"""A timeout no test waits for: an answer that comes at all came without it."""
BOUND = 10.0

ZONE = """
$ORIGIN example.com.
$TTL 300
@        SOA   ns1 hostmaster 1 3600 600 86400 60
@        A     192.0.2.10
@        MX    10 mail
@        TXT   "v=spf1 mx -all"
_dmarc   TXT   "v=DMARC1; p=reject; rua=mailto:d@example.com"
mail     A     192.0.2.25
brief    1 IN TXT "one second"
q1       TXT   "answer 1"
q2       TXT   "answer 2"
q3       TXT   "answer 3"
q4       TXT   "answer 4"
q5       TXT   "answer 5"
q6       TXT   "answer 6"
sf       TXT   "not from the failing server"
rf       TXT   "not from the refusing server"
fresh    TXT   "asked again"
"""


class SilentServer:
    """A UDP port that takes queries and never answers (no ICMP error either); it counts
    what it received."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.received = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self) -> int:
        """Datagrams received so far."""
        while True:
            try:
                self.sock.recv(4096)
            except BlockingIOError:
                return self.received
            self.received += 1


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


@pytest.fixture(scope="module")
def second() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    dead = SilentServer()
    try:
        yield dead
    finally:
        dead.sock.close()


@pytest.fixture
def silent2() -> Iterator[SilentServer]:
    dead = SilentServer()
    try:
        yield dead
    finally:
        dead.sock.close()


def closed_port() -> tuple[str, int]:
    """A loopback UDP port nobody listens on: queries to it get an ICMP error back."""
    return ("127.0.0.1", free_port())


def at(server: ZoneServer) -> tuple[str, int]:
    return (server.host, server.port)


# -- the client ---------------------------------------------------------------------------------


async def test_silent_servers_are_passed_in_order_and_then_tried_last(
    server: ZoneServer, silent: SilentServer, silent2: SilentServer
) -> None:
    servers = [silent.address, silent2.address, at(server)]
    async with DnsClient(servers, timeout=3.0) as client:
        answer = await client.query("q1.example.com", "TXT")
        assert answer.records == ["answer 1"]
        # one datagram each, in the configured order (the live one answered the third)
        assert (silent.count(), silent2.count()) == (1, 1)
        assert client.stats.retransmits == 2
        assert set(client.failing()) == {silent.address, silent2.address}
        # both are tried last now: the next query goes to the live server first
        before = server.query_count("q2.example.com", "TXT")
        assert (await client.query("q2.example.com", "TXT")).records == ["answer 2"]
        assert server.query_count("q2.example.com", "TXT") == before + 1
        assert (silent.count(), silent2.count()) == (1, 1)
        assert client.stats.retransmits == 2


async def test_a_query_goes_to_at_most_max_tries_servers(silent: SilentServer) -> None:
    more = [SilentServer() for _ in range(MAX_TRIES)]
    try:
        servers = [silent.address, *(s.address for s in more)]
        async with DnsClient(servers, timeout=0.6) as client:
            answer = await client.query("q1.example.com", "TXT")
        assert answer == DnsAnswer("TIMEOUT")
        assert answer.timed_out
        assert not answer.failed
        counts = [silent.count(), *(s.count() for s in more)]
        assert counts == [1] * MAX_TRIES + [0]  # the whole budget shared by three servers
        assert client.stats.timeouts == 1
    finally:
        for dead in more:
            dead.sock.close()


async def test_a_single_server_is_asked_twice_within_the_budget(silent: SilentServer) -> None:
    async with DnsClient([silent.address], timeout=0.4) as client:
        answer = await client.query("q1.example.com", "TXT")
    assert answer.timed_out
    assert silent.count() == 2
    assert client.stats.retransmits == 1


async def test_servfail_goes_to_the_next_server_at_once(
    server: ZoneServer, second: ZoneServer
) -> None:
    server.fail_names.add("sf.example.com")
    try:
        async with DnsClient([at(server), at(second)], timeout=LONG) as client:
            before = (server.query_count("sf.example.com"), second.query_count("sf.example.com"))
            answer = await asyncio.wait_for(client.query("sf.example.com", "TXT"), BOUND)
            assert answer.records == ["not from the failing server"]
            after = (server.query_count("sf.example.com"), second.query_count("sf.example.com"))
            assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
            # SERVFAIL is about the name, not the server: it is still tried first
            assert client.failing() == []
            await client.query("q3.example.com", "TXT")
            assert server.query_count("q3.example.com", "TXT") == 1
            assert second.query_count("q3.example.com", "TXT") == 0
    finally:
        server.fail_names.discard("sf.example.com")


async def test_servfail_from_every_server_is_the_answer_and_not_cached(
    server: ZoneServer, second: ZoneServer
) -> None:
    for zone in (server, second):
        zone.fail_names.add("sf.example.com")
    try:
        async with DnsClient([at(server), at(second)], timeout=LONG) as client:
            answer = await asyncio.wait_for(client.query("sf.example.com", "TXT"), BOUND)
            assert answer.rcode == "SERVFAIL"
            assert answer.failed
            assert not answer.timed_out
            assert not answer.answered
            again = await asyncio.wait_for(client.query("sf.example.com", "TXT"), BOUND)
            assert again.rcode == "SERVFAIL"
            assert client.stats.cache_hits == 0
    finally:
        for zone in (server, second):
            zone.fail_names.discard("sf.example.com")


async def test_refused_passes_on_and_the_server_is_tried_last(
    server: ZoneServer, second: ZoneServer
) -> None:
    server.refuse_names.add("rf.example.com")
    try:
        async with DnsClient([at(server), at(second)], timeout=LONG) as client:
            answer = await asyncio.wait_for(client.query("rf.example.com", "TXT"), BOUND)
            assert answer.records == ["not from the refusing server"]
            assert client.failing() == [at(server)]
            await client.query("q4.example.com", "TXT")
            assert server.query_count("q4.example.com", "TXT") == 0
            assert second.query_count("q4.example.com", "TXT") == 1
    finally:
        server.refuse_names.discard("rf.example.com")


async def test_an_unreachable_server_passes_its_queries_on_at_once(server: ZoneServer) -> None:
    dead = closed_port()
    async with DnsClient([dead, at(server)], timeout=LONG) as client:
        answers = await asyncio.wait_for(
            asyncio.gather(*(client.query(f"q{i}.example.com", "TXT") for i in (5, 6))), BOUND
        )
        assert [a.records for a in answers] == [["answer 5"], ["answer 6"]]
        assert client.failing() == [dead]


async def test_a_single_unreachable_server_times_out(server: ZoneServer) -> None:
    async with DnsClient([closed_port()], timeout=0.4) as client:
        answer = await client.query("q1.example.com", "TXT")
    assert answer.timed_out  # not given up early: the port may open again


async def test_answers_are_cached_for_their_ttl(server: ZoneServer) -> None:
    async with DnsClient([at(server)], timeout=2.0) as client:
        first = await client.query("brief.example.com", "TXT")
        assert first.ttl == 1.0
        assert await client.query("brief.example.com", "TXT") is first
        assert server.query_count("brief.example.com", "TXT") == 1
        await asyncio.sleep(1.1)
        assert client.cached("brief.example.com", "TXT") is None
        assert (await client.query("brief.example.com", "TXT")).records == ["one second"]
        assert server.query_count("brief.example.com", "TXT") == 2
        # a negative answer is kept for the SOA's negative-caching TTL
        nothing = await client.query("nothing.example.com", "TXT")
        assert nothing.nxdomain
        assert nothing.ttl == 60.0
        assert client.cached("nothing.example.com", "TXT") is nothing


async def test_fresh_skips_the_cache_and_refreshes_it(server: ZoneServer) -> None:
    async with DnsClient([at(server)], timeout=2.0) as client:
        first = await client.query("fresh.example.com", "TXT")
        assert await client.query("fresh.example.com", "TXT") is first
        renewed = await client.query("fresh.example.com", "TXT", fresh=True)
        assert renewed is not first
        assert renewed.records == first.records
        assert client.cached("fresh.example.com", "TXT") is renewed
        assert (await client.fresh().query("fresh.example.com", "TXT")) is not renewed
        assert server.query_count("fresh.example.com", "TXT") == 3


async def test_soa_and_the_types_the_codec_leaves_to_dnspython(server: ZoneServer) -> None:
    async with DnsClient([at(server)], timeout=2.0) as client:
        soa = await client.query("example.com", "SOA")
        assert soa.records == ["ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60"]
        assert (await client.query("mail.example.com", "SOA")).nodata


# -- both providers, built from the same settings --------------------------------------------


def settings(*nameservers: str, timeout: float) -> Any:
    return load(
        {"LOOKOUT_DNS_NAMESERVERS": ",".join(nameservers), "LOOKOUT_DNS_TIMEOUT": f"{timeout:g}"}
    )


def domain(name: str, *, fresh: bool = False) -> LookupRequest:
    return LookupRequest(job_id="j", indicator=name, kind="domain", host=name, fresh=fresh)


@pytest.fixture(params=["dns", "emailsec"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def build(kind: str, config: Any) -> Any:
    return build_dns(config) if kind == "dns" else build_emailsec(config)


def looked_up(kind: str, answer: Any) -> None:
    """The answer is the full one, as from a single live server."""
    if kind == "dns":
        assert answer.data["records"]["A"] == ["192.0.2.10"]
        assert "failed" not in answer.data
    else:
        assert answer.verdict == "harmless"
        assert answer.data["dmarc"]["policy"] == "reject"


async def test_first_nameserver_dead_the_second_answers(
    kind: str, server: ZoneServer, silent: SilentServer
) -> None:
    # 5 s: the silent server holds each query for half of it (its share), and the live
    # one must answer within the other half even beside other tests (1 s left it 0.5 s,
    # and 3 s, 1.5 s, timed out once in a whole-suite run on a loaded machine)
    provider = build(kind, settings(silent.nameserver, server.nameserver, timeout=5.0))
    await provider.open()
    try:
        looked_up(kind, await provider.lookup(domain("example.com")))
        asked = silent.count()
        assert asked >= 1
        assert provider.client.failing() == [silent.address]
        # now tried last: the next lookup does not wait for it
        looked_up(kind, await provider.lookup(domain("example.com", fresh=True)))
        assert silent.count() == asked
    finally:
        await provider.close()


async def test_first_nameserver_unreachable_the_second_answers(
    kind: str, server: ZoneServer
) -> None:
    dead = f"127.0.0.1:{closed_port()[1]}"
    provider = build(kind, settings(dead, server.nameserver, timeout=LONG))
    await provider.open()
    try:
        looked_up(kind, await asyncio.wait_for(provider.lookup(domain("example.com")), BOUND))
    finally:
        await provider.close()


async def test_servfail_from_the_first_the_second_answers(
    kind: str, server: ZoneServer, second: ZoneServer
) -> None:
    names = {"example.com", "_dmarc.example.com", "mail.example.com"}
    server.fail_names.update(names)
    try:
        provider = build(kind, settings(server.nameserver, second.nameserver, timeout=LONG))
        await provider.open()
        try:
            answer = await asyncio.wait_for(provider.lookup(domain("example.com")), BOUND)
            looked_up(kind, answer)
        finally:
            await provider.close()
    finally:
        server.fail_names.difference_update(names)


async def test_every_server_silent_is_an_error_within_the_timeout(
    kind: str, silent: SilentServer, silent2: SilentServer
) -> None:
    provider = build(kind, settings(silent.nameserver, silent2.nameserver, timeout=0.5))
    await provider.open()
    try:
        with pytest.raises(ProviderError) as failed:
            await provider.lookup(domain("example.com"))
    finally:
        await provider.close()
    assert "timeout" in str(failed.value).lower()
    assert silent.count() >= 1  # both asked
    assert silent2.count() >= 1


async def test_one_cache_that_fresh_skips(kind: str, second: ZoneServer) -> None:
    provider = build(kind, settings(second.nameserver, timeout=2.0))
    await provider.open()
    try:
        looked_up(kind, await provider.lookup(domain("example.com")))
        asked = len(second.queries)
        looked_up(kind, await provider.lookup(domain("example.com")))
        assert len(second.queries) == asked  # every answer from the client's cache
        assert provider.client.stats.cache_hits > 0
        looked_up(kind, await provider.lookup(domain("example.com", fresh=True)))
        assert len(second.queries) > asked  # a fresh lookup asks the server again
    finally:
        await provider.close()
