"""What the client leaves to dnspython: queries its codec does not build (other types than
those of :data:`~shared.lookups.dns.wire.FAST_TYPES`, names that need escapes or IDNA),
answers its codec does not read (see :func:`~shared.lookups.dns.wire.decode`), and the TCP
exchange after a truncated answer. Every answer read here is read the one way the codec
reads its own (:func:`to_answer`)."""

from __future__ import annotations

import secrets

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

import shared.lookups.dns.wire as wire
from shared.lookups.dns.answer import DnsAnswer

__all__ = ["make_query", "read", "record_text", "tcp", "to_answer"]


def make_query(qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, payload: int) -> bytes:
    """The query's wire form with id 0: RD, EDNS0 advertising ``payload`` bytes (as the
    codec's template)."""
    return dns.message.make_query(qname, rdtype, use_edns=0, payload=payload, id=0).to_wire()


async def tcp(
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    server: tuple[str, int],
    timeout: float,
    payload: int,
) -> DnsAnswer:
    """The answer over TCP from ``server``; ``TIMEOUT`` or ``ERROR`` when there is none."""
    message = dns.message.make_query(qname, rdtype, use_edns=0, payload=payload, id=0)
    message.id = secrets.randbits(16)
    host, port = server
    try:
        response = await dns.asyncquery.tcp(message, host, timeout=timeout, port=port)
    except dns.exception.Timeout:
        return DnsAnswer("TIMEOUT")
    except (dns.exception.DNSException, OSError, EOFError):
        return DnsAnswer("ERROR")
    return to_answer(response, qname, rdtype)


def record_text(rdata: dns.rdata.Rdata) -> str:
    """One record's data as text: TXT strings joined, MX ``"pref host"``, names without the
    final dot, anything else (SOA…) as in a zone file."""
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


def to_answer(
    response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> DnsAnswer:
    """The answer to ``qname``/``rdtype`` in ``response``: the records of that type at the
    name, following a CNAME chain (TTL the smallest along it), or the negative answer with
    the SOA's negative-caching TTL."""
    rcode = dns.rcode.to_text(response.rcode())
    if rcode != "NOERROR":
        return DnsAnswer(rcode, [], _negative_ttl(response) if rcode == "NXDOMAIN" else None)
    name = qname
    ttls: list[int] = []
    for _ in range(wire.CNAME_CHAIN_MAX):
        rrset = _find(response, name, rdtype)
        if rrset is not None:
            ttls.append(rrset.ttl)
            return DnsAnswer("NOERROR", [record_text(rdata) for rdata in rrset], float(min(ttls)))
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


def read(data: bytes, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> DnsAnswer | int:
    """A datagram the codec left to dnspython, read for ``qname``/``rdtype``: the answer,
    :data:`~shared.lookups.dns.wire.TRUNCATED` (ask over TCP) or
    :data:`~shared.lookups.dns.wire.IGNORE` (not an answer to this query)."""
    try:
        message = dns.message.from_wire(data)
    except dns.exception.DNSException:
        # A truncated answer cut mid-record: TCP will tell; otherwise garbage: keep
        # waiting for the real answer.
        return wire.TRUNCATED if data[2] & wire.TC else wire.IGNORE
    except Exception:  # a hostile datagram must not reach the loop's handler
        return wire.IGNORE
    question = message.question
    if len(question) != 1 or question[0].rdtype != rdtype or question[0].name != qname:
        return wire.IGNORE  # not an answer to this query (late answer to a reused id…)
    if message.flags & dns.flags.TC:
        return wire.TRUNCATED
    return to_answer(message, qname, rdtype)
