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
import hashlib
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

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


MAX_TEXT = 256
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]


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


DIGEST_SOURCE = "lookout"
DIGEST_TYPE = "digest"


def is_digest(notification: Notification) -> bool:
    """A digest of a group of notifications (see shared/grouping.py)."""
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


_encoder = msgspec.json.Encoder()
_notification_decoder = msgspec.json.Decoder(Notification)
_deadletter_decoder = msgspec.json.Decoder(DeadLetter)


def notification_headers(note: Notification, request_id: str | None = None) -> dict[str, str]:
    """The NATS headers a notification is published with: ``Nats-Msg-Id`` (so a re-sent one
    is stored once), the schema, and the request id of the HTTP request that brought it."""
    headers = {"Nats-Msg-Id": note.msg_id, SCHEMA_HEADER: NOTIFICATION_SCHEMA}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def encode(value: msgspec.Struct) -> bytes:
    return _encoder.encode(value)


def decode_notification(data: bytes) -> Notification:
    """Raise :class:`msgspec.DecodeError` (or ``ValidationError``) for a bad message."""
    return _notification_decoder.decode(data)


def decode_deadletter(data: bytes) -> DeadLetter:
    return _deadletter_decoder.decode(data)


# --------------------------------------------------------------------------- host lookups
#
# ``lookup.requested.<kind>`` (stream LOOKUPS) — schema ``lookup-request/1``: one
# indicator of one job. Every provider has its own durable consumer on this stream, so
# every provider sees every request; replicas of one provider share its consumer.
#
# ``lookup.result.<provider>`` (stream LOOKUP_RESULTS) — schema ``lookup-result/1``: what
# the provider found. The same record is kept in the KV bucket ``lookup_results`` under
# ``<job id>.<indicator key>.<provider>`` for the API, the event stream and the UI.

LOOKUP_REQUEST_SCHEMA = "lookup-request/1"
LOOKUP_RESULT_SCHEMA = "lookup-result/1"

Status = Literal["pending", "queued", "done", "not_configured", "quota_exhausted", "error"]
Verdict = Literal["malicious", "suspicious", "harmless", "undetected", "unknown", "error"]


# Which indicator kinds each provider answers for: the gateway lists a pending entry for
# every provider of an indicator's kind, and each provider service has a durable consumer.
PROVIDER_KINDS: dict[str, frozenset[str]] = {
    "dns": frozenset({"domain", "url", "email", "ipv4", "ipv6"}),
    "whois": frozenset({"domain", "url", "email", "ipv4", "ipv6"}),
    "emailsec": frozenset({"domain", "email"}),
    "virustotal": frozenset({"domain", "url", "email", "ipv4", "ipv6"}),
    "abuseipdb": frozenset({"ipv4", "ipv6"}),
}


def indicator_key(kind: str, value: str) -> str:
    """A short, subject-safe key for one indicator (values hold ':', '/', '@'…)."""
    return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()[:20]


class LookupRequest(msgspec.Struct, kw_only=True, frozen=True):
    job_id: Text
    indicator: Text
    kind: Literal["ipv4", "ipv6", "domain", "url", "email"]
    host: str | None = None
    registered_domain: str | None = None
    scope: str = "public"
    providers: list[str] = []
    """Only these providers (empty: every provider that handles the kind)."""
    fresh: bool = False
    """Bypass the cache."""
    requested_at: str = ""

    @property
    def key(self) -> str:
        return indicator_key(self.kind, self.indicator)

    @property
    def subject(self) -> str:
        return f"lookup.requested.{self.kind}"


class LookupResult(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=False):
    job_id: str
    indicator: str
    kind: str
    provider: str
    status: Status
    verdict: Verdict = "unknown"
    summary: str = ""
    """A few words for a table cell, e.g. ``12/94 engines`` or ``SPF 11 lookups``."""
    data: dict[str, Any] = {}
    cached: bool = False
    error: str | None = None
    retry_at: str | None = None
    """``queued``: when the request is expected to go out; ``quota_exhausted``: reset time."""
    updated_at: str = ""

    @property
    def kv_key(self) -> str:
        return f"{self.job_id}.{indicator_key(self.kind, self.indicator)}.{self.provider}"


class JobIndicator(msgspec.Struct, frozen=True):
    value: str
    kind: str
    scope: str = "public"


class Job(msgspec.Struct, kw_only=True, frozen=True):
    """A lookup job (KV bucket ``lookup_jobs``, key = id)."""

    id: str
    created_at: str
    indicators: list[JobIndicator]
    providers: dict[str, list[str]]
    """Per indicator kind, the providers that will answer for it."""
    rejected: list[dict[str, str]] = []
    """The first of the items that could not be read (at most ``shared.jobs.REJECTED_KEPT``)."""
    fresh: bool = False
    request_id: str | None = None
    """The request that created it (``X-Request-Id``; sent as ``Lookout-Request-Id`` with
    each of its lookup requests). None for a job stored before request ids."""
    rejected_total: int = 0
    """How many items could not be read (0 in a job stored before it was counted)."""
    chunks: int = 0
    """Stored only: the indicators are kept apart under the keys ``<id>.0`` … ``<id>.<n-1>``
    (see shared.jobs), so a job of any size fits in NATS messages; 0 when inline."""


_result_decoder = msgspec.json.Decoder(LookupResult)
_request_decoder = msgspec.json.Decoder(LookupRequest)
_job_decoder = msgspec.json.Decoder(Job)


def decode_lookup_request(data: bytes) -> LookupRequest:
    return _request_decoder.decode(data)


def decode_lookup_result(data: bytes) -> LookupResult:
    return _result_decoder.decode(data)


def decode_job(data: bytes) -> Job:
    return _job_decoder.decode(data)
