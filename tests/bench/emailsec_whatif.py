"""What-if probes for ``emailsec_bench.py --whatif``: how fast could lookout's evaluator go
with a cheaper DNS path? Nothing here is used by lookout; it only measures.

* :class:`WireClient` — lookout's own :class:`DnsClient` (same socket, multiplexing, slots,
  retransmission, dedup and cache code), with only the two dnspython steps replaced: the
  query is built from bytes (header template + labels) and the answer is read by a small
  hand-written parser that decodes the answer section (TXT, MX, A, AAAA, CNAME chains) and
  the SOA of negative answers, instead of ``dns.message.make_query().to_wire()`` and
  ``dns.message.from_wire()``. Truncated answers still go to lookout's TCP path.
* :class:`ReplayResolver` — answers recorded from a real run, returned from a dict without
  any I/O: the cost of ``evaluate()`` itself (SPF/DMARC logic, asyncio tasks), i.e. the
  ceiling for any transport.
* :func:`codec_costs` — per-message micro-benchmark of both codecs on real NSD answers.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import timeit
from typing import Any

import dns.message
import dns.name
import dns.rdatatype

from services.providers.emailsec.dnsclient import (
    DnsAnswer,
    DnsClient,
    _Pending,
    _to_answer,
    _UdpProtocol,
)

_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
# RD, one question, one additional (the EDNS OPT record, payload 1232).
_QUERY_HEAD = _HEADER.pack(0, 0x0100, 1, 0, 0, 1)
_OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


def encode_name(name: str) -> bytes | None:
    """Wire form of a lower-case name, None when it cannot be sent as-is (non-ASCII…)."""
    if not name.isascii():
        return None
    out = bytearray()
    for label in name.split("."):
        if not label or len(label) > 63:
            return None
        out.append(len(label))
        out += label.encode()
    out.append(0)
    return bytes(out) if len(out) <= 255 else None


def build_query(qwire: bytes, qtype: int) -> bytes:
    return _QUERY_HEAD + qwire + struct.pack("!HH", qtype, 1) + _OPT


def _read_name(buf: bytes, off: int) -> tuple[str, int]:
    labels: list[bytes] = []
    end = -1
    hops = 0
    while True:
        length = buf[off]
        if length >= 0xC0:
            if end < 0:
                end = off + 2
            off = ((length & 0x3F) << 8) | buf[off + 1]
            hops += 1
            if hops > 32:
                raise ValueError("compression loop")
            continue
        off += 1
        if length == 0:
            break
        labels.append(buf[off : off + length])
        off += length
    return b".".join(labels).decode("ascii", "replace").lower(), (end if end >= 0 else off)


def _skip_name(buf: bytes, off: int) -> int:
    while True:
        length = buf[off]
        if length >= 0xC0:
            return off + 2
        off += length + 1
        if length == 0:
            return off


def parse_answer(data: bytes, qname: str, qtype: int) -> DnsAnswer:
    """lookout's ``_to_answer`` semantics on raw wire data."""
    _id, flags, qd, an, ns, _ar = _HEADER.unpack_from(data)
    rcode = _RCODES.get(flags & 0x0F, str(flags & 0x0F))
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    rrs: list[tuple[str, int, int, int, int]] = []  # owner, type, ttl, rdata offset, length
    for _ in range(an):
        owner, off = _read_name(data, off)
        rtype, _cls, ttl, rdlen = _RR.unpack_from(data, off)
        off += 10
        rrs.append((owner, rtype, ttl, off, rdlen))
        off += rdlen
    if rcode != "NOERROR":
        return DnsAnswer(rcode, [], _negative_ttl(data, off, ns) if rcode == "NXDOMAIN" else None)
    name = qname
    ttls: list[int] = []
    for _ in range(16):
        found = [rr for rr in rrs if rr[1] == qtype and rr[0] == name]
        if found:
            ttls.append(min(rr[2] for rr in found))
            return DnsAnswer("NOERROR", [_text(data, rr) for rr in found], float(min(ttls)))
        if qtype == 5:
            break
        cname = next((rr for rr in rrs if rr[1] == 5 and rr[0] == name), None)
        if cname is None:
            break
        ttls.append(cname[2])
        name = _read_name(data, cname[3])[0]
    return DnsAnswer("NOERROR", [], _negative_ttl(data, off, ns))


def _negative_ttl(data: bytes, off: int, count: int) -> float | None:
    """min(TTL, MINIMUM) of the first SOA in the authority section starting at ``off``."""
    for _ in range(count):
        _owner, off = _read_name(data, off)
        rtype, _cls, ttl, rdlen = _RR.unpack_from(data, off)
        off += 10
        if rtype == 6:
            minimum: int = struct.unpack_from("!I", data, off + rdlen - 4)[0]
            return float(min(ttl, minimum))
        off += rdlen
    return None


def _text(data: bytes, rr: tuple[str, int, int, int, int]) -> str:
    _owner, rtype, _ttl, off, rdlen = rr
    if rtype == 16:
        end = off + rdlen
        parts = []
        while off < end:
            length = data[off]
            parts.append(data[off + 1 : off + 1 + length])
            off += 1 + length
        return b"".join(parts).decode("utf-8", "replace")
    if rtype == 15:
        return f"{struct.unpack_from('!H', data, off)[0]} {_read_name(data, off + 2)[0]}"
    if rtype == 1:
        return socket.inet_ntop(socket.AF_INET, data[off : off + 4])
    if rtype == 28:
        return socket.inet_ntop(socket.AF_INET6, data[off : off + 16])
    if rtype in (2, 5, 12):
        return _read_name(data, off)[0]
    return data[off : off + rdlen].hex()


class _WireProtocol(_UdpProtocol):
    """Matches answers by id and the raw question (name bytes + type), no dnspython."""

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) < 12 or not data[2] & 0x80:
            return
        pending = self.pending.get(int.from_bytes(data[:2], "big"))
        if pending is None or pending.future.done():
            return
        qwire: bytes = pending.qname  # type: ignore[assignment]
        end = 12 + len(qwire)
        if (
            data[4:6] != b"\x00\x01"
            or data[12:end].lower() != qwire
            or int.from_bytes(data[end : end + 2], "big") != pending.rdtype
        ):
            return
        pending.future.set_result((data, self.index))  # type: ignore[arg-type]


class WireClient(DnsClient):
    """lookout's DnsClient with the dnspython codec swapped for the one above."""

    async def _open(self) -> None:
        async with self._open_lock:
            if self._opened or self._closed:
                return
            loop = asyncio.get_running_loop()
            for index, (host, port) in enumerate(self.nameservers):
                try:
                    _, protocol = await loop.create_datagram_endpoint(
                        functools.partial(_WireProtocol, index), remote_addr=(host, port)
                    )
                except OSError:
                    self._protocols[index] = None
                    continue
                self._protocols[index] = protocol
            self._opened = True

    async def _resolve(self, name: str, rdtype_text: str) -> DnsAnswer:
        qtype = _TYPES.get(rdtype_text)
        qwire = encode_name(name)
        if qtype is None or qwire is None:
            return await super()._resolve(name, rdtype_text)
        wire = build_query(qwire, qtype)
        if not self._opened:
            await self._open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        async with self._slots:
            try:
                raw, index = await self._udp(qwire, qtype, wire, deadline)  # type: ignore[arg-type]
            except ConnectionError:
                return DnsAnswer("ERROR")
            if index == -2:
                return DnsAnswer("ERROR")
            if index < 0:
                self.stats.timeouts += 1
                return DnsAnswer("TIMEOUT")
            data: bytes = raw  # type: ignore[assignment]
            if data[2] & 0x02:  # TC: lookout's TCP path, dnspython there
                qname = dns.name.from_text(name)
                rdtype = dns.rdatatype.from_text(rdtype_text)
                query = dns.message.make_query(qname, rdtype, use_edns=0, payload=1232)
                over_tcp = await self._tcp(query, index, deadline)
                if isinstance(over_tcp, str):
                    return DnsAnswer(over_tcp)
                answer = _to_answer(over_tcp, qname, rdtype)
            else:
                try:
                    answer = parse_answer(data, name, qtype)
                except (IndexError, ValueError, struct.error):
                    return DnsAnswer("FORMERR")
        self._remember((name, rdtype_text), answer)
        return answer


class RecordingClient(DnsClient):
    """lookout's DnsClient that keeps every answer it gets, for :class:`ReplayResolver`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: dict[tuple[str, str], DnsAnswer] = {}

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        answer = await super().query(name, rdtype)
        self.recorded[(name.rstrip(".").lower(), rdtype.upper())] = answer
        return answer


class ReplayResolver:
    """Answers from memory, no I/O: what ``evaluate()`` costs on its own."""

    def __init__(self, recorded: dict[tuple[str, str], DnsAnswer]) -> None:
        self.recorded = recorded

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        return self.recorded[(name.rstrip(".").lower(), rdtype.upper())]


def codec_costs(samples: list[tuple[str, str, bytes]], number: int = 300) -> dict[str, float]:
    """Mean µs per message over ``samples`` [(name, type, answer wire)]: build + parse, with
    dnspython (as lookout does) and with the small codec."""
    if not samples:
        return {}

    def dnspython() -> None:
        for name, rdtype, wire in samples:
            qname = dns.name.from_text(name)
            rtype = dns.rdatatype.from_text(rdtype)
            dns.message.make_query(qname, rtype, use_edns=0, payload=1232, id=0).to_wire()
            _to_answer(dns.message.from_wire(wire), qname, rtype)

    def small() -> None:
        for name, rdtype, wire in samples:
            qwire = encode_name(name)
            assert qwire is not None
            build_query(qwire, _TYPES[rdtype])
            parse_answer(wire, name, _TYPES[rdtype])

    n = len(samples)
    slow = max(1, number // 10)
    return {
        "dnspython_us": timeit.timeit(dnspython, number=slow) / slow / n * 1e6,
        "small_us": timeit.timeit(small, number=number) / number / n * 1e6,
    }


__all__ = [
    "RecordingClient",
    "ReplayResolver",
    "WireClient",
    "_Pending",
    "build_query",
    "codec_costs",
    "encode_name",
    "parse_answer",
]
