"""The interface every notification target implements.

A target delivers one notification per call. It reports failure by raising:

- :class:`RetryableError` — try again later (timeouts, 5xx, 408, 429); may carry the
  ``Retry-After`` the target asked for;
- :class:`PermanentError` — retrying cannot help (other 4xx, a rejected payload).

Anything else it raises is treated as retryable. Retries, backoff, acknowledgement and
dead-lettering are the runner's job (:mod:`shared.delivery`), never the target's.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import urlsplit

import aiohttp
import msgspec
import yarl
from aiolimiter import AsyncLimiter
from multidict import CIMultiDict
from nats.js.kv import KeyValue

from shared import logging as log
from shared.config import ConfigError, Secret, Settings, TargetConfig
from shared.ratelimit import SharedPace, Wait
from shared.schemas import Notification
from shared.templates import TemplateError


class DeliveryError(Exception):
    pass


class RetryableError(DeliveryError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    pass


class Paced(RetryableError):
    """A :class:`Pacer` handed the delivery back unsent: the target is paused, its send
    slots are taken further ahead than the pacer waits, or the shared pacing store did not
    answer. Not an answer of the target, so it pauses nothing."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to deliver one notification to one target."""

    notification: Notification
    subject: str
    attempt: int
    request_id: str | None = None


class Target(ABC):
    """A destination for notifications (log, HTTP webhook, email, SMS, Slack…).

    The runner paces sends to the target's ``per_second`` and pauses after a 429, unless
    the target sets ``paces_itself`` because it reads the service's own rate headers."""

    name: str
    paces_itself: ClassVar[bool] = False

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (HTTP sessions, connections) before the first delivery."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` acquired."""

    def pacers(self) -> Sequence[Pacer]:
        """The pacers of a target that ``paces_itself``, so that the runner can share them
        with the other replicas of the sink (:meth:`Pacer.share`)."""
        return ()

    @abstractmethod
    async def deliver(self, delivery: Delivery) -> None:
        """Deliver one notification, or raise :class:`RetryableError`/:class:`PermanentError`."""


class SessionTarget(Target):
    """A target that reaches its service through one HTTP session guarded against SSRF
    (:func:`shared.ssrf.session`): only public addresses, or those in the outbound
    allow-list ``LOOKOUT_OUTBOUND_ALLOW``; a refused address fails the delivery as a
    :class:`PermanentError`.

    :meth:`open` creates the session with the target's ``timeout`` and
    :meth:`session_headers`, :meth:`close` closes it, :attr:`session` is the open one."""

    def __init__(self, timeout: float, allow: Sequence[IPv4Network | IPv6Network] = ()) -> None:
        self._timeout = timeout
        self._allow = tuple(allow)  # LOOKOUT_OUTBOUND_ALLOW, see shared.ssrf
        self._session: aiohttp.ClientSession | None = None

    @abstractmethod
    def session_headers(self) -> dict[str, str]:
        """The headers of every request of the session (``User-Agent``, credentials…)."""

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session :meth:`open` created; :class:`RuntimeError` when it is not open."""
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} {self.name!r}: open() first")
        return self._session

    async def open(self) -> None:
        from shared import ssrf  # ssrf's refusal is a PermanentError of this module

        self._session = ssrf.session(self._allow, self._timeout, headers=self.session_headers())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class RecipientProgress:
    """Per notification, the recipients it has already been settled for (sent, or refused
    for good), for the life of the process and for the last ``size`` notifications, so a
    redelivery reaches only the ones still missing it. Used by targets that send to several
    recipients one by one (email, SMS)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._settled: OrderedDict[str, set[str]] = OrderedDict()

    def settled(self, key: str) -> set[str]:
        done = self._settled.get(key)
        if done is None:
            return set()
        self._settled.move_to_end(key)
        return done

    def add(self, key: str, recipients: Iterable[str]) -> None:
        added = set(recipients)
        if not added:
            return
        self._settled.setdefault(key, set()).update(added)
        self._settled.move_to_end(key)
        while len(self._settled) > self._size:
            self._settled.popitem(last=False)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)  # delta-seconds; some services send fractions ("0.529")
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


RETRYABLE_STATUS = frozenset({408, 425, 429})


def raise_for_status(status: int, retry_after: str | None, detail: str) -> None:
    """Map an HTTP answer to the delivery outcome: 2xx delivered; 408/425/429/5xx retry
    (honouring ``Retry-After``); anything else (other 4xx, 3xx: redirects are not
    followed) permanent."""
    if 200 <= status < 300:
        return
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in RETRYABLE_STATUS or status >= 500:
        raise RetryableError(reason, parse_retry_after(retry_after))
    if 300 <= status < 400:
        raise PermanentError(f"{reason} (redirects are not followed)")
    raise PermanentError(reason)


T = TypeVar("T")

PAUSE_RECHECK = 0.01
"""A shared pacer that waited at least this long for its slot reads the pause again before
sending: another replica may have been told 429 meanwhile."""
STORE_PROBE = 1.0
"""While the shared store does not answer, a pacer asks it at most once in this many
seconds; the deliveries in between are handed back at once instead of each waiting for
the store's timeout in turn."""


class Pacer:
    """A target's own send rate, and a pause for every send after the service said 429.

    ``turn()`` waits for the pause (up to ``max_wait`` seconds; a longer one hands the
    notification back to JetStream as :class:`Paced`, a retryable error carrying the
    remaining time), then for the rate limiter. One pacer serves every concurrent delivery
    of a sink process.

    On its own a pacer holds for one process. :meth:`share`, which the sink runner calls
    when the sink starts, makes the rate and the pause hold across every replica of the
    sink (:class:`shared.ratelimit.SharedPace`, KV bucket ``sink_pace``): each send then
    also takes a send slot there, after this process's own limiter (so one replica alone
    never claims ahead of the rate, and replicas do not spin on the KV), and waits for it.
    A slot further than ``max_wait`` away is not taken: the delivery is handed back. When
    the bucket does not answer, deliveries are handed back too (retried later, never sent
    faster than the rate), logged once until it answers again. A pacer without a rate keeps
    its pause in-process and never touches the bucket.
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
                    "shared pacing store unreachable: deliveries are handed back to JetStream "
                    "until it answers",
                    error=error,
                )
            raise Paced(f"{self.service}: shared pacing store unreachable ({error})") from None
        if self._store_down:
            self._store_down = False
            self._log.info("shared pacing store reachable again")
        return result


def secret_parts(url: str) -> list[str]:
    """The strings that would give a secret webhook URL away: the URL, its path and query,
    and any long path segment or query value (tokens, ``sig``), longest first."""
    parts = urlsplit(url)
    found = {url, url.split("?", 1)[0]}
    if len(parts.path) > 1:
        found.add(parts.path)
    if parts.query:
        found.add(parts.query)
        found.update(
            value
            for value in (item.partition("=")[2] for item in parts.query.split("&"))
            if len(value) >= 16
        )
    found.update(segment for segment in parts.path.split("/") if len(segment) >= 16)
    return sorted(found, key=len, reverse=True)


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int
    headers: Mapping[str, str]
    text: str


class WebhookTarget(SessionTarget):
    """A chat or incident service reached by POSTing JSON to a secret webhook URL.

    Shared by the Slack, Teams and Discord targets: one guarded HTTP session
    (:class:`SessionTarget`, ``User-Agent`` :attr:`user_agent`), the pacer (own send
    rate, pause after a 429), rendering through the target's templates (a template error is
    permanent), timeouts and connection errors as retryable, and the URL scrubbed from every
    error text. Each target builds its payload and judges the service's answer itself.
    """

    service: ClassVar[str] = "webhook"
    user_agent: ClassVar[str] = "lookout/1"
    paces_itself: ClassVar[bool] = True

    def __init__(
        self,
        config: TargetConfig,
        webhook_url: Secret,
        per_second: float | None,
        allow: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        super().__init__(config.timeout, allow)
        self.name = config.name
        self.config = config
        self._webhook = webhook_url
        self._secrets = secret_parts(webhook_url.reveal())
        self._pacer = Pacer(self.service, per_second, max_pause=config.retry.max_retry_after)

    @classmethod
    def from_settings(
        cls, config: TargetConfig, settings: Settings, per_second: float | None = None
    ) -> Self:
        """The target for ``config`` with its secret ``webhook_url`` checked, the configured
        send rate unless ``per_second`` overrides it, and the outbound allow-list."""
        secret = settings.secret(config.name, "webhook_url")
        assert secret is not None  # required: config.load() refuses such a target without one
        parts = urlsplit(secret.reveal())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The value itself is a secret: name the key, never show it.
            raise ConfigError(f"target {config.name}: webhook_url must be an absolute https URL")
        rate = config.send_rate if per_second is None else per_second
        return cls(config, secret, rate, allow=settings.outbound_allow)

    def __repr__(self) -> str:  # never the URL
        return f"{type(self).__name__}(name={self.name!r})"

    def pacers(self) -> Sequence[Pacer]:
        return (self._pacer,)

    def session_headers(self) -> dict[str, str]:
        return {"User-Agent": self.user_agent}

    def encode(
        self,
        build: Callable[[Notification, str | None, str | None, str | None], Any],
        delivery: Delivery,
    ) -> bytes:
        """The JSON body ``build`` makes for ``delivery`` with this target's templates."""
        template = self.config.template
        try:
            payload = build(delivery.notification, delivery.subject, template.title, template.body)
        except TemplateError as exc:
            raise PermanentError(str(exc)) from None
        return msgspec.json.encode(payload)

    async def post(self, url: str | yarl.URL, body: bytes, read: int = 1000) -> WebhookAnswer:
        """POST after the pacer's turn; the first ``read`` bytes of the answer."""
        session = self.session
        await self._pacer.turn()
        try:
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                allow_redirects=False,
            ) as response:
                text = (await response.content.read(read)).decode("utf-8", "replace")
                return WebhookAnswer(response.status, CIMultiDict(response.headers), text)
        except TimeoutError:
            raise RetryableError(
                f"{self.service} did not answer within {self.config.timeout}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableError(self.scrub(f"{type(exc).__name__}: {exc}")) from None

    def scrub(self, text: str) -> str:
        """``text`` without the webhook URL or any part that would give it away."""
        for secret in self._secrets:
            text = text.replace(secret, "[webhook]")
        return text
