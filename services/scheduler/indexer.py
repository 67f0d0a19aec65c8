"""The history's indexer: every final lookup result into the indicator history, and each
verdict change of a watched indicator out as ``notification.lookout.verdict_changed``.

It pulls every result stored in the KV bucket ``lookup_results`` (``$KV.lookup_results.>``,
the same ``lookup-result/1`` bodies LOOKUP_RESULTS gets a copy of) from the durable
consumer ``lookup-history`` on the bucket's stream (shared by every
replica of the scheduler service: each result is indexed by one of them), updates the
indicator's entry by compare-and-set (:func:`shared.lookups.history.apply`), then publishes
what the entry's outbox holds and takes it out of the outbox, and only then acknowledges
the result. A result that cannot be indexed now (the bus away, a key too contended) comes
back later; one indexed already changes nothing when it comes back, and an alert published
twice is stored once (its ``Nats-Msg-Id``)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

import services.scheduler.alerts as alerts
from services.scheduler.config import SchedulerSettings
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.runs import WatchList
from shared.bus import direct, messages
from shared.bus.cas import leader_bucket
from shared.bus.consume import consume
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import history, jobs, schemas
from shared.lookups import streams as lookup_streams
from shared.lookups.history import Alert, Closing, Entry
from shared.lookups.schemas import Job, LookupResult
from shared.relay.schemas import notification_headers

_log = log.get("scheduler")
JOBS_KEPT = 512
"""Jobs whose summary each replica keeps in memory (a job's results come together)."""
CONCURRENCY = 16


class Indexer:
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
        self._watchlist = watchlist
        self._metrics = metrics
        self._jobs: OrderedDict[str, Job | None] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Job | None]] = {}
        self._kv: KeyValue | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._kv = await leader_bucket(self._js, lookup_streams.HISTORY_BUCKET)
        sub = await self._js.pull_subscribe_bind(
            durable=lookup_streams.HISTORY_DURABLE, stream=lookup_streams.RESULTS_STREAM
        )
        await consume(
            sub,
            self._handle,
            concurrency=CONCURRENCY,
            stop=stop,
            log=_log,
            drain_timeout=10.0,
        )

    async def _handle(self, msg: Msg) -> None:
        if msg.headers and msg.headers.get("KV-Operation"):  # a key deleted or purged
            await msg.ack()
            return
        try:
            result = schemas.decode_lookup_result(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.warning("invalid lookup result not indexed", error=str(exc))
            await msg.term()
            return
        if result.status not in history.FINAL:
            self._metrics.skipped.inc()
            await msg.ack()
            return
        try:
            await self.index(result)
        except Exception as exc:
            self._metrics.failed.inc()
            _log.warning("result not indexed, will retry", error=str(exc) or repr(exc))
            await msg.nak(delay=2.0)
            return
        await msg.ack()

    async def index(self, result: LookupResult) -> None:
        """Take ``result`` into its indicator's history and send what that says to tell."""
        assert self._kv is not None
        job = await self._job(result.job_id)
        if job is not None and result.kind not in job.providers:
            # An indicator of a new kind added to the job since it was read: read it again.
            self._jobs.pop(result.job_id, None)
            job = await self._job(result.job_id)
        if job is not None and job.watch and job.watch not in self._watchlist.watches:
            await self._watchlist.refresh()  # a watch newer than this replica's list
        key = history.key_of(result.kind, result.indicator)
        now = time.time()
        entry = await history.update(
            self._kv, key, lambda e: history.apply(e, result, job, now, self._rule)
        )
        self._metrics.indexed.inc()
        if entry is not None and entry.outbox:
            await self._send(entry.outbox)
            sent = {a.id for a in entry.outbox}
            await history.update(self._kv, key, lambda e: history.sent(e, sent))

    def _rule(self, entry: Entry, closing: Closing) -> list[str]:
        """The watches to tell of a change: each holding the indicator (or whose run found
        it) that wants any change, or only a worse verdict and got one."""
        holders = dict(
            self._watchlist.by_indicator.get(history.key_of(entry.kind, entry.value), [])
        )
        if closing.watch is not None and closing.watch in self._watchlist.watches:
            holders[closing.watch] = self._watchlist.watches[closing.watch].notify_on
        return [w for w, on in holders.items() if on == "any_change" or closing.worse]

    async def _send(self, outbox: list[Alert]) -> None:
        for alert in outbox:
            note = alerts.notification(alert, self._config.public_url)
            ack = await self._js.publish(
                note.subject,
                messages.encode(note),
                headers=notification_headers(note),
                timeout=self._settings.publish_timeout,
            )
            if not ack.duplicate:
                self._metrics.changes.inc()
                _log.info(
                    "verdict changed",
                    indicator=alert.indicator,
                    verdict=alert.new_verdict,
                    was=alert.old_verdict,
                    job=alert.job_id,
                    watches=alert.watches,
                )

    async def _job(self, job_id: str) -> Job | None:
        """The job (without its indicators), kept for the results that follow; None when
        it expired."""
        if job_id in self._jobs:
            self._jobs.move_to_end(job_id)
            return self._jobs[job_id]
        loading = self._loading.get(job_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(job_id))
            self._loading[job_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(job_id, None))
        return await asyncio.shield(loading)

    async def _load(self, job_id: str) -> Job | None:
        found = await jobs.load(self._reader, job_id)
        if found is not None:  # the summary only: a job may hold thousands of indicators
            summary = schemas.summary_of(found)
            found = msgspec.structs.replace(
                found, indicators=[], rejected=[], count=summary.indicators, sample=summary.sample
            )
        self._jobs[job_id] = found
        while len(self._jobs) > JOBS_KEPT:
            self._jobs.popitem(last=False)
        return found
