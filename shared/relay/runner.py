"""The sink runner: pull notifications from a target's durable consumer and deliver them.

Guarantees:

- a message is acknowledged only after the target accepted it, or after it was stored in
  ``deadletter.<target>`` (JetStream-acknowledged);
- a retryable failure is negatively acknowledged with a delay (exponential backoff with
  jitter, or the target's ``Retry-After``), so the retry schedule lives in JetStream and
  survives a crash of the sink; what counts towards ``max_attempts`` is the failed sends
  made while the target was active (``tries``, kept in the delivery's status record), not
  JetStream's delivery count, which a stopping sink's hand-back and a crash raise too;
- the runner is the only place that paces: every send takes a turn of the target's
  :class:`~shared.relay.pacing.Pacer` (``per_second``, shared by the sink's replicas), and
  a ``Retry-After`` (or a :class:`~shared.relay.target.Delivered` pause) pauses every send
  to the target. A delivery waiting for its turn stays in this process (kept alive with
  "in progress"), never handed back, so waiting never spends one of its attempts;
- after ``retry.max_attempts`` attempts, or at once on a permanent failure or an
  undecodable message, the notification goes to the dead-letter stream;
- a notification an active silence matches (:mod:`shared.relay.silences`, checked in
  memory before each send and before any dead letter) is acknowledged as ``silenced``:
  neither sent nor dead-lettered (a replay, asked for by hand, is not silenced);
- deliveries run concurrently (``concurrency``), so one slow notification never holds up
  the others, and a slow target never delays another target (each has its own consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from shared.bus import messages
from shared.bus.consume import consume
from shared.core import logging as log
from shared.core.settings import Settings
from shared.relay import operational, schemas, status, streams
from shared.relay.config import RetryPolicy, TargetConfig
from shared.relay.deadletters import ORIGINAL_SUBJECT_HEADER
from shared.relay.grouping import Grouper, Member, digest
from shared.relay.health import Change, Health, TargetHealth, epoch_text
from shared.relay.metrics import SinkMetrics
from shared.relay.pacing import Pacer
from shared.relay.routing import matches
from shared.relay.silences import SilenceView
from shared.relay.sources import Attributes, Reading, read
from shared.relay.target import (
    ANSWER_STATUS,
    Delivered,
    Delivery,
    Gone,
    Paced,
    PermanentError,
    RetryableError,
    Target,
    answer_status,
)

_NO_ATTRS = Attributes()

PACED_RECHECK = 0.1
"""A delivery waiting for its send slot asks the pacer again at least this long later."""
CRASH_LOOP = 3
"""A notification JetStream delivered more than this many times ``max_attempts`` is
dead-lettered on arrival ("too many delivery attempts"): the sink kept crashing on it, or
stopped that often while it waited. Its sends are bounded by ``max_attempts`` itself."""


def backoff(policy: RetryPolicy, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return policy.delay(attempt) * (1.0 - policy.jitter * rand())


def _stored_at(msg: Msg) -> datetime | None:
    """When JetStream stored the message (the end-to-end latency's start)."""
    try:
        return msg.metadata.timestamp
    except Exception:  # not a JetStream message (never in practice)
        return None


def _original_subject(msg: Msg, notification: schemas.Notification | None) -> str:
    """The notification's own subject, also for a replay (``replay.<target>``)."""
    if not msg.subject.startswith("replay."):
        return msg.subject
    original = (msg.headers or {}).get(ORIGINAL_SUBJECT_HEADER)
    return original or (notification.subject if notification else msg.subject)


class SinkRunner:
    def __init__(
        self,
        nc: NATS,
        target: Target,
        config: TargetConfig,
        settings: Settings,
        metrics: SinkMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else SinkMetrics(config.name)
        self.nc = nc
        self.js = nc.jetstream()
        self.target = target
        self.config = config
        self.settings = settings
        self.log = log.get("sink").bind(target=config.name)
        self._pacer = Pacer(
            config.name,
            config.send_rate,
            max_wait=streams.ack_wait_for(config.timeout),
            max_pause=config.retry.max_retry_after,
        )
        self._stop = asyncio.Event()
        self._health = Health(None, config.name, config.pause_after, config.retry, self.log)
        self._health.on_change(self._health_changed)
        self._status_kv: KeyValue | None = None
        self._silences = SilenceView()  # filled and followed from run()
        self._grouper = (
            Grouper(config, self._flush_group, keepalive=streams.ack_wait_for(config.timeout) / 3)
            if config.group_window is not None
            else None
        )

    async def run(self, stop: asyncio.Event) -> None:
        name = self.config.name
        self._stop = stop
        await streams.provision(self.js, self.settings)
        sub = await self.js.pull_subscribe_bind(
            durable=streams.sink_durable(name), stream=streams.NOTIFICATIONS
        )
        await self._share_pacing()
        await self._share_health()
        self._status_kv = await self.js.key_value(streams.STATUS_BUCKET)
        self._silences = SilenceView(self.nc, self.settings.publish_timeout)
        await self._silences.start()
        await self.target.open()
        self.log.info("sink started", consumer=streams.sink_durable(name))
        try:
            await consume(
                sub,
                self._handle,
                concurrency=self.config.concurrency,
                stop=stop,
                log=self.log,
                drain_timeout=self.config.timeout + 5,
            )
        finally:
            if self._grouper is not None:
                await self._grouper.close(timeout=self.config.timeout + 5)
            await self._health.close()
            await self._silences.stop()
            await self.target.close()
            self.log.info("sink stopped")

    async def _share_pacing(self) -> None:
        """Make the target's send rate and its pauses hold across every replica of this
        sink: the KV bucket ``sink_pace``. A target without ``per_second`` never touches
        it (its pauses hold in this process only)."""
        if not self._pacer.rated:
            return
        kv = await self.js.key_value(streams.PACE_BUCKET)
        self._pacer.share(kv, self.config.name)
        self.log.info("send rate shared by every replica", bucket=streams.PACE_BUCKET)

    async def _share_health(self) -> None:
        """Pause and resume the target together with every other replica of this sink:
        the KV bucket ``target_health`` (see shared.relay.health)."""
        kv = await self.js.key_value(streams.HEALTH_BUCKET)
        health = Health(kv, self.config.name, self.config.pause_after, self.config.retry, self.log)
        health.on_change(self._health_changed)
        self._health = health
        await health.start()

    def _health_changed(self, health: TargetHealth) -> None:
        self.metrics.paused.set(1 if health.state == "paused" else 0)
        self.metrics.consecutive_failures.set(health.consecutive_failures)

    async def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        attempt = meta.num_delivered
        headers = msg.headers or {}
        request_id = headers.get(messages.REQUEST_ID_HEADER)
        try:
            notification = schemas.decode_notification(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._dead_letter(msg, None, f"not a valid notification: {exc}", attempt)
            return
        if not notification.id.isprintable():  # only from a publisher that bypassed the
            # gateway: no header (webhook-id, a mail's) can carry it, so no retry would help
            reason = "not a valid notification: its id holds a control character"
            await self._dead_letter(msg, notification, reason, attempt)
            return
        logger = self.log.bind(
            notification_id=notification.id, attempt=attempt, request_id=request_id
        )
        subject = _original_subject(msg, notification)
        delivery = Delivery(notification, subject, attempt, request_id)
        reading = delivery.reading  # the message, decoded once for every reader below
        to = operational.addressed_to(reading)  # lookout's own, for one target only
        if (to is None and not matches(self.config.match, reading)) or (
            to is not None and to != self.config.name
        ):
            logger.debug("skipped: route does not match", subject=msg.subject)
            await msg.ack()
            self.metrics.skipped.inc()
            await self._status(reading, msg.subject, "skipped", attempt, received=_stored_at(msg))
            return
        if await self._silenced(msg, reading, attempt - 1):
            return
        if attempt > CRASH_LOOP * self.config.retry.max_attempts and not self._health.paused:
            # Redelivered far past the bound (e.g. the sink kept crashing on it): stop here
            # rather than loop forever. Generous: a sink that stopped handed its waiting
            # deliveries back, which counts too. Not while the target is paused.
            await self._dead_letter(msg, reading, "too many delivery attempts", attempt)
            return
        if self._grouper is not None and subject == msg.subject and to is None:
            # replays and lookout's own notifications go on their own
            self._grouper.add(Member(msg, delivery, reading.attributes))
            return
        await self._attempt([Member(msg, delivery, _NO_ATTRS)], delivery)

    async def _flush_group(self, members: list[Member]) -> None:
        if len(members) == 1:
            await self._attempt(members, members[0].delivery)
            return
        window = self.config.group_window or 0.0
        try:
            delivery = digest(self.config, members, window)
        except Exception as exc:  # never strand the members unacknowledged
            self.log.exception("could not build a digest")
            await self._dead_letter_all(members, f"digest failed: {exc}")
            return
        self.log.info("sending digest", digest_id=delivery.notification.id, count=len(members))
        await self._attempt(members, delivery)

    async def _attempt(self, members: list[Member], delivery: Delivery) -> None:
        """Deliver ``delivery`` (one notification, or the digest of ``members``) and settle
        every member: ack, nak with a delay, or dead letter."""
        note = delivery.notification
        logger = self.log.bind(
            notification_id=note.id, attempt=delivery.attempt, request_id=delivery.request_id
        )
        if delivery.subject != members[0].msg.subject and len(members) == 1:
            logger = logger.bind(replay=True)
        logger.debug("delivering", subject=delivery.subject, type=note.type, members=len(members))
        started = time.monotonic()
        await self._load_history(members)
        try:
            outcome = await self._deliver_with_progress(members, delivery, logger)
        except PermanentError as exc:
            logger.warning("delivery failed permanently", error=str(exc))
            await self._dead_letter_all(members, str(exc))
            return
        except Paced as exc:  # the sink is stopping: hand the waiting delivery back
            await self._hand_back(members, exc, logger)
            return
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if not isinstance(exc, RetryableError):
                logger.exception("target raised an unexpected error")
            elif exc.retry_after is not None:  # 429 / Retry-After: pause every send
                self._pacer.pause(exc.retry_after)
            for member in members:
                attempt = member.delivery.attempt
                member.tries += 1
                if member.tries >= self.config.retry.max_attempts:
                    logger.warning("delivery failed, attempts exhausted", error=reason)
                    await self._dead_letter(
                        member.msg, member.delivery.reading, reason, attempt, member.history
                    )
                    continue
                delay = self._retry_delay(exc, member.tries)
                logger.info("delivery failed, will retry", error=reason, retry_in=round(delay, 3))
                # The record first: the redelivery reads its tries (same connection, so
                # the server has it before the nak).
                await self._status(
                    member.delivery.reading,
                    member.delivery.subject,
                    "retrying",
                    attempt,
                    reason,
                    delay,
                    received=_stored_at(member.msg),
                    history=member.history,
                    tries=member.tries,
                )
                await member.msg.nak(delay=delay)
                self.metrics.retrying.inc()
            return
        if outcome is not None:  # delivered, and the service asked for a pause
            self._pacer.pause(outcome.pause)
        metrics = self.metrics
        now = datetime.now(UTC)
        if len(members) > 1:
            metrics.digests.inc()
        for member in members:
            await member.msg.ack()
            metrics.delivered.inc()
            metrics.observe_end_to_end(_stored_at(member.msg), now)
            await self._status(
                member.delivery.reading,
                member.delivery.subject,
                "delivered",
                member.delivery.attempt,
                received=_stored_at(member.msg),
                history=member.history,
            )
        logger.info(
            "delivered",
            subject=delivery.subject,
            ms=round((time.monotonic() - started) * 1000, 1),
            **({"count": len(members)} if len(members) > 1 else {}),
        )

    async def _status(
        self,
        reading: Reading,
        subject: str,
        state: status.State,
        attempts: int,
        error: str | None = None,
        retry_in: float | None = None,
        received: datetime | None = None,
        history: list[status.Attempt] | None = None,
        next_at: str | None = None,
        silence_id: str | None = None,
        tries: int = 0,
    ) -> None:
        """Record the outcome for the API (best effort: never fails a delivery)."""
        if retry_in is not None:
            when = datetime.now(UTC) + timedelta(seconds=retry_in)
            next_at = when.isoformat(timespec="seconds").replace("+00:00", "Z")
        notification = reading.notification
        shown = status.shown(reading)
        record = status.DeliveryStatus(
            notification_id=notification.id,
            source=notification.source,
            type=notification.type,
            timestamp=notification.timestamp,
            subject=subject,
            target=self.config.name,
            state=state,
            attempts=attempts,
            last_error=error[:500] if error else None,
            next_attempt_at=next_at,
            updated_at=messages.utc_now(),
            received_at=status.utc_text(received),
            title=shown.title,
            application=shown.application,
            environment=shown.environment,
            risk=shown.risk,
            attempt_log=history or [],
            silence_id=silence_id,
            tries=tries,
        )
        try:
            # A plain publish on the bucket's subject: JetStream stores it like a put, and
            # the delivery path does not wait for (or pay for) the acknowledgement. Updates
            # of one key leave on this one connection, so they are stored in order.
            subject = f"$KV.{streams.STATUS_BUCKET}.{status.key(notification, self.config.name)}"
            await self.nc.publish(subject, messages.encode(record))
        except Exception as exc:
            self.log.warning("could not record delivery status", error=str(exc) or repr(exc))

    async def _deliver_with_progress(
        self, members: list[Member], delivery: Delivery, logger: Any
    ) -> Delivered | None:
        """Deliver (after the pacer's turn), telling JetStream the messages are in progress
        while the target or the pacer is slow: a timer, so a delivery that is quick (nearly
        all) costs no task and no wait of its own."""
        loop = asyncio.get_running_loop()
        interval = streams.ack_wait_for(self.config.timeout) / 3
        beats: set[asyncio.Task[None]] = set()
        timer: asyncio.TimerHandle

        async def beat() -> None:
            for member in members:
                with contextlib.suppress(Exception):  # best effort, as the ack itself
                    await member.msg.in_progress()

        def tick() -> None:
            nonlocal timer
            task = loop.create_task(beat())
            beats.add(task)
            task.add_done_callback(beats.discard)
            timer = loop.call_later(interval, tick)

        timer = loop.call_later(interval, tick)
        try:
            return await self._paced(members, delivery, logger)
        finally:
            timer.cancel()

    async def _paced(
        self, members: list[Member], delivery: Delivery, logger: Any
    ) -> Delivered | None:
        """Wait for the pacer's turn, then deliver once.

        A delivery the pacer cannot send soon enough (the target paused, its send slots
        taken further ahead, the shared pacing store silent) waits here, in this process,
        and asks again: handing it back to JetStream would raise its delivery count, which
        is the attempt number, so a backlog behind a slow rate would use up attempts it
        never made. Only a stopping sink hands it back (:class:`Paced`)."""
        waits = 0
        while True:
            if self._health.paused:
                await self._record_paused(members)
            probe = await self._health.turn(self._stop)
            while True:
                try:
                    await self._pacer.turn()
                    break
                except Paced as exc:
                    waits += 1
                    wait = self._paced_wait(exc, waits)
                    reason = str(exc) or type(exc).__name__
                    logger.info(
                        "waiting for its turn to send", reason=reason, retry_in=round(wait, 3)
                    )
                    for member in members:
                        self.metrics.retrying.inc()
                        await self._status(
                            member.delivery.reading,
                            member.delivery.subject,
                            "retrying",
                            member.delivery.attempt,
                            reason,
                            wait,
                            received=_stored_at(member.msg),
                            history=member.history,
                        )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), wait)
                    if self._stop.is_set():
                        raise Paced(reason, wait) from None
            done, outcome = await self._call(members, delivery, probe, logger)
            if done:
                return outcome
            # The target is paused: this delivery waits for it again (not an attempt).

    async def _call(
        self, members: list[Member], delivery: Delivery, probe: bool, logger: Any
    ) -> tuple[bool, Delivered | None]:
        """One call to the target, logged for every member: ``(True, its answer)`` when
        delivered, ``(False, None)`` when it failed while the target is (now) paused: the
        delivery then waits. Any other failure is raised for the caller."""
        self.metrics.attempts.inc()
        started = time.perf_counter()
        token = ANSWER_STATUS.set(None)
        try:
            outcome = await self.target.deliver(delivery)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            reason = str(exc) or type(exc).__name__
            refused = isinstance(exc, PermanentError) and not isinstance(exc, Gone)
            self._log_attempt(members, "refused" if refused else "failed", elapsed, reason)
            pauses = self.config.pause_after > 0
            if not pauses or isinstance(exc, Paced) or (refused and not self._health.paused):
                raise  # a refusal of this one notification says nothing of the target
            change = await self._health.failed(reason, gone=isinstance(exc, Gone))
            if change is not None:
                await self._tell(change)
            if not self._health.paused:
                raise
            logger.info("target paused: delivery waits", error=reason, probe=probe)
            return False, None
        else:
            self._log_attempt(members, "delivered", time.perf_counter() - started, None)
            change = await self._health.succeeded()
            if change is not None:
                await self._tell(change)
            return True, outcome
        finally:
            ANSWER_STATUS.reset(token)
            self.metrics.duration.observe(time.perf_counter() - started)

    def _log_attempt(
        self,
        members: list[Member],
        outcome: status.AttemptOutcome,
        elapsed: float,
        error: str | None,
    ) -> None:
        entry = status.Attempt(
            at=messages.utc_now(),
            outcome=outcome,
            status=answer_status(error),
            ms=round(elapsed * 1000, 1),
            error=error[: status.ERROR_EXCERPT] if error else None,
        )
        for member in members:
            member.history = status.logged(member.history, entry)

    async def _load_history(self, members: list[Member]) -> None:
        """The attempt log of a redelivered notification, from its status record (one read,
        only for a notification tried before: a first delivery starts an empty one)."""
        kv = self._status_kv
        for member in members:
            if member.delivery.attempt <= 1 or member.history or kv is None:
                continue
            note = member.delivery.notification
            with contextlib.suppress(Exception):  # no record, an old one, the store silent
                entry = await kv.get(status.key(note, self.config.name))
                if entry.value:
                    record = status.decode(entry.value)
                    member.history, member.tries = record.attempt_log, record.tries

    async def _record_paused(self, members: list[Member]) -> None:
        health = self._health.view
        for member in members:
            await self._status(
                member.delivery.reading,
                member.delivery.subject,
                "paused",
                member.delivery.attempt,
                f"target paused: {health.last_error or 'failing'}",
                received=_stored_at(member.msg),
                history=member.history,
                next_at=epoch_text(health.next_probe_at),
                tries=member.tries,
            )

    async def _tell(self, change: Change) -> None:
        """A pause or resume this replica made: count it, and tell ``on_failure``."""
        health = change.health
        if change.transition == "paused":
            self.metrics.pauses.inc()
            description = (
                f"Target {self.config.name} was paused after "
                f"{health.consecutive_failures} consecutive failed deliveries"
                if "410" not in (health.last_error or "")
                else f"Target {self.config.name} answered 410 Gone and was paused"
            )
            await self._notify_failure(
                "target_paused",
                health.paused_at or messages.utc_now(),
                description=description,
                error=health.last_error,
                failures=health.consecutive_failures,
                paused_at=health.paused_at,
                next_probe_at=epoch_text(health.next_probe_at),
            )
        else:
            await self._notify_failure(
                "target_resumed",
                health.resumed_at or messages.utc_now(),
                description=f"Target {self.config.name} delivers again: a delivery succeeded",
                paused_at=health.paused_at,
                resumed_at=health.resumed_at,
            )

    async def _notify_failure(self, kind: str, ident: str, **details: Any) -> None:
        """Publish the operational notification ``kind`` for ``on_failure`` (best effort)."""
        to = self.config.on_failure
        if to is None:
            return
        note = operational.build(kind, self.config.name, to, ident, **details)
        try:
            await self.js.publish(
                note.subject,
                messages.encode(note),
                headers=schemas.notification_headers(note),
                timeout=self.settings.publish_timeout,
            )
        except Exception as exc:
            self.log.warning(
                "could not tell the on_failure target", kind=kind, error=str(exc) or repr(exc)
            )

    def _paced_wait(self, exc: Paced, waits: int) -> float:
        """How long a delivery the pacer refused waits before asking again: until its
        send slot or the pause's end comes within the pacer's reach (it then waits the
        rest in :meth:`Pacer.turn`); while the store is silent, the retry backoff, at most
        the pacer's wait (the store is asked again soon after it answers)."""
        if exc.retry_after is None:
            return min(backoff(self.config.retry, waits), self._pacer.max_wait)
        return max(exc.retry_after - self._pacer.max_wait / 2, PACED_RECHECK)

    async def _hand_back(self, members: list[Member], exc: Paced, logger: Any) -> None:
        """A stopping sink gives its waiting deliveries back to JetStream, due when their
        wait would have ended (never dead-lettered for it: they were not tried)."""
        delay = min(max(exc.retry_after or 0.0, 0.0), self.config.retry.max_retry_after)
        logger.info("sink stopping: delivery handed back", retry_in=round(delay, 3))
        for member in members:
            await member.msg.nak(delay=delay)

    def _retry_delay(self, exc: Exception, attempt: int) -> float:
        policy = self.config.retry
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        if retry_after is not None:
            return min(max(retry_after, 0.0), policy.max_retry_after)
        return backoff(policy, attempt)

    async def _dead_letter_all(self, members: list[Member], error: str) -> None:
        for member in members:
            await self._dead_letter(
                member.msg, member.delivery.reading, error, member.delivery.attempt, member.history
            )

    async def _dead_letter(
        self,
        msg: Msg,
        read_as: schemas.Notification | Reading | None,
        error: str,
        attempts: int,
        history: list[status.Attempt] | None = None,
    ) -> None:
        reading = read(read_as) if read_as is not None else None
        if reading is not None and await self._silenced(msg, reading, attempts):
            return
        notification = reading.notification if reading is not None else None
        seq = msg.metadata.sequence.stream
        record = schemas.DeadLetter(
            target=self.config.name,
            subject=_original_subject(msg, notification),
            error=error[:2000],
            attempts=attempts,
            failed_at=messages.utc_now(),
            stream_seq=seq,
            notification=notification,
            raw=None if notification else msg.data[:65536].decode("utf-8", "replace"),
        )
        headers: dict[str, Any] = {
            "Nats-Msg-Id": f"{self.config.name}:{seq}",
            messages.SCHEMA_HEADER: schemas.DEADLETTER_SCHEMA,
        }
        try:
            await self.js.publish(
                f"deadletter.{self.config.name}",
                messages.encode(record),
                headers=headers,
                timeout=self.settings.publish_timeout,
            )
        except Exception as exc:
            # Not stored: leave the notification on its consumer and try again later.
            self.log.error("dead-letter publish failed", error=str(exc) or type(exc).__name__)
            await msg.nak(delay=5.0)
            return
        await msg.ack()
        self.metrics.dead.inc()
        self.metrics.dead_letters.inc()
        if reading is not None:
            await self._status(
                reading,
                record.subject,
                "dead",
                attempts,
                error,
                received=_stored_at(msg),
                history=history,
            )
        if reading is None or operational.addressed_to(reading) is None:  # never about its own
            await self._notify_failure(
                "dead_lettered",
                str(seq),
                description=f"A notification to {self.config.name} was dead-lettered",
                error=error[:500],
                attempts=attempts,
                notification=(
                    {
                        "id": notification.id,
                        "source": notification.source,
                        "type": notification.type,
                    }
                    if notification is not None
                    else None
                ),
                subject=record.subject,
                stream_seq=seq,
            )
        self.log.warning(
            "dead-lettered",
            notification_id=notification.id if notification else None,
            request_id=(msg.headers or {}).get(messages.REQUEST_ID_HEADER),
            stream_seq=seq,
            error=error[:500],
            attempts=attempts,
        )

    async def _silenced(self, msg: Msg, reading: Reading, attempts: int) -> bool:
        """The silences' hook: when an active silence matches, acknowledge the message and
        record ``silenced`` (``attempts``: those made before), and say so. A replay
        (``replay.<target>``, asked for by hand) is never silenced."""
        if msg.subject.startswith("replay."):
            return False
        silence = self._silences.silencing(reading, self.config.name)
        if silence is None:
            return False
        await msg.ack()
        self.metrics.silenced.inc()
        note = reading.notification
        self.log.info("silenced", notification_id=note.id, silence_id=silence.id)
        await self._status(
            reading,
            msg.subject,
            "silenced",
            attempts,
            received=_stored_at(msg),
            silence_id=silence.id,
        )
        return True
