"""A target's health, shared by every replica of its sink: the KV bucket ``target_health``,
one key per target (its name).

After ``pause_after`` consecutive failed deliveries (the target's own failures: timeouts,
refused connections, 5xx, 429, and a ``410 Gone`` at once) the target is **paused**: every
replica keeps its deliveries waiting in the sink (kept alive in JetStream, never handed
back, never dead-lettered for it) while one delivery at a time is tried as a *probe*, the
first ``retry.probe_backoff`` seconds after the pause, each next one twice as long after
a failed one (at most ``retry.max_probe_backoff``). One successful delivery, by any
replica, resumes it.

Replicas share the record by compare-and-set (the failure count, the pause, the probe
turns); each keeps a view of it, read again every :data:`REFRESH` seconds, so a delivery
that finds the target healthy costs no round trip at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus import messages
from shared.bus.kvtime import MAX_TRIES
from shared.core.background import Repeating
from shared.relay.config import RetryPolicy
from shared.relay.target import Paced

HealthState = Literal["active", "paused"]
Transition = Literal["paused", "resumed"]

REFRESH = 1.0
"""Seconds between two reads of the shared record by a replica (a pause or a resume by
another replica is seen at most this late)."""


class TargetHealth(msgspec.Struct, kw_only=True, frozen=True):
    """What the bucket ``target_health`` holds for one target (also the API's answer)."""

    target: str
    state: HealthState = "active"
    consecutive_failures: int = 0
    last_error: str | None = None
    paused_at: str | None = None
    """When it was paused (RFC 3339, UTC); kept after a resume until the next pause."""
    resumed_at: str | None = None
    probes: int = 0
    """Probes tried since the pause."""
    next_probe_at: float = 0.0
    """Epoch seconds: no probe before then (while paused)."""
    updated_at: str = ""


_decode = msgspec.json.Decoder(TargetHealth).decode


def decode(data: bytes) -> TargetHealth:
    return _decode(data)


def epoch_text(epoch: float) -> str | None:
    """``2026-01-02T03:04:05Z`` for epoch seconds (None for 0)."""
    if epoch <= 0:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True, slots=True)
class Change:
    """A pause or a resume this replica made (it tells ``on_failure``)."""

    transition: Transition
    health: TargetHealth


class Health:
    """One sink process's view of its target's health, and its share of the writes."""

    def __init__(
        self, kv: KeyValue | None, target: str, pause_after: int, policy: RetryPolicy, log: Any
    ) -> None:
        self.kv = kv
        self.target = target
        self.pause_after = pause_after
        self.policy = policy
        self.view = TargetHealth(target=target)
        self._log = log
        self._changed = asyncio.Event()
        self._refresher = Repeating(self.refresh, lambda: REFRESH, wait_first=True)
        self._listeners: list[Any] = []

    @property
    def paused(self) -> bool:
        return self.view.state == "paused"

    def on_change(self, listener: Any) -> None:
        """``listener(view)`` after every change of the view (metrics)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        await self.refresh()
        if self.kv is not None:
            self._refresher.start()

    async def close(self) -> None:
        await self._refresher.stop()

    async def refresh(self) -> None:
        """Read the shared record again (best effort: the view stays as it is)."""
        if self.kv is None:
            return
        with contextlib.suppress(Exception):
            current, _ = await self._read()
            self._see(current)

    def _see(self, health: TargetHealth) -> None:
        if health == self.view:
            return
        was = self.view.state
        self.view = health
        if health.state != was:
            self._log.warning(
                "target paused: deliveries wait" if health.state == "paused" else "target resumed",
                failures=health.consecutive_failures,
                error=health.last_error,
            )
        for listener in self._listeners:
            listener(health)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _read(self) -> tuple[TargetHealth, int | None]:
        assert self.kv is not None
        try:
            entry = await self.kv.get(self.target)
        except KeyNotFoundError:
            return TargetHealth(target=self.target), None
        if not entry.value:
            return TargetHealth(target=self.target), entry.revision
        try:
            return decode(entry.value), entry.revision
        except (msgspec.DecodeError, msgspec.ValidationError):
            return TargetHealth(target=self.target), entry.revision

    async def _update(self, change: Any) -> tuple[TargetHealth, TargetHealth] | None:
        """Apply ``change(current) -> new or None`` by compare-and-set; ``(before, after)``
        when it wrote, None when nothing needed writing. Without a store (or when it does
        not answer) the change holds in this process only."""
        if self.kv is None:
            return self._local(change)
        try:
            for _ in range(MAX_TRIES):
                current, revision = await self._read()
                new = change(current)
                if new is None:
                    self._see(current)
                    return None
                data = messages.encode(new)
                try:
                    if revision is None:
                        await self.kv.create(self.target, data)
                    else:
                        await self.kv.update(self.target, data, last=revision)
                except KeyWrongLastSequenceError:
                    continue
                self._see(new)
                return current, new
        except Exception as exc:
            self._log.warning(
                "target health store unreachable: kept in this process",
                error=str(exc) or type(exc).__name__,
            )
        return self._local(change)

    def _local(self, change: Any) -> tuple[TargetHealth, TargetHealth] | None:
        before = self.view
        new = change(before)
        if new is None:
            return None
        self._see(new)
        return before, new

    async def failed(self, error: str, gone: bool = False) -> Change | None:
        """A delivery failed (``gone``: the service answered 410); a :class:`Change` when
        this replica paused the target."""
        now = time.time()

        def change(current: TargetHealth) -> TargetHealth:
            failures = current.consecutive_failures + 1
            pause = current.state == "active" and (
                gone or (self.pause_after > 0 and failures >= self.pause_after)
            )
            if not pause:
                return msgspec.structs.replace(
                    current,
                    consecutive_failures=failures,
                    last_error=error[:500],
                    updated_at=messages.utc_now(),
                )
            return msgspec.structs.replace(
                current,
                state="paused",
                consecutive_failures=failures,
                last_error=error[:500],
                paused_at=messages.utc_now(),
                probes=0,
                next_probe_at=now + self.policy.probe_delay(0),
                updated_at=messages.utc_now(),
            )

        written = await self._update(change)
        if written is not None and written[0].state == "active" and written[1].state == "paused":
            return Change("paused", written[1])
        return None

    async def succeeded(self) -> Change | None:
        """A delivery succeeded; a :class:`Change` when this replica resumed the target.
        No round trip while the view says the target is healthy."""
        if self.view.state == "active" and self.view.consecutive_failures == 0:
            return None

        def change(current: TargetHealth) -> TargetHealth | None:
            if current.state == "active" and current.consecutive_failures == 0:
                return None
            return msgspec.structs.replace(
                current,
                state="active",
                consecutive_failures=0,
                probes=0,
                next_probe_at=0.0,
                resumed_at=messages.utc_now() if current.state == "paused" else current.resumed_at,
                updated_at=messages.utc_now(),
            )

        written = await self._update(change)
        if written is not None and written[0].state == "paused":
            return Change("resumed", written[1])
        return None

    async def turn(self, stop: asyncio.Event) -> bool:
        """Wait while the target is paused; ``True`` when this delivery may go as the probe,
        ``False`` when the target is active. :class:`Paced` when the sink stops meanwhile."""
        while True:
            view = self.view
            if view.state == "active":
                return False
            now = time.time()
            if now >= view.next_probe_at and await self._claim_probe(now):
                return True
            if self.view.state == "active":
                return False
            wait = min(max(self.view.next_probe_at - time.time(), 0.01), REFRESH)
            changed = self._changed
            waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if stop.is_set():
                raise Paced(f"target {self.target} paused", max(view.next_probe_at - now, 0.0))

    async def _claim_probe(self, now: float) -> bool:
        """Take the next probe turn (one replica, one delivery at a time)."""

        def change(current: TargetHealth) -> TargetHealth | None:
            if current.state != "paused" or current.next_probe_at > now:
                return None
            probes = current.probes + 1
            return msgspec.structs.replace(
                current,
                probes=probes,
                next_probe_at=now + self.policy.probe_delay(probes),
                updated_at=messages.utc_now(),
            )

        return await self._update(change) is not None
