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
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from shared.schemas import Notification


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
    """A destination for notifications (log, HTTP webhook, email, SMS, Slack…)."""

    name: str

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (HTTP sessions, connections) before the first delivery."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` acquired."""

    @abstractmethod
    async def deliver(self, delivery: Delivery) -> None:
        """Deliver one notification, or raise :class:`RetryableError`/:class:`PermanentError`."""


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

    def __init__(self, service: str, per_second: float, max_wait: float = 5.0) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.service = service
        self.max_wait = max_wait
        self._limiter = AsyncLimiter(1, 1.0 / per_second)
        self._paused_until = 0.0

    @property
    def period(self) -> float:
        """Seconds between two sends at the configured rate."""
        return float(self._limiter.time_period)

    async def turn(self) -> None:
        while True:
            remaining = self._paused_until - time.monotonic()
            if remaining > self.max_wait:
                raise RetryableError(
                    f"paused by a {self.service} rate limit for {remaining:.1f}s more", remaining
                )
            if remaining > 0:
                await asyncio.sleep(remaining)
            await self._limiter.acquire()
            if time.monotonic() >= self._paused_until:
                return

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
