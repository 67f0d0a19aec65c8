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
import contextlib
import hashlib
import ipaddress
import os
import random
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared import bus, ratelimit, schemas
from shared import logging as log
from shared.config import Settings
from shared.consume import consume
from shared.metrics import ProviderMetrics
from shared.ratelimit import Exhausted, Granted, SharedQuota, Wait
from shared.schemas import PROVIDER_KINDS, LookupRequest, LookupResult, Status, Verdict

SETTLE_MARGIN = 2.0
"""Seconds a quota grant stays in flight beyond the provider timeout (the time its
settling may take); past both it counts from its stamp anyway."""

# How an indicator's results combine into its overall verdict: the first one present in
# this order wins. A real finding outranks the absence of one; then "could not be checked"
# (``error``) and "not checked yet" (``pending``) outrank "checked, no opinion"
# (``unknown``), so nothing that failed ever looks like a quiet answer.
OverallVerdict = Literal[
    "malicious", "suspicious", "harmless", "undetected", "error", "pending", "unknown"
]
VERDICT_ORDER: tuple[OverallVerdict, ...] = (
    "malicious",
    "suspicious",
    "harmless",
    "undetected",
    "error",
    "pending",
    "unknown",
)
PROVIDER_LABELS: dict[str, str] = {
    "dns": "DNS",
    "whois": "WHOIS",
    "emailsec": "SPF/DMARC",
    "virustotal": "VirusTotal",
    "abuseipdb": "AbuseIPDB",
}
"""How a provider is named to people (verdict reasons, the UI's column heads)."""


def is_ip(host: str) -> bool:
    """True when ``host`` is an IPv4 or IPv6 address literal (a URL's host may be one)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def overall_verdict(verdicts: Iterable[OverallVerdict]) -> OverallVerdict:
    """The first of :data:`VERDICT_ORDER` among ``verdicts`` (what each result counts as,
    see :func:`counts_as`); ``unknown`` when there is none."""
    present = set(verdicts)
    for verdict in VERDICT_ORDER:
        if verdict in present:
            return verdict
    return "unknown"


def counts_as(result: LookupResult) -> OverallVerdict | None:
    """What one result adds to its indicator's overall verdict: its verdict when ``done``;
    ``error`` when it could not be checked (``error``, ``quota_exhausted``); ``pending``
    while it waits (``pending``, ``queued``); nothing when ``not_configured`` (a missing
    API key never fails a job)."""
    if result.status == "done":
        return result.verdict
    if result.status in ("error", "quota_exhausted"):
        return "error"
    if result.status in ("pending", "queued"):
        return "pending"
    return None


def _reason(result: LookupResult) -> str:
    label = PROVIDER_LABELS.get(result.provider, result.provider)
    if result.status == "done":
        said = result.summary or result.verdict
    elif result.status == "pending":
        said = "pending"
    else:
        said = result.error or result.summary or result.status.replace("_", " ")
    return f"{label}: {said}"


def judge(results: Iterable[LookupResult]) -> tuple[OverallVerdict, list[str]]:
    """An indicator's overall verdict and why: the providers whose results gave it, each
    as ``"<Provider>: <its summary or error>"`` (e.g. ``"VirusTotal: 9/74 engines"``,
    ``"WHOIS: cannot connect: Connection refused"``). The one rule the API, the CSV and
    the CLI use (the web UI mirrors it in ``render.js``).

    When no result counts (every provider not configured, or none applies) the verdict
    is ``unknown`` and the reasons are the not-configured providers' explanations."""
    given = list(results)
    counted = [(counts_as(r), r) for r in given]
    verdict = overall_verdict(v for v, _ in counted if v is not None)
    reasons = [_reason(r) for v, r in counted if v == verdict]
    if not reasons:
        reasons = [_reason(r) for v, r in counted if v is None]
    return verdict, reasons


class ProviderError(Exception):
    """The upstream could not answer (unreachable, timeout, bad answer).

    The message is the cause, first and short (``cannot connect: Connection refused``,
    ``HTTP 503``, ``timeout after 10 s``): it is what a table cell shows. Where the
    provider asked goes to ``data`` (e.g. ``{"upstream": "https://…"}``), shown with the
    result's details; never a secret (API keys travel in headers, not in URLs)."""

    def __init__(self, reason: str, *, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.data: dict[str, Any] = dict(data or {})


def upstream(url: str) -> str:
    """``url`` fit to show: without user info, query or fragment (they may carry secrets
    or the indicator itself)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def os_error_text(exc: BaseException) -> str:
    """Why a connection failed, in the system's words: ``Connection refused``, ``Name or
    service not known`` (not asyncio's ``Connect call failed ('127.0.0.1', 9)``)."""
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def client_error_text(exc: BaseException) -> str:
    """The cause of an aiohttp client failure, short and human: ``cannot connect: Name or
    service not known``, ``server disconnected``, ``TLS certificate not trusted: …``."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {os_error_text(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "incomplete answer"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}" + (f" {exc.message}" if exc.message else "")
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Throttled(ProviderError):
    """Upstream said slow down (HTTP 429): the whole provider pool pauses, the request
    waits and is asked again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


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
        metrics: ProviderMetrics | None = None,
        *,
        quota_window: float = ratelimit.WINDOW,
    ) -> None:
        """``quota_window``: the per-minute quota's window, 60 s; tests only shorten it."""
        self.quota_window = quota_window
        self.metrics = metrics if metrics is not None else ProviderMetrics(provider.name)
        self.js = js
        self.provider = provider
        self.settings = settings
        self.config = settings.providers.get(provider.name)
        self.timeout = self.config.timeout
        self.concurrency = self.config.concurrency
        self.kinds = PROVIDER_KINDS[provider.name]
        self.log = log.get("provider").bind(provider=provider.name)
        self.results: KeyValue | None = None
        self.cache: KeyValue | None = None
        self.quota: SharedQuota | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await bus.provision_lookups(self.js, self.settings)
        self.results = await self.js.key_value(bus.RESULTS_BUCKET)
        self.cache = await self.js.key_value(bus.CACHE_BUCKET)
        self.quota = SharedQuota(
            await self.js.key_value(bus.QUOTA_BUCKET),
            self.provider.name,
            self.config.quota,
            slack=self.config.quota_slack,
            hold=self.timeout + SETTLE_MARGIN,
            window=self.quota_window,
        )
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
        request_id = (msg.headers or {}).get(schemas.REQUEST_ID_HEADER)
        if request_id:  # this handler's own task: every log line of this lookup carries it
            structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            result, again_in = await self._result_for(request)
            self.metrics.lookup(result.status).inc()
            await self._store(result)
        except Exception as exc:
            # KV or bus trouble: let JetStream redeliver the request later.
            self.log.warning("could not store result, will retry", error=str(exc) or repr(exc))
            await msg.nak(delay=2.0)
            return
        if again_in is None:
            await msg.ack()
        else:
            # Queued behind the quota: the result says so, the request comes back then.
            await msg.nak(delay=max(0.5, again_in) + random.uniform(0, 0.5))

    def _result(self, request: LookupRequest, **fields: Any) -> LookupResult:
        return LookupResult(
            job_id=request.job_id,
            indicator=request.indicator,
            kind=request.kind,
            provider=self.provider.name,
            updated_at=schemas.utc_now(),
            **fields,
        )

    async def _result_for(self, request: LookupRequest) -> tuple[LookupResult, float | None]:
        """The result to store, and in how many seconds to ask again (None: finished)."""
        why_not = self.provider.configured()
        if why_not is not None:
            return self._result(request, status="not_configured", summary=why_not), None
        if request.scope != "public" and not self.provider.looks_up_private:
            skipped = self._result(
                request,
                status="done",
                summary=f"{request.scope} address: not looked up",
                data={"skipped": f"{request.scope} address"},
            )
            return skipped, None
        key = _cache_key(self.provider, request)
        if not request.fresh:
            cached = await self._cached(key)
            (self.metrics.cache_misses if cached is None else self.metrics.cache_hits).inc()
            if cached is not None:
                hit = self._result(
                    request,
                    status="done",
                    verdict=cached.verdict,
                    summary=cached.summary,
                    data=cached.data,
                    cached=True,
                )
                return hit, None
        assert self.quota is not None
        decision = await self.quota.acquire()
        if self.quota.known:
            self.metrics.quota_remaining(self.quota.known)
        if isinstance(decision, Wait):
            self.metrics.waited(decision.until - time.time())
            return self._waiting(request, "queued", decision.until, decision.reason)
        if isinstance(decision, Exhausted):
            return self._waiting(request, "quota_exhausted", decision.reset, "daily quota used")
        started = time.monotonic()
        try:
            try:
                answer = await asyncio.wait_for(self.provider.lookup(request), self.timeout)
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
            return failed, None
        except Throttled as exc:
            until = await self.quota.pause(exc.retry_after or 60.0)
            self.metrics.waited(until - time.time())
            self.log.warning("upstream throttled, pausing", until=until, reason=str(exc))
            return self._waiting(request, "queued", until, f"upstream: {exc}")
        except ProviderError as exc:
            failed = self._result(
                request, status="error", verdict="error", error=str(exc), data=exc.data
            )
            return failed, None
        except Exception as exc:
            self.log.exception("provider raised", indicator=request.indicator)
            crashed = self._result(
                request,
                status="error",
                verdict="error",
                error=f"internal error: {type(exc).__name__}",
                data={"detail": f"{type(exc).__name__}: {exc}"[:500]},
            )
            return crashed, None
        self.log.info(  # at info: every lookup leaves a line with its request id and verdict
            "looked up",
            indicator=request.indicator,
            verdict=answer.verdict,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        ttl = self.provider.default_ttl if answer.ttl is None else answer.ttl
        if self.config.cache_ttl is not None:
            ttl = self.config.cache_ttl
        if ttl > 0:
            await self._remember(key, answer, ttl)
        done = self._result(
            request, status="done", verdict=answer.verdict, summary=answer.summary, data=answer.data
        )
        return done, None

    async def _settle(self, granted: Granted) -> None:
        """The upstream request ended: its quota slot counts from now (see
        :meth:`SharedQuota.settle`). Best effort: a grant left unsettled keeps its slot
        a little longer, never shorter."""
        assert self.quota is not None
        try:
            await asyncio.wait_for(self.quota.settle(granted), SETTLE_MARGIN)
        except Exception as exc:
            self.log.warning("could not settle the quota grant", error=str(exc) or repr(exc))

    def _waiting(
        self, request: LookupRequest, status: Status, until: float, reason: str
    ) -> tuple[LookupResult, float]:
        when = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
        waiting = self._result(
            request,
            status=status,
            summary=f"{'queued' if status == 'queued' else 'quota used'} until {when[11:19]} UTC",
            retry_at=when.replace("+00:00", "Z"),
            data={"reason": reason},
        )
        return waiting, until - time.time()

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


class HttpProvider(Provider):
    """A provider that asks an HTTP API: one session per process, bounded timeouts, and
    connection failures turned into :class:`ProviderError` with a clear reason."""

    user_agent = "lookout/1 (+https://github.com/lookout)"

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout, connect=min(5.0, self._timeout)),
            headers={"User-Agent": self.user_agent},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get_json(
        self, url: str, *, headers: dict[str, str], params: dict[str, str] | None = None
    ) -> tuple[int, Mapping[str, str], Any]:
        """(status, headers, decoded JSON body or None)."""
        assert self._session is not None, "open() first"
        where = {"upstream": upstream(url)}
        try:
            async with self._session.get(url, headers=headers, params=params) as response:
                raw = await response.read()
                body: Any = None
                if raw:
                    with contextlib.suppress(ValueError):
                        body = msgspec.json.decode(raw)
                return response.status, response.headers, body
        except TimeoutError:
            raise ProviderError(f"timeout after {self._timeout:g} s", data=where) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(client_error_text(exc), data=where) from None
