"""The interface every notification target implements.

A target delivers one notification per call. It reports failure by raising:

- :class:`RetryableError` — try again later (timeouts, 5xx, 408, 429); may carry the
  ``Retry-After`` the target asked for;
- :class:`PermanentError` — retrying cannot help (other 4xx, a rejected payload).

Anything else it raises is treated as retryable. Retries, backoff, acknowledgement and
dead-lettering are the runner's job (:mod:`shared.relay.runner`), never the target's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from nats.js.kv import KeyValue

from shared.core.retryafter import parse_retry_after
from shared.relay.schemas import Notification


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


class SharedPacing(Protocol):
    """What the runner needs of a target's own pacer (:class:`shared.relay.pacing.Pacer`)."""

    @property
    def rated(self) -> bool: ...

    def share(self, kv: KeyValue, target: str) -> None: ...


class Target(ABC):
    """A destination for notifications (a log, a webhook, mail, a chat or paging service…).

    The runner paces sends to the target's ``per_second`` and pauses after a 429, unless
    the target sets ``paces_itself`` because it reads the service's own rate headers."""

    name: str
    paces_itself: ClassVar[bool] = False

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (HTTP sessions, connections) before the first delivery."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` acquired."""

    def pacers(self) -> Sequence[SharedPacing]:
        """The pacers of a target that ``paces_itself``, so that the runner can share them
        with the other replicas of the sink (:meth:`shared.relay.pacing.Pacer.share`)."""
        return ()

    @abstractmethod
    async def deliver(self, delivery: Delivery) -> None:
        """Deliver one notification, or raise :class:`RetryableError`/:class:`PermanentError`."""


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
