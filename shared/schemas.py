"""Messages that cross NATS subjects. Each is versioned by the ``Lookout-Schema`` header.

``notification.<source>.<type>`` (stream NOTIFICATIONS) — schema ``notification/1``::

    {"id": "...", "type": "security_event", "source": "sqreen",
     "timestamp": "2026-01-02T03:04:05Z", "data": {...original message, unchanged...}}

``id`` identifies the notification for its whole life: it is the JetStream ``Nats-Msg-Id``
(prefixed with the source) so a re-sent notification is stored once, the ``webhook-id`` of
every HTTP delivery, and the idempotency key targets use. Any system may publish its own
alerts with this schema; ``source`` and ``type`` should equal the subject's tokens.

``deadletter.<target>`` (stream DEADLETTERS) — schema ``deadletter/1``: the notification,
the subject it came from, why it failed and how often it was tried.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Annotated

import msgspec

SCHEMA_HEADER = "Lookout-Schema"
REQUEST_ID_HEADER = "Lookout-Request-Id"
NOTIFICATION_SCHEMA = "notification/1"
DEADLETTER_SCHEMA = "deadletter/1"

_TOKEN_BAD = re.compile(r"[^a-z0-9_-]+")


@functools.lru_cache(maxsize=4096)
def subject_token(value: str) -> str:
    """A safe, lower-case single NATS subject token from arbitrary text."""
    token = _TOKEN_BAD.sub("_", value.strip().lower()).strip("_")
    return token[:64] or "unknown"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Notification(msgspec.Struct, kw_only=True, frozen=True):
    id: Text
    type: Text
    source: Text
    timestamp: str
    data: msgspec.Raw

    @property
    def subject(self) -> str:
        return f"notification.{subject_token(self.source)}.{subject_token(self.type)}"

    @property
    def msg_id(self) -> str:
        return f"{self.source}:{self.id}"


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    target: str
    subject: str
    error: str
    attempts: int
    failed_at: str
    stream_seq: int
    notification: Notification | None = None
    raw: str | None = None
    """The undecodable original, when it was not a valid notification at all."""


_encoder = msgspec.json.Encoder()
_notification_decoder = msgspec.json.Decoder(Notification)
_deadletter_decoder = msgspec.json.Decoder(DeadLetter)


def encode(value: msgspec.Struct) -> bytes:
    return _encoder.encode(value)


def decode_notification(data: bytes) -> Notification:
    """Raise :class:`msgspec.DecodeError` (or ``ValidationError``) for a bad message."""
    return _notification_decoder.decode(data)


def decode_deadletter(data: bytes) -> DeadLetter:
    return _deadletter_decoder.decode(data)
