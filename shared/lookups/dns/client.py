"""lookout's DNS client: an asynchronous stub client built for throughput, the one every
provider that asks DNS uses (one :class:`DnsClient` per provider process).

It sends every query over ONE connected UDP socket per nameserver and multiplexes the
queries on it by their 16-bit id (random, unique among the queries in flight on that
socket). Queries are built from a byte template and answers read by a small codec
(:mod:`shared.lookups.dns.wire`); dnspython (:mod:`shared.lookups.dns.fallback`) builds the
queries and reads the answers the codec leaves to it (other types, such as SOA, and unusual
messages) and speaks TCP.

**Failover.** The nameservers are tried in their configured order, those that failed lately
last. A query goes to the first; with no answer after its share of the timeout (the
timeout divided by the number of servers it may try: at most :data:`MAX_TRIES`; a single
server gets it twice, at 0 and at half the timeout) it goes to the next as well, and the
first answer from any of them counts. An error answer (SERVFAIL, REFUSED, NOTIMP…) passes
the query to the next server at once; it is the answer only when no server gives a better
one. A server that stayed silent while another answered, that let a query time out, that
answered REFUSED or whose port is unreachable (an ICMP error on its socket, which also
passes its queries on at once) "failed": it is tried last for ``down_for`` seconds (10).
A SERVFAIL does not: it is usually about the name, not the server.

**Timeout.** ``timeout`` (``LOOKOUT_DNS_TIMEOUT``) is the whole budget of one query: every
server, the retransmission, the wait for a free slot (at most ``max_in_flight`` queries,
128, are on the wire at once) and a TCP retry after a truncated answer (same server) fit in
it; after it the answer is ``TIMEOUT``.

**Cache.** Definite answers (records, NODATA, NXDOMAIN) are kept in the client, so for the
life of the process, for their TTL (the smallest along the answer; the SOA's
negative-caching TTL for a negative one, 60 s without an SOA), at most ``max_cache_ttl``
seconds (300); failures (SERVFAIL, REFUSED, ``TIMEOUT``, errors) never. A cached answer
keeps the TTL it came with. ``fresh=True`` (or :meth:`DnsClient.fresh`) skips the cache for
reading, and stores what comes back. Identical queries in flight at the same time are sent
once and share the answer, fresh or not.

Each query in flight costs one future per caller, one timer (next server, then timeout) and
its entry in the id table; it is completed from ``datagram_received``. No task runs for it
unless it goes to TCP. The datagrams of one turn of the event loop are sent together at its
end. :meth:`DnsClient.submit` starts a query without a coroutine: it returns the cached
answer at once, or a future.

:meth:`DnsClient.query` never raises for DNS or network trouble: the answer's ``rcode``
says what happened (``NOERROR``, ``NXDOMAIN``, ``SERVFAIL``, ``REFUSED``…, ``TIMEOUT``,
``ERROR`` for a network error, ``BADNAME`` for a name that cannot be asked); see
:class:`~shared.lookups.dns.answer.DnsAnswer`.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import contextvars
import functools
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self, cast

import dns.exception
import dns.message
import dns.name
import dns.rdatatype

import shared.lookups.dns.fallback as fallback
import shared.lookups.dns.wire as wire
from shared.lookups.dns.answer import DnsAnswer
from shared.lookups.dns.pending import Pending, Submitter
from shared.lookups.dns.wire import HEADER_LEN

__all__ = ["MAX_TRIES", "ClientStats", "DnsClient"]

MAX_TRIES: Final = 3
"""Nameservers one query is sent to, at most (the others are its failover later)."""
DEFAULT_NEGATIVE_TTL: Final = 60.0
"""Cache time of a negative answer that carries no SOA (so no negative-caching TTL)."""

_QR = 0x80  # in the third header byte
_ID_ATTEMPTS = 64
_RCVBUF = 1 << 20
_FIRST_ONLY: Final = (0, 0)
"""The plan of a query with a single nameserver: sent, then sent again."""
_ids: list[int] = []


def _random_id() -> int:
    """A query id from the operating system's CSPRNG (as ``secrets.randbits(16)``), drawn
    2 KiB at a time: one ``getrandom`` call per 1,024 ids instead of one per query."""
    if not _ids:
        _ids.extend(array.array("H", os.urandom(2048)))
    return _ids.pop()


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
    """Datagrams sent again for a query: after its share of the timeout, or to the next
    server after an error answer or an unreachable port."""
    tcp: int = 0
    timeouts: int = 0


class _Query:
    """One query in flight (or waiting for a slot), shared by identical calls."""

    __slots__ = (
        "deadline",
        "done",
        "failed",
        "failure",
        "final",
        "key",
        "more_waiters",
        "others",
        "plan",
        "protocol",
        "qid",
        "qname",
        "question",
        "rdtype",
        "sent",
        "slot",
        "tcp",
        "template",
        "timer",
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
        self.final = False
        """The timer is the deadline (not the time to send to the next server)."""
        # The socket and id of the first datagram, and of the later ones.
        self.protocol: _UdpProtocol | None = None
        self.qid = 0
        self.others: list[tuple[_UdpProtocol, int]] | None = None
        self.plan: tuple[int, ...] = _FIRST_ONLY
        """The servers to send it to, in order (indexes of ``DnsClient.nameservers``)."""
        self.sent = 0
        """Entries of ``plan`` used (sent to, or skipped)."""
        self.failed = 0
        """Bit ``i``: server ``i`` answered it with an error rcode."""
        self.failure: DnsAnswer | None = None
        """The last error answer, the answer if no server gives a better one."""
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
            qid = _random_id()
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
        # The socket is connected to one server: an ICMP error (port unreachable…) is about
        # that server, though not about one query in particular.
        self.client._unreachable(self.index)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        queries = list(self.pending.values())
        self.pending.clear()
        for query in queries:
            self.client._finish(query, DnsAnswer("ERROR"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class DnsClient(Submitter):
    """Asynchronous stub client for ``nameservers`` (``[(host, port)]``, in their order of
    preference); see the module doc for its failover, timeout and cache.

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

    async def query(self, name: str, rdtype: str, *, fresh: bool = False) -> DnsAnswer:
        """Ask ``name`` (no trailing dot needed) for ``rdtype`` (``"TXT"``, ``"MX"``…);
        ``fresh``: not from the cache.

        A caller that gives up (is cancelled) does not cancel the query for the others."""
        pending = self.submit(name, rdtype, fresh)
        return pending if isinstance(pending, DnsAnswer) else await pending

    def submit(self, name: str, rdtype: str, fresh: bool = False) -> Pending:
        """Start the query of :meth:`query` and return at once: the answer when it is cached
        (or the name cannot be asked), else a future of it, this caller's own (cancelling
        it cancels nothing else). Needs a running event loop."""
        if self._closed:
            raise RuntimeError("DnsClient is closed")
        stats = self.stats
        stats.queries += 1
        key = (name.rstrip(".").lower(), rdtype.upper())
        cache = self._cache
        if cache is not None and not fresh:
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

    def fresh(self) -> Submitter:
        """This client, answering every query from the servers (see ``fresh``)."""
        return _Fresh(self)

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

    def failing(self) -> list[tuple[str, int]]:
        """The nameservers tried last for now (they failed lately)."""
        now = time.monotonic()
        return [
            s for s, until in zip(self.nameservers, self._down_until, strict=True) if until > now
        ]

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
            data = fallback.make_query(qname, rdtype, self.edns_payload)
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
        """Configured order, servers that failed lately last."""
        now = time.monotonic()
        usable = [i for i, p in enumerate(self._protocols) if p is not None]
        return sorted(usable, key=lambda i: self._down_until[i] > now)

    def _send_first(self, query: _Query, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._protocols) != 1 or self._protocols[0] is None:
            order = self._server_order()
            if not order:
                self._finish(query, DnsAnswer("ERROR"))
                return
            query.plan = tuple(order[:MAX_TRIES]) if len(order) > 1 else (order[0], order[0])
        self._send_next(query, loop)

    def _send_next(self, query: _Query, loop: asyncio.AbstractEventLoop) -> bool:
        """Send ``query`` to the next server of its plan that has not answered it with an
        error, and arm its timer; False when there is none left."""
        plan = query.plan
        while query.sent < len(plan):
            index = plan[query.sent]
            query.sent += 1
            if not (query.failed >> index) & 1:
                if query.sent > 1:
                    self.stats.retransmits += 1
                self._send(query, index)
                if not query.done:
                    self._arm(query, loop)
                return True
        return False

    def _arm(self, query: _Query, loop: asyncio.AbstractEventLoop) -> None:
        """The query's timer: after its share of the timeout the next server, after the
        last one its deadline."""
        if query.timer is not None:
            query.timer.cancel()
        delay = query.deadline - loop.time()
        final = True
        if query.sent < len(query.plan):
            share = self.timeout / len(query.plan)
            if delay > share:
                delay, final = share, False
        query.final = final
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
        elif query.others is None:
            query.others = [(protocol, qid)]
        else:
            query.others.append((protocol, qid))
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
        """The query's timer: send to the next server, or give up."""
        query.timer = None
        if query.done:
            return
        loop = self._running_loop()
        if not query.final:
            if not self._send_next(query, loop):
                self._arm(query, loop)  # only servers that said no are left: wait
            return
        until = time.monotonic() + self.down_for
        for index in query.plan[: query.sent]:
            if not (query.failed >> index) & 1:
                self._down_until[index] = until
        if query.failure is not None:
            self._finish(query, query.failure)
            return
        self.stats.timeouts += 1
        self._finish(query, DnsAnswer("TIMEOUT"))

    def _received(self, query: _Query, index: int, data: bytes) -> None:
        """A datagram with the id of ``query`` came from server ``index``."""
        result = wire.SLOW if query.question is None else wire.decode(data, query.question)
        if not isinstance(result, DnsAnswer):
            if result == wire.SLOW:
                qname, rdtype = query.names()
                result = fallback.read(data, qname, rdtype)
            if result == wire.IGNORE:
                return
        if not isinstance(result, DnsAnswer):  # truncated: the same server, over TCP
            self._down_until[index] = 0.0
            self._start_tcp(query, index)
            return
        rcode = result.rcode
        if rcode != "NOERROR" and rcode != "NXDOMAIN":
            self._error_answer(query, index, result)
            return
        self._down_until[index] = 0.0
        if index != query.plan[0]:
            self._passed_over(query, index)
        self._remember(query.key, result)
        self._finish(query, result)

    def _passed_over(self, query: _Query, index: int) -> None:
        """Server ``index`` answered ``query``: those it was sent to before, silent, failed."""
        until = time.monotonic() + self.down_for
        for before in query.plan[: query.sent]:
            if before == index:
                break
            if not (query.failed >> before) & 1:
                self._down_until[before] = until

    def _error_answer(self, query: _Query, index: int, answer: DnsAnswer) -> None:
        """Server ``index`` answered ``query`` with an error rcode: the next server now; the
        answer when every server it went to said no."""
        query.failed |= 1 << index
        query.failure = answer
        refused = answer.rcode == "REFUSED"
        self._down_until[index] = time.monotonic() + self.down_for if refused else 0.0
        if self._send_next(query, self._running_loop()):
            return
        failed = query.failed
        if all((failed >> i) & 1 for i in query.plan[: query.sent]):
            self._finish(query, answer)

    def _unreachable(self, index: int) -> None:
        """An ICMP error came back from server ``index``: it failed, and the queries last
        sent to it go to their next server now (not again to it)."""
        if self._closed:
            return
        self._down_until[index] = time.monotonic() + self.down_for
        protocol = self._protocols[index]
        if protocol is None:
            return
        loop = self._running_loop()
        for query in list(protocol.pending.values()):
            plan, sent = query.plan, query.sent
            if (
                not query.done
                and 0 < sent < len(plan)
                and plan[sent - 1] == index
                and plan[sent] != index
            ):
                self._send_next(query, loop)

    def _release_udp(self, query: _Query) -> None:
        if query.timer is not None:
            query.timer.cancel()
            query.timer = None
        if query.protocol is not None:
            query.protocol.unregister(query.qid, query)
            query.protocol = None
        if query.others is not None:
            for protocol, qid in query.others:
                protocol.unregister(qid, query)
            query.others = None

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
            answer = await self._tcp(query, index)
        except asyncio.CancelledError:
            self._finish(query, DnsAnswer("ERROR"))
            raise
        self._remember(query.key, answer)
        self._finish(query, answer)

    async def _tcp(self, query: _Query, index: int) -> DnsAnswer:
        """The answer over TCP from server ``index``, within the query's deadline."""
        remaining = query.deadline - self._running_loop().time()
        if remaining <= 0:
            self.stats.timeouts += 1
            return DnsAnswer("TIMEOUT")
        self.stats.tcp += 1
        qname, rdtype = query.names()
        answer = await fallback.tcp(
            qname, rdtype, self.nameservers[index], remaining, self.edns_payload
        )
        if answer.rcode == "TIMEOUT":
            self.stats.timeouts += 1
        return answer

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


class _Fresh(Submitter):
    """A client's view that asks the servers for every query (:meth:`DnsClient.fresh`)."""

    __slots__ = ("client",)

    def __init__(self, client: DnsClient) -> None:
        self.client = client

    def submit(self, name: str, rdtype: str) -> Pending:
        return self.client.submit(name, rdtype, True)
