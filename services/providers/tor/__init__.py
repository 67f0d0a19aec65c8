"""The ``tor`` provider: whether an address is a Tor exit, from the Tor Project's exit list.

The list (``TOR_EXIT_LIST_URL``, default https://check.torproject.org/exit-addresses) is
downloaded on a schedule (``refresh_interval``, 30 min) **into the bus**, the KV bucket
``tor_exits`` (:mod:`services.providers.tor.store`), by one replica at a time: the one that
takes the bucket's lease by compare-and-set. Lookups read the bucket only and never download
anything. Until a first download succeeded, or when the last success is older than
``stale_after`` (6 h), lookups answer ``error`` with the reason (and the last download's
error).

Verdict: a current exit → ``suspicious`` (traffic from it is anonymous: a reason to look
closer, not malicious by itself); not in the list → ``undetected`` (an address dropped from
the list says when it was last seen). The answer is never cached: the bucket is the cache.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

import aiohttp
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

import services.providers.tor.store as store
from services.providers.tor.config import SPEC, tor_settings
from services.providers.tor.exitlist import ExitList, NotAnExitList, parse
from shared.core import logging as log
from shared.core.background import Repeating
from shared.core.retryafter import parse_retry_after
from shared.core.settings import Settings
from shared.lookups.provider import (
    Answer,
    HttpProvider,
    ProviderError,
    client_error_text,
    upstream,
    where,
)
from shared.lookups.schemas import LookupRequest

LEASE_MARGIN = 60.0
"""Seconds a download's lease lasts beyond the provider's timeout (writing the bucket)."""


class TorProvider(HttpProvider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl

    def __init__(self, settings: Settings) -> None:
        own = tor_settings(settings)
        self.config = own.config
        super().__init__(self.config.timeout)
        self.url = own.url
        self.replicas = settings.stream_replicas
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.kv: KeyValue | None = None
        self._refresher = Repeating(self._refresh_step, lambda: self.tick)
        self.log = log.get("provider").bind(provider=SPEC.name)

    @property
    def tick(self) -> float:
        """Seconds between two looks at whether the list is due."""
        c = self.config
        return max(0.2, min(60.0, c.refresh_interval / 4, c.retry_after_failure / 2))

    async def attach(self, js: JetStreamContext) -> None:
        self.kv = await store.open_bucket(js, self.replicas)

    async def open(self) -> None:
        await super().open()
        if self.kv is not None:
            self._refresher.start()

    async def close(self) -> None:
        await self._refresher.stop()
        await super().close()

    async def _refresh_step(self) -> None:
        try:
            await self.refresh_if_due()
        except Exception as exc:  # the bus unreachable for a moment: next tick
            self.log.warning("exit list refresh failed", error=str(exc) or repr(exc))

    async def refresh_if_due(self) -> bool:
        """Download the list into the bucket if it is due and this replica takes the lease;
        whether it did."""
        assert self.kv is not None
        current = await store.meta(self.kv)
        now = time.time()
        if current is not None and now - current.fetched_at < self.config.refresh_interval:
            return False
        revision = await store.take_lease(
            self.kv, self.holder, now, self.config.timeout + LEASE_MARGIN
        )
        if revision is None:
            return False
        try:
            exits = await self._download()
        except ProviderError as exc:
            wait = self.config.retry_after_failure
            if isinstance(exc, _Throttled) and exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
            self.log.warning("exit list download failed", error=str(exc), retry_in=wait)
            await store.end_lease(self.kv, self.holder, revision, time.time() + wait, str(exc))
            return False
        written = store.Meta(
            generation=(current.generation + 1) if current is not None else 1,
            fetched_at=time.time(),
            count=len(exits.exits),
            format=exits.format,
            source=upstream(self.url),
            published=exits.published,
        )
        await store.write(self.kv, exits.exits, written)
        await store.end_lease(self.kv, self.holder, revision, 0.0, None)
        self.log.info("exit list refreshed", exits=written.count, generation=written.generation)
        return True

    async def _download(self) -> ExitList:
        assert self._session is not None, "open() first"
        origin = where(self.url)
        try:
            async with self._session.get(self.url) as response:
                if response.status == 429:
                    retry = parse_retry_after(response.headers.get("Retry-After"))
                    raise _Throttled(f"HTTP 429 from {upstream(self.url)}", retry)
                if response.status != 200:
                    raise ProviderError(f"HTTP {response.status} from {upstream(self.url)}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > self.config.max_bytes:
                        break
        except TimeoutError:
            raise ProviderError(f"timeout after {self._timeout:g} s", data=origin) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(client_error_text(exc), data=origin) from None
        if len(body) > self.config.max_bytes:
            raise ProviderError(f"exit list larger than {self.config.max_bytes} bytes")
        try:
            return parse(body.decode("utf-8", "replace"))
        except NotAnExitList as exc:
            raise ProviderError(f"{exc} ({upstream(self.url)})") from None

    async def lookup(self, request: LookupRequest) -> Answer:
        if self.kv is None:
            raise ProviderError("the exit list bucket is not open")
        try:
            return await self._lookup(self.kv, request.indicator)
        except NatsError as exc:
            raise ProviderError(f"cannot read the exit list: {exc or type(exc).__name__}") from None

    async def _lookup(self, kv: KeyValue, address: str) -> Answer:
        current = await store.meta(kv)
        origin: dict[str, Any] = where(self.url)
        if current is None:
            last = await store.lease(kv)
            why = last.error if last is not None and last.error else "first download pending"
            raise ProviderError(f"exit list not loaded yet ({why})", data=origin)
        age = time.time() - current.fetched_at
        if age > self.config.stale_after:
            last = await store.lease(kv)
            why = f"; last download: {last.error}" if last is not None and last.error else ""
            raise ProviderError(
                f"exit list stale: last downloaded {_ago(age)} ago{why}", data=origin
            )
        data: dict[str, Any] = {
            "exit": False,
            "list_published": current.published,
            "list_fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(current.fetched_at)),
            "list_count": current.count,
            "source": current.source,
        }
        found = await store.entry(kv, address)
        if found is None:
            return Answer("undetected", "not a Tor exit", data, 0.0)
        data["last_seen"] = found.last_seen
        seen = (
            f", last seen {found.last_seen[:16].replace('T', ' ')} UTC" if found.last_seen else ""
        )
        if found.generation >= current.generation:
            data["exit"] = True
            return Answer("suspicious", f"Tor exit{seen}", data, 0.0)
        data["was_exit"] = True
        return Answer("undetected", f"not a current Tor exit{seen}", data, 0.0)


class _Throttled(ProviderError):
    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _ago(seconds: float) -> str:
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def build(settings: Settings) -> TorProvider:
    return TorProvider(settings)
