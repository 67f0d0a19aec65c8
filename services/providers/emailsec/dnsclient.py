"""A small asynchronous DNS stub client built for throughput.

One :class:`DnsClient` per process sends every query over ONE connected UDP socket per
nameserver and multiplexes the queries on it by their 16-bit id (random, unique among the
queries in flight on that socket). Messages are built and parsed with dnspython; the
transport is our own:

* a query goes to the first nameserver, in the configured order, that has not stayed silent
  lately; with no answer after ``timeout / 2`` it is sent once more (new id), to the next
  nameserver when there are several (failover: the silent one is then avoided for
  ``down_for`` seconds); after ``timeout`` in all, the answer is ``TIMEOUT``;
* at most ``max_in_flight`` queries are on the wire at once (more wait for a slot), which
  keeps the sockets' receive buffers, ours and the server's, from overflowing;
* an answer with the TC bit is asked again over TCP (``dns.asyncquery.tcp``) within the same
  overall ``timeout``;
* identical queries in flight at the same time are sent once and share the answer;
* answers (``NOERROR`` and ``NXDOMAIN``) are kept in a per-client cache for their TTL, at
  most ``max_cache_ttl`` seconds (300 by default).

:meth:`DnsClient.query` never raises for DNS or network trouble: the answer's ``rcode`` says
what happened (``NOERROR``, ``NXDOMAIN``, ``SERVFAIL``, ``REFUSED``…, ``TIMEOUT``, ``ERROR``
for a network error, ``BADNAME`` for a name that cannot be asked).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.nsbase
import dns.rdtypes.txtbase
import dns.rrset

__all__ = ["ClientStats", "DnsAnswer", "DnsClient", "Resolver"]

DEFAULT_NEGATIVE_TTL = 60.0
"""Cache time of a negative answer that carries no SOA (so no negative-caching TTL)."""

_HEADER_LEN = 12
_QR = 0x80  # in the third header byte
_TC = 0x02  # in the third header byte
_ID_ATTEMPTS = 64
_RCVBUF = 1 << 20
_CNAME_CHAIN_MAX = 16


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One answer. ``records`` are text, one string per record, of the requested type only:
    TXT strings of a record joined into one, MX ``"pref host"``, names without the final dot.
    ``ttl`` is the smallest TTL along the answer (the negative-caching TTL for a negative
    answer with an SOA), None when unknown. Shared between callers: do not modify."""

    rcode: str
    records: list[str] = field(default_factory=list)
    ttl: float | None = None

    @property
    def answered(self) -> bool:
        """The server gave a definite answer (records, NODATA or NXDOMAIN)."""
        return self.rcode in ("NOERROR", "NXDOMAIN")

    @property
    def void(self) -> bool:
        """NXDOMAIN, or NOERROR without records (an SPF "void lookup")."""
        return self.rcode == "NXDOMAIN" or (self.rcode == "NOERROR" and not self.records)


class Resolver(Protocol):
    """What the SPF and DMARC evaluators need: :class:`DnsClient` or a test double."""

    async def query(self, name: str, rdtype: str) -> DnsAnswer: ...


@dataclass(slots=True)
class ClientStats:
    queries: int = 0
    """Calls to :meth:`DnsClient.query`."""
    cache_hits: int = 0
    shared: int = 0
    """Calls answered by an identical query already in flight."""
    sent: int = 0
    """UDP datagrams sent (retransmissions included)."""
    retransmits: int = 0
    tcp: int = 0
    timeouts: int = 0


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[tuple[dns.message.Message | None, int]]
    qname: dns.name.Name
    rdtype: dns.rdatatype.RdataType


class _UdpProtocol(asyncio.DatagramProtocol):
    """One connected UDP socket to one nameserver; answers are matched by query id."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Pending] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)

    def register(self, pending: _Pending) -> int:
        for _ in range(_ID_ATTEMPTS):
            qid = secrets.randbits(16)
            if qid not in self.pending:
                self.pending[qid] = pending
                return qid
        raise RuntimeError("no free DNS query id")

    def unregister(self, qid: int, pending: _Pending) -> None:
        if self.pending.get(qid) is pending:
            del self.pending[qid]

    def send(self, wire: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.sendto(wire)
        return True

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) < _HEADER_LEN or not data[2] & _QR:
            return
        pending = self.pending.get(int.from_bytes(data[:2], "big"))
        if pending is None or pending.future.done():
            return
        try:
            message = dns.message.from_wire(data)
        except dns.exception.DNSException:
            if data[2] & _TC:  # a truncated answer cut mid-record: TCP will tell
                pending.future.set_result((None, self.index))
            return  # garbage: keep waiting for the real answer
        question = message.question
        if (
            len(question) != 1
            or question[0].rdtype != pending.rdtype
            or question[0].name != pending.qname
        ):
            return  # not an answer to this query (late answer to a reused id, spoofing…)
        pending.future.set_result((message, self.index))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable…) cannot be tied to a query: the timeout handles it.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionError("DNS socket closed"))
        self.pending.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class DnsClient:
    """Asynchronous stub client for ``nameservers`` (``[(host, port)]``); see the module doc.

    Use from one event loop; :meth:`close` (or ``async with``) releases the sockets.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]],
        timeout: float = 5.0,
        *,
        cache: bool = True,
        max_cache_ttl: float = 300.0,
        max_cache_entries: int = 100_000,
        max_in_flight: int = 128,
        edns_payload: int = 1232,
        down_for: float = 10.0,
    ) -> None:
        if not nameservers:
            raise ValueError("DnsClient needs at least one nameserver")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.nameservers: list[tuple[str, int]] = [(h, int(p)) for h, p in nameservers]
        self.timeout = float(timeout)
        self.max_cache_ttl = max_cache_ttl
        self.max_cache_entries = max_cache_entries
        self.edns_payload = edns_payload
        self.down_for = down_for
        self.stats = ClientStats()
        self._cache: dict[tuple[str, str], tuple[float, DnsAnswer]] | None = {} if cache else None
        self._inflight: dict[tuple[str, str], asyncio.Task[DnsAnswer]] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._protocols: list[_UdpProtocol | None] = [None] * len(self.nameservers)
        self._down_until: list[float] = [0.0] * len(self.nameservers)
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask ``name`` (no trailing dot needed) for ``rdtype`` (``"TXT"``, ``"MX"``…)."""
        if self._closed:
            raise RuntimeError("DnsClient is closed")
        self.stats.queries += 1
        key = (name.rstrip(".").lower(), rdtype.upper())
        if self._cache is not None:
            entry = self._cache.get(key)
            if entry is not None:
                if entry[0] > time.monotonic():
                    self.stats.cache_hits += 1
                    return entry[1]
                del self._cache[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._resolve(*key))
            self._inflight[key] = task
            task.add_done_callback(self._forget(key))
        else:
            self.stats.shared += 1
        # shield: a caller that gives up does not cancel the query for the others.
        return await asyncio.shield(task)

    def cached(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The cached answer, if any and still fresh (no query is sent)."""
        if self._cache is None:
            return None
        entry = self._cache.get((name.rstrip(".").lower(), rdtype.upper()))
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def clear_cache(self) -> None:
        if self._cache is not None:
            self._cache.clear()

    async def close(self) -> None:
        """Close the sockets; queries in flight end with ``ERROR`` (a TCP exchange still
        running after a second is cancelled). Idempotent."""
        self._closed = True
        protocols, self._protocols = self._protocols, [None] * len(self.nameservers)
        for protocol in protocols:
            if protocol is not None:
                protocol.close()
        tasks = list(self._inflight.values())
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=1.0)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.gather(*stuck, return_exceptions=True)
        self._inflight.clear()
        if self._cache is not None:
            self._cache.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        servers = ",".join(f"{h}:{p}" for h, p in self.nameservers)
        return f"<DnsClient {servers} timeout={self.timeout:g}s>"

    # -- internals --------------------------------------------------------------------------

    def _forget(self, key: tuple[str, str]) -> Callable[[asyncio.Task[DnsAnswer]], None]:
        def done(task: asyncio.Task[DnsAnswer]) -> None:
            if self._inflight.get(key) is task:
                del self._inflight[key]

        return done

    async def _open(self) -> None:
        async with self._open_lock:
            if self._opened or self._closed:
                return
            loop = asyncio.get_running_loop()
            for index, (host, port) in enumerate(self.nameservers):
                try:
                    _, protocol = await loop.create_datagram_endpoint(
                        functools.partial(_UdpProtocol, index),
                        remote_addr=(host, port),
                    )
                except OSError:
                    self._protocols[index] = None
                    continue
                self._protocols[index] = protocol
            self._opened = True

    async def _resolve(self, name: str, rdtype_text: str) -> DnsAnswer:
        try:
            qname = dns.name.from_text(name)
            rdtype = dns.rdatatype.from_text(rdtype_text)
            query = dns.message.make_query(
                qname, rdtype, use_edns=0, payload=self.edns_payload, id=0
            )
            wire = query.to_wire()
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return DnsAnswer("BADNAME")
        if not self._opened:
            await self._open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        async with self._slots:
            try:
                response, index = await self._udp(qname, rdtype, wire, deadline)
            except ConnectionError:
                return DnsAnswer("ERROR")
            if index == -2:
                return DnsAnswer("ERROR")
            if index < 0:
                self.stats.timeouts += 1
                return DnsAnswer("TIMEOUT")
            if response is None or response.flags & dns.flags.TC:
                over_tcp = await self._tcp(query, index, deadline)
                if isinstance(over_tcp, str):
                    return DnsAnswer(over_tcp)
                response = over_tcp
        answer = _to_answer(response, qname, rdtype)
        self._remember((name, rdtype_text), answer)
        return answer

    def _server_order(self) -> list[int]:
        """Configured order, servers that recently stayed silent last."""
        now = time.monotonic()
        usable = [i for i, p in enumerate(self._protocols) if p is not None]
        return sorted(usable, key=lambda i: self._down_until[i] > now)

    async def _udp(
        self,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        wire: bytes,
        deadline: float,
    ) -> tuple[dns.message.Message | None, int]:
        """(response or None if truncated and unreadable, server index); index -1 when no
        answer came in time, -2 when no socket could be used."""
        order = self._server_order()
        if not order:
            return None, -2
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[dns.message.Message | None, int]] = loop.create_future()
        pending = _Pending(future, qname, rdtype)
        registered: list[tuple[_UdpProtocol, int]] = []

        def send(index: int) -> None:
            protocol = self._protocols[index]
            if protocol is None:  # closed meanwhile
                if not future.done():
                    future.set_exception(ConnectionError("DnsClient closed"))
                return
            qid = protocol.register(pending)
            registered.append((protocol, qid))
            if protocol.send(qid.to_bytes(2, "big") + wire[2:]):
                self.stats.sent += 1

        tried = [order[0], order[1 % len(order)]]
        try:
            send(tried[0])
            half = max(0.0, min(self.timeout / 2, deadline - loop.time()))
            done, _ = await asyncio.wait((future,), timeout=half)
            if not done:
                self.stats.retransmits += 1
                send(tried[1])
                done, _ = await asyncio.wait((future,), timeout=max(0.0, deadline - loop.time()))
            if not done:
                until = time.monotonic() + self.down_for
                for index in tried:
                    self._down_until[index] = until
                return None, -1
            response, index = future.result()
            self._down_until[index] = 0.0
            if index != tried[0]:
                self._down_until[tried[0]] = time.monotonic() + self.down_for
            return response, index
        finally:
            for protocol, qid in registered:
                protocol.unregister(qid, pending)
            if not future.done():
                future.cancel()

    async def _tcp(
        self, query: dns.message.Message, index: int, deadline: float
    ) -> dns.message.Message | str:
        """The answer over TCP, or the rcode to report (``TIMEOUT``, ``ERROR``)."""
        host, port = self.nameservers[index]
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            self.stats.timeouts += 1
            return "TIMEOUT"
        self.stats.tcp += 1
        query.id = secrets.randbits(16)
        try:
            return await dns.asyncquery.tcp(query, host, timeout=remaining, port=port)
        except dns.exception.Timeout:
            self.stats.timeouts += 1
            return "TIMEOUT"
        except (dns.exception.DNSException, OSError, EOFError):
            return "ERROR"

    def _remember(self, key: tuple[str, str], answer: DnsAnswer) -> None:
        if self._cache is None or not answer.answered:
            return
        ttl = DEFAULT_NEGATIVE_TTL if answer.ttl is None else answer.ttl
        ttl = min(ttl, self.max_cache_ttl)
        if ttl <= 0:
            return
        if len(self._cache) >= self.max_cache_entries:
            self._evict()
        self._cache[key] = (time.monotonic() + ttl, answer)

    def _evict(self) -> None:
        assert self._cache is not None
        now = time.monotonic()
        expired = [key for key, (expires, _) in self._cache.items() if expires <= now]
        for key in expired:
            del self._cache[key]
        # Still full: drop the oldest tenth (dicts keep insertion order).
        excess = len(self._cache) - self.max_cache_entries + 1
        if excess > 0:
            for key in list(self._cache)[: max(excess, self.max_cache_entries // 10)]:
                del self._cache[key]


def _text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, dns.rdtypes.txtbase.TXTBase):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if isinstance(rdata, dns.rdtypes.ANY.MX.MX):
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}"
    if isinstance(rdata, dns.rdtypes.nsbase.NSBase):  # CNAME, PTR, NS, DNAME
        return rdata.target.to_text(omit_final_dot=True)
    return rdata.to_text()


def _negative_ttl(response: dns.message.Message) -> float | None:
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset) > 0:
            minimum: int = rrset[0].minimum
            return float(min(rrset.ttl, minimum))
    return None


def _to_answer(
    response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> DnsAnswer:
    rcode = dns.rcode.to_text(response.rcode())
    if rcode != "NOERROR":
        return DnsAnswer(rcode, [], _negative_ttl(response) if rcode == "NXDOMAIN" else None)
    name = qname
    ttls: list[int] = []
    for _ in range(_CNAME_CHAIN_MAX):
        rrset = _find(response, name, rdtype)
        if rrset is not None:
            ttls.append(rrset.ttl)
            return DnsAnswer("NOERROR", [_text(rdata) for rdata in rrset], float(min(ttls)))
        if rdtype == dns.rdatatype.CNAME:
            break
        cname = _find(response, name, dns.rdatatype.CNAME)
        if cname is None or len(cname) == 0:
            break
        ttls.append(cname.ttl)
        name = cname[0].target
    return DnsAnswer("NOERROR", [], _negative_ttl(response))


def _find(
    response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    for rrset in response.answer:
        if rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN and rrset.name == name:
            return rrset
    return None
