"""A small asynchronous DNS stub client built for throughput.

One :class:`DnsClient` per process sends every query over ONE connected UDP socket per
nameserver and multiplexes the queries on it by their 16-bit id (random, unique among the
queries in flight on that socket). Queries are built from a byte template and answers read
by a small codec (:mod:`.wire`); dnspython parses only what that codec leaves to it
(unusual messages) and speaks TCP. The transport:

* a query goes to the first nameserver, in the configured order, that has not stayed silent
  lately; with no answer after ``timeout / 2`` it is sent once more (new id), to the next
  nameserver when there are several (failover: the silent one is then avoided for
  ``down_for`` seconds); after ``timeout`` in all, the answer is ``TIMEOUT``;
* at most ``max_in_flight`` queries are on the wire at once (more wait for a slot, within
  their ``timeout``), which keeps the sockets' receive buffers, ours and the server's, from
  overflowing;
* an answer with the TC bit is asked again over TCP (``dns.asyncquery.tcp``) within the same
  overall ``timeout``;
* identical queries in flight at the same time are sent once and share the answer;
* answers (``NOERROR`` and ``NXDOMAIN``) are kept in a per-client cache for their TTL, at
  most ``max_cache_ttl`` seconds (300 by default).

Each query in flight costs one future per caller, one timer (retransmission, then timeout)
and its entry in the id table; it is completed from ``datagram_received``. No task runs for
it unless it goes to TCP. The datagrams of one turn of the event loop are sent together at
its end. :meth:`DnsClient.submit` starts a query without a coroutine: it returns the cached
answer at once, or a future.

:meth:`DnsClient.query` never raises for DNS or network trouble: the answer's ``rcode`` says
what happened (``NOERROR``, ``NXDOMAIN``, ``SERVFAIL``, ``REFUSED``…, ``TIMEOUT``, ``ERROR``
for a network error, ``BADNAME`` for a name that cannot be asked).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias, cast

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

import services.providers.emailsec.wire as wire

from .answer import DnsAnswer
from .wire import CNAME_CHAIN_MAX, HEADER_LEN, TC

__all__ = [
    "ClientStats",
    "DnsAnswer",
    "DnsClient",
    "Pending",
    "Resolver",
    "answer",
    "answers",
    "cancel",
    "start_query",
]

DEFAULT_NEGATIVE_TTL = 60.0
"""Cache time of a negative answer that carries no SOA (so no negative-caching TTL)."""

_QR = 0x80  # in the third header byte
_ID_ATTEMPTS = 64
_RCVBUF = 1 << 20
_FIRST_ONLY = (0, 0)

Pending: TypeAlias = "DnsAnswer | asyncio.Future[DnsAnswer]"
"""A query started by :func:`start_query`: its answer, or a future of it."""


class Resolver(Protocol):
    """What the SPF and DMARC evaluators need: :class:`DnsClient` or a test double."""

    async def query(self, name: str, rdtype: str) -> DnsAnswer: ...


def start_query(resolver: Resolver, name: str, rdtype: str) -> Pending:
    """Start a query without waiting for it: :meth:`DnsClient.submit` for a ``DnsClient``
    (no task), a task running ``resolver.query()`` for anything else."""
    if isinstance(resolver, DnsClient):
        return resolver.submit(name, rdtype)
    return asyncio.ensure_future(resolver.query(name, rdtype))


async def answer(pending: Pending) -> DnsAnswer:
    """The answer of a query started by :func:`start_query`, waited for if need be."""
    return pending if isinstance(pending, DnsAnswer) else await pending


async def answers(pendings: Sequence[Pending]) -> list[DnsAnswer]:
    """The answers of queries started by :func:`start_query`, in their order; if the wait
    ends otherwise (the caller is cancelled…), every one of them is cancelled.

    Futures are awaited last-started first: answers come in about the order asked, so that
    one wait usually covers them all."""
    try:
        for pending in reversed(pendings):
            if not isinstance(pending, DnsAnswer) and not pending.done():
                await pending
        return [p if isinstance(p, DnsAnswer) else p.result() for p in pendings]
    except BaseException:
        cancel(pendings)
        raise


def cancel(pendings: Iterable[DnsAnswer | asyncio.Future[Any]]) -> None:
    """Cancel the futures among ``pendings`` (a done one ignores it)."""
    for pending in pendings:
        if isinstance(pending, asyncio.Future):
            pending.cancel()


@dataclass(slots=True)
class ClientStats:
    queries: int = 0
    """Calls to :meth:`DnsClient.query` / :meth:`DnsClient.submit`."""
    cache_hits: int = 0
    shared: int = 0
    """Calls answered by an identical query already in flight."""
    sent: int = 0
    """UDP datagrams sent (retransmissions included)."""
    retransmits: int = 0
    tcp: int = 0
    timeouts: int = 0


class _Query:
    """One query in flight (or waiting for a slot), shared by identical calls."""

    __slots__ = (
        "deadline",
        "done",
        "key",
        "more_waiters",
        "protocol",
        "protocol2",
        "qid",
        "qid2",
        "qname",
        "question",
        "rdtype",
        "retransmitted",
        "slot",
        "tcp",
        "template",
        "timer",
        "tried",
        "waiter",
    )

    def __init__(self, key: tuple[str, str], question: bytes | None, template: bytes) -> None:
        self.key = key
        self.question = question
        """Lower-case name wire + type, for :func:`wire.decode`; None: dnspython reads."""
        self.template = template
        """The query's wire form without its id."""
        self.qname: dns.name.Name | None = None
        self.rdtype: dns.rdatatype.RdataType | None = None
        self.waiter: asyncio.Future[DnsAnswer] | None = None
        self.more_waiters: list[asyncio.Future[DnsAnswer]] | None = None
        """Identical queries asked while this one is in flight."""
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        # The socket and id of the first datagram, and of the retransmission.
        self.protocol: _UdpProtocol | None = None
        self.qid = 0
        self.protocol2: _UdpProtocol | None = None
        self.qid2 = 0
        self.tried = (0, 0)
        self.retransmitted = False
        self.slot = False
        self.tcp = False
        self.done = False

    def names(self) -> tuple[dns.name.Name, dns.rdatatype.RdataType]:
        """The name and type as dnspython objects (for dnspython's parser and TCP)."""
        if self.qname is None or self.rdtype is None:
            self.qname = dns.name.from_text(self.key[0])
            self.rdtype = dns.rdatatype.from_text(self.key[1])
        return self.qname, self.rdtype


class _UdpProtocol(asyncio.DatagramProtocol):
    """One connected UDP socket to one nameserver; answers are matched by query id."""

    def __init__(self, client: DnsClient, index: int) -> None:
        self.client = client
        self.index = index
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Query] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)

    def register(self, query: _Query) -> int:
        for _ in range(_ID_ATTEMPTS):
            qid = secrets.randbits(16)
            if qid not in self.pending:
                self.pending[qid] = query
                return qid
        raise RuntimeError("no free DNS query id")

    def unregister(self, qid: int, query: _Query) -> None:
        if self.pending.get(qid) is query:
            del self.pending[qid]

    def send(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.sendto(data)
        return True

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) < HEADER_LEN or not data[2] & _QR:
            return
        query = self.pending.get((data[0] << 8) | data[1])
        if query is None or query.done:
            return
        self.client._received(query, self.index, data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable…) cannot be tied to a query: the timeout handles it.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        queries = list(self.pending.values())
        self.pending.clear()
        for query in queries:
            self.client._finish(query, DnsAnswer("ERROR"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class DnsClient:
    """Asynchronous stub client for ``nameservers`` (``[(host, port)]``); see the module doc.

    Use from one event loop (the one running its first query); :meth:`close` (or
    ``async with``) releases the sockets.
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
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.nameservers: list[tuple[str, int]] = [(h, int(p)) for h, p in nameservers]
        self.timeout = float(timeout)
        self._half = self.timeout / 2
        self.max_cache_ttl = max_cache_ttl
        self.max_cache_entries = max_cache_entries
        self.max_in_flight = max_in_flight
        self.edns_payload = edns_payload
        self.down_for = down_for
        self.stats = ClientStats()
        # Answers and their expiry (monotonic time) in two dicts: no tuple per entry, which
        # is one object fewer per cached answer for the garbage collector to walk.
        self._cache: dict[tuple[str, str], DnsAnswer] | None = {} if cache else None
        self._expires: dict[tuple[str, str], float] = {}
        self._inflight: dict[tuple[str, str], _Query] = {}
        self._active = 0  # queries holding a slot
        self._waiting: collections.deque[_Query] = collections.deque()
        self._waiting_timer: asyncio.TimerHandle | None = None
        self._pumping = False
        self._protocols: list[_UdpProtocol | None] = [None] * len(self.nameservers)
        self._down_until: list[float] = [0.0] * len(self.nameservers)
        self._opened = False
        self._opening: asyncio.Task[None] | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: list[tuple[_Query, _UdpProtocol, bytes]] = []
        self._flush_scheduled = False
        # The client's own callbacks (timers, the flush) use no context variables: one
        # empty context and bound method for all, instead of a copy of each per datagram.
        self._context = contextvars.Context()
        self._expire_cb = self._expire
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask ``name`` (no trailing dot needed) for ``rdtype`` (``"TXT"``, ``"MX"``…).

        A caller that gives up (is cancelled) does not cancel the query for the others."""
        return await answer(self.submit(name, rdtype))

    def submit(self, name: str, rdtype: str) -> Pending:
        """Start the query of :meth:`query` and return at once: the answer when it is cached
        (or the name cannot be asked), else a future of it, this caller's own (cancelling
        it cancels nothing else). Needs a running event loop."""
        if self._closed:
            raise RuntimeError("DnsClient is closed")
        stats = self.stats
        stats.queries += 1
        key = (name.rstrip(".").lower(), rdtype.upper())
        cache = self._cache
        if cache is not None:
            cached = cache.get(key)
            if cached is not None:
                if self._expires[key] > time.monotonic():
                    stats.cache_hits += 1
                    return cached
                del cache[key], self._expires[key]
        loop = self._running_loop()
        query = self._inflight.get(key)
        if query is not None:
            stats.shared += 1
            waiter: asyncio.Future[DnsAnswer] = loop.create_future()
            if query.more_waiters is None:
                query.more_waiters = [waiter]
            else:
                query.more_waiters.append(waiter)
            return waiter
        query = self._new_query(key)
        if query is None:
            return DnsAnswer("BADNAME")
        waiter = query.waiter = loop.create_future()
        self._inflight[key] = query
        query.deadline = loop.time() + self.timeout
        if self._opened and self._active < self.max_in_flight:
            self._active += 1
            query.slot = True
            self._send_first(query, loop)
        else:
            self._wait_for_slot(query, loop)
        return waiter

    def cached(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The cached answer, if any and still fresh (no query is sent)."""
        if self._cache is None:
            return None
        key = (name.rstrip(".").lower(), rdtype.upper())
        answer = self._cache.get(key)
        return answer if answer is not None and self._expires[key] > time.monotonic() else None

    def clear_cache(self) -> None:
        if self._cache is not None:
            self._cache.clear()
            self._expires.clear()

    async def close(self) -> None:
        """Close the sockets; queries in flight end with ``ERROR`` (a TCP exchange still
        running after a second is cancelled). Idempotent."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        protocols, self._protocols = self._protocols, [None] * len(self.nameservers)
        for protocol in protocols:
            if protocol is not None:
                protocol.close()
        error = DnsAnswer("ERROR")
        for query in list(self._inflight.values()):  # the waiting ones included
            if not query.tcp:
                self._finish(query, error)
        self._waiting.clear()
        if self._waiting_timer is not None:
            self._waiting_timer.cancel()
            self._waiting_timer = None
        tasks = list(self._tcp_tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=1.0)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.gather(*stuck, return_exceptions=True)
        self._inflight.clear()
        self.clear_cache()

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

    # -- internals: a query's life ------------------------------------------------------------

    def _new_query(self, key: tuple[str, str]) -> _Query | None:
        """The query for ``key``, built from the template when the name is plain, else by
        dnspython; None when the name or type cannot be asked."""
        name, rdtype_text = key
        qtype = wire.FAST_TYPES.get(rdtype_text)
        if qtype is not None:
            qname_wire = wire.encode_name(name)
            if qname_wire is not None:
                return _Query(
                    key,
                    qname_wire + qtype.to_bytes(2, "big"),
                    wire.query_template(qname_wire, qtype, self.edns_payload),
                )
        try:
            qname = dns.name.from_text(name)
            rdtype = dns.rdatatype.from_text(rdtype_text)
            data = dns.message.make_query(
                qname, rdtype, use_edns=0, payload=self.edns_payload, id=0
            ).to_wire()
            qname_wire = qname.to_wire()
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return None
        question = None
        if qtype is not None and qname_wire is not None:
            question = qname_wire.lower() + qtype.to_bytes(2, "big")
        query = _Query(key, question, data[2:])
        query.qname, query.rdtype = qname, rdtype
        return query

    def _wait_for_slot(self, query: _Query, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``query`` until a slot is free (or the sockets are open), within its
        deadline. Deadlines are the queue's order (same timeout for all), so one timer, for
        the oldest waiting query, bounds the wait of all of them."""
        self._waiting.append(query)
        if self._waiting_timer is None:
            self._waiting_timer = loop.call_at(query.deadline, self._expire_waiting)
        if not self._opened and self._opening is None:
            self._opening = loop.create_task(self._open())

    def _expire_waiting(self) -> None:
        """Time out the queries that waited for a slot until their deadline."""
        self._waiting_timer = None
        loop = self._running_loop()
        now = loop.time()
        waiting = self._waiting
        while waiting and (waiting[0].done or waiting[0].deadline <= now):
            query = waiting.popleft()
            if not query.done:
                self.stats.timeouts += 1
                self._finish(query, DnsAnswer("TIMEOUT"))
        if waiting and self._waiting_timer is None:
            self._waiting_timer = loop.call_at(waiting[0].deadline, self._expire_waiting)

    def _pump(self) -> None:
        """Give free slots to waiting queries, in order."""
        if self._pumping or not self._opened or self._closed:
            return
        self._pumping = True
        try:
            waiting = self._waiting
            loop = self._running_loop()
            while waiting and self._active < self.max_in_flight:
                query = waiting.popleft()
                if query.done:
                    continue
                self._active += 1
                query.slot = True
                self._send_first(query, loop)
        finally:
            self._pumping = False

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        for index, (host, port) in enumerate(self.nameservers):
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    functools.partial(_UdpProtocol, self, index),
                    remote_addr=(host, port),
                )
            except (OSError, ValueError):
                continue
            if self._closed:
                protocol.close()
                return
            self._protocols[index] = protocol
        self._opened = True
        self._opening = None
        self._pump()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The client's loop: the one running its first query, like asyncio's primitives
        (``asyncio.get_running_loop()`` costs a ``getpid()`` system call on Python 3.11, too
        much for every datagram)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _server_order(self) -> list[int]:
        """Configured order, servers that recently stayed silent last."""
        now = time.monotonic()
        usable = [i for i, p in enumerate(self._protocols) if p is not None]
        return sorted(usable, key=lambda i: self._down_until[i] > now)

    def _send_first(self, query: _Query, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._protocols) == 1 and self._protocols[0] is not None:
            query.tried = _FIRST_ONLY
        else:
            order = self._server_order()
            if not order:
                self._finish(query, DnsAnswer("ERROR"))
                return
            query.tried = (order[0], order[1 % len(order)])
        self._send(query, query.tried[0])
        if not query.done:
            delay = query.deadline - loop.time()
            if delay > self._half:
                delay = self._half
            query.timer = loop.call_later(
                delay if delay > 0.0 else 0.0, self._expire_cb, query, context=self._context
            )

    def _send(self, query: _Query, index: int) -> None:
        protocol = self._protocols[index]
        if protocol is None:  # closed meanwhile
            self._finish(query, DnsAnswer("ERROR"))
            return
        try:
            qid = protocol.register(query)
        except RuntimeError:
            self._finish(query, DnsAnswer("ERROR"))
            return
        if query.protocol is None:
            query.protocol, query.qid = protocol, qid
        else:  # the one retransmission
            query.protocol2, query.qid2 = protocol, qid
        # Sent in a burst with the other datagrams of this turn of the loop: a server that
        # went idle is then woken once per burst rather than once per datagram, which costs
        # both sides far less on a fast link (loopback: about half of a send's cost).
        self._outbox.append((query, protocol, qid.to_bytes(2, "big") + query.template))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._running_loop().call_soon(self._flush, context=self._context)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        sent = 0
        for query, protocol, data in outbox:
            if not query.done and protocol.send(data):
                sent += 1
        self.stats.sent += sent

    def _expire(self, query: _Query) -> None:
        """The query's timer: retransmit once, then give up."""
        query.timer = None
        if query.done:
            return
        if not query.retransmitted:
            query.retransmitted = True
            self.stats.retransmits += 1
            self._send(query, query.tried[1])
            if not query.done:
                loop = self._running_loop()
                delay = max(0.0, query.deadline - loop.time())
                query.timer = loop.call_later(delay, self._expire_cb, query, context=self._context)
            return
        until = time.monotonic() + self.down_for
        for index in query.tried:
            self._down_until[index] = until
        self.stats.timeouts += 1
        self._finish(query, DnsAnswer("TIMEOUT"))

    def _received(self, query: _Query, index: int, data: bytes) -> None:
        """A datagram with the id of ``query`` came from server ``index``."""
        result = wire.SLOW if query.question is None else wire.decode(data, query.question)
        if not isinstance(result, DnsAnswer):
            if result == wire.SLOW:
                result = self._decode_slow(query, data)
            if result == wire.IGNORE:
                return
        self._down_until[index] = 0.0
        if index != query.tried[0]:
            self._down_until[query.tried[0]] = time.monotonic() + self.down_for
        if isinstance(result, DnsAnswer):
            self._remember(query.key, result)
            self._finish(query, result)
        else:
            self._start_tcp(query, index)

    def _decode_slow(self, query: _Query, data: bytes) -> DnsAnswer | int:
        """What the client always made of a datagram, with dnspython."""
        try:
            message = dns.message.from_wire(data)
        except dns.exception.DNSException:
            # A truncated answer cut mid-record: TCP will tell; otherwise garbage: keep
            # waiting for the real answer.
            return wire.TRUNCATED if data[2] & TC else wire.IGNORE
        except Exception:  # a hostile datagram must not reach the loop's handler
            return wire.IGNORE
        qname, rdtype = query.names()
        question = message.question
        if len(question) != 1 or question[0].rdtype != rdtype or question[0].name != qname:
            return wire.IGNORE  # not an answer to this query (late answer to a reused id…)
        if message.flags & dns.flags.TC:
            return wire.TRUNCATED
        return _to_answer(message, qname, rdtype)

    def _release_udp(self, query: _Query) -> None:
        if query.timer is not None:
            query.timer.cancel()
            query.timer = None
        if query.protocol is not None:
            query.protocol.unregister(query.qid, query)
            query.protocol = None
        if query.protocol2 is not None:
            query.protocol2.unregister(query.qid2, query)
            query.protocol2 = None

    def _finish(self, query: _Query, answer: DnsAnswer) -> None:
        """Complete ``query`` with ``answer`` (once): free its ids, timer and slot."""
        if query.done:
            return
        query.done = True
        self._release_udp(query)
        if self._inflight.get(query.key) is query:
            del self._inflight[query.key]
        if query.slot:
            query.slot = False
            self._active -= 1
            if self._waiting:
                self._pump()
        waiter = query.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)
        if query.more_waiters is not None:
            for waiter in query.more_waiters:
                if not waiter.done():
                    waiter.set_result(answer)

    # -- internals: TCP -------------------------------------------------------------------------

    def _start_tcp(self, query: _Query, index: int) -> None:
        self._release_udp(query)
        query.tcp = True
        task = self._running_loop().create_task(self._over_tcp(query, index))
        self._tcp_tasks.add(task)
        task.add_done_callback(self._tcp_tasks.discard)

    async def _over_tcp(self, query: _Query, index: int) -> None:
        try:
            response = await self._tcp(query, index)
        except asyncio.CancelledError:
            self._finish(query, DnsAnswer("ERROR"))
            raise
        if isinstance(response, str):
            self._finish(query, DnsAnswer(response))
            return
        qname, rdtype = query.names()
        answer = _to_answer(response, qname, rdtype)
        self._remember(query.key, answer)
        self._finish(query, answer)

    async def _tcp(self, query: _Query, index: int) -> dns.message.Message | str:
        """The answer over TCP, or the rcode to report (``TIMEOUT``, ``ERROR``)."""
        host, port = self.nameservers[index]
        remaining = query.deadline - self._running_loop().time()
        if remaining <= 0:
            self.stats.timeouts += 1
            return "TIMEOUT"
        self.stats.tcp += 1
        qname, rdtype = query.names()
        message = dns.message.make_query(qname, rdtype, use_edns=0, payload=self.edns_payload, id=0)
        message.id = secrets.randbits(16)
        try:
            return await dns.asyncquery.tcp(message, host, timeout=remaining, port=port)
        except dns.exception.Timeout:
            self.stats.timeouts += 1
            return "TIMEOUT"
        except (dns.exception.DNSException, OSError, EOFError):
            return "ERROR"

    # -- internals: cache -------------------------------------------------------------------------

    def _remember(self, key: tuple[str, str], answer: DnsAnswer) -> None:
        if self._cache is None or not answer.answered:
            return
        ttl = DEFAULT_NEGATIVE_TTL if answer.ttl is None else answer.ttl
        ttl = min(ttl, self.max_cache_ttl)
        if ttl <= 0:
            return
        if len(self._cache) >= self.max_cache_entries:
            self._evict()
        self._cache[key] = answer
        self._expires[key] = time.monotonic() + ttl

    def _evict(self) -> None:
        assert self._cache is not None
        now = time.monotonic()
        expired = [key for key, expires in self._expires.items() if expires <= now]
        for key in expired:
            del self._cache[key], self._expires[key]
        # Still full: drop the oldest tenth (dicts keep insertion order).
        excess = len(self._cache) - self.max_cache_entries + 1
        if excess > 0:
            for key in list(self._cache)[: max(excess, self.max_cache_entries // 10)]:
                del self._cache[key], self._expires[key]


# -- dnspython messages (TCP answers and the unusual UDP ones) -----------------------------------


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
    for _ in range(CNAME_CHAIN_MAX):
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
