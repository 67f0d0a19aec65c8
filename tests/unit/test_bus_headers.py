"""lookout's NATS client parses message headers as nats-py does, only cheaper
(shared/bus/connect.py ``Client``): the same dict for every header block, the odd ones
included. nats-py's own parse is the reference."""

from __future__ import annotations

import itertools

from nats.aio.client import Client as NatsPyClient

from shared.bus.connect import Client

# What follows ``NATS/1.0\r\n`` (or a status line) in a message: a direct get's reply as
# nats-server 2.15 sends it, lookout's own headers, and the malformed forms nats-py's
# parse skips or keeps (no colon, no space after it, non-ASCII name or value, whitespace
# inside a name, including characters str.isspace counts that bytes.strip does not).
BLOCKS = [
    b"Nats-Stream: KV_lookup_results\r\nNats-Subject: $KV.lookup_results.j.k.dns\r\n"
    b"Nats-Sequence: 7800\r\nNats-Time-Stamp: 2026-12-07T14:00:00.123456789Z\r\n"
    b"Nats-Num-Pending: 12\r\nNats-Last-Sequence: 7799\r\n\r\n",
    b"Lookout-Schema: lookup-request/1\r\nLookout-Request-Id: 5f0c\r\n\r\n",
    b"KV-Operation: PURGE\r\nNats-Rollup: sub\r\n\r\n",
    b"Name:Value\r\nTabbed:\tvalue\t\r\n  Padded  :  spaced value  \r\n\r\n",
    b"no colon here\r\n\r\nAfter-Empty: yes\r\n",
    b": no name\r\nEmpty-Value:\r\n\r\n",
    b"Two Words: skipped\r\nTab\tInside: skipped\r\n",
    b"\x1cSeparator: isspace but not stripped\r\nUnit\x1fSep: too\r\n",
    b"Caf\xc3\xa9: non-ascii name\r\nValue: caf\xc3\xa9 \xff broken utf-8\r\n",
    b"Dup: first\r\nDup: second\r\n",
    b"Vertical\x0bTab: v\r\nForm\x0cFeed: f\r\n\x0bLeading: l\r\n",
    b"",
    b"\r\n",
    b"Only: one",
]


def test_the_same_headers_as_nats_py() -> None:
    for block in BLOCKS:
        assert Client._parse_header_lines(block) == NatsPyClient._parse_header_lines(block), block


def test_the_same_headers_for_every_short_name_of_odd_bytes() -> None:
    odd = [b"a", b" ", b"\t", b"\x0b", b"\x1c", b"\x85", b"\xa0", b":", b"-"]
    for size in (1, 2, 3):
        for name in itertools.product(odd, repeat=size):
            block = b"".join(name) + b": v\r\n"
            assert Client._parse_header_lines(block) == NatsPyClient._parse_header_lines(block)
