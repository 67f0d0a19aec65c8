"""The wire codec of the lookups' DNS client (shared/lookups/dns/wire.py).

The reference is dnspython: every message here is built with it, and what the codec makes
of a datagram must be what DnsClient always made of it with dnspython (``from_wire`` then
``_to_answer``), or the codec must hand the datagram to that path (``SLOW``).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

import shared.lookups.dns.wire as wire
from shared.lookups.dns import DnsAnswer
from shared.lookups.dns.fallback import to_answer as _to_answer

IGNORE, TRUNCATED, SLOW = wire.IGNORE, wire.TRUNCATED, wire.SLOW


def question(name: str, rdtype: str) -> bytes:
    encoded = wire.encode_name(name)
    assert encoded is not None
    return encoded + wire.FAST_TYPES[rdtype].to_bytes(2, "big")


def old_way(data: bytes, name: str, rdtype: str) -> DnsAnswer | int:
    """What DnsClient made of a datagram before it had a codec (dnspython only)."""
    try:
        message = dns.message.from_wire(data)
    except dns.exception.DNSException:
        return TRUNCATED if data[2] & 0x02 else IGNORE
    except Exception:
        return IGNORE
    qname = dns.name.from_text(name)
    qtype = dns.rdatatype.from_text(rdtype)
    if (
        len(message.question) != 1
        or message.question[0].rdtype != qtype
        or message.question[0].name != qname
    ):
        return IGNORE
    if message.flags & dns.flags.TC:
        return TRUNCATED
    return _to_answer(message, qname, qtype)


def new_way(data: bytes, name: str, rdtype: str) -> DnsAnswer | int:
    """What DnsClient makes of it now: the codec, dnspython for what it leaves."""
    result = wire.decode(data, question(name, rdtype))
    return old_way(data, name, rdtype) if result == SLOW else result


def response(
    name: str,
    rdtype: str,
    answer: Sequence[tuple[str, int, str, list[str]]] = (),
    *,
    rcode: int = 0,
    soa: tuple[str, int, int] | None = None,
    extra: Sequence[tuple[str, int, str, list[str]]] = (),
    edns: bool = True,
    qid: int = 4242,
) -> bytes:
    """A response to ``name``/``rdtype`` built by dnspython (names compressed as it does)."""
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=1232)
    query.id = qid
    message = dns.message.make_response(query)
    message.set_rcode(dns.rcode.Rcode(rcode))
    for owner, ttl, rtype, rdatas in answer:
        message.answer.append(dns.rrset.from_text(owner, ttl, "IN", rtype, *rdatas))
    if soa is not None:
        owner, ttl, minimum = soa
        message.authority.append(
            dns.rrset.from_text(
                owner, ttl, "IN", "SOA", f"ns.{owner} host.{owner} 1 2 3 4 {minimum}"
            )
        )
    for owner, ttl, rtype, rdatas in extra:
        message.additional.append(dns.rrset.from_text(owner, ttl, "IN", rtype, *rdatas))
    return message.to_wire()


# -- queries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "example.com",
        "_dmarc.example.com",
        "default._bimi.mail.example.co.uk",
        "a-b_c.x9.example",
        "x" * 63 + ".com",
        ".".join(["a" * 60] * 4) + ".com",  # 249 characters
    ],
)
@pytest.mark.parametrize("rdtype", sorted(wire.FAST_TYPES))
def test_query_is_dnspythons(name: str, rdtype: str) -> None:
    encoded = wire.encode_name(name)
    assert encoded == dns.name.from_text(name).to_wire()
    assert encoded is not None
    template = wire.query_template(encoded, wire.FAST_TYPES[rdtype], 1232)
    reference = dns.message.make_query(name, rdtype, use_edns=0, payload=1232, id=0).to_wire()
    assert b"\x00\x00" + template == reference


@pytest.mark.parametrize(
    "name",
    ["", "@", "a..b", ".a", "é.com", "a b.com", "a\\.b.com", "x" * 64 + ".com", "Upper.com"],
)
def test_names_left_to_dnspython(name: str) -> None:
    assert wire.encode_name(name) is None
    assert wire.encode_name(".".join(["a" * 63] * 4)) is None  # 255 characters: too long


# -- answers ------------------------------------------------------------------------------------


CASES: list[tuple[str, str, bytes]] = [
    (
        "example.com",
        "TXT",
        response(
            "example.com",
            "TXT",
            [("example.com.", 300, "TXT", ['"v=spf1 -all"', '"part one " "part two"'])],
        ),
    ),
    (
        "example.com",
        "MX",
        response(
            "example.com",
            "MX",
            [("example.com.", 600, "MX", ["10 mail.example.com.", "20 backup.example.net."])],
        ),
    ),
    ("example.com", "MX", response("example.com", "MX", [("example.com.", 60, "MX", ["0 ."])])),
    (
        "a.example.com",
        "A",
        response("a.example.com", "A", [("a.example.com.", 5, "A", ["192.0.2.1", "192.0.2.2"])]),
    ),
    (
        "a.example.com",
        "AAAA",
        response(
            "a.example.com",
            "AAAA",
            [("a.example.com.", 5, "AAAA", ["2001:db8::1", "::ffff:192.0.2.1", "::"])],
        ),
    ),
    (
        "alias.example.com",
        "TXT",
        response(
            "alias.example.com",
            "TXT",
            [
                ("alias.example.com.", 100, "CNAME", ["mid.example.net."]),
                ("mid.example.net.", 50, "CNAME", ["target.example.org."]),
                ("target.example.org.", 300, "TXT", ['"at the end"']),
            ],
        ),
    ),
    (
        "alias.example.com",
        "A",
        response(
            "alias.example.com",
            "A",
            [("alias.example.com.", 100, "CNAME", ["gone.example.net."])],
            soa=("example.net.", 900, 30),
        ),
    ),
    (
        "alias.example.com",
        "CNAME",
        response(
            "alias.example.com",
            "CNAME",
            [("alias.example.com.", 100, "CNAME", ["Target.Example.ORG."])],
        ),
    ),
    (
        "4.3.2.1.in-addr.arpa",
        "PTR",
        response(
            "4.3.2.1.in-addr.arpa",
            "PTR",
            [("4.3.2.1.in-addr.arpa.", 9, "PTR", ["host.example.com."])],
        ),
    ),
    (
        "example.com",
        "NS",
        response(
            "example.com",
            "NS",
            [("example.com.", 9, "NS", ["ns1.example.com.", "NS1.EXAMPLE.COM."])],
        ),
    ),
    (
        "nothing.example.com",
        "TXT",
        response("nothing.example.com", "TXT", rcode=3, soa=("example.com.", 300, 60)),
    ),
    ("nothing.example.com", "TXT", response("nothing.example.com", "TXT", rcode=3)),
    (
        "nodata.example.com",
        "TXT",
        response("nodata.example.com", "TXT", soa=("example.com.", 30, 600)),
    ),
    ("nodata.example.com", "TXT", response("nodata.example.com", "TXT")),
    ("broken.example.com", "TXT", response("broken.example.com", "TXT", rcode=2)),
    (
        "refused.example.com",
        "A",
        response("refused.example.com", "A", rcode=5, soa=("example.com.", 30, 60)),
    ),
    ("odd.example.com", "TXT", response("odd.example.com", "TXT", rcode=12)),
    (
        "glue.example.com",
        "MX",
        response(
            "glue.example.com",
            "MX",
            [("glue.example.com.", 300, "MX", ["10 mx.glue.example.com."])],
            extra=[
                ("mx.glue.example.com.", 300, "A", ["192.0.2.25"]),
                ("mx.glue.example.com.", 300, "AAAA", ["2001:db8::25"]),
            ],
        ),
    ),
    (
        "plain.example.com",
        "TXT",
        response(
            "plain.example.com",
            "TXT",
            [("plain.example.com.", 1, "TXT", ['"no edns"'])],
            edns=False,
        ),
    ),
    (
        "other.example.com",
        "TXT",
        response(
            "other.example.com",
            "TXT",
            [
                ("unrelated.example.com.", 300, "TXT", ['"not this one"']),
                ("other.example.com.", 300, "A", ["192.0.2.9"]),
            ],
        ),
    ),
    (
        "utf8.example.com",
        "TXT",
        response(
            "utf8.example.com", "TXT", [("utf8.example.com.", 3, "TXT", ['"caf\\195\\169 \\255"'])]
        ),
    ),
    (
        "escape.example.com",
        "MX",
        response(
            "escape.example.com",
            "MX",
            [("escape.example.com.", 3, "MX", ["10 we\\.ird\\@label\\032x\\255.example.com."])],
        ),
    ),
]


CASE_IDS = [f"{name}-{rdtype}-{i}" for i, (name, rdtype, _) in enumerate(CASES)]
"""Not the bytes: dnspython writes a record set in its set's order, which differs between
processes (string hashes), and every xdist worker must collect the same test ids."""


@pytest.mark.parametrize(("name", "rdtype", "data"), CASES, ids=CASE_IDS)
def test_answers_read_as_dnspython(name: str, rdtype: str, data: bytes) -> None:
    result = wire.decode(data, question(name, rdtype))
    assert isinstance(result, DnsAnswer), "read by the codec, not left to dnspython"
    assert result == old_way(data, name, rdtype)


def test_texts() -> None:
    txt = wire.decode(CASES[0][2], question("example.com", "TXT"))
    assert isinstance(txt, DnsAnswer)
    assert sorted(txt.records) == ["part one part two", "v=spf1 -all"]
    assert txt.ttl == 300.0
    chain = wire.decode(CASES[5][2], question("alias.example.com", "TXT"))
    assert chain == DnsAnswer("NOERROR", ["at the end"], 50.0)  # smallest TTL along the chain
    nxdomain = new_way(CASES[10][2], "nothing.example.com", "TXT")
    assert nxdomain == DnsAnswer("NXDOMAIN", [], 60.0)


def test_case_and_duplicates() -> None:
    data = response(
        "Mixed.Example.COM",
        "MX",
        [
            (
                "MIXED.example.com.",
                300,
                "MX",
                ["10 Mail.Example.com.", "10 mail.example.com.", "20 b.example.com."],
            )
        ],
    )
    result = wire.decode(data, question("mixed.example.com", "MX"))
    assert isinstance(result, DnsAnswer)
    assert result == old_way(data, "mixed.example.com", "MX")
    assert len(result.records) == 2  # the same host twice (case aside) is one record


def test_ttl_over_2_31_is_zero_as_dnspython() -> None:
    data = bytearray(response("t.example.com", "A", [("t.example.com.", 300, "A", ["192.0.2.1"])]))
    at = data.index(b"\x00\x00\x01\x2c")  # the TTL, 300
    data[at : at + 4] = b"\x80\x00\x00\x01"
    result = wire.decode(bytes(data), question("t.example.com", "A"))
    assert result == old_way(bytes(data), "t.example.com", "A")
    assert isinstance(result, DnsAnswer)
    assert result.ttl == 0.0


def test_compression_pointers_are_followed() -> None:
    # Written by hand: the answer's owner points at the question, the MX host points into
    # the middle of the question's name, and a second MX points at the first one's host.
    head = struct.pack("!HHHHHH", 7, 0x8180, 1, 2, 0, 0)
    qname = b"\x04mail\x07example\x03com\x00"
    body = head + qname + b"\x00\x0f\x00\x01"
    first_host = len(body) + 12 + 2
    body += b"\xc0\x0c" + struct.pack("!HHIH", 15, 1, 60, 2 + 6) + b"\x00\x0a" + b"\x03mx1\xc0\x11"
    body += b"\xc0\x0c" + struct.pack("!HHIH", 15, 1, 60, 2 + 2) + b"\x00\x14"
    body += struct.pack("!H", 0xC000 | first_host)
    result = wire.decode(body, question("mail.example.com", "MX"))
    assert result == DnsAnswer("NOERROR", ["10 mx1.example.com", "20 mx1.example.com"], 60.0)
    assert result == old_way(body, "mail.example.com", "MX")


# -- what the codec does not read itself --------------------------------------------------------


def test_truncated_answer_goes_to_tcp() -> None:
    data = bytearray(response("big.example.com", "TXT", [("big.example.com.", 5, "TXT", ['"x"'])]))
    data[2] |= 0x02
    assert wire.decode(bytes(data), question("big.example.com", "TXT")) == TRUNCATED
    # cut in the middle of a record, TC set: TCP too (as dnspython's parse error did)
    assert new_way(bytes(data[:-7]), "big.example.com", "TXT") == TRUNCATED


def test_other_question_is_ignored() -> None:
    data = response("other.example.com", "TXT", [("other.example.com.", 5, "TXT", ['"x"'])])
    assert wire.decode(data, question("asked.example.com", "TXT")) == IGNORE
    assert wire.decode(data, question("other.example.com", "A")) == IGNORE
    assert new_way(data, "asked.example.com", "TXT") == old_way(data, "asked.example.com", "TXT")
    no_question = bytearray(data[:12])
    no_question[4:6] = b"\x00\x00"
    assert wire.decode(bytes(no_question), question("other.example.com", "TXT")) == IGNORE


def test_unusual_messages_are_left_to_dnspython() -> None:
    # a type the codec does not read (SOA in the answer, DNAME), an EDNS option, a class
    # other than IN: SLOW, and the old path gives its usual answer
    soa = response("example.com", "TXT", [("example.com.", 5, "SOA", ["a. b. 1 2 3 4 5"])])
    assert wire.decode(soa, question("example.com", "TXT")) == SLOW
    query = dns.message.make_query("opt.example.com", "TXT", use_edns=0, payload=1232)
    reply = dns.message.make_response(query)
    reply.use_edns(
        0, 0, 1232, options=[dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"hello")]
    )
    data = reply.to_wire()
    assert wire.decode(data, question("opt.example.com", "TXT")) == SLOW
    assert new_way(data, "opt.example.com", "TXT") == DnsAnswer("NOERROR", [], None)
    chaos = bytearray(response("c.example.com", "TXT", [("c.example.com.", 5, "TXT", ['"x"'])]))
    at = chaos.index(b"\x00\x10\x00\x01\x00\x00\x00\x05")  # the answer's type, class, TTL
    chaos[at + 2 : at + 4] = b"\x00\x03"
    assert wire.decode(bytes(chaos), question("c.example.com", "TXT")) == SLOW


@pytest.mark.parametrize(("name", "rdtype", "data"), CASES, ids=CASE_IDS)
def test_every_truncation_of_a_datagram(name: str, rdtype: str, data: bytes) -> None:
    """Cut anywhere (a datagram truncated without TC, a hostile short read): never an
    exception, never a different outcome than dnspython's."""
    for size in range(12, len(data)):
        cut = data[:size]
        assert new_way(cut, name, rdtype) == old_way(cut, name, rdtype), size


def test_random_corruption_matches_dnspython() -> None:
    rng = random.Random(20240611)
    for name, rdtype, data in CASES:
        for _ in range(300):
            corrupted = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(12, len(corrupted))
                corrupted[at] = rng.randrange(256)
            sample = bytes(corrupted)
            assert new_way(sample, name, rdtype) == old_way(sample, name, rdtype), sample.hex()


def test_pointer_loops_and_forward_pointers() -> None:
    head = struct.pack("!HHHHHH", 1, 0x8180, 1, 1, 0, 0)
    body = head + b"\x04loop\x07example\x03com\x00\x00\x10\x00\x01"
    owner_at = len(body)
    looped = (
        body + struct.pack("!H", 0xC000 | owner_at) + struct.pack("!HHIH", 16, 1, 5, 2) + b"\x01x"
    )
    forward = (
        body
        + struct.pack("!H", 0xC000 | (owner_at + 2))
        + b"\x00"
        + struct.pack("!HHIH", 16, 1, 5, 2)
        + b"\x01x"
    )
    two_step = (
        body
        + b"\x01a"
        + struct.pack("!H", 0xC000 | owner_at)
        + struct.pack("!HHIH", 16, 1, 5, 2)
        + b"\x01x"
    )
    for data in (looped, forward, two_step):
        assert wire.decode(data, question("loop.example.com", "TXT")) == SLOW
        assert new_way(data, "loop.example.com", "TXT") == IGNORE  # dnspython rejects it too


def test_read_name_limits() -> None:
    data = b"\x03abc\x00"
    assert wire.read_name(data, 0, len(data)) == (b"\x03abc\x00", 5)
    with pytest.raises(wire.Unusual):
        wire.read_name(data, 0, 4)  # runs past the end given
    with pytest.raises(wire.Unusual):
        wire.read_name(b"\x40abc", 0, 4)  # reserved label type
    # pointers, each to the one before, the first to a root label: 16 are followed (as
    # dnspython), 17 are not
    chain = b"\x00" + b"".join(struct.pack("!H", 0xC000 | max(0, 2 * i - 3)) for i in range(1, 18))
    assert wire.read_name(chain, 31, len(chain)) == (b"\x00", 33)  # 16 pointers
    with pytest.raises(wire.Unusual):
        wire.read_name(chain, 33, len(chain))  # 17 pointers
    reference = dns.name.from_wire(chain, 31)[0]
    assert reference == dns.name.root
    with pytest.raises(dns.exception.DNSException):
        dns.name.from_wire(chain, 33)
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"  # 257 bytes
    with pytest.raises(wire.Unusual):
        wire.read_name(long_name, 0, len(long_name))


def test_name_text_escapes_as_dnspython() -> None:
    for labels in ([b"plain", b"com"], [b"we.ird", b"x y", b'"q"', b"\xff\x00", b"a@b$"]):
        name = dns.name.Name([*labels, b""])
        encoded = name.to_wire()
        assert encoded is not None
        assert wire.name_text(encoded) == name.to_text(omit_final_dot=True)
    assert wire.name_text(b"\x00") == "."
