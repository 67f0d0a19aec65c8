"""The interface every lookup provider implements, and the runner that drives one.

A provider answers one indicator at a time. The runner (one per provider service, any
number of replicas) pulls from the provider's durable consumer, which is delivered only
``lookup.requested.<kind>`` of the kinds the provider answers, looks in the cache, asks the
provider under a bounded timeout, stores the result in the KV bucket ``lookup_results``
(which nats-server publishes again on ``lookup.result.<provider>``) and only then
acknowledges the request. A provider that raises never loses the request: the result says
``error`` with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared.bus import direct, messages
from shared.bus.consume import consume
from shared.bus.kvtime import Wait
from shared.bus.publish import Publisher
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import catalog, indicators, jobs, pivots, schemas, streams
from shared.lookups import quota as quotas
from shared.lookups.config import lookups
from shared.lookups.metrics import ProviderMetrics
from shared.lookups.provider import Answer, Provider, ProviderError, Throttled
from shared.lookups.quota import Exhausted, Granted, SharedQuota
from shared.lookups.schemas import LookupRequest, LookupResult, Status, Verdict

SETTLE_MARGIN = 2.0
"""Seconds a quota grant stays in flight beyond the provider timeout (the time its
settling may take); past both it counts from its stamp anyway."""


def _cache_key(provider: Provider, request: LookupRequest) -> str:
    digest = hashlib.sha256(
        f"{provider.cache_salt()}\0{request.kind}\0{request.indicator}".encode()
    ).hexdigest()[:32]
    return f"{provider.name}.{digest}"


def _older_than(moment: str, seconds: float) -> bool:
    """Whether the RFC 3339 ``moment`` lies more than ``seconds`` back (no: unreadable)."""
    try:
        return time.time() - datetime.fromisoformat(moment).timestamp() > seconds
    except ValueError:
        return False


def _age(msg: Msg) -> float:
    """Seconds since JetStream stored the request (0 when it does not say)."""
    try:
        return max(0.0, time.time() - msg.metadata.timestamp.timestamp())
    except Exception:  # not a JetStream message (never in practice)
        return 0.0


class CacheEntry(msgspec.Struct, frozen=True):
    verdict: Verdict
    summary: str
    data: dict[str, Any]
    expires: float
    stored_at: str


class _Outcome(NamedTuple):
    result: LookupResult
    again_in: float | None
    """In how many seconds to ask again (None: finished)."""
    cache: tuple[str, bytes] | None = None
    """The provider's answer to keep in the cache: its key and entry."""


class ProviderRunner:
    def __init__(
        self,
        js: JetStreamContext,
        provider: Provider,
        settings: Settings,
        metrics: ProviderMetrics | None = None,
        *,
        quota_window: float = quotas.WINDOW,
    ) -> None:
        """``quota_window``: the per-minute quota's window, 60 s; tests only shorten it."""
        self.quota_window = quota_window
        self.metrics = metrics if metrics is not None else ProviderMetrics(provider.name)
        self.js = js
        self.provider = provider
        self.settings = settings
        self.config = lookups(settings).provider(provider.name)
        self.timeout = self.config.timeout
        self.concurrency = self.config.concurrency
        self.kinds = catalog.kinds(provider.name)
        self.log = log.get("provider").bind(provider=provider.name)
        self.cache: KeyValue | None = None
        self.quota: SharedQuota | None = None
        self.publisher = Publisher(js._nc)

    async def run(self, stop: asyncio.Event) -> None:
        await streams.provision(self.js, self.settings)
        await self.publisher.start()
        self.cache = await self.js.key_value(streams.CACHE_BUCKET)
        self.quota = SharedQuota(
            await self.js.key_value(streams.QUOTA_BUCKET),
            self.provider.name,
            self.config.quota,
            margin=self.config.quota_slack,
            hold=self.timeout + SETTLE_MARGIN,
            window=self.quota_window,
        )
        sub = await self.js.pull_subscribe_bind(
            durable=streams.provider_durable(self.provider.name), stream=streams.LOOKUPS
        )
        await self.provider.attach(self.js)
        await self.provider.open()
        self.log.info("provider started", configured=self.provider.configured() is None)
        try:
            await consume(
                sub,
                self._handle,
                concurrency=self.concurrency,
                stop=stop,
                log=self.log,
                drain_timeout=self.timeout + 5,
            )
        finally:
            await self.provider.close()

    async def _handle(self, msg: Msg) -> None:
        try:
            request = schemas.decode_lookup_request(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.log.warning("invalid lookup request dropped", error=str(exc))
            await msg.term()  # never valid, never redelivered; nothing to answer
            return
        if request.kind not in self.kinds or (
            request.providers and self.provider.name not in request.providers
        ):
            await msg.ack()
            return
        request_id = (msg.headers or {}).get(messages.REQUEST_ID_HEADER)
        if request_id:  # this handler's own task: every log line of this lookup carries it
            structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            result, again_in, cache = await self._result_for(request)
            self.metrics.lookup(result.status).inc()
            if request.expand and result.pivots:
                await self._expand(request, result, request_id or "")
            await self._store(result, cache)
        except Exception as exc:
            # KV or bus trouble: let JetStream redeliver the request later.
            self.log.warning("could not store result, will retry", error=str(exc) or repr(exc))
            await msg.nak(delay=2.0)
            return
        if again_in is None:
            await msg.ack()
            return
        # Queued behind the quota: the result says so, the request comes back then.
        delay = max(0.5, again_in) + random.uniform(0, 0.5)
        if _age(msg) + delay <= streams.LOOKUPS_MAX_AGE / 2:
            await msg.nak(delay=delay)
            return
        if _older_than(request.requested_at, lookups(self.settings).job_ttl):
            self.log.info("job expired while its request waited: dropped", job=request.job_id)
            await msg.ack()
            return
        try:
            await self._requeue(request, request_id)
        except Exception as exc:
            self.log.warning("could not put the request back", error=str(exc) or repr(exc))
            await msg.nak(delay=min(delay, 60.0))  # try again soon, while the stream has it
            return
        await msg.ack()

    async def _requeue(self, request: LookupRequest, request_id: str | None) -> None:
        """Put a request back as a fresh copy, for this provider alone: it has waited so
        long that its return would fall close to the end of its life in the stream
        (:data:`streams.LOOKUPS_MAX_AGE`). The copy comes at once, finds the quota or the
        pause still there and waits with its own delayed nak."""
        copy = msgspec.structs.replace(request, providers=[self.provider.name])
        copy_id = f"{request.job_id}:{request.key}:{self.provider.name}:{os.urandom(6).hex()}"
        headers = {messages.SCHEMA_HEADER: schemas.LOOKUP_REQUEST_SCHEMA, "Nats-Msg-Id": copy_id}
        if request_id:
            headers[messages.REQUEST_ID_HEADER] = request_id
        await self.js.publish(
            copy.subject,
            messages.encode(copy),
            headers=headers,
            timeout=self.settings.publish_timeout,
        )
        self.log.info("request put back as a fresh copy", indicator=request.indicator)

    async def read_quota(self) -> None:
        """The shared quota and the upstream's pause into the metrics as they are now
        (every replica's spending and pausing included), for a scrape."""
        if self.quota is None:
            return
        left = await self.quota.remaining()
        self.metrics.quota_remaining(
            {
                window: n
                for window, n in (("minute", left["per_minute"]), ("day", left["per_day"]))
                if n is not None
            }
        )
        self.metrics.paused_until.set(await self.quota.paused_until())

    def _result(self, request: LookupRequest, **fields: Any) -> LookupResult:
        return LookupResult(
            job_id=request.job_id,
            indicator=request.indicator,
            kind=request.kind,
            provider=self.provider.name,
            updated_at=messages.utc_now(),
            **fields,
        )

    async def _expand(self, request: LookupRequest, result: LookupResult, request_id: str) -> None:
        """Add the result's pivots to its job (``"expand": true``), before the result is
        stored: whoever sees the result finds the job grown already."""
        parsed = indicators.parse_items([p.value for p in result.pivots])
        try:
            added = await jobs.add(
                self.js,
                self.settings,
                request.job_id,
                parsed.indicators,
                request_id=request_id,
                most=lookups(self.settings).max_indicators,
                expansion=True,
            )
        except jobs.NoSuchJob:
            return  # expired meanwhile: nothing to grow
        if added:
            self.log.info("job expanded", indicator=request.indicator, added=len(added))

    def _found(self, request: LookupRequest, **fields: Any) -> LookupResult:
        """A ``done`` result with the pivots the provider declares found in its data."""
        spec = catalog.get(self.provider.name)
        rules = spec.pivots if spec is not None else ()
        found = pivots.find(rules, request.kind, request.indicator, fields.get("data") or {})
        return self._result(request, status="done", pivots=found, **fields)

    async def _result_for(self, request: LookupRequest) -> _Outcome:
        """The result to store, when to ask again, and what to keep in the cache."""
        why_not = self.provider.configured()
        if why_not is not None:
            summary, hint = catalog.setup_hint(self.provider.name, why_not)
            unset = self._result(request, status="not_configured", summary=summary, data=hint)
            return _Outcome(unset, None)
        if request.scope != "public" and not self.provider.looks_up_private:
            skipped = self._result(
                request,
                status="done",
                summary=f"{request.scope} address: not looked up",
                data={"skipped": f"{request.scope} address"},
            )
            return _Outcome(skipped, None)
        key = _cache_key(self.provider, request)
        if not request.fresh:
            cached = await self._cached(key)
            (self.metrics.cache_misses if cached is None else self.metrics.cache_hits).inc()
            if cached is not None:
                hit = self._found(
                    request,
                    verdict=cached.verdict,
                    summary=cached.summary,
                    data=cached.data,
                    cached=True,
                )
                return _Outcome(hit, None)
        assert self.quota is not None
        decision = await self.quota.acquire(scheduled=request.scheduled)
        if self.quota.known:
            self.metrics.quota_remaining(self.quota.known)
        if isinstance(decision, Wait):
            self.metrics.waited(decision.until - time.time())
            return self._waiting(request, "queued", decision.until, decision.reason)
        if isinstance(decision, Exhausted):
            return self._waiting(request, "quota_exhausted", decision.reset, decision.reason)
        started = time.monotonic()
        try:
            try:
                async with asyncio.timeout(self.timeout):  # no task of its own, as wait_for
                    answer = await self.provider.lookup(request)
            finally:
                self.metrics.upstream.observe(time.monotonic() - started)
                await self._settle(decision)
        except TimeoutError:
            failed = self._result(
                request,
                status="error",
                verdict="error",
                error=f"timeout after {self.timeout:g} s",
                data={"reason": "the provider did not answer within its timeout"},
            )
            return _Outcome(failed, None)
        except Throttled as exc:
            until = await self.quota.pause(exc.retry_after or 60.0)
            self.metrics.waited(until - time.time())
            self.log.warning("upstream throttled, pausing", until=until, reason=str(exc))
            return self._waiting(request, "queued", until, f"upstream: {exc}")
        except ProviderError as exc:
            failed = self._result(
                request, status="error", verdict="error", error=str(exc), data=exc.data
            )
            return _Outcome(failed, None)
        except Exception as exc:
            self.log.exception("provider raised", indicator=request.indicator)
            crashed = self._result(
                request,
                status="error",
                verdict="error",
                error=f"internal error: {type(exc).__name__}",
                data={"detail": f"{type(exc).__name__}: {exc}"[:500]},
            )
            return _Outcome(crashed, None)
        self.log.info(  # at info: every lookup leaves a line with its request id and verdict
            "looked up",
            indicator=request.indicator,
            verdict=answer.verdict,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        ttl = self.provider.default_ttl if answer.ttl is None else answer.ttl
        if self.config.cache_ttl is not None:
            ttl = self.config.cache_ttl
        done = self._found(
            request, verdict=answer.verdict, summary=answer.summary, data=answer.data
        )
        return _Outcome(done, None, self._entry(key, answer, ttl) if ttl > 0 else None)

    async def _settle(self, granted: Granted) -> None:
        """The upstream request ended: its quota slot counts from now (see
        :meth:`SharedQuota.settle`). Best effort: a grant left unsettled keeps its slot
        a little longer, never shorter."""
        assert self.quota is not None
        if granted.stamp is None:
            return  # nothing to settle (no per-minute quota)
        try:
            await asyncio.wait_for(self.quota.settle(granted), SETTLE_MARGIN)
        except Exception as exc:
            self.log.warning("could not settle the quota grant", error=str(exc) or repr(exc))

    def _waiting(
        self, request: LookupRequest, status: Status, until: float, reason: str
    ) -> _Outcome:
        when = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
        today = datetime.now(UTC).date().isoformat()
        shown = when[11:19] if when.startswith(today) else f"{when[:10]} {when[11:19]}"
        waiting = self._result(
            request,
            status=status,
            summary=f"{'queued' if status == 'queued' else 'quota used'} until {shown} UTC",
            retry_at=when.replace("+00:00", "Z"),
            data={"reason": reason},
        )
        return _Outcome(waiting, until - time.time())

    async def _cached(self, key: str) -> CacheEntry | None:
        assert self.cache is not None
        try:
            entry = await self.cache.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        try:
            cached = msgspec.json.decode(entry.value, type=CacheEntry)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return cached if cached.expires > time.time() else None

    @staticmethod
    def _entry(key: str, answer: Answer, ttl: float) -> tuple[str, bytes]:
        entry = CacheEntry(
            verdict=answer.verdict,
            summary=answer.summary,
            data=answer.data,
            expires=time.time() + ttl,
            stored_at=messages.utc_now(),
        )
        return key, msgspec.json.encode(entry)

    async def _store(self, result: LookupResult, cache: tuple[str, bytes] | None) -> None:
        """The answer into the cache, then the result into ``lookup_results``, a JetStream
        publish to ``$KV.lookup_results.<key>`` that waits for its ack; failing, it raises
        and the request is delivered again. Once stored, nats-server itself publishes the
        result on ``lookup.result.<provider>`` (the bucket's RePublish), where LOOKUP_RESULTS
        stores it. The cache entry goes out first on the same connection, without an ack: a
        cache that refuses it costs a later lookup, never this one's result, and never a
        second upstream request (and quota) for this one."""
        timeout = self.settings.publish_timeout
        body = messages.encode(result)
        if cache is not None:
            key, entry = cache
            await self.publisher.send(direct.kv_subject(streams.CACHE_BUCKET, key), entry)
        await self.publisher.publish(
            direct.kv_subject(streams.RESULTS_BUCKET, result.kv_key),
            body,
            {messages.SCHEMA_HEADER: schemas.LOOKUP_RESULT_SCHEMA},
            timeout,
        )
