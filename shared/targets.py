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
import email.utils
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import aiohttp
import msgspec
import yarl
from aiolimiter import AsyncLimiter
from multidict import CIMultiDict

from shared.config import ConfigError, Secret, Settings, TargetConfig
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

    @abstractmethod
    async def deliver(self, delivery: Delivery) -> None:
        """Deliver one notification, or raise :class:`RetryableError`/:class:`PermanentError`."""


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


class Pacer:
    """A target's own send rate, and a pause for every send after the service said 429.

    ``turn()`` waits for the pause (up to ``max_wait`` seconds; a longer one hands the
    notification back to JetStream with the remaining time as a retryable error), then for
    the rate limiter. One pacer serves every concurrent delivery of a sink process.
    """

    def __init__(self, service: str, per_second: float | None, max_wait: float = 5.0) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError("per_second must be positive")
        self.service = service
        self.max_wait = max_wait
        self._limiter = AsyncLimiter(1, 1.0 / per_second) if per_second else None
        self._paused_until = 0.0

    @property
    def period(self) -> float:
        """Seconds between two sends at the configured rate (1 s when unlimited)."""
        return float(self._limiter.time_period) if self._limiter else 1.0

    async def turn(self) -> None:
        while True:
            remaining = self._paused_until - time.monotonic()
            if remaining > self.max_wait:
                raise RetryableError(
                    f"paused by a {self.service} rate limit for {remaining:.1f}s more", remaining
                )
            if remaining > 0:
                await asyncio.sleep(remaining)
            if self._limiter is not None:
                await self._limiter.acquire()
            if time.monotonic() >= self._paused_until:
                return

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)


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


class WebhookTarget(Target):
    """A chat or incident service reached by POSTing JSON to a secret webhook URL.

    Shared by the Slack, Teams and Discord targets: one HTTP session, the pacer (own send
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
        self.name = config.name
        self.config = config
        self._webhook = webhook_url
        self._allow = tuple(allow)  # LOOKOUT_OUTBOUND_ALLOW, see shared.ssrf
        self._secrets = secret_parts(webhook_url.reveal())
        self._pacer = Pacer(self.service, per_second)
        self._session: aiohttp.ClientSession | None = None

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
        rate = config.per_second if per_second is None else per_second
        return cls(config, secret, rate, allow=settings.outbound_allow)

    def __repr__(self) -> str:  # never the URL
        return f"{type(self).__name__}(name={self.name!r})"

    async def open(self) -> None:
        from shared import ssrf  # ssrf's refusal is a PermanentError of this module

        self._session = ssrf.session(
            self._allow, self.config.timeout, headers={"User-Agent": self.user_agent}
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        assert self._session is not None, "open() first"
        await self._pacer.turn()
        try:
            async with self._session.post(
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
