"""Messages that cross NATS subjects. Each is versioned by the ``Lookout-Schema`` header.

``notification.<source>.<type>`` (stream NOTIFICATIONS) — schema ``notification/1``::

    {"id": "...", "type": "security_event", "source": "scanner",
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
import hashlib
import re
from datetime import datetime

import msgspec

from shared.bus.messages import MAX_TEXT, REQUEST_ID_HEADER, SCHEMA_HEADER, Text

NOTIFICATION_SCHEMA = "notification/1"
DEADLETTER_SCHEMA = "deadletter/1"

_TOKEN_BAD = re.compile(r"[^a-z0-9_-]+")


@functools.lru_cache(maxsize=4096)
def subject_token(value: str) -> str:
    """A safe, lower-case single NATS subject token from arbitrary text."""
    token = _TOKEN_BAD.sub("_", value.strip().lower()).strip("_")
    return token[:64] or "unknown"


class IdError(ValueError):
    """Not an id lookout can carry (the message is the reason, for a 400)."""


def notification_id(value: str) -> str:
    """``value`` as a notification id: kept whole when it is 1 to :data:`MAX_TEXT`
    printable ASCII characters that neither start nor end with a space (it goes into the
    ``Nats-Msg-Id`` and ``webhook-id`` headers, log lines, mail headers); replaced by
    ``sha256-<hex of the whole value>`` when longer, so a re-sent one is still recognised
    and two that share a beginning stay apart; :class:`IdError` for anything else (control
    characters, other Unicode), never cut or cleaned, which could make two ids one."""
    if value.isascii() and value.isprintable() and value and value[0] != " " and value[-1] != " ":
        if len(value) <= MAX_TEXT:
            return value
        return "sha256-" + hashlib.sha256(value.encode()).hexdigest()
    if not value:
        raise IdError("id is empty")
    if not value.isascii():
        raise IdError("id must be printable ASCII (it goes into HTTP and NATS headers)")
    if not value.isprintable():
        raise IdError("id holds a control character (CR, LF, NUL, tab…)")
    raise IdError("id starts or ends with a space")


ENVELOPE_RESERVE = 4096
"""Bytes of a message's NATS max payload kept for its headers and for the dead-letter
record that may one day wrap it: a notification's envelope (:func:`encode`) is stored only
when it is at most ``max_payload - ENVELOPE_RESERVE`` bytes (see :func:`too_large`)."""


def rfc3339(text: str) -> datetime | None:
    """``text`` as an RFC 3339 time with its offset (``Z`` or ``±hh:mm``), read by msgspec;
    None when it is not one: what a notification's ``timestamp`` and a silence's
    ``ends_at`` must be, so every reader can compare them."""
    try:
        when = msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        return None
    return when if when.tzinfo is not None else None


def envelope_limit(max_payload: int) -> int:
    """The largest envelope (:func:`encode` of a notification) stored on a bus that takes
    ``max_payload`` bytes per message (nats-py's ``Client.max_payload``)."""
    return max_payload - ENVELOPE_RESERVE


def too_large(payload: bytes, data: msgspec.Raw, limit: int) -> str:
    """Why the envelope ``payload`` (whose message is ``data``) is over ``limit``
    (:func:`envelope_limit`), in terms of the message as its sender sent it."""
    return (
        f"{len(data)} bytes; the bus stores at most "
        f"{limit - (len(payload) - len(data))} bytes per message"
    )


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


LOOKOUT_SOURCE = "lookout"
"""The source of lookout's own notifications: digests and verdict changes."""
DIGEST_SOURCE = LOOKOUT_SOURCE
DIGEST_TYPE = "digest"
VERDICT_CHANGED_TYPE = "verdict_changed"
"""A watched indicator's verdict changed (published by the scheduler service)."""


def is_digest(notification: Notification) -> bool:
    """A digest of a group of notifications (see shared/relay/grouping.py)."""
    return notification.source == DIGEST_SOURCE and notification.type == DIGEST_TYPE


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


_notification_decoder = msgspec.json.Decoder(Notification)
_deadletter_decoder = msgspec.json.Decoder(DeadLetter)


def notification_headers(note: Notification, request_id: str | None = None) -> dict[str, str]:
    """The NATS headers a notification is published with: ``Nats-Msg-Id`` (so a re-sent one
    is stored once), the schema, and the request id of the HTTP request that brought it."""
    headers = {"Nats-Msg-Id": note.msg_id, SCHEMA_HEADER: NOTIFICATION_SCHEMA}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def decode_notification(data: bytes) -> Notification:
    """Raise :class:`msgspec.DecodeError` (or ``ValidationError``) for a bad message."""
    return _notification_decoder.decode(data)


def decode_deadletter(data: bytes) -> DeadLetter:
    return _deadletter_decoder.decode(data)
