"""Epoch times kept in KV buckets and moved forward by compare-and-set, so replicas on
different hosts share them (quota pauses of providers, send slots and pauses of sinks).

Times are epoch seconds (``time.time()``): replicas compare them directly, so their clocks
must agree (NTP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

MAX_TRIES = 50
"""Compare-and-set attempts before giving up on a key other replicas keep writing."""


@dataclass(frozen=True)
class Wait:
    until: float
    """Epoch seconds when a slot is expected to be free."""
    reason: str


_encode = msgspec.json.Encoder().encode


async def read_time(kv: KeyValue, key: str) -> tuple[float, int | None]:
    """The epoch time ``key`` holds (0 when unset) and the revision it was read at (``None``
    when unset), for a compare-and-set."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return 0.0, None
    try:
        when = float(entry.value or b"0")
    except ValueError:  # not a time (an older release wrote `null` for an endless pause)
        return 0.0, entry.revision
    return (when if math.isfinite(when) else 0.0), entry.revision


async def advance(kv: KeyValue, key: str, until: float) -> float:
    """Move the epoch time ``key`` holds forward to ``until``, never back, by compare-and-set
    (so of two replicas writing at once the later time wins); the time it holds after."""
    if not math.isfinite(until):
        raise ValueError(f"not a time: {until}")
    for _ in range(MAX_TRIES):
        current, revision = await read_time(kv, key)
        if current >= until:
            return current
        try:
            if revision is None:
                await kv.create(key, _encode(until))
            else:
                await kv.update(key, _encode(until), last=revision)
        except KeyWrongLastSequenceError:
            continue  # another replica wrote first: read again
        return until
    return until
