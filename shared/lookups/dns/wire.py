"""A minimal DNS wire codec for :class:`~.client.DnsClient`'s UDP path.

It builds queries from a byte template and reads the answers lookout asks for (``A``,
``AAAA``, ``TXT``, ``MX``, ``CNAME``, ``NS``, ``PTR``) into a :class:`DnsAnswer`, with the
same result as parsing the message with dnspython and reading it as ``DnsClient`` always
has (see :func:`decode`). It is deliberately narrow: whatever it does not fully check (other
record types or classes, EDNS options or an extended rcode, an opcode other than QUERY, a
message with anything odd about it) is left to dnspython by returning :data:`SLOW`, so every
message it does not know gets exactly the old treatment.

Hostile or broken datagrams are handled with bounds checks everywhere: every read is checked
against the end of the message (or of the record data), compression pointers must point
backwards and stay clear of the name that uses them (so they cannot loop), names are at most
255 bytes, and a datagram whose question is not the one asked is ignored.
"""

from __future__ import annotations

import re
import socket
import struct
from typing import Final

import dns.rcode

from shared.lookups.dns.answer import DnsAnswer

__all__ = [
    "CNAME_CHAIN_MAX",
    "FAST_TYPES",
    "HEADER_LEN",
    "IGNORE",
    "SLOW",
    "TC",
    "TRUNCATED",
    "Unusual",
    "decode",
    "encode_name",
    "name_text",
    "query_template",
    "read_name",
]

FAST_TYPES: Final = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
"""Query types whose answers :func:`decode` reads."""

IGNORE: Final = 0
"""Not an answer to this query (wrong question): drop the datagram, keep waiting."""
TRUNCATED: Final = 1
"""The answer to this query, truncated (TC bit): ask again over TCP."""
SLOW: Final = 2
"""Not handled here: parse the datagram with dnspython."""

HEADER_LEN: Final = 12
TC: Final = 0x02  # in the third header byte
CNAME_CHAIN_MAX: Final = 16
"""CNAME records followed from the name asked."""

_A, _NS, _CNAME, _SOA, _PTR, _MX, _TXT, _AAAA, _OPT = 1, 2, 5, 6, 12, 15, 16, 28, 41
_CLASS_IN: Final = b"\x00\x01"
_RR_FIXED: Final = 10  # type, class, TTL, rdlength
_MAX_NAME: Final = 255
_MAX_HOPS: Final = 16  # compression pointers followed in one name (as dnspython)
_OPCODE: Final = 0x78  # in the third header byte
_NO_RECORDS: Final[list[str]] = []
"""The records of every negative answer from :func:`decode`: one shared empty list (answers
are shared and never modified, see :class:`DnsAnswer`), not one per answer for the garbage
collector to walk."""
_HEADER: Final = struct.Struct("!HHHHHH").unpack_from
_RR: Final = struct.Struct("!HHIH").unpack_from
_RCODE_TEXT: Final = tuple(dns.rcode.to_text(dns.rcode.Rcode.make(i)) for i in range(16))
_LENGTH_BYTE: Final = tuple(bytes((n,)) for n in range(64))
_NAME_RE: Final = re.compile(r"(?:[a-z0-9_\-]{1,63}\.)*[a-z0-9_\-]{1,63}")
# Label bytes that dnspython prints as they are (no backslash escape), '.' excluded.
_PLAIN_LABELS_RE: Final = re.compile(rb"[!#%&'*+,\-/0-9:<=>?A-Z\[\]^_`a-z{|}~]*")
_ESCAPED: Final = frozenset(b'"().;\\@$')


class Unusual(Exception):
    """Raised inside the codec for anything it leaves to dnspython."""


def encode_name(name: str) -> bytes | None:
    """Wire form of ``name`` (lower-case, no final dot) when it is a plain host name of
    letters, digits, ``-`` and ``_``; None for anything else (escapes, IDNA, the root…),
    which dnspython encodes instead."""
    if len(name) > 253 or _NAME_RE.fullmatch(name) is None:
        return None
    parts: list[bytes] = []
    for label in name.encode("ascii").split(b"."):
        parts.append(_LENGTH_BYTE[len(label)])
        parts.append(label)
    parts.append(b"\x00")
    return b"".join(parts)


def query_template(qname_wire: bytes, qtype: int, payload: int) -> bytes:
    """A query without its 2-byte id: RD set, one question (``qname_wire``, ``qtype``, IN),
    and an EDNS0 OPT record advertising ``payload`` bytes (as dnspython's
    ``make_query(..., use_edns=0, payload=payload)``)."""
    return (
        b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
        + qname_wire
        + qtype.to_bytes(2, "big")
        + _CLASS_IN
        + b"\x00\x00\x29"
        + payload.to_bytes(2, "big")
        + b"\x00\x00\x00\x00\x00\x00"
    )


def read_name(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The name at ``pos`` in its uncompressed wire form (case kept), and the position after
    it; every byte read is before ``end``. Raises :class:`Unusual` where dnspython raises:
    a read past ``end``, a reserved label type, a pointer that does not point before the
    previous one, a pointed-to name that would overlap the name using it, more than 16
    pointers, a name longer than 255 bytes."""
    parts: list[bytes] = []
    segment = pos
    after = -1
    biggest = pos
    hops = 0
    total = 1
    while True:
        if pos >= end:
            raise Unusual("name runs past its end")
        length = data[pos]
        if length == 0:
            if not parts:
                return data[segment : pos + 1], pos + 1
            parts.append(data[segment : pos + 1])
            return b"".join(parts), after
        if length < 64:
            pos += length + 1
            total += length + 1
            if pos > end or total > _MAX_NAME:
                raise Unusual("label runs past its end or name too long")
        elif length >= 0xC0:
            if pos + 1 >= end:
                raise Unusual("pointer runs past its end")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= biggest or hops >= _MAX_HOPS:
                raise Unusual("bad compression pointer")
            parts.append(data[segment:pos])
            if after < 0:
                after = pos + 2
            biggest = target
            hops += 1
            end = segment  # the target may not overlap this part of the name
            pos = segment = target
        else:
            raise Unusual("reserved label type")


def name_text(wire: bytes) -> str:
    """A wire-form name as dnspython prints it with ``omit_final_dot=True``: ``"."`` for the
    root, special characters escaped with a backslash, other bytes as ``\\DDD``."""
    if wire == b"\x00":
        return "."
    labels: list[bytes] = []
    pos = 0
    length = wire[0]
    while length:
        labels.append(wire[pos + 1 : pos + 1 + length])
        pos += length + 1
        length = wire[pos]
    if _PLAIN_LABELS_RE.fullmatch(b"".join(labels)) is not None:
        return b".".join(labels).decode("ascii")
    return ".".join(_escape(label) for label in labels)


def _escape(label: bytes) -> str:
    out: list[str] = []
    for byte in label:
        if byte in _ESCAPED:
            out.append("\\" + chr(byte))
        elif 0x20 < byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def _rdata_name(data: bytes, pos: int, end: int) -> bytes:
    """A name filling the record data from ``pos`` to ``end`` exactly."""
    wire, after = read_name(data, pos, end)
    if after != end:
        raise Unusual("record data longer than its name")
    return wire


def decode(data: bytes, question: bytes) -> DnsAnswer | int:
    """Read ``data``, a datagram whose id is that of a query in flight, for that query.

    ``question`` is the query's name in lower-case wire form followed by its 2-byte type
    (one of :data:`FAST_TYPES`). Returns the answer as ``DnsAnswer`` (what ``DnsClient``
    makes of the dnspython message: the records of the asked type at the name, following a
    CNAME chain, TTL the smallest along it; the SOA's negative-caching TTL for NXDOMAIN and
    NODATA), or :data:`IGNORE`, :data:`TRUNCATED` or :data:`SLOW`.
    """
    size = len(data)
    truncated = data[2] & TC
    qend = HEADER_LEN + len(question)
    if (
        data[4:6] != b"\x00\x01"
        or size < qend + 2
        or data[HEADER_LEN : qend - 2].lower() != question[:-2]
        or data[qend - 2 : qend] != question[-2:]
    ):
        if truncated or (size > HEADER_LEN and data[HEADER_LEN] >= 0xC0):
            return SLOW  # dnspython decides: unreadable + TC -> TCP, compressed question
        return IGNORE
    if truncated:
        return TRUNCATED
    if data[2] & _OPCODE:
        return SLOW
    try:
        return _answer(data, size, question, qend + 2)
    except (Unusual, IndexError, struct.error):
        return SLOW


# An answer-section record: owner (lower case), type, TTL, rdata start, rdata end, and for
# MX/CNAME/NS/PTR the name in the data (wire form, case kept).
_Record = tuple[bytes, int, int, int, int, bytes]


def _answer(data: bytes, size: int, question: bytes, pos: int) -> DnsAnswer:
    qname = question[:-2]
    qtype = (question[-2] << 8) | question[-1]
    _, flags, _, ancount, nscount, arcount = _HEADER(data)
    # The question's name as the server wrote it: the usual target of owner pointers.
    qname_case = data[HEADER_LEN : HEADER_LEN + len(qname)]
    records: list[_Record] = []
    soa: tuple[int, int] | None = None  # (TTL, MINIMUM) of the authority section's SOA
    opt = False
    authority = ancount + nscount
    for index in range(authority + arcount):
        first = data[pos]
        if first == 0xC0 and data[pos + 1] == HEADER_LEN:
            owner = qname_case
            pos += 2
        elif first == 0:  # the root: an OPT record's owner
            owner = b"\x00"
            pos += 1
        else:
            owner, pos = read_name(data, pos, size)
        rtype, klass, ttl, rdlength = _RR(data, pos)
        start = pos + _RR_FIXED
        pos = start + rdlength
        if pos > size:
            raise Unusual("record data past the end")
        if rtype == _OPT:
            # Only in the additional section, once, at the root, no options, EDNS
            # version 0 and no extended rcode: anything else goes to dnspython.
            if index < authority or opt or owner != b"\x00" or rdlength or ttl >> 16:
                raise Unusual("EDNS beyond the basics")
            opt = True
            continue
        if klass != 1:
            raise Unusual("class other than IN")
        if ttl > 0x7FFFFFFF:
            ttl = 0  # as dnspython
        if index < ancount:
            name = b""
            if rtype == _TXT:
                if not rdlength:
                    raise Unusual("TXT without strings")
                at = start
                while at < pos:
                    at += data[at] + 1
                if at != pos:
                    raise Unusual("TXT string past its record")
            elif rtype == _A:
                if rdlength != 4:
                    raise Unusual("A of another length")
            elif rtype == _AAAA:
                if rdlength != 16:
                    raise Unusual("AAAA of another length")
            elif rtype == _MX:
                name = _rdata_name(data, start + 2, pos)
            elif rtype in (_CNAME, _NS, _PTR):
                name = _rdata_name(data, start, pos)
            else:
                raise Unusual(f"record of type {rtype} in the answer")
            records.append((owner.lower(), rtype, ttl, start, pos, name))
        elif index < authority:
            if rtype == _SOA:
                if soa is not None:
                    raise Unusual("several SOA records")
                _, after = read_name(data, start, pos)
                _, after = read_name(data, after, pos)
                if after + 20 != pos:
                    raise Unusual("SOA of another length")
                soa = (ttl, int.from_bytes(data[pos - 4 : pos], "big"))
            elif rtype == _NS:
                _rdata_name(data, start, pos)
            else:
                raise Unusual(f"record of type {rtype} in the authority section")
        elif not ((rtype == _A and rdlength == 4) or (rtype == _AAAA and rdlength == 16)):
            raise Unusual(f"record of type {rtype} in the additional section")
    if pos != size:
        raise Unusual("trailing bytes")
    rcode = flags & 0x0F
    if rcode:
        negative = float(min(soa)) if soa is not None and rcode == 3 else None
        return DnsAnswer(_RCODE_TEXT[rcode], _NO_RECORDS, negative)
    negative = float(min(soa)) if soa is not None else None
    name = qname
    ttls: list[int] = []
    for _ in range(CNAME_CHAIN_MAX):
        matching = [r for r in records if r[1] == qtype and r[0] == name]
        if matching:
            ttls.append(_min_ttl(matching))
            return DnsAnswer("NOERROR", _texts(data, qtype, matching), float(min(ttls)))
        cnames = [r for r in records if r[1] == _CNAME and r[0] == name]
        if not cnames:
            break
        if len(cnames) > 1:
            raise Unusual("several CNAME records at one name")
        ttls.append(cnames[0][2])
        name = cnames[0][5].lower()
    return DnsAnswer("NOERROR", _NO_RECORDS, negative)


def _min_ttl(records: list[_Record]) -> int:
    if len(records) == 1:
        return records[0][2]
    return min(record[2] for record in records)


def _texts(data: bytes, rtype: int, records: list[_Record]) -> list[str]:
    """The records' data as text (as ``DnsClient`` always gave it), duplicates removed the
    way dnspython's rdatasets do (first one kept; names compared without case)."""
    out: list[str] = []
    seen: set[bytes] = set()
    for _, _, _, start, end, name in records:
        if rtype == _TXT:
            key = data[start:end]
            if data[start] + 1 == end - start:  # one string, the common case
                text = data[start + 1 : end].decode("utf-8", "replace")
            else:
                strings: list[bytes] = []
                while start < end:
                    length = data[start]
                    strings.append(data[start + 1 : start + 1 + length])
                    start += length + 1
                text = b"".join(strings).decode("utf-8", "replace")
        elif rtype == _A:
            key = data[start:end]
            text = socket.inet_ntop(socket.AF_INET, key)
        elif rtype == _AAAA:
            key = data[start:end]
            text = socket.inet_ntop(socket.AF_INET6, key)
        elif rtype == _MX:
            key = data[start : start + 2] + name.lower()
            text = f"{(data[start] << 8) | data[start + 1]} {name_text(name)}"
        else:
            key = name.lower()
            text = name_text(name)
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out
