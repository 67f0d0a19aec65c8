"""Tests for the loopback DNS test server (tests/dnsserver.py), queried with dnspython."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import threading
import time
from collections.abc import Iterator

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import pytest
from dnsserver import ZoneServer

LONG_A = "a" * 200
LONG_B = "b" * 100
SPF = "v=spf1 include:_spf.example.com -all"
DMARC = "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
BULK = 50

ZONE = textwrap.dedent(f"""
    $ORIGIN example.com.
    $TTL 300
    @        IN SOA ns1.example.com. hostmaster.example.com. (
                 2024010101 ; serial
                 3600 600 86400
                 60 )       ; minimum: negative-caching TTL
    @        NS    ns1
    @        A     192.0.2.1
    @        AAAA  2001:db8::1
    @        MX    10 mail
    @        TXT   "{SPF}"
    ns1      A     192.0.2.53
    mail     60 IN A 192.0.2.25
    long     TXT   "{LONG_A}" "{LONG_B}"
    multi    TXT   "part one" "part two"
    escaped  TXT   "say \\"hi\\"" "semi\\059colon"
    www      CNAME web
    web      CNAME app
    app      A     192.0.2.80
    external CNAME target.elsewhere.test.
    dangling CNAME missing
    _dmarc   TXT   "{DMARC}"
    _dmarc.corp TXT "v=DMARC1; p=none"
    4.3.2.1.in-addr.arpa. PTR host.example.com.
""") + "".join(f'bulk TXT "bulk record number {i:02d} padding-padding"\n' for i in range(BULK))


def make_resolver(server: ZoneServer, lifetime: float = 2.0) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port
    resolver.lifetime = lifetime
    resolver.timeout = lifetime
    return resolver


async def tcp_query(
    server: ZoneServer, name: str, rdtype: str, *, timeout: float = 2.0
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.tcp(query, server.host, port=server.port, timeout=timeout)


async def udp_query(
    server: ZoneServer, name: str, rdtype: str, *, use_edns: int | bool = False, payload: int = 0
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=use_edns, payload=payload or None)
    return await dns.asyncquery.udp(query, server.host, port=server.port, timeout=2.0)


def answer_texts(response: dns.message.Message) -> list[str]:
    return [rdata.to_text() for rrset in response.answer for rdata in rrset]


def txt_strings(answer: dns.resolver.Answer) -> list[tuple[bytes, ...]]:
    return sorted(tuple(rdata.strings) for rdata in answer)


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


# -- positive answers -----------------------------------------------------------------------


async def test_nameserver_format(server: ZoneServer) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.nameserver == f"127.0.0.1:{server.port}"


async def test_a_aaaa_mx_ns(server: ZoneServer) -> None:
    resolver = make_resolver(server)
    assert [r.address for r in await resolver.resolve("example.com", "A")] == ["192.0.2.1"]
    assert [r.address for r in await resolver.resolve("example.com", "AAAA")] == ["2001:db8::1"]
    mx = await resolver.resolve("example.com", "MX")
    assert [(r.preference, r.exchange.to_text()) for r in mx] == [(10, "mail.example.com.")]
    ns = await resolver.resolve("example.com", "NS")
    assert [r.target.to_text() for r in ns] == ["ns1.example.com."]
    mail = await resolver.resolve("mail.example.com", "A")
    assert mail.rrset is not None
    assert mail.rrset.ttl == 60


async def test_answers_are_authoritative(server: ZoneServer) -> None:
    response = await tcp_query(server, "example.com", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert answer_texts(response) == ["192.0.2.1"]


async def test_txt_records_round_trip(server: ZoneServer) -> None:
    resolver = make_resolver(server)
    assert txt_strings(await resolver.resolve("example.com", "TXT")) == [(SPF.encode(),)]
    assert txt_strings(await resolver.resolve("_dmarc.example.com", "TXT")) == [(DMARC.encode(),)]
    assert txt_strings(await resolver.resolve("multi.example.com", "TXT")) == [
        (b"part one", b"part two")
    ]
    long_answer = await resolver.resolve("long.example.com", "TXT")
    assert txt_strings(long_answer) == [(LONG_A.encode(), LONG_B.encode())]
    assert b"".join(next(iter(long_answer)).strings) == (LONG_A + LONG_B).encode()
    # Zone-file escapes are decimal (\DDD) and may quote a quote, as in a real server.
    assert txt_strings(await resolver.resolve("escaped.example.com", "TXT")) == [
        (b'say "hi"', b"semi;colon")
    ]


async def test_names_are_case_insensitive(server: ZoneServer) -> None:
    answer = await make_resolver(server).resolve("APP.Example.COM.", "A")
    assert [r.address for r in answer] == ["192.0.2.80"]


async def test_ptr(server: ZoneServer) -> None:
    resolver = make_resolver(server)
    reverse = dns.reversename.from_address("1.2.3.4")
    assert reverse.to_text() == "4.3.2.1.in-addr.arpa."
    answer = await resolver.resolve(reverse, "PTR")
    assert [r.target.to_text() for r in answer] == ["host.example.com."]
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve_address("1.2.3.5")


async def test_cname_chain_is_chased_within_zone(server: ZoneServer) -> None:
    answer = await make_resolver(server).resolve("www.example.com", "A")
    assert answer.canonical_name.to_text() == "app.example.com."
    assert [r.address for r in answer] == ["192.0.2.80"]
    response = await tcp_query(server, "www.example.com", "A")
    assert answer_texts(response) == ["web.example.com.", "app.example.com.", "192.0.2.80"]


async def test_cname_query_is_not_chased(server: ZoneServer) -> None:
    response = await tcp_query(server, "www.example.com", "CNAME")
    assert answer_texts(response) == ["web.example.com."]


async def test_cname_out_of_zone_and_dangling(server: ZoneServer) -> None:
    response = await tcp_query(server, "external.example.com", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert answer_texts(response) == ["target.elsewhere.test."]
    # In-zone target that does not exist: NXDOMAIN, with the CNAME (RFC 6604).
    response = await tcp_query(server, "dangling.example.com", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert answer_texts(response) == ["missing.example.com."]
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


async def test_any_returns_everything_at_the_name(server: ZoneServer) -> None:
    response = await tcp_query(server, "example.com", "ANY")
    types = {rrset.rdtype for rrset in response.answer}
    assert types == {
        dns.rdatatype.SOA,
        dns.rdatatype.NS,
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.MX,
        dns.rdatatype.TXT,
    }


# -- negative answers -----------------------------------------------------------------------


async def test_nxdomain_with_soa(server: ZoneServer) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        await make_resolver(server).resolve("nope.example.com", "A")
    response = await tcp_query(server, "nope.example.com", "TXT")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert not response.answer
    [soa] = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name.to_text() == "example.com."
    assert soa.ttl == 60  # min(SOA TTL, SOA MINIMUM), RFC 2308


async def test_nodata(server: ZoneServer) -> None:
    with pytest.raises(dns.resolver.NoAnswer):
        await make_resolver(server).resolve("mail.example.com", "TXT")
    response = await tcp_query(server, "mail.example.com", "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


async def test_empty_non_terminal_is_nodata(server: ZoneServer) -> None:
    resolver = make_resolver(server)
    assert txt_strings(await resolver.resolve("_dmarc.corp.example.com", "TXT")) == [
        (b"v=DMARC1; p=none",)
    ]
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve("corp.example.com", "TXT")
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("other.corp.example.com", "TXT")


async def test_empty_non_terminal_without_soa() -> None:
    with ZoneServer('_dmarc.example.org. 300 TXT "v=DMARC1; p=none"') as server:
        resolver = make_resolver(server)
        with pytest.raises(dns.resolver.NoAnswer):
            await resolver.resolve("example.org", "TXT")
        with pytest.raises(dns.resolver.NXDOMAIN):
            await resolver.resolve("www.example.org", "A")
        response = await tcp_query(server, "example.org", "TXT")
        assert response.rcode() == dns.rcode.NOERROR
        assert not response.authority


# -- hooks ----------------------------------------------------------------------------------


async def test_fail_names_servfail() -> None:
    with ZoneServer(ZONE) as server:
        server.fail_names.add("Example.COM.")
        with pytest.raises(dns.resolver.NoNameservers):
            await make_resolver(server).resolve("example.com", "TXT")
        response = await tcp_query(server, "example.com", "A")
        assert response.rcode() == dns.rcode.SERVFAIL
        # Other names are unaffected.
        assert answer_texts(await tcp_query(server, "mail.example.com", "A")) == ["192.0.2.25"]
        server.fail_names.clear()
        assert answer_texts(await tcp_query(server, "example.com", "A")) == ["192.0.2.1"]


async def test_refuse_names_refused() -> None:
    with ZoneServer(ZONE) as server:
        server.refuse_names.add("example.com")
        response = await udp_query(server, "example.com", "TXT")
        assert response.rcode() == dns.rcode.REFUSED
        assert not response.answer
        assert answer_texts(await tcp_query(server, "mail.example.com", "A")) == ["192.0.2.25"]


async def test_timeout_names_drop_queries() -> None:
    with ZoneServer(ZONE) as server:
        server.timeout_names.add("_dmarc.example.com")
        started = time.monotonic()
        with pytest.raises(dns.resolver.LifetimeTimeout):
            await make_resolver(server, lifetime=0.5).resolve("_dmarc.example.com", "TXT")
        assert time.monotonic() - started < 2.0
        # Over TCP the connection stays open and silent.
        with pytest.raises(dns.exception.Timeout):
            await tcp_query(server, "_dmarc.example.com", "TXT", timeout=0.3)
        assert server.query_count("_dmarc.example.com", "TXT") >= 2
        # The server keeps answering everything else.
        assert answer_texts(await tcp_query(server, "example.com", "A")) == ["192.0.2.1"]
        started = time.monotonic()
    # stop() releases the TCP handler holding the dropped query.
    assert time.monotonic() - started < 2.0


async def test_queries_are_recorded(server: ZoneServer) -> None:
    before = len(server.queries)
    await make_resolver(server).resolve("WWW.Example.com.", "A")
    await tcp_query(server, "example.com", "MX")
    assert server.queries[before:] == [("www.example.com", "A"), ("example.com", "MX")]
    assert server.query_count("www.EXAMPLE.com.", "a") >= 1


async def test_set_zone_replaces_records() -> None:
    with ZoneServer("app.example.com. 300 A 192.0.2.80") as server:
        resolver = make_resolver(server)
        assert [r.address for r in await resolver.resolve("app.example.com", "A")] == ["192.0.2.80"]
        server.set_zone(
            """
            app.example.com. 300 A 192.0.2.81
            app.example.com. 300 A 192.0.2.82
            new.example.com. 300 TXT "hello"
            """
        )
        answer = await resolver.resolve("app.example.com", "A")
        assert sorted(r.address for r in answer) == ["192.0.2.81", "192.0.2.82"]
        assert txt_strings(await resolver.resolve("new.example.com", "TXT")) == [(b"hello",)]


async def test_origin_and_default_ttl() -> None:
    with ZoneServer("www A 192.0.2.7\n@ MX 5 www", origin="example.net") as server:
        response = await tcp_query(server, "www.example.net", "A")
        assert answer_texts(response) == ["192.0.2.7"]
        assert response.answer[0].ttl == 300
        mx = await tcp_query(server, "example.net", "MX")
        assert answer_texts(mx) == ["5 www.example.net."]


def test_bad_zone_text_raises() -> None:
    with pytest.raises(dns.exception.SyntaxError):
        ZoneServer("www.example.com. 300 A not-an-address")


# -- size limits / transports ---------------------------------------------------------------


async def test_large_answer_over_tcp(server: ZoneServer) -> None:
    response = await tcp_query(server, "bulk.example.com", "TXT")
    assert len(answer_texts(response)) == BULK
    assert not response.flags & dns.flags.TC


async def test_large_answer_truncated_over_udp(server: ZoneServer) -> None:
    response = await udp_query(server, "bulk.example.com", "TXT")
    assert response.flags & dns.flags.TC
    assert not response.answer
    assert response.question[0].name.to_text() == "bulk.example.com."
    # Even a large EDNS buffer is capped at the server's 1232 bytes.
    response = await udp_query(server, "bulk.example.com", "TXT", use_edns=0, payload=4096)
    assert response.flags & dns.flags.TC
    assert response.edns == 0


async def test_resolver_falls_back_to_tcp_on_truncation(server: ZoneServer) -> None:
    answer = await make_resolver(server).resolve("bulk.example.com", "TXT")
    assert len(answer) == BULK


async def test_small_udp_answers(server: ZoneServer) -> None:
    plain = await udp_query(server, "example.com", "TXT")
    assert not plain.flags & dns.flags.TC
    assert plain.edns == -1  # no OPT back when the client sent none
    # The 300-byte TXT still fits in 512 bytes: no truncation.
    long_answer = await udp_query(server, "long.example.com", "TXT")
    assert not long_answer.flags & dns.flags.TC
    with_edns = await udp_query(server, "example.com", "TXT", use_edns=0, payload=1232)
    assert with_edns.edns == 0
    assert with_edns.payload == 1232
    assert answer_texts(with_edns) == [f'"{SPF}"']


async def test_concurrent_queries(server: ZoneServer) -> None:
    resolver = make_resolver(server)
    names = ["example.com", "app.example.com", "ns1.example.com", "mail.example.com"] * 10
    answers = await asyncio.gather(*(resolver.resolve(name, "A") for name in names))
    assert len(answers) == len(names)
    tcp_answers = await asyncio.gather(*(tcp_query(server, n, "A") for n in names))
    assert all(r.rcode() == dns.rcode.NOERROR for r in tcp_answers)


# -- lifecycle ------------------------------------------------------------------------------


def _can_bind(port: int) -> bool:
    """Whether a new server could take ``port`` (TCP with SO_REUSEADDR, as servers do)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                # Connections the server closed linger in TIME_WAIT on the port.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


async def test_start_stop_is_clean() -> None:
    threads_before = set(threading.enumerate())
    server = ZoneServer(ZONE)
    server.start()
    port = server.port
    assert not _can_bind(port)  # both UDP and TCP are taken, on the same port
    assert answer_texts(await udp_query(server, "example.com", "A")) == ["192.0.2.1"]
    assert answer_texts(await tcp_query(server, "example.com", "A")) == ["192.0.2.1"]
    server.stop()
    assert set(threading.enumerate()) <= threads_before
    assert _can_bind(port)
    server.stop()  # idempotent

    with ZoneServer(ZONE) as second:
        assert answer_texts(await tcp_query(second, "example.com", "A")) == ["192.0.2.1"]
    assert set(threading.enumerate()) <= threads_before


def test_start_twice_is_an_error() -> None:
    with ZoneServer(ZONE) as server, pytest.raises(RuntimeError):
        server.start()
