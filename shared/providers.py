"""The interface every lookup provider implements, and the runner that drives one.

A provider answers one indicator at a time. The runner (one per provider service, any
number of replicas) pulls ``lookup.requested.>`` from the provider's durable consumer,
looks in the cache, asks the provider under a bounded timeout, stores the result in the KV
bucket ``lookup_results``, publishes it on ``lookup.result.<provider>`` and only then
acknowledges the request. A provider that raises never loses the request: the result says
``error`` with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared import bus, schemas
from shared import logging as log
from shared.config import Settings
from shared.consume import consume
from shared.schemas import PROVIDER_KINDS, LookupRequest, LookupResult, Verdict

# How an indicator's verdicts combine into its overall verdict: the first one present in
# this order wins. A real finding outranks the absence of one; errors and "unknown" (no
# judgement, e.g. DNS) only show when nothing else is known.
VERDICT_ORDER: tuple[Verdict, ...] = (
    "malicious",
    "suspicious",
    "harmless",
    "undetected",
    "error",
    "unknown",
)


def overall_verdict(verdicts: list[Verdict]) -> Verdict:
    present = set(verdicts)
    for verdict in VERDICT_ORDER:
        if verdict in present:
            return verdict
    return "unknown"


class ProviderError(Exception):
    """The upstream could not answer (unreachable, timeout, bad answer)."""


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    ttl: float | None = None
    """How long the answer may be cached (None: the provider's default)."""


class Provider(ABC):
    name: str
    default_ttl: float = 3600.0
    looks_up_private: bool = False
    """Whether private, loopback and reserved addresses are worth asking about (DNS PTR)."""

    def configured(self) -> str | None:
        """None when ready; else why not (e.g. ``VIRUSTOTAL_API_KEY is not set``)."""
        return None

    def cache_salt(self) -> str:
        """Settings that change answers (upstream URL, nameservers…): part of the cache key."""
        return ""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire sessions before the first lookup."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` acquired."""

    @abstractmethod
    async def lookup(self, request: LookupRequest) -> Answer:
        """Look one indicator up; raise :class:`ProviderError` when upstream fails."""


def _cache_key(provider: Provider, request: LookupRequest) -> str:
    digest = hashlib.sha256(
        f"{provider.cache_salt()}\0{request.kind}\0{request.indicator}".encode()
    ).hexdigest()[:32]
    return f"{provider.name}.{digest}"


class CacheEntry(msgspec.Struct, frozen=True):
    verdict: Verdict
    summary: str
    data: dict[str, Any]
    expires: float
    stored_at: str


class ProviderRunner:
    def __init__(
        self,
        js: JetStreamContext,
        provider: Provider,
        settings: Settings,
        *,
        concurrency: int = 32,
        timeout: float = 20.0,
    ) -> None:
        self.js = js
        self.provider = provider
        self.settings = settings
        self.timeout = timeout
        self.kinds = PROVIDER_KINDS[provider.name]
        self.log = log.get("provider").bind(provider=provider.name)
        self.concurrency = concurrency
        self.results: KeyValue | None = None
        self.cache: KeyValue | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await bus.provision_lookups(self.js, self.settings)
        self.results = await self.js.key_value(bus.RESULTS_BUCKET)
        self.cache = await self.js.key_value(bus.CACHE_BUCKET)
        sub = await self.js.pull_subscribe_bind(
            durable=bus.provider_durable(self.provider.name), stream=bus.LOOKUPS
        )
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
            await sub.unsubscribe()
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
        try:
            result = await self._result_for(request)
            await self._store(result)
        except Exception as exc:
            # KV or bus trouble: let JetStream redeliver the request later.
            self.log.warning("could not store result, will retry", error=str(exc) or repr(exc))
            await msg.nak(delay=2.0)
            return
        await msg.ack()

    def _result(self, request: LookupRequest, **fields: Any) -> LookupResult:
        return LookupResult(
            job_id=request.job_id,
            indicator=request.indicator,
            kind=request.kind,
            provider=self.provider.name,
            updated_at=schemas.utc_now(),
            **fields,
        )

    async def _result_for(self, request: LookupRequest) -> LookupResult:
        why_not = self.provider.configured()
        if why_not is not None:
            return self._result(request, status="not_configured", summary=why_not)
        if request.scope != "public" and not self.provider.looks_up_private:
            return self._result(
                request,
                status="done",
                summary=f"{request.scope} address: not looked up",
                data={"skipped": f"{request.scope} address"},
            )
        key = _cache_key(self.provider, request)
        if not request.fresh:
            cached = await self._cached(key)
            if cached is not None:
                return self._result(
                    request,
                    status="done",
                    verdict=cached.verdict,
                    summary=cached.summary,
                    data=cached.data,
                    cached=True,
                )
        started = time.monotonic()
        try:
            answer = await asyncio.wait_for(self.provider.lookup(request), self.timeout)
        except TimeoutError:
            return self._result(
                request, status="error", verdict="error", error=f"no answer in {self.timeout:g}s"
            )
        except ProviderError as exc:
            return self._result(request, status="error", verdict="error", error=str(exc))
        except Exception as exc:
            self.log.exception("provider raised", indicator=request.indicator)
            return self._result(
                request, status="error", verdict="error", error=f"{type(exc).__name__}: {exc}"
            )
        self.log.debug(
            "looked up",
            indicator=request.indicator,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        ttl = self.provider.default_ttl if answer.ttl is None else answer.ttl
        if ttl > 0:
            await self._remember(key, answer, ttl)
        return self._result(
            request, status="done", verdict=answer.verdict, summary=answer.summary, data=answer.data
        )

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

    async def _remember(self, key: str, answer: Answer, ttl: float) -> None:
        assert self.cache is not None
        entry = CacheEntry(
            verdict=answer.verdict,
            summary=answer.summary,
            data=answer.data,
            expires=time.time() + ttl,
            stored_at=schemas.utc_now(),
        )
        await self.cache.put(key, msgspec.json.encode(entry))

    async def _store(self, result: LookupResult) -> None:
        assert self.results is not None
        body = schemas.encode(result)
        await self.results.put(result.kv_key, body)
        await self.js.publish(
            f"lookup.result.{result.provider}",
            body,
            headers={schemas.SCHEMA_HEADER: schemas.LOOKUP_RESULT_SCHEMA},
            timeout=self.settings.publish_timeout,
        )
