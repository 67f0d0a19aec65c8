"""The exit list in the bus: the KV bucket ``tor_exits``.

* ``exit.<address>`` (``:`` of IPv6 written ``_``): the download (``generation``) that last
  listed the address, and when it was last seen exiting;
* ``meta``: the current list: its generation, when it was downloaded and published, how many
  exits it has, where it came from. Written after the addresses, so a lookup never sees a
  generation whose addresses are not all there; an address whose generation is older than
  ``meta``'s was dropped from the list;
* ``lease``: which replica downloads, until when (taken by compare-and-set, so that of N
  replicas one downloads), and the last download's error, kept until the next attempt.

Keys not written again for :data:`KEEP` expire with the bucket's TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus.manage import DAY, ensure_bucket

BUCKET = "tor_exits"
META = "meta"
LEASE = "lease"
KEEP = 7 * DAY
BATCH = 256
"""Addresses written at once."""


class Meta(msgspec.Struct, frozen=True):
    generation: int
    fetched_at: float
    count: int
    format: str
    source: str
    published: str | None = None


class Lease(msgspec.Struct, frozen=True):
    holder: str
    until: float
    error: str | None = None


class Entry(msgspec.Struct, frozen=True):
    generation: int
    last_seen: str | None = None


_encode = msgspec.json.Encoder().encode


def address_key(address: str) -> str:
    return "exit." + address.replace(":", "_")


async def open_bucket(js: JetStreamContext, replicas: int) -> KeyValue:
    await ensure_bucket(
        js,
        KeyValueConfig(
            bucket=BUCKET,
            description="the Tor exit list, refreshed on a schedule",
            ttl=KEEP,
            storage=StorageType.FILE,
            direct=True,
        ),
        replicas,
    )
    return await js.key_value(BUCKET)


T = TypeVar("T")


async def _read(kv: KeyValue, key: str, kind: type[T]) -> tuple[T | None, int | None]:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None, None
    if not entry.value:
        return None, entry.revision
    try:
        return msgspec.json.decode(entry.value, type=kind), entry.revision
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, entry.revision


async def meta(kv: KeyValue) -> Meta | None:
    return (await _read(kv, META, Meta))[0]


async def lease(kv: KeyValue) -> Lease | None:
    return (await _read(kv, LEASE, Lease))[0]


async def entry(kv: KeyValue, address: str) -> Entry | None:
    return (await _read(kv, address_key(address), Entry))[0]


async def take_lease(kv: KeyValue, holder: str, now: float, hold: float) -> int | None:
    """The lease for ``hold`` seconds (its revision), or None when another replica holds
    it or took it first. The last error is kept."""
    current, revision = await _read(kv, LEASE, Lease)
    if current is not None and current.until > now:
        return None  # being downloaded, or waiting after a failure
    taken = Lease(holder, now + hold, current.error if current is not None else None)
    try:
        if revision is None:
            return int(await kv.create(LEASE, _encode(taken)))
        return int(await kv.update(LEASE, _encode(taken), last=revision))
    except KeyWrongLastSequenceError:
        return None  # another replica wrote first


async def end_lease(
    kv: KeyValue, holder: str, revision: int, until: float, error: str | None
) -> None:
    """Hand the lease back: free from ``until`` (now after a success, later after a
    failure, so no replica tries again before), with the error of the download if any."""
    # taken over after it expired (KeyWrongLastSequenceError): the newer holder's word counts
    with contextlib.suppress(KeyWrongLastSequenceError):
        await kv.update(LEASE, _encode(Lease(holder, until, error)), last=revision)


async def write(kv: KeyValue, exits: dict[str, str | None], written: Meta) -> None:
    """The addresses of generation ``written.generation``, then ``meta``."""
    items = list(exits.items())
    for start in range(0, len(items), BATCH):
        await asyncio.gather(
            *(
                kv.put(address_key(a), _encode(Entry(written.generation, seen)))
                for a, seen in items[start : start + BATCH]
            )
        )
    await kv.put(META, _encode(written))
