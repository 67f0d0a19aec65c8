"""The interface every notification target implements.

A target delivers one notification per call. It reports failure by raising:

- :class:`RetryableError` — try again later (timeouts, 5xx, 408, 429); may carry the
  ``Retry-After`` the target asked for, which also pauses every send to the target;
- :class:`PermanentError` — retrying cannot help (other 4xx, a rejected payload).

Anything else it raises is treated as retryable. Retries, backoff, pacing (the send rate
and the pauses), acknowledgement and dead-lettering are the runner's job
(:mod:`shared.relay.runner`), never the target's.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property

from shared.core.retryafter import parse_retry_after
from shared.relay.schemas import Notification
from shared.relay.sources import Reading


class DeliveryError(Exception):
    pass


class RetryableError(DeliveryError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    pass


class Gone(PermanentError):
    """The service said ``410 Gone``: the endpoint no longer exists. The runner pauses the
    target at once (no delivery is dead-lettered for it; a later success resumes it)."""


class Paced(RetryableError):
    """The runner's pacer (:class:`shared.relay.pacing.Pacer`) did not give the delivery
    a send slot within its wait: the target is paused, its send slots are taken further
    ahead, or the shared pacing store did not answer. Raised by the pacer, never by a
    target; not an answer of the target, so it pauses nothing and is no delivery attempt."""


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver one notification to one target."""

    notification: Notification
    subject: str
    attempt: int
    request_id: str | None = None

    @cached_property
    def reading(self) -> Reading:
        """The notification as lookout reads it, decoded once for this delivery: route
        filters, grouping, templates, the status record and the target all read it here
        (pass it to :func:`shared.relay.templates.render` and ``context``)."""
        return Reading(self.notification)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What :meth:`Target.deliver` may return instead of ``None``: delivered, and the
    service said that no further send may go for ``pause`` seconds (its rate-limit budget
    is spent: a chat service's ``X-RateLimit-Remaining: 0`` with its reset time). The
    runner pauses the target as after a 429 (every
    replica, at most ``retry.max_retry_after``), so the next send does not earn one."""

    pause: float


class Target(ABC):
    """A destination for notifications (a log, a webhook, mail, a chat or paging service…).

    A target declares its limits and reports what its service says; the runner does the
    rest, for every target alike:

    - **send rate**: the target's ``per_second`` (a target type sets its default in its
      config Struct); the runner takes a send slot before each :meth:`deliver`, shared by
      every replica of the sink (KV bucket ``sink_pace``);
    - **429 / Retry-After**: :meth:`deliver` raises ``RetryableError(reason,
      retry_after=seconds)``; the runner retries that notification after it and pauses
      every send to the target as long (every replica; at most ``retry.max_retry_after``);
    - **a pause learnt on success**: :meth:`deliver` returns ``Delivered(pause=seconds)``.

    A target never sleeps for its rate or a pause itself.
    """

    name: str

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (HTTP sessions, connections) before the first delivery."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` acquired."""

    @abstractmethod
    async def deliver(self, delivery: Delivery) -> Delivered | None:
        """Deliver one notification (``None`` or :class:`Delivered`), or raise
        :class:`RetryableError`/:class:`PermanentError`."""


RETRYABLE_STATUS = frozenset({408, 425, 429})

ANSWER_STATUS: ContextVar[int | None] = ContextVar("answer_status", default=None)
"""The HTTP status of the service's last answer in this delivery (set by
:func:`raise_for_status`), for the attempt log."""

_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def answer_status(error: str | None = None) -> int | None:
    """The HTTP status of this delivery's answer: what :func:`raise_for_status` saw, else
    the one an error's text names (``HTTP 503: …``)."""
    seen = ANSWER_STATUS.get()
    if seen is not None:
        return seen
    found = _HTTP_STATUS.search(error) if error else None
    return int(found.group(1)) if found else None


def raise_for_status(status: int, retry_after: str | None, detail: str) -> None:
    """Map an HTTP answer to the delivery outcome: 2xx delivered; 408/425/429/5xx retry
    (honouring ``Retry-After``); 410 :class:`Gone` (the target is paused); anything else
    (other 4xx, 3xx: redirects are not followed) permanent."""
    ANSWER_STATUS.set(status)
    if 200 <= status < 300:
        return
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in RETRYABLE_STATUS or status >= 500:
        raise RetryableError(reason, parse_retry_after(retry_after))
    if 300 <= status < 400:
        raise PermanentError(f"{reason} (redirects are not followed)")
    if status == 410:
        raise Gone(reason)
    raise PermanentError(reason)
