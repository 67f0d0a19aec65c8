"""A sink target's send rate and its pause after a 429, in one process and across every
replica of its sink (the KV bucket ``sink_pace``). The sink runner is the only user: it
takes a turn before every delivery and pauses the target when the target reports a
``Retry-After`` (see :class:`shared.relay.target.Target`).

:class:`Pacer` paces one process's sends; :meth:`Pacer.share` makes the rate and the pause
hold across every replica through :class:`SharedPace`. Times in the bucket are epoch
seconds (``time.time()``), so replicas on different hosts compare them directly; their
clocks must agree (NTP), as a skew of ``d`` seconds can bring two sends of different
replicas ``d`` closer than the rate allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from aiolimiter import AsyncLimiter
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus.kvtime import MAX_TRIES, Wait, advance, read_time
from shared.core import logging as log
from shared.relay.target import Paced

_encode = msgspec.json.Encoder().encode
T = TypeVar("T")

PAUSE_RECHECK = 0.01
"""A shared pacer that waited at least this long for its slot reads the pause again before
sending: another replica may have been told 429 meanwhile."""
STORE_PROBE = 1.0
"""While the shared store does not answer, a pacer asks it at most once in this many
seconds; the deliveries in between are refused (:class:`Paced`) at once instead of each
waiting for the store's timeout in turn."""


class Pacer:
    """A target's own send rate, and a pause for every send after the service said 429.

    ``turn()`` waits for the pause (up to ``max_wait`` seconds; a longer one raises
    :class:`Paced`, a retryable error carrying the remaining time, and the runner asks
    again later), then for the rate limiter. One pacer serves every concurrent delivery
    of a sink process.

    On its own a pacer holds for one process. :meth:`share`, which the sink runner calls
    when the sink starts, makes the rate and the pause hold across every replica of the
    sink (:class:`shared.relay.pacing.SharedPace`, KV bucket ``sink_pace``): each send then
    also takes a send slot there, after this process's own limiter (so one replica alone
    never claims ahead of the rate, and replicas do not spin on the KV), and waits for it.
    A slot further than ``max_wait`` away is not taken (:class:`Paced` with the time to
    it). When the bucket does not answer, ``turn()`` raises :class:`Paced` too (retried
    later, never sent faster than the rate), logged once until it answers again. A pacer
    without a rate keeps its pause in-process and never touches the bucket.
    """

    def __init__(
        self,
        service: str,
        per_second: float | None,
        max_wait: float = 5.0,
        max_pause: float = 3600.0,
    ) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError("per_second must be positive")
        self.service = service
        self.max_wait = max_wait
        self.max_pause = max_pause
        """The longest pause a 429 may ask for (``retry.max_retry_after``): a service that
        says "come back in a week" does not silence the target for a week."""
        self._per_second = per_second
        self._limiter = AsyncLimiter(1, 1.0 / per_second) if per_second else None
        self._paused_until = 0.0
        self._shared: SharedPace | None = None
        self._asking: list[asyncio.Future[float]] = []  # sends waiting for a shared slot
        self._claimer: asyncio.Future[None] | None = None  # the one claim in flight
        self._store_down = False
        self._store_failed = (0.0, "")  # when (monotonic) and why the store last failed
        self._pausing: set[asyncio.Future[None]] = set()
        self._log = log.get("pacer").bind(service=service)

    @property
    def period(self) -> float:
        """Seconds between two sends at the configured rate (1 s when unlimited)."""
        return float(self._limiter.time_period) if self._limiter else 1.0

    @property
    def rated(self) -> bool:
        """Whether it has a send rate (only then is there anything to share)."""
        return self._per_second is not None

    @property
    def shared(self) -> bool:
        return self._shared is not None

    def share(self, kv: KeyValue, target: str) -> None:
        """Pace together with every other replica of ``target``'s sink through ``kv`` (the
        bucket ``sink_pace``). Without a rate, nothing changes: no KV traffic at all."""
        if self._per_second is None:
            return
        self._shared = SharedPace(kv, target, self._per_second)
        self._log = self._log.bind(target=target)

    async def turn(self) -> None:
        while True:
            remaining = self._paused_until - time.monotonic()
            if remaining > self.max_wait:
                raise Paced(
                    f"paused by a {self.service} rate limit for {remaining:.1f}s more", remaining
                )
            if remaining > 0:
                await asyncio.sleep(remaining)
            if self._limiter is not None:
                await self._limiter.acquire()
            if self._shared is not None:
                delay = await self._claim(self._shared) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if delay >= PAUSE_RECHECK:
                    paused = await self._store(self._shared.paused_until())
                    if paused > time.time():  # paused by another replica: take a new slot
                        self._hold_until(paused)
                        continue
            if time.monotonic() >= self._paused_until:
                return

    def pause(self, seconds: float) -> None:
        seconds = min(seconds, self.max_pause)
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        if self._shared is not None:
            task = asyncio.ensure_future(self._share_pause(self._shared, time.time() + seconds))
            self._pausing.add(task)
            task.add_done_callback(self._pausing.discard)

    async def _share_pause(self, shared: SharedPace, until: float) -> None:
        with contextlib.suppress(Paced):  # logged by _store; this process holds it anyway
            await self._store(shared.pause(until))

    def _hold_until(self, epoch: float) -> None:
        """Hold this process's sends until ``epoch`` (a pause another replica shared)."""
        self._paused_until = max(self._paused_until, time.monotonic() + epoch - time.time())

    async def _claim(self, shared: SharedPace) -> float:
        """A send slot (epoch seconds) from the shared store, or :class:`Paced`.

        One claim is in flight per process at a time; the sends that ask meanwhile are
        served together by the next one (consecutive slots in one compare-and-set), so a
        process never conflicts with itself and its throughput does not hang on the
        store's round trip."""
        failed_at, error = self._store_failed
        if self._store_down and time.monotonic() - failed_at < STORE_PROBE:
            raise Paced(f"{self.service}: shared pacing store unreachable ({error})")
        slot: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._asking.append(slot)
        if self._claimer is None or self._claimer.done():
            self._claimer = asyncio.ensure_future(self._claim_for_asking(shared))
        return await slot

    async def _claim_for_asking(self, shared: SharedPace) -> None:
        while self._asking:
            asking, self._asking = [f for f in self._asking if not f.done()], []
            if not asking:
                continue
            try:
                slots = await self._store(shared.claim(self.max_wait, len(asking)))
            except Paced as exc:  # the store did not answer: retry on the runner's backoff
                for future in asking:
                    if not future.done():
                        future.set_exception(Paced(str(exc)))
                continue
            for future, taken in zip(asking, slots.taken, strict=False):
                if not future.done():
                    future.set_result(taken)
            for future in asking[len(slots.taken) :]:
                if not future.done():
                    future.set_exception(self._refusal(slots.refused))

    def _refusal(self, wait: Wait | None) -> Paced:
        assert wait is not None
        remaining = max(0.0, wait.until - time.time())
        if wait.reason == "paused":
            self._hold_until(wait.until)
            return Paced(
                f"paused by a {self.service} rate limit for {remaining:.1f}s more", remaining
            )
        if wait.reason == "send slots taken":
            return Paced(
                f"{self.service}: every send slot of the next {self.max_wait:g}s is taken "
                f"({self._per_second:g} per second across the sink's replicas)",
                remaining,
            )
        return Paced(f"{self.service}: shared {wait.reason}", remaining)  # pace store busy

    async def _store(self, call: Awaitable[T]) -> T:
        """``await call`` on the shared store; when it fails, :class:`Paced` (logged on the
        first failure only, and once more when the store answers again)."""
        try:
            result = await call
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            self._store_failed = (time.monotonic(), error)
            if not self._store_down:
                self._store_down = True
                self._log.warning(
                    "shared pacing store unreachable: deliveries wait, unsent, until it answers",
                    error=error,
                )
            raise Paced(f"{self.service}: shared pacing store unreachable ({error})") from None
        if self._store_down:
            self._store_down = False
            self._log.info("shared pacing store reachable again")
        return result


def take_slots(
    next_free: float, now: float, period: float, count: int = 1, horizon: float = math.inf
) -> list[float]:
    """GCRA as a "next free slot": asked at ``now`` for ``count`` sends, the first goes at
    ``max(now, next_free)`` and each further one a ``period`` later; only the slots at most
    ``horizon`` seconds from ``now`` are taken (maybe none). The next free slot is then one
    period after the last one taken."""
    first = max(now, next_free)
    if first - now > horizon:
        return []
    fit = count if math.isinf(horizon) else min(count, int((now + horizon - first) / period) + 1)
    return [first + i * period for i in range(fit)]


@dataclass(frozen=True)
class Slots:
    taken: list[float]
    """Send slots taken, epoch seconds, one period apart (fewer than asked, maybe none)."""
    refused: Wait | None = None
    """For the sends that got none: until when (a pause's end, or the next free slot)."""


class SharedPace:
    """A sink target's send rate and pause, shared by every replica of its sink, in the KV
    bucket ``sink_pace``.

    - ``<target>.next`` holds the time of the next free send slot. A replica reads it (or
      starts from what it wrote there last), takes ``slot = max(now, next)`` and writes
      ``next = slot + 1/per_second`` by compare-and-set on the revision it read (read
      again on a conflict), then sends at ``slot``. Two replicas never take the same
      slot, so sends are one period apart whichever replica makes them. A replica may
      take several consecutive slots in one compare-and-set, for the sends that asked
      while its previous claim was on its way. A slot further away than the caller waits
      is not taken.
    - ``<target>.pause`` holds a time before which no replica sends (the target said 429
      and Retry-After); it only moves forward. A pause also moves ``next`` forward to its
      end, so every slot taken after it lies beyond it: nobody needs to read the pause to
      respect it, only to notice one set while it waited for a slot taken before.

    Times are epoch seconds; see the module docstring about clock skew between replicas.
    """

    def __init__(self, kv: KeyValue, target: str, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.kv = kv
        self.target = target
        self.period = 1.0 / per_second
        self._next = f"{target}.next"
        self._pause = f"{target}.pause"
        self._wrote: tuple[float, int] | None = None
        """``next`` and its revision as this replica last wrote it: the next claim tries
        that revision first and reads only when another writer came in between (one
        round trip per claim while a replica has the target to itself)."""

    async def claim(self, horizon: float, count: int = 1, now: float | None = None) -> Slots:
        """Take up to ``count`` consecutive send slots at most ``horizon`` seconds away."""
        known, self._wrote = self._wrote, None
        for _ in range(MAX_TRIES):
            current = time.time() if now is None else now
            if known is None:
                next_free, revision = await read_time(self.kv, self._next)
            else:  # never ahead of the stored value: at worst the write below conflicts
                (next_free, revision), known = known, None
            taken = take_slots(next_free, current, self.period, count, horizon)
            if not taken:
                paused = await self.paused_until()
                if paused > current:
                    return Slots([], Wait(paused, "paused"))
                return Slots([], Wait(max(current, next_free), "send slots taken"))
            after = taken[-1] + self.period
            try:
                if revision is None:
                    written = await self.kv.create(self._next, _encode(after))
                else:
                    written = await self.kv.update(self._next, _encode(after), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another replica took some first: read again
            self._wrote = (after, written)
            return Slots(taken, Wait(after, "send slots taken") if len(taken) < count else None)
        current = time.time() if now is None else now
        return Slots([], Wait(current + 1.0, "pace store busy"))

    async def paused_until(self) -> float:
        return (await read_time(self.kv, self._pause))[0]

    async def pause(self, until: float) -> float:
        """No replica sends before ``until`` (epoch seconds); the pause's end after."""
        end = await advance(self.kv, self._pause, until)
        await advance(self.kv, self._next, end)
        return end
