"""A real DNS server on loopback for the test suite, serving zone-file text.

Built on dnslib's server machinery (``dnslib.server.DNSServer`` + a ``BaseResolver``), listening on
UDP *and* TCP on ``127.0.0.1`` with the same, kernel-chosen port::

    with ZoneServer(ZONE) as server:
        env["LOOKOUT_DNS_NAMESERVERS"] = server.nameserver  # "127.0.0.1:PORT"
        ...
        assert ("example.com", "TXT") in server.queries

Answers are authoritative-style (AA set): exact matches, NODATA (also for empty non-terminals),
NXDOMAIN, CNAME chasing within the zone, the covering SOA in the authority section of negative
answers, TC over UDP when the answer does not fit (512 bytes without EDNS), and test hooks:
``fail_names`` (SERVFAIL), ``refuse_names`` (REFUSED) and ``timeout_names`` (the query is
dropped).

The zone text is parsed with dnspython's zone-file reader (``$ORIGIN``, ``$TTL``, parentheses,
relative names, ``\\DDD`` escapes, TTL units...), then converted to dnslib records through wire
format: dnslib's own ``RR.fromZone`` reads ``\\DDD`` escapes as octal and splits strings at
escaped quotes, which would corrupt TXT records.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
import textwrap
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

import dns.name
import dns.rdataclass
import dns.tokenizer
import dns.zonefile
from dnslib import CLASS, EDNS0, QTYPE, RCODE, RD, RDMAP, RR, DNSBuffer, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

__all__ = ["ZoneServer"]

_LOG = logging.getLogger(__name__)

DEFAULT_TTL = 300
"""TTL for records that state none and have no ``$TTL`` before them."""

_UDP_PLAIN_LIMIT = 512  # RFC 1035 limit without EDNS
_UDP_EDNS_LIMIT = 1232  # what the server advertises / accepts at most over UDP with EDNS
_MAX_CNAME_CHAIN = 16
_QCLASS_ANY = 255  # dnslib spells it "*"
_TCP_IO_TIMEOUT = 5.0  # a TCP client that connects and sends nothing cannot block stop()
_TCP_DROP_HOLD = 30.0  # how long a dropped TCP query keeps its connection open (until stop())
_POLL_INTERVAL = 0.05  # serve_forever() poll: bounds how long stop() waits per socket


def _norm(name: object) -> str:
    """Lower-case, no trailing dot; the root is ``""``."""
    return str(name).rstrip(".").lower()


def _ancestors(name: str) -> Iterable[str]:
    """Proper ancestors of ``name``, nearest first, excluding the root."""
    labels = name.split(".")
    for i in range(1, len(labels)):
        yield ".".join(labels[i:])


def _is_subdomain(name: str, parent: str) -> bool:
    return parent == "" or name == parent or name.endswith("." + parent)


class _ReaderTransaction(dns.zonefile.RRsetsReaderTransaction):
    """dnspython's rrset-reading transaction, accepting an SOA at any owner name.

    dnspython insists that an SOA sits at the reader's origin; a test zone text may hold several
    zones, plus names outside any of them (e.g. reverse names next to a forward zone).
    """

    _adding: dns.name.Name = dns.name.root

    def add(self, *args: Any) -> None:
        if args and isinstance(args[0], dns.name.Name):
            self._adding = args[0]
        super().add(*args)

    def _origin_information(self) -> tuple[dns.name.Name, bool, dns.name.Name]:
        # Only used by Transaction._add(), for the "SOA must be at the origin" check.
        return (dns.name.root, False, self._adding)


class _ReaderManager(dns.zonefile.RRSetsReaderManager):
    def writer(self, replacement: bool = False) -> _ReaderTransaction:
        return _ReaderTransaction(self, True, False)  # type: ignore[no-untyped-call]


def _parse_zone(zone_text: str, origin: str | None) -> list[RR]:
    """Parse zone-file text into dnslib records (via dnspython's reader and wire format)."""
    text = textwrap.dedent(zone_text).strip("\n") + "\n"
    if origin is not None:
        text = f"$ORIGIN {origin.rstrip('.')}.\n{text}"
    # The reader's zone origin stays the root so that every owner name is kept (the reader
    # silently skips names outside it); $ORIGIN above handles relative names.
    manager = _ReaderManager(dns.name.root, False, dns.rdataclass.IN)
    with manager.writer(True) as txn:
        tokenizer = dns.tokenizer.Tokenizer(text, "<zone>")
        reader = dns.zonefile.Reader(
            tokenizer, dns.rdataclass.IN, txn, allow_include=False, default_ttl=DEFAULT_TTL
        )
        reader.read()
    records: list[RR] = []
    for rrset in manager.rrsets:
        rtype = int(rrset.rdtype)
        rd_class = RDMAP.get(QTYPE[rtype], RD)
        for rdata in rrset:
            wire = rdata.to_wire()
            records.append(
                RR(
                    rname=rrset.name.to_text(),
                    rtype=rtype,
                    rclass=CLASS.IN,
                    ttl=rrset.ttl,
                    rdata=rd_class.parse(DNSBuffer(wire), len(wire)),
                )
            )
    return records


@dataclass(frozen=True)
class _Zone:
    """Immutable snapshot of the served records (swapped atomically by ``set_zone``)."""

    records: dict[str, list[RR]] = field(default_factory=dict)
    empty_non_terminals: frozenset[str] = frozenset()
    soas: dict[str, RR] = field(default_factory=dict)  # apex -> SOA record

    @classmethod
    def from_records(cls, rrs: Iterable[RR]) -> _Zone:
        records: dict[str, list[RR]] = {}
        soas: dict[str, RR] = {}
        for rr in rrs:
            owner = _norm(rr.rname)
            records.setdefault(owner, []).append(rr)
            if rr.rtype == QTYPE.SOA:
                soas.setdefault(owner, rr)
        ents = {
            ancestor
            for owner in records
            for ancestor in _ancestors(owner)
            if ancestor not in records
            and (not soas or any(_is_subdomain(ancestor, apex) for apex in soas))
        }
        return cls(records=records, empty_non_terminals=frozenset(ents), soas=soas)

    def apex_for(self, name: str) -> str | None:
        """The closest enclosing apex (owner of an SOA) of ``name``, if any."""
        covering = [apex for apex in self.soas if _is_subdomain(name, apex)]
        return max(covering, key=len) if covering else None


class _ZoneResolver(BaseResolver):  # type: ignore[misc]  # dnslib is untyped
    """Authoritative-style answers from the owning server's current zone snapshot."""

    def __init__(self, owner: ZoneServer) -> None:
        self._owner = owner

    def resolve(self, request: Any, handler: Any) -> Any:
        """Return the reply, or ``None`` to drop the query (``timeout_names``)."""
        qname = _norm(request.q.qname)
        qtype: int = request.q.qtype
        self._owner._record_query(qname, QTYPE[qtype])

        if self._owner._matches(qname, self._owner.timeout_names):
            return None
        reply = request.reply()
        if self._owner._matches(qname, self._owner.fail_names):
            reply.header.aa = 0
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if self._owner._matches(qname, self._owner.refuse_names):
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return reply
        if request.header.opcode != 0:  # only QUERY
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if request.q.qclass not in (CLASS.IN, _QCLASS_ANY):
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return reply

        self._answer(self._owner._zone, reply, qname, qtype)
        return reply

    @staticmethod
    def _answer(zone: _Zone, reply: Any, qname: str, qtype: int) -> None:
        name = qname
        seen = {qname}
        while True:
            rrs = zone.records.get(name)
            if rrs is None:
                # Empty non-terminal -> NODATA; otherwise NXDOMAIN, except for a CNAME target
                # outside the served zones (a real server answers just the CNAME then).
                if name not in zone.empty_non_terminals and (
                    name == qname or zone.apex_for(name) is not None
                ):
                    reply.header.rcode = RCODE.NXDOMAIN
                break
            if qtype == QTYPE.ANY:
                reply.add_answer(*rrs)
                return
            matching = [rr for rr in rrs if rr.rtype == qtype]
            if matching:
                reply.add_answer(*matching)
                return
            cnames = [rr for rr in rrs if rr.rtype == QTYPE.CNAME]
            if not cnames:
                break  # NODATA
            reply.add_answer(cnames[0])
            target = _norm(cnames[0].rdata.label)
            if target in seen or len(seen) > _MAX_CNAME_CHAIN:
                break  # loop or over-long chain: answer what we have
            seen.add(target)
            name = target
        # Negative answer (NXDOMAIN or NODATA): the covering SOA goes in the authority section,
        # with the negative-caching TTL of RFC 2308 (min of the SOA TTL and its MINIMUM field).
        apex = zone.apex_for(name)
        if apex is not None:
            soa = zone.soas[apex]
            negative = RR(
                rname=soa.rname,
                rtype=QTYPE.SOA,
                rclass=CLASS.IN,
                ttl=min(soa.ttl, soa.rdata.times[-1]),
                rdata=soa.rdata,
            )
            reply.add_auth(negative)


class _DropQuery(DNSError):  # type: ignore[misc]
    """Raised inside the handler to send no reply at all (dnslib's handle() swallows DNSError)."""


class _Logger(DNSLogger):  # type: ignore[misc]
    """dnslib logger routed to ``logging`` (debug), silent about deliberately dropped queries."""

    def __init__(self) -> None:
        super().__init__(log="error,truncated", prefix=False, logf=_LOG.debug)

    def log_error(self, handler: Any, e: Exception) -> None:
        if not isinstance(e, _DropQuery):
            super().log_error(handler, e)


class _Handler(DNSHandler):  # type: ignore[misc]
    """dnslib's handler plus: query dropping, and truncation that behaves like a real server.

    dnslib truncates only with a fixed ``udplen`` and its ``DNSRecord.truncate()`` strips the
    question section, which dnspython rejects as "not a response to my query"; here the limit
    follows the client's EDNS payload size (512 without EDNS) and the TC reply keeps the question.
    """

    def setup(self) -> None:
        if self.server.socket_type == socket.SOCK_STREAM:
            self.request.settimeout(_TCP_IO_TIMEOUT)

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        self.server.logger.log_request(self, request)
        resolver: _ZoneResolver = self.server.resolver
        reply = resolver.resolve(request, self)
        if reply is None:
            if self.protocol == "tcp":
                # Keep the connection open and silent, like an unresponsive server, until
                # the server stops (an immediate close would be a fast failure, not a timeout).
                self.server.stopping.wait(_TCP_DROP_HOLD)
            raise _DropQuery("query dropped (timeout_names)")

        request_opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
        if request_opt is not None:
            reply.add_ar(EDNS0(udp_len=_UDP_EDNS_LIMIT))
        self.server.logger.log_reply(self, reply)
        rdata: bytes = reply.pack()
        if self.protocol == "udp":
            limit = _UDP_PLAIN_LIMIT
            if request_opt is not None:
                limit = max(_UDP_PLAIN_LIMIT, min(int(request_opt.rclass), _UDP_EDNS_LIMIT))
            if len(rdata) > limit:
                truncated = request.reply()
                truncated.header.rcode = reply.header.rcode
                truncated.header.aa = reply.header.aa
                truncated.header.tc = 1
                if request_opt is not None:
                    truncated.add_ar(EDNS0(udp_len=_UDP_EDNS_LIMIT))
                self.server.logger.log_truncated(self, truncated)
                rdata = truncated.pack()
        return rdata


class _ServerMixin:
    """Common socketserver settings; ``resolver``/``logger`` are set by dnslib's DNSServer."""

    daemon_threads = True  # handler threads; still joined by server_close() (block_on_close)
    stopping: threading.Event
    resolver: _ZoneResolver
    logger: DNSLogger

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away mid-answer (or stop() racing a reply) is not a test failure; a bug
        # in the resolver is (the client then times out), so make that one visible.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            _LOG.debug("dns test server: I/O error with %s: %s", client_address, exc)
        else:
            _LOG.exception("dns test server: error answering %s", client_address)


class _UDPServer(_ServerMixin, socketserver.ThreadingMixIn, socketserver.UDPServer):
    # No SO_REUSEADDR on UDP: on Linux it would let two servers share a port.
    allow_reuse_address = False


class _TCPServer(_ServerMixin, socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True  # rebinding while old connections sit in TIME_WAIT
    request_queue_size = 128


class ZoneServer:
    """A real DNS server (UDP + TCP, same port) on 127.0.0.1 serving ``zone_text``.

    ``zone_text`` is standard zone-file text (indentation is removed with ``textwrap.dedent``);
    ``origin`` is the initial ``$ORIGIN`` for relative names. Records without a TTL and without a
    preceding ``$TTL`` get :data:`DEFAULT_TTL`.

    Test hooks (names compared lower-case without trailing dot, any query type):

    * ``fail_names``: queries answer SERVFAIL;
    * ``refuse_names``: queries answer REFUSED;
    * ``timeout_names``: queries get no answer at all, so clients time out;
    * ``queries``: ``(qname, qtype name)`` of every query received, in order.
    """

    host: str = "127.0.0.1"
    _MAX_BIND_ATTEMPTS: ClassVar[int] = 50

    def __init__(self, zone_text: str, *, origin: str | None = None) -> None:
        self._origin = origin
        self._zone = _Zone.from_records(_parse_zone(zone_text, origin))
        self.port: int = 0
        self.queries: list[tuple[str, str]] = []
        self.fail_names: set[str] = set()
        self.refuse_names: set[str] = set()
        self.timeout_names: set[str] = set()
        self._lock = threading.Lock()
        self._servers: list[DNSServer] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- public API -------------------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:PORT"``, the format of ``LOOKOUT_DNS_NAMESERVERS``."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def set_zone(self, zone_text: str) -> None:
        """Replace all records (parsed with the same ``origin``); safe while running."""
        zone = _Zone.from_records(_parse_zone(zone_text, self._origin))
        with self._lock:
            self._zone = zone

    def query_count(self, name: str | None = None, qtype: str | None = None) -> int:
        """Number of queries received, optionally only for ``name`` and/or ``qtype``."""
        wanted = None if name is None else _norm(name)
        with self._lock:
            return sum(
                1
                for qname, qt in self.queries
                if (wanted is None or qname == wanted) and (qtype is None or qt == qtype.upper())
            )

    def start(self) -> None:
        """Bind UDP and TCP on one free port and serve in background threads.

        Returns once both sockets are bound and listening.
        """
        if self._servers:
            raise RuntimeError("ZoneServer already running")
        self._stopping = threading.Event()
        udp, tcp = self._bind()
        self._servers = [udp, tcp]
        self.port = udp.server.server_address[1]
        for proto, dns_server in (("udp", udp), ("tcp", tcp)):
            thread = threading.Thread(
                target=dns_server.server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"ZoneServer-{proto}-{self.port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving; closes both sockets and joins every server and handler thread."""
        self._stopping.set()  # releases TCP handlers holding a dropped query
        for dns_server in self._servers:
            dns_server.stop()  # socketserver shutdown(): waits for serve_forever() to return
        for dns_server in self._servers:
            dns_server.server.server_close()  # closes the socket, joins handler threads
        for thread in self._threads:
            thread.join()
        self._servers = []
        self._threads = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.nameserver if self.running else "stopped"
        return f"<ZoneServer {state} names={len(self._zone.records)}>"

    # -- internals --------------------------------------------------------------------------

    def _record_query(self, qname: str, qtype: str) -> None:
        with self._lock:
            self.queries.append((qname, qtype))

    @staticmethod
    def _matches(qname: str, names: set[str]) -> bool:
        return any(_norm(name) == qname for name in tuple(names))

    def _make_server(self, port: int, *, tcp: bool) -> DNSServer:
        dns_server = DNSServer(
            _ZoneResolver(self),
            address=self.host,
            port=port,
            tcp=tcp,
            logger=_Logger(),
            handler=_Handler,
            server=_TCPServer if tcp else _UDPServer,
        )
        dns_server.server.stopping = self._stopping
        return dns_server

    def _bind(self) -> tuple[DNSServer, DNSServer]:
        """UDP on a kernel-chosen port, then TCP on the same number (retry if it is taken)."""
        last_error: OSError | None = None
        for _ in range(self._MAX_BIND_ATTEMPTS):
            udp = self._make_server(0, tcp=False)
            port: int = udp.server.server_address[1]
            try:
                tcp = self._make_server(port, tcp=True)
            except OSError as exc:
                udp.server.server_close()
                last_error = exc
                continue
            return udp, tcp
        raise RuntimeError(f"no port free for both UDP and TCP: {last_error}")
