"""Delivery status per notification and target, kept in the KV bucket ``delivery_status``.

Each sink writes what happened to a notification it handles: ``delivered``, ``retrying``
(with the last error and when the next attempt is due), ``dead`` (dead-lettered),
``skipped`` (its route does not match), ``paused`` (waiting while its target is paused) or
``silenced`` (a silence held it back). A configured target with no record yet is
``pending``, or ``not_applicable`` when it was made after the notification arrived (its
consumer takes only what comes next); nothing is written on the webhook path.
Writing status is best effort: it never holds up or fails a delivery.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import msgspec

from shared.relay import templates
from shared.relay.schemas import Notification
from shared.relay.sources import Reading, read

State = Literal[
    "pending",
    "skipped",
    "delivered",
    "retrying",
    "paused",
    "dead",
    "silenced",
    "not_applicable",
]
"""``skipped``: the target's route does not match the notification; ``paused``: it waits
while its target is paused (see shared.relay.health); ``not_applicable`` (never written,
the API's conclusion): the target was made after the notification arrived, so it never
gets it; ``silenced``: a silence held it back (acknowledged, never sent nor dead-lettered;
``silence_id`` says which)."""

AttemptOutcome = Literal["delivered", "failed", "refused"]
"""``failed``: retryable (or while the target is paused); ``refused``: permanent."""

MAX_LOG = 20
"""Attempts kept per notification and target (the newest)."""
ERROR_EXCERPT = 200


class Attempt(msgspec.Struct, kw_only=True, frozen=True):
    """One call to the target for a notification: when, what came of it, the HTTP status
    of the service's answer (when it has one), how long it took, and the start of the
    error."""

    at: str
    outcome: AttemptOutcome
    status: int | None = None
    ms: float = 0.0
    error: str | None = None


def logged(history: list[Attempt], attempt: Attempt) -> list[Attempt]:
    """``history`` with ``attempt`` added, the oldest dropped beyond :data:`MAX_LOG`."""
    return [*history, attempt][-MAX_LOG:]


class DeliveryStatus(msgspec.Struct, kw_only=True, frozen=True):
    notification_id: str
    source: str
    type: str
    timestamp: str
    subject: str
    target: str
    state: State
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: str | None = None
    updated_at: str = ""
    # Added later, absent from older records (so optional): when lookout received the
    # notification (JetStream stored it; ``timestamp`` is the sender's own date), and what
    # the notifications page shows of it.
    received_at: str | None = None
    title: str | None = None
    application: str | None = None
    environment: str | None = None
    risk: int | None = None
    attempt_log: list[Attempt] = []
    """The newest :data:`MAX_LOG` calls to the target for this notification."""
    silence_id: str | None = None
    tries: int = 0
    """Failed sends that count towards ``retry.max_attempts``: those made while the target
    was active (not the probes of a paused one). ``attempts`` is JetStream's delivery
    count, which a stopping sink's hand-back and a crash raise too."""


@dataclass(frozen=True, slots=True)
class Shown:
    """What the notifications page shows of a notification besides its id and type."""

    title: str | None = None
    application: str | None = None
    environment: str | None = None
    risk: int | None = None


def shown(notification: Notification | Reading) -> Shown:
    """Its default title (its source's template for its type, else the generic one: the same for
    every target) and its routing attributes; best effort, never raises. Computed once per
    reading (every status record of one delivery shows the same)."""
    reading = read(notification)
    return reading.memo("shown", lambda: _shown(reading))


def _shown(reading: Reading) -> Shown:
    try:
        attributes = reading.attributes
        title = templates.default_title(reading) or None
    except Exception:
        return Shown()
    return Shown(title, attributes.application, attributes.environment, attributes.risk)


def utc_text(when: datetime | None) -> str | None:
    """``2026-01-02T03:04:05.678Z`` (UTC), or None."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notification_key(notification_id: str) -> str:
    """KV-safe key prefix for a notification id (ids hold ':', '@', '/'…): every record
    of that id, whatever its source, is under ``<notification_key>.>``."""
    return hashlib.sha256(notification_id.encode()).hexdigest()[:24]


_TOKEN = re.compile(r"[a-z0-9_-]{1,64}")


@functools.lru_cache(maxsize=1024)
def source_key(source: str) -> str:
    """A KV-safe key token for a source: the name itself when it is a subject token (every
    source the gateway names is), else ``S`` and a hash (upper case: never a name)."""
    if _TOKEN.fullmatch(source):
        return source
    return "S" + hashlib.sha256(source.encode()).hexdigest()[:24]


def key(notification: Notification, target: str) -> str:
    """``<notification_key>.<source_key>.<target>``: two sources' notifications with one
    id keep their own records (the id is the sender's, unique only within its source).

    Records written before the source was part of the key (``<notification_key>.<target>``)
    are still found under the notification's prefix, but a new record of the same
    notification and target no longer replaces them."""
    return f"{notification_key(notification.id)}.{source_key(notification.source)}.{target}"


_decoder = msgspec.json.Decoder(DeliveryStatus)


def decode(data: bytes) -> DeliveryStatus:
    return _decoder.decode(data)
