"""Per-provider quotas shared by every replica, kept in the NATS KV bucket ``provider_quota``.

- **Per minute**: a sliding window. The key ``<provider>.minute`` holds the time of every
  grant of the last minute, as ``[tick, count]`` pairs: times are rounded **up** to a tenth
  of a second (a grant counts at most 0.1 s longer, never shorter), so the window stays a
  few hundred pairs at most whatever the quota (a premium quota of thousands per minute
  would otherwise be read, decoded and rewritten whole, one time per grant, at every turn);
  a replica may add one only while fewer than ``per_minute`` are
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

- **Turns** (one replica's concurrent calls share compare-and-sets): a provider runner has
  many lookups in flight (``concurrency``, 32 in the benchmark), and if each grant and each
  settle read and compare-and-set ``<provider>.minute`` on its own they would conflict and
  retry one after another. So the calls of one :class:`SharedQuota` take turns: the caller
  that holds the turn decides **every** ``acquire`` and writes **every** ``settle`` queued
  in this process at that moment, with one read of each key, one compare-and-set of the
  minute window (the grants that fit, interactive ones first, and the settled end times in
  place of their stamps) and one of the day counter; the calls that arrive meanwhile wait
  and form the next turn. A turn's decisions are exactly those the same calls would get one
  after another at that instant (the k-th grant of a turn counts the k-1 before it), and a
  compare-and-set that loses to another replica reads again and decides again, so the
  guarantee above holds across replicas unchanged. A settle is written at the latest by
  the turn after it is queued, and its caller returns only once it is written; until then
  the grant keeps ``now + hold``, which counts longer, never shorter, so a replica that
  dies with settles queued is as safe as one that dies mid-request. Equal stamps (grants of
  one turn) are interchangeable: a settle replaces any one of them.

Inside one process, aiolimiter smooths bursts so replicas do not spin on the KV.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
_FIRST = "interactive lookups first"
_SMOOTHING = "smoothing within the minute"
TICKS = 10
"""Window times are counted in tenths of a second (``tick = ceil(time * TICKS)``)."""
Window = dict[int, int]
"""The minute window: grants per tick (in-flight grants at their ``now + hold`` tick)."""
_window = msgspec.json.Decoder(list[tuple[int, int] | float])
_encode = msgspec.json.Encoder().encode


def tick(t: float) -> int:
    """``t`` rounded up to the window's resolution (a grant counts longer, never shorter)."""
    return math.ceil(t * TICKS)


def _decode_window(value: bytes) -> Window:
    """``[[tick, count], ...]``; a bare number is one grant at that time in seconds (the
    window as releases before the ticks wrote it)."""
    counts: Window = {}
    for entry in _window.decode(value):
        at, count = (tick(entry), 1) if isinstance(entry, float) else entry
        counts[at] = counts.get(at, 0) + count
    return counts


def next_utc_midnight(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


@dataclass
class _Ask:
    """One :meth:`SharedQuota.acquire` waiting for its turn's decision."""

    now: float | None
    scheduled: bool
    decision: asyncio.Future[Decision]


@dataclass
class _Settle:
    """One :meth:`SharedQuota.settle` waiting for its turn's write."""

    stamp: float
    ended: float
    written: asyncio.Future[None]


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
        self._asks: list[_Ask] = []
        self._settles: list[_Settle] = []
        self._turn = asyncio.Lock()
        """Held by the one caller that serves a turn (every ask and settle waiting then)."""

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
        that waits, and leaves the reserve (see the module's documentation). Concurrent
        calls in this process are decided together, in one turn (see the module's
        documentation)."""
        if self.unlimited:
            return Granted()
        ask = _Ask(now, scheduled, asyncio.get_running_loop().create_future())
        self._asks.append(ask)
        try:
            await self._served(ask.decision)
        except asyncio.CancelledError:
            if ask in self._asks:  # not taken into a turn yet: nothing was granted
                self._asks.remove(ask)
            raise
        return ask.decision.result()

    async def settle(self, granted: Granted, now: float | None = None) -> None:
        """The upstream request of ``granted`` ended (answered, failed or given up): from
        now on its slot counts from ``now``, not from the in-flight time it held. Written
        with the next turn's compare-and-set, together with every other settle and grant
        of this process then; returns once written."""
        if granted.stamp is None:
            return
        ended = time.time() if now is None else now
        entry = _Settle(granted.stamp, ended, asyncio.get_running_loop().create_future())
        self._settles.append(entry)
        await self._served(entry.written)

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
            counts, _ = await self._read_minute()
            out["per_minute"] = max(0, self.quota.per_minute - _count(counts, current - self.span))
        return out

    # One turn at a time: whoever holds the lock serves every ask and settle queued then.

    async def _served(self, done: asyncio.Future[Any]) -> None:
        while not done.done():
            async with self._turn:
                if done.done():
                    break
                await self._serve_turn()

    async def _serve_turn(self) -> None:
        asks, self._asks = self._asks, []
        settles, self._settles = self._settles, []
        try:
            groups: dict[float | None, list[_Ask]] = {}
            for ask in asks:  # callers passing their own clock (tests) are decided apart
                groups.setdefault(ask.now, []).append(ask)
            pending = settles  # written with the first group's compare-and-set
            for now, group in groups.items():
                await self._decide(group, time.time() if now is None else now, pending)
                pending = []
            if pending:
                await self._take_minute([], None, pending)
        except asyncio.CancelledError:
            # The caller serving this turn was cancelled: what it did not decide or write
            # goes back to the queue for the next turn (every owner still waits for the lock).
            self._asks[:0] = [a for a in asks if not a.decision.done()]
            self._settles[:0] = [s for s in settles if not s.written.done()]
            raise
        except Exception as exc:
            for ask in asks:
                if not ask.decision.done():
                    ask.decision.set_exception(exc)
            for entry in settles:
                if not entry.written.done():
                    entry.written.set_exception(exc)

    async def _decide(self, asks: list[_Ask], current: float, settles: list[_Settle]) -> None:
        """Decide ``asks`` (taken at ``current``) together: one read of each key and one
        compare-and-set of the minute window (with ``settles``) and of the day counter."""
        # interactive asks first: they take the slots a scheduled one would leave
        undecided = sorted((a for a in asks if not a.decision.done()), key=lambda a: a.scheduled)
        decided: list[tuple[_Ask, Decision]] = []

        def refuse(refused: list[_Ask], decision: Decision) -> None:
            decided.extend((a, decision) for a in refused)

        paused = await self.paused_until()
        if paused > current:
            refuse(undecided, Wait(paused, "upstream asked to slow down"))
            undecided = []
        if any(a.scheduled for a in undecided):
            ahead = (await read_time(self.kv, f"{self.provider}.interactive"))[0]
            if ahead > current:
                refuse([a for a in undecided if a.scheduled], Wait(ahead, _FIRST))
                undecided = [a for a in undecided if not a.scheduled]
        if self.quota.per_day and undecided:
            used = await self._read_day(current)
            self.known["day"] = max(0, self.quota.per_day - used)
            midnight = next_utc_midnight(current)
            if used >= self.quota.per_day:
                refuse(undecided, Exhausted(midnight))
                undecided = []
            kept = [a for a in undecided if used >= self.limit(self.quota.per_day, a.scheduled)]
            refuse(kept, Exhausted(midnight, _KEPT))
            undecided = [a for a in undecided if a not in kept]
        granted: list[tuple[_Ask, Granted]] = [(a, Granted()) for a in undecided]
        if self.quota.per_minute:
            pace = len(undecided)  # how many aiolimiter lets through now
            if self._smooth is not None:
                pace = 0
                while pace < len(undecided) and self._smooth.has_capacity(pace + 1):
                    pace += 1
            minute: list[Decision] = []
            if undecided or settles:
                minute = await self._take_minute(undecided, current, settles, pace)
            settles = []
            granted = []
            for ask, decision in zip(undecided, minute, strict=True):
                if isinstance(decision, Granted):
                    granted.append((ask, decision))
                else:
                    decided.append((ask, decision))
            if self._smooth is not None and granted:
                await self._smooth.acquire(len(granted))
        if settles:
            await self._take_minute([], None, settles)
        if self.quota.per_day and granted:
            fits = await self._take_day(current, [a for a, _ in granted])
            if fits is None:
                refuse([a for a, _ in granted], Wait(current + 0.5, "quota store busy"))
            for (ask, grant), fit in zip(granted, fits or [], strict=False):
                if not fit:
                    day_limit = self.limit(self.quota.per_day, ask.scheduled)
                    reason = _KEPT if day_limit < self.quota.per_day else "daily quota used"
                    decided.append((ask, Exhausted(next_utc_midnight(current), reason)))
                else:
                    decided.append((ask, grant))
        else:
            decided.extend(granted)
        told = [d.until for a, d in decided if isinstance(d, Wait) and not a.scheduled]
        if told:
            # Interactive and told to wait: scheduled requests stay back until it is served.
            await advance(self.kv, f"{self.provider}.interactive", max(told) + PRIORITY_SLACK)
        for ask, decision in decided:
            if not ask.decision.done():  # its caller may have given up meanwhile
                ask.decision.set_result(decision)

    async def paused_until(self) -> float:
        """Until when an upstream's answer (429) pauses every replica (epoch seconds; a
        time past: no pause)."""
        return (await read_time(self.kv, f"{self.provider}.pause"))[0]

    async def _read_minute(self) -> tuple[Window, int | None]:
        try:
            entry = await self.kv.get(f"{self.provider}.minute")
        except KeyNotFoundError:
            return {}, None
        return (_decode_window(entry.value) if entry.value else {}), entry.revision

    async def _take_minute(
        self, asks: list[_Ask], now: float | None, settles: list[_Settle], pace: int = 0
    ) -> list[Decision]:
        """In one compare-and-set of the minute window: a slot for each of ``asks`` (in
        their order) while fewer than its limit of grants are in the window and fewer than
        ``pace`` (the smoothing) were granted, and the end times of ``settles`` in place of
        their in-flight stamps. ``now`` None: settles only, nothing dropped from the
        window."""
        key = f"{self.provider}.minute"
        for _ in range(MAX_TRIES):
            counts, revision = await self._read_minute()
            moved = _settled(counts, settles)
            if now is None and not moved:
                _written(settles)
                return []
            if now is None:
                recent = counts
            else:
                # A grant counts while younger than the span; one still in flight holds a
                # time in the future (see settle), so it counts whatever its age.
                oldest = now - self.span
                recent = {at: n for at, n in counts.items() if at / TICKS > oldest}
            in_window = sum(recent.values())
            if now is not None:
                self.known["minute"] = max(0, self.quota.per_minute - in_window)
            decisions: list[Decision] = []
            stamp = tick((now or 0.0) + self.hold)
            taken = 0
            full: dict[tuple[int, int], Wait] = {}  # (limit, taken): the same wait for each
            for ask in asks:
                assert now is not None
                limit = self.limit(self.quota.per_minute, ask.scheduled)
                if limit <= 0:
                    decisions.append(Wait(now + self.span, _KEPT))
                elif in_window + taken >= limit:
                    wait = full.get((limit, taken))
                    if wait is None:
                        with_taken = {**recent, stamp: recent.get(stamp, 0) + taken}
                        wait = full[limit, taken] = self._minute_wait(with_taken, now, limit)
                    decisions.append(wait)
                elif taken >= pace:
                    spacing = self.window / self.quota.per_minute
                    decisions.append(Wait(now + spacing, _SMOOTHING))
                else:
                    taken += 1
                    decisions.append(Granted(stamp / TICKS))
            if not taken and not moved:
                _written(settles)
                return decisions  # nothing to write
            if taken:
                recent[stamp] = recent.get(stamp, 0) + taken
            value = _encode(sorted(recent.items()))
            try:
                if revision is None:
                    await self.kv.create(key, value)
                else:
                    await self.kv.update(key, value, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another replica wrote first: read again
            _written(settles)
            if now is not None:
                self.known["minute"] = max(0, self.quota.per_minute - in_window - taken)
            return decisions
        _written(settles)  # given up: their stamps stay in flight, a little longer
        return [Wait((now or time.time()) + 1.0, "quota store busy") for _ in asks]

    def _minute_wait(self, recent: Window, now: float, limit: int) -> Wait:
        # The earliest a slot can free: an in-flight grant may end any moment. The slot
        # that frees is the (count - limit + 1)-th oldest grant's.
        ends: dict[float, int] = {}
        for at, n in recent.items():
            end = min(at / TICKS, now)
            ends[end] = ends.get(end, 0) + n
        index = sum(ends.values()) - limit
        free_at = now
        for end, n in sorted(ends.items()):
            if index < n:
                free_at = end + self.span
                break
            index -= n
        if limit < self.quota.per_minute:
            reason = f"{limit} of {self.quota.per_minute} requests per minute (scheduled)"
        else:
            reason = f"{self.quota.per_minute} requests per minute"
        return Wait(free_at, reason)

    def _day_key(self, now: float) -> str:
        return f"{self.provider}.day.{datetime.fromtimestamp(now, UTC).date().isoformat()}"

    async def _read_day(self, now: float) -> int:
        try:
            entry = await self.kv.get(self._day_key(now))
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def _take_day(self, now: float, asks: list[_Ask]) -> list[bool] | None:
        """Per ask (in order), in one compare-and-set: True: taken; False: its limit of
        the day's quota is used. None: too much contention, retry."""
        key = self._day_key(now)
        for _ in range(MAX_TRIES):
            try:
                entry = await self.kv.get(key)
                used, revision = int(entry.value or b"0"), entry.revision
            except KeyNotFoundError:
                used, revision = 0, None
            fits: list[bool] = []
            for ask in asks:
                fits.append(used + sum(fits) < self.limit(self.quota.per_day, ask.scheduled))
            taken = sum(fits)
            if not taken:
                self.known["day"] = max(0, self.quota.per_day - used)
                return fits
            value = str(used + taken).encode()
            try:
                if revision is None:
                    await self.kv.create(key, value)
                else:
                    await self.kv.update(key, value, last=revision)
            except KeyWrongLastSequenceError:
                continue
            self.known["day"] = max(0, self.quota.per_day - used - taken)
            return fits
        return None


def _count(counts: Window, oldest: float) -> int:
    """Grants in the window younger than ``oldest`` (in flight ones included)."""
    return sum(n for at, n in counts.items() if at / TICKS > oldest)


def _settled(counts: Window, settles: list[_Settle]) -> bool:
    """Move each settle's grant from its in-flight tick to its end time's (grants of one
    tick are interchangeable: each stands for one grant in flight); whether any moved. A
    stamp already gone from the window has nothing to move."""
    moved = False
    for entry in settles:
        at = round(entry.stamp * TICKS)
        if counts.get(at, 0) > 0:
            counts[at] -= 1
            if not counts[at]:
                del counts[at]
            end = tick(entry.ended)
            counts[end] = counts.get(end, 0) + 1
            moved = True
    return moved


def _written(settles: list[_Settle]) -> None:
    for entry in settles:
        if not entry.written.done():
            entry.written.set_result(None)
