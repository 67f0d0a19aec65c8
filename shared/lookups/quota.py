"""Per-provider quotas shared by every replica, kept in the NATS KV bucket ``provider_quota``.

- **Per minute**: a sliding window. The key ``<provider>.minute`` holds one time per grant
  of the last minute; a replica may add one only while fewer than ``per_minute`` are
  younger than the window, and only by compare-and-set on the revision it read, so two
  replicas can never both take the last slot. The window is 60 s plus a margin,
  ``[providers.<name>] quota_slack`` (default 1 s), and a grant's time is not when it was
  taken but when the upstream request **ended**: while the request is in flight the grant
  holds ``now + hold`` (``hold`` is the provider timeout, past which the runner gives the
  request up), and :meth:`SharedQuota.settle` replaces that with the time the answer came
  back. A request reaches upstream after its grant and before its answer, so a new grant
  at least a window after the answer of every grant it does not count arrives more than
  60 s after each of their arrivals: no 60-second window **as the upstream counts it**
  (arrival times) ever holds more than the quota, whatever the latency of the first
  requests. The margin covers an upstream that counts in whole seconds, and clock skew.
  A replica that dies mid-request leaves ``now + hold``: the slot stays taken a little
  longer, never shorter.
- **Per day**: a counter per UTC day, ``<provider>.day.<YYYY-MM-DD>`` (the reputation
  services reset daily quotas at 00:00 UTC), also compare-and-set.
- **Pause**: ``<provider>.pause`` holds a time before which nobody asks upstream (set when
  upstream answered 429, honouring its Retry-After), so the whole pool backs off at once.

- **Priority**: scheduled lookups (the re-lookups of watch lists) spend the quotas after
  interactive ones. An interactive request told to wait moves ``<provider>.interactive``
  forward to a little after the time it was told (by compare-and-set, never back); while
  that time lies ahead, no scheduled request takes a grant, so interactive requests that
  wait get the next free slots whatever was submitted first. And scheduled requests take a
  grant only while more than ``quota.reserve`` of each quota (rounded down: 1 of 4 per
  minute, 125 of 500 per day at the default 0.25) is left, so a watch list never uses up
  a day's quota an analyst needs.

Inside one process, aiolimiter smooths bursts so replicas do not spin on the KV.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from aiolimiter import AsyncLimiter
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus.kvtime import MAX_TRIES, Wait, advance, read_time
from shared.lookups.config import Quota

WINDOW = 60.0
PRIORITY_SLACK = 2.0
"""Seconds the interactive mark lasts beyond the time its waiting request was told: the time
that request takes to come back (its redelivery delay's jitter, a fetch)."""


@dataclass(frozen=True)
class Granted:
    stamp: float | None = None
    """The time this grant holds in the minute window until :meth:`SharedQuota.settle`
    (None: no minute quota, nothing to settle)."""


@dataclass(frozen=True)
class Exhausted:
    reset: float
    """Epoch seconds of the next UTC midnight, when the daily quota resets."""
    reason: str = "daily quota used"


Decision = Granted | Wait | Exhausted
_KEPT = "the rest is kept for interactive lookups"
_times = msgspec.json.Decoder(list[float])
_encode = msgspec.json.Encoder().encode


def next_utc_midnight(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


class SharedQuota:
    def __init__(
        self,
        kv: KeyValue,
        provider: str,
        quota: Quota,
        *,
        smooth: bool = True,
        margin: float = 0.0,
        hold: float = 0.0,
        window: float = WINDOW,
    ) -> None:
        """``margin``: seconds added to the window; ``hold``: how long an unsettled grant
        may still be in flight (the provider timeout); ``window``: 60 s (tests only make it
        shorter, with the same logic)."""
        self.kv = kv
        self.provider = provider
        self.quota = quota
        self.window = window
        self.span = window + max(0.0, margin)
        """How long a grant counts after its request ended: the window and the margin."""
        self.hold = max(0.0, hold)
        self.known: dict[str, int] = {}
        """What is left per window (``minute``, ``day``) as last seen by this replica, for
        metrics: updated from the reads ``acquire`` does anyway, never read on its own."""
        self._smooth = (
            AsyncLimiter(quota.per_minute, window) if quota.per_minute and smooth else None
        )

    @property
    def unlimited(self) -> bool:
        return not self.quota.per_minute and not self.quota.per_day

    def limit(self, quota: int, scheduled: bool) -> int:
        """What of ``quota`` (per minute or per day) a request may use: all of it for an
        interactive one, all but the reserve (rounded down) for a scheduled one."""
        return quota - math.floor(quota * self.quota.reserve) if scheduled else quota

    async def acquire(self, now: float | None = None, *, scheduled: bool = False) -> Decision:
        """Take one upstream request from the shared quota, or say when to come back.
        A ``scheduled`` request (a watch's re-lookup) comes after every interactive one
        that waits, and leaves the reserve (see the module's documentation)."""
        if self.unlimited:
            return Granted()
        decision = await self._acquire(time.time() if now is None else now, scheduled)
        if isinstance(decision, Wait) and not scheduled:
            # Interactive and told to wait: scheduled requests stay back until it is served.
            await advance(self.kv, f"{self.provider}.interactive", decision.until + PRIORITY_SLACK)
        return decision

    async def _acquire(self, current: float, scheduled: bool) -> Decision:
        paused = await self._paused_until()
        if paused > current:
            return Wait(paused, "upstream asked to slow down")
        if scheduled:
            ahead = (await read_time(self.kv, f"{self.provider}.interactive"))[0]
            if ahead > current:
                return Wait(ahead, "interactive lookups first")
        day_limit = self.limit(self.quota.per_day, scheduled)
        if self.quota.per_day:
            used = await self._read_day(current)
            self.known["day"] = max(0, self.quota.per_day - used)
            if used >= self.quota.per_day:
                return Exhausted(next_utc_midnight(current))
            if used >= day_limit:
                return Exhausted(next_utc_midnight(current), _KEPT)
        granted = Granted()
        if self.quota.per_minute:
            if self._smooth is not None and not self._smooth.has_capacity():
                return Wait(
                    current + self.window / self.quota.per_minute, "smoothing within the minute"
                )
            decision = await self._take_minute(
                current, self.limit(self.quota.per_minute, scheduled)
            )
            if not isinstance(decision, Granted):
                return decision
            granted = decision
            if self._smooth is not None:
                await self._smooth.acquire()
        if self.quota.per_day:
            taken = await self._take_day(current, day_limit)
            if taken is None:
                return Wait(current + 0.5, "quota store busy")
            if not taken:
                if day_limit < self.quota.per_day:
                    return Exhausted(next_utc_midnight(current), _KEPT)
                return Exhausted(next_utc_midnight(current))
        return granted

    async def settle(self, granted: Granted, now: float | None = None) -> None:
        """The upstream request of ``granted`` ended (answered, failed or given up): from
        now on its slot counts from ``now``, not from the in-flight time it held."""
        if granted.stamp is None:
            return
        ended = time.time() if now is None else now
        key = f"{self.provider}.minute"
        for _ in range(MAX_TRIES):
            times, revision = await self._read_minute()
            if revision is None or granted.stamp not in times:
                return  # already gone from the window: nothing to move
            times[times.index(granted.stamp)] = ended
            try:
                await self.kv.update(key, _encode(times), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another replica wrote first: read again
            return

    async def pause(self, seconds: float) -> float:
        """Stop every replica from asking upstream for ``seconds``; returns the end time."""
        return await advance(self.kv, f"{self.provider}.pause", time.time() + max(1.0, seconds))

    async def remaining(self, now: float | None = None) -> dict[str, int | None]:
        """What is left of the quota now (for metrics and the results' data)."""
        current = time.time() if now is None else now
        out: dict[str, int | None] = {"per_minute": None, "per_day": None}
        if self.quota.per_day:
            out["per_day"] = max(0, self.quota.per_day - await self._read_day(current))
        if self.quota.per_minute:
            times, _ = await self._read_minute()
            recent = [t for t in times if t > current - self.span]
            out["per_minute"] = max(0, self.quota.per_minute - len(recent))
        return out

    async def _paused_until(self) -> float:
        return (await read_time(self.kv, f"{self.provider}.pause"))[0]

    async def _read_minute(self) -> tuple[list[float], int | None]:
        try:
            entry = await self.kv.get(f"{self.provider}.minute")
        except KeyNotFoundError:
            return [], None
        return (_times.decode(entry.value) if entry.value else []), entry.revision

    async def _take_minute(self, now: float, limit: int) -> Decision:
        """A slot of the minute window, while fewer than ``limit`` grants are in it."""
        key = f"{self.provider}.minute"
        for _ in range(MAX_TRIES):
            times, revision = await self._read_minute()
            # A grant counts while younger than the span; one still in flight holds a time
            # in the future (see settle), so it counts whatever its age.
            recent = sorted(t for t in times if t > now - self.span)
            self.known["minute"] = max(0, self.quota.per_minute - len(recent))
            if limit <= 0:
                return Wait(now + self.span, _KEPT)
            if len(recent) >= limit:
                # The earliest a slot can free: an in-flight grant may end any moment.
                ends = sorted(min(t, now) for t in recent)
                free_at = ends[len(ends) - limit] + self.span
                if limit < self.quota.per_minute:
                    reason = f"{limit} of {self.quota.per_minute} requests per minute (scheduled)"
                else:
                    reason = f"{self.quota.per_minute} requests per minute"
                return Wait(free_at, reason)
            stamp = now + self.hold
            value = _encode([*recent, stamp])
            try:
                if revision is None:
                    await self.kv.create(key, value)
                else:
                    await self.kv.update(key, value, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another replica took a slot first: read again
            self.known["minute"] = max(0, self.quota.per_minute - len(recent) - 1)
            return Granted(stamp)
        return Wait(now + 1.0, "quota store busy")

    def _day_key(self, now: float) -> str:
        return f"{self.provider}.day.{datetime.fromtimestamp(now, UTC).date().isoformat()}"

    async def _read_day(self, now: float) -> int:
        try:
            entry = await self.kv.get(self._day_key(now))
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def _take_day(self, now: float, limit: int) -> bool | None:
        """True: taken; False: ``limit`` of the day's quota is used; None: too much
        contention, retry."""
        key = self._day_key(now)
        for _ in range(MAX_TRIES):
            try:
                entry = await self.kv.get(key)
                used, revision = int(entry.value or b"0"), entry.revision
            except KeyNotFoundError:
                used, revision = 0, None
            if used >= limit:
                self.known["day"] = max(0, self.quota.per_day - used)
                return False
            try:
                if revision is None:
                    await self.kv.create(key, str(used + 1).encode())
                else:
                    await self.kv.update(key, str(used + 1).encode(), last=revision)
            except KeyWrongLastSequenceError:
                continue
            self.known["day"] = max(0, self.quota.per_day - used - 1)
            return True
        return None
