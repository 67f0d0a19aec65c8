"""The emailsec DnsClient's query path: submit(), futures instead of tasks, slots, bursts,
and datagrams that are not the answer (a real hostile server on loopback)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator

import dns.message
import dns.rrset
import pytest
from dnsserver import ZoneServer

from services.providers.emailsec import evaluate
from shared.lookups.dns import DnsAnswer, DnsClient, start_query

ZONE = """
$ORIGIN example.com.
$TTL 300
@        SOA   ns1 hostmaster 1 3600 600 86400 60
@        TXT   "v=spf1 include:_spf.example.com a mx -all"
@        MX    10 mail
@        A     192.0.2.1
@        AAAA  2001:db8::1
mail     A     192.0.2.25
_spf     TXT   "v=spf1 ip4:192.0.2.0/24 include:_spf2.example.com ~all"
_spf2    TXT   "v=spf1 ip6:2001:db8::/32 -all"
_dmarc   TXT   "v=DMARC1; p=reject; rua=mailto:d@example.com,mailto:r@reports.example.net"
shared   TXT   "one answer"
slow     TXT   "never"
hang     TXT   "never"
""" + "".join(f'q{i} TXT "answer {i}"\n' for i in range(40))


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


@pytest.fixture
async def client(server: ZoneServer) -> AsyncIterator[DnsClient]:
    async with DnsClient([(server.host, server.port)], timeout=2.0) as dns_client:
        yield dns_client


class Delegating:
    """A resolver that is not a DnsClient (only ``query()``), answering through one."""

    def __init__(self, client: DnsClient) -> None:
        self.client = client

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        return await self.client.query(name, rdtype)


async def test_submit_answers_from_the_cache_at_once(client: DnsClient) -> None:
    first = client.submit("shared.example.com", "TXT")
    assert isinstance(first, asyncio.Future)
    assert not isinstance(first, asyncio.Task)  # a plain future, no task per query
    answer = await first
    assert answer.records == ["one answer"]
    again = client.submit("SHARED.example.com.", "txt")
    assert again is answer  # the cached answer itself, without waiting
    assert client.stats.cache_hits == 1
    assert client.submit("a" * 64 + ".example.com", "TXT") == DnsAnswer("BADNAME")


async def test_no_task_per_query(client: DnsClient) -> None:
    await client.query("q0.example.com", "TXT")  # opens the socket
    tasks = len(asyncio.all_tasks())
    pending = [client.submit(f"q{i}.example.com", "TXT") for i in range(1, 20)]
    assert len(asyncio.all_tasks()) == tasks
    answers = [p if isinstance(p, DnsAnswer) else await p for p in pending]
    assert [a.records for a in answers] == [[f"answer {i}"] for i in range(1, 20)]


async def test_cancelled_caller_does_not_cancel_the_shared_query(
    client: DnsClient, server: ZoneServer
) -> None:
    await client.query("q0.example.com", "TXT")
    before = server.query_count("q30.example.com", "TXT")
    first = asyncio.ensure_future(client.query("q30.example.com", "TXT"))
    second = asyncio.ensure_future(client.query("q30.example.com", "TXT"))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second).records == ["answer 30"]
    with pytest.raises(asyncio.CancelledError):
        await first
    assert server.query_count("q30.example.com", "TXT") == before + 1
    assert client.stats.shared == 1


async def test_datagrams_of_a_turn_go_out_together(client: DnsClient) -> None:
    answers = await asyncio.gather(*(client.query(f"q{i}.example.com", "TXT") for i in range(40)))
    assert all(answer.rcode == "NOERROR" for answer in answers)
    assert client.stats.sent == 40  # each once, none lost in the burst


async def test_queries_wait_for_a_slot(server: ZoneServer) -> None:
    async with DnsClient([(server.host, server.port)], 2.0, max_in_flight=1) as dns_client:
        answers = await asyncio.gather(
            *(dns_client.query(f"q{i}.example.com", "TXT") for i in range(40))
        )
        assert [a.records for a in answers] == [[f"answer {i}"] for i in range(40)]


async def test_waiting_for_a_slot_is_within_the_timeout(server: ZoneServer) -> None:
    server.timeout_names.add("hang.example.com")
    try:
        async with DnsClient([(server.host, server.port)], 2.0, max_in_flight=1) as dns_client:
            await dns_client.query("q1.example.com", "TXT")
            started = time.monotonic()
            hung = asyncio.ensure_future(dns_client.query("hang.example.com", "TXT"))
            await asyncio.sleep(0)
            queued = await dns_client.query("q2.example.com", "TXT")  # never gets the slot
            elapsed = time.monotonic() - started
            assert (await hung).rcode == "TIMEOUT"
    finally:
        server.timeout_names.discard("hang.example.com")
    assert queued.rcode == "TIMEOUT"
    # one timeout (2 s) for both, not the hung one's and then its own (4 s)
    assert elapsed < 3.0


async def test_close_ends_waiting_queries(server: ZoneServer) -> None:
    server.timeout_names.add("hang.example.com")
    try:
        dns_client = DnsClient([(server.host, server.port)], 5.0, max_in_flight=1)
        await dns_client.query("q1.example.com", "TXT")
        hung = asyncio.ensure_future(dns_client.query("hang.example.com", "TXT"))
        queued = asyncio.ensure_future(dns_client.query("q3.example.com", "TXT"))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await dns_client.close()
        assert (await hung).rcode == "ERROR"
        assert (await queued).rcode == "ERROR"
        assert time.monotonic() - started < 2.5  # not the 5 s timeout
    finally:
        server.timeout_names.discard("hang.example.com")


async def test_start_query_with_any_resolver(client: DnsClient) -> None:
    pending = start_query(Delegating(client), "shared.example.com", "TXT")
    assert isinstance(pending, asyncio.Task)
    assert (await pending).records == ["one answer"]


async def test_evaluate_is_the_same_through_any_resolver(server: ZoneServer) -> None:
    async with DnsClient([(server.host, server.port)], 2.0) as first:
        direct = await evaluate("example.com", first)
    async with DnsClient([(server.host, server.port)], 2.0) as second:
        delegated = await evaluate("example.com", Delegating(second))
    assert direct == delegated
    assert direct["spf"]["valid"] is True
    assert direct["spf"]["dns_lookups"] == 4
    assert direct["dmarc"]["policy"] == "reject"


async def test_cancelled_evaluation_leaves_the_client_usable(server: ZoneServer) -> None:
    server.timeout_names.add("_spf.example.com")
    try:
        async with DnsClient([(server.host, server.port)], 0.5) as dns_client:
            task = asyncio.ensure_future(evaluate("example.com", dns_client))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.6)  # the abandoned query times out on its own
            assert (await dns_client.query("shared.example.com", "TXT")).records == ["one answer"]
            assert dns_client.stats.timeouts == 1
    finally:
        server.timeout_names.discard("_spf.example.com")


# -- a hostile server: junk before the answer ---------------------------------------------------


class HostileServer:
    """A real UDP server on loopback that answers every query with junk first: a wrong id,
    a datagram cut short, an answer to another question, a compression loop and a non-
    response, each claiming an answer that must not be believed; then the right answer."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()

    @staticmethod
    def reply(query: dns.message.Message, name: str, text: str) -> bytes:
        message = dns.message.make_response(query)
        message.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", f'"{text}"'))
        return message.to_wire()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text()
            good = self.reply(query, name, "the real answer")
            poisoned = self.reply(query, name, "poisoned")
            wrong_id = bytearray(poisoned)
            wrong_id[0:2] = struct.pack("!H", (query.id + 1) & 0xFFFF)
            other = dns.message.make_query("other.example", "TXT")
            other.id = query.id
            other_question = self.reply(other, "other.example.", "poisoned")
            # the owner of the answer points at itself
            loop = bytearray(poisoned)
            owner = loop.index(b"\xc0\x0c", 12)
            loop[owner : owner + 2] = struct.pack("!H", 0xC000 | owner)
            not_response = bytearray(poisoned)
            not_response[2] &= 0x7F
            for junk in (bytes(wrong_id), poisoned[:30], other_question, bytes(loop)):
                self.sock.sendto(junk, peer)
            self.sock.sendto(bytes(not_response), peer)
            self.sock.sendto(good, peer)
            self.sock.sendto(poisoned, peer)  # too late: the query is answered


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as hostile_server:
        yield hostile_server


async def test_junk_datagrams_are_ignored(hostile: HostileServer) -> None:
    async with DnsClient([("127.0.0.1", hostile.port)], timeout=2.0) as dns_client:
        answer = await dns_client.query("target.example", "TXT")
        assert answer.records == ["the real answer"]
        assert dns_client.stats.sent == 1
        assert dns_client.stats.retransmits == 0
        assert (await dns_client.query("target.example", "TXT")) is answer  # cached
