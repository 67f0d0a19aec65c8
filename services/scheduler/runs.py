"""Running the watches: one replica at a time holds the lease; it submits each watch's
re-lookup when due.

- **The watches** (:class:`WatchList`): every replica keeps them in memory, read again
  whenever the ``watches`` bucket changed (its stream's last sequence, one small request
  per tick), for the indexer's alert rule as well as for the runs.
- **The lease** (:class:`Lease`): the key ``lease`` of the bucket ``scheduler`` names its
  holder and until when it holds; the holder renews it every tick by compare-and-set, and
  another replica takes it only once it has lapsed (three ticks and a second). Only the holder
  looks for due watches.
- **The runs** (:meth:`Scheduler.run_due`): a watch's ``run.<id>`` key says when it runs
  next. A due run is claimed by moving that time on by compare-and-set *before* the job is
  submitted, so even two replicas that both believe they hold the lease (a paused process
  that wakes up after its lease lapsed) cannot run one period twice. Periods missed while
  no scheduler ran are not made up: the watch runs once, and then every ``every`` again.
  A period whose watch's previous job has not finished yet (its requests wait for a quota)
  is skipped: runs never pile up behind a quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.scheduler.config import SchedulerSettings
from services.scheduler.metrics import SchedulerMetrics
from shared.bus import direct, messages
from shared.bus.cas import leader_bucket
from shared.bus.manage import KV_STREAM
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import catalog, history, indicators, jobs, watches
from shared.lookups import streams as lookup_streams
from shared.lookups.watches import NotifyOn, RunState, Watch

_log = log.get("scheduler")
LEASE_KEY = "lease"
HOLD_BACK = 86_400.0
"""How long an unfinished job of a watch holds its next runs back (see ``_unfinished``)."""


class WatchList:
    """Every watch, and by indicator key the watches holding it, read again when the
    bucket changed."""

    def __init__(self, js: JetStreamContext, reader: direct.Reader) -> None:
        self._js = js
        self._reader = reader
        self._seq = -1
        self.watches: dict[str, Watch] = {}
        self.by_indicator: dict[str, list[tuple[str, NotifyOn]]] = {}

    async def refresh(self, force: bool = False) -> None:
        info = await self._js.stream_info(KV_STREAM.format(bucket=lookup_streams.WATCHES_BUCKET))
        last = info.state.last_seq
        if last == self._seq and not force:
            return
        found = await watches.load_all(self._reader)
        by_indicator: dict[str, list[tuple[str, NotifyOn]]] = {}
        for watch in found:
            for item in watch.indicators:
                key = history.key_of(item.kind, item.value)
                by_indicator.setdefault(key, []).append((watch.id, watch.notify_on))
        self.watches = {w.id: w for w in found}
        self.by_indicator = by_indicator
        self._seq = last


class LeaseValue(msgspec.Struct, frozen=True):
    holder: str
    until: float


_decode_lease = msgspec.json.Decoder(LeaseValue).decode


class Lease:
    """The scheduler's lease: at most one holder at a time (see the module)."""

    def __init__(self, kv: KeyValue, length: float) -> None:
        self._kv = kv
        self.length = length
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        self.active = False

    async def _read(self) -> tuple[LeaseValue | None, int | None]:
        try:
            entry = await self._kv.get(LEASE_KEY)
        except KeyNotFoundError:
            return None, None
        try:
            return (_decode_lease(entry.value) if entry.value else None), entry.revision
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None, entry.revision

    async def hold(self) -> bool:
        """Take or renew the lease; whether this replica holds it now."""
        current, revision = await self._read()
        now = time.time()
        if current is not None and current.holder != self.holder and current.until > now:
            self._set(False)
            return False
        value = messages.encode(LeaseValue(self.holder, now + self.length))
        try:
            if revision is None:
                await self._kv.create(LEASE_KEY, value)
            else:
                await self._kv.update(LEASE_KEY, value, last=revision)
        except KeyWrongLastSequenceError:
            self._set(False)  # another replica took it first
            return False
        self._set(True)
        return True

    def _set(self, active: bool, why: str = "lost") -> None:
        if active != self.active:
            _log.info("scheduler lease " + ("taken" if active else why), holder=self.holder)
        self.active = active

    async def release(self) -> None:
        """Give the lease up at once (on stop), so another replica need not wait."""
        if not self.active:
            return
        current, revision = await self._read()
        if current is not None and current.holder == self.holder and revision is not None:
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self._kv.update(
                    LEASE_KEY, messages.encode(LeaseValue(self.holder, 0.0)), last=revision
                )
        self._set(False, "released")


class Scheduler:
    def __init__(
        self,
        js: JetStreamContext,
        reader: direct.Reader,
        settings: Settings,
        config: SchedulerSettings,
        watchlist: WatchList,
        metrics: SchedulerMetrics,
    ) -> None:
        self._js = js
        self._reader = reader
        self._settings = settings
        self._config = config
        self.watchlist = watchlist
        self._metrics = metrics
        self.lease: Lease | None = None
        self._kv: KeyValue | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._kv = await leader_bucket(self._js, lookup_streams.SCHEDULER_BUCKET)
        self.lease = Lease(self._kv, self._config.lease)
        try:
            while not stop.is_set():
                try:
                    await self.watchlist.refresh()
                    active = await self.lease.hold()
                    self._metrics.active.set(1 if active else 0)
                    if active:
                        await self.run_due()
                except Exception as exc:  # the bus is away: the next tick tries again
                    _log.warning("scheduler tick failed", error=str(exc) or repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._config.tick)
        finally:
            try:
                await self.lease.release()
            except Exception as exc:
                _log.info("could not release the lease", error=str(exc) or repr(exc))
            self._metrics.active.set(0)

    async def run_due(self) -> None:
        """Submit the re-lookup of every watch that is due, each claimed first."""
        states = await self._states()
        for watch in list(self.watchlist.watches.values()):
            state, revision = states.get(watch.id, (None, None))
            now = time.time()
            due = state.next_at if state is not None else now
            if due > now:
                continue
            following = due + watch.every
            if following <= now:  # periods missed (no scheduler ran): once now, then on
                following = now + watch.every
            claimed = RunState(
                next_at=following,
                last_at=now,
                last_job=None,
                runs=(state.runs if state is not None else 0) + 1,
            )
            claim = await self._write(watch.id, claimed, revision)
            if claim is None:
                continue  # another replica claimed this run
            await self._submit(watch, claimed, claim, state)

    async def _states(self) -> dict[str, tuple[RunState, int]]:
        """Each watch's schedule and its revision (the stream sequence a direct get gives
        is the key's revision), read afresh for each round."""
        stored = await self._reader.scan(
            direct.kv_stream(lookup_streams.SCHEDULER_BUCKET),
            direct.kv_subject(lookup_streams.SCHEDULER_BUCKET, "run.*"),
        )
        found: dict[str, tuple[RunState, int]] = {}
        for msg in stored:
            watch_id = direct.kv_key(lookup_streams.SCHEDULER_BUCKET, msg.subject)[4:]
            if msg.removed or not msg.data:
                found.pop(watch_id, None)
                continue
            try:
                found[watch_id] = (watches.decode_state(msg.data), msg.seq)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
        return found

    async def _write(self, watch_id: str, state: RunState, revision: int | None) -> int | None:
        """``state`` written if the key is still at ``revision``: its new revision, or
        None when another writer came first."""
        assert self._kv is not None
        body = messages.encode(state)
        try:
            if revision is None:
                return await self._kv.create(watches.run_key(watch_id), body)
            return await self._kv.update(watches.run_key(watch_id), body, last=revision)
        except KeyWrongLastSequenceError:
            return None

    async def _unfinished(self, before: RunState | None) -> str | None:
        """The watch's previous job while it has not finished (its requests wait for a
        quota, say) and is less than :data:`HOLD_BACK` old; else None."""
        if before is None or before.last_job is None or before.last_at is None:
            return None
        if time.time() - before.last_at > HOLD_BACK:
            return None  # a job a provider never finishes must not stop the watch for good
        job = await jobs.load(self._reader, before.last_job)
        if job is None:
            return None
        return None if (await jobs.current(self._reader, job)).complete else job.id

    async def _submit(
        self, watch: Watch, claimed: RunState, revision: int, before: RunState | None
    ) -> None:
        try:
            unfinished = await self._unfinished(before)
        except Exception as exc:  # cannot tell: run as planned
            _log.info("previous run not read", watch=watch.id, error=str(exc) or repr(exc))
            unfinished = None
        if unfinished is not None and before is not None:
            self._metrics.runs_skipped.inc()
            _log.info(
                "watch run skipped: its previous job has not finished",
                watch=watch.id,
                job=unfinished,
            )
            kept = msgspec.structs.replace(before, next_at=claimed.next_at)
            await self._write(watch.id, kept, revision)
            return
        parsed = indicators.parse_items([i.value for i in watch.indicators])
        # A provider turned off since the watch was made is not asked: a job waiting for
        # it would never complete (and no change of verdict would ever be told).
        running = catalog.active_names(self._settings)
        asked = [p for p in watch.providers if p in running]
        if watch.providers and not asked:
            _log.warning(
                "watch run skipped: its providers are turned off",
                watch=watch.id,
                providers=watch.providers,
            )
            await self._write(watch.id, claimed, revision)
            return
        try:
            job = await jobs.submit(
                self._js,
                self._settings,
                parsed,
                asked,
                True,  # fresh: a watch asks what the providers say now
                request_id=f"watch-{watch.id}-{claimed.runs}",
                watch=watch.id,
            )
        except Exception as exc:
            self._metrics.run_failures.inc()
            _log.warning("watch run not submitted", watch=watch.id, error=str(exc) or repr(exc))
            # Due again at the next tick (unless another writer moved it meanwhile).
            retry = before or RunState(next_at=0.0)
            await self._write(watch.id, msgspec.structs.replace(retry, next_at=0.0), revision)
            return
        self._metrics.runs.inc()
        _log.info("watch run submitted", watch=watch.id, job=job.id, run=claimed.runs)
        await self._write(watch.id, msgspec.structs.replace(claimed, last_job=job.id), revision)
