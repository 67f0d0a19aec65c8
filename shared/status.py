"""Delivery status per notification and target, kept in the KV bucket ``delivery_status``.

Each sink writes what happened to a notification it handles: ``delivered``, ``retrying``
(with the last error and when the next attempt is due), ``dead`` (dead-lettered) or
``skipped`` (its route does not match). A configured target with no record yet is
``pending``; nothing is written on the webhook path.
Writing status is best effort: it never holds up or fails a delivery.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from shared.schemas import Notification

State = Literal["pending", "skipped", "delivered", "retrying", "dead"]
"""``skipped``: the target's route does not match the notification."""


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


def notification_key(notification_id: str) -> str:
    """KV-safe key prefix for a notification id (ids hold ':', '@', '/'…)."""
    return hashlib.sha256(notification_id.encode()).hexdigest()[:24]


def key(notification: Notification, target: str) -> str:
    return f"{notification_key(notification.id)}.{target}"


_decoder = msgspec.json.Decoder(DeliveryStatus)


def decode(data: bytes) -> DeliveryStatus:
    return _decoder.decode(data)
