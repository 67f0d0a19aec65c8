"""Sqreen webhook: signature check and parsing into notifications.

Sqreen signs the raw body: ``X-Sqreen-Integrity`` is the hex HMAC-SHA256 of it, keyed with
the webhook secret. The body is a JSON array of up to 1000 messages (a single object is
accepted too), each either

- v2: ``{"message_id", "api_version", "date_created", "message_type", "retry_count",
  "message": {...}}``, or
- v1: flat, with ``sqreen_payload_type`` naming the type.

Each message becomes one :class:`~shared.relay.schemas.Notification` whose ``id`` stays the same
when Sqreen re-sends the message with a higher ``retry_count``.

The webhook secret is ``SQREEN_WEBHOOK_SECRET`` (or ``_FILE``; a comma-separated list while a
secret is rotated), read by :data:`SECTION`. How the relay reads Sqreen messages to route
and render them (risk, application, environment, links, addresses, accounts; a default
title and body per message type) is :data:`PROFILE`, registered by the launcher for the
source ``sqreen``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from shared.bus.messages import utc_now
from shared.core import jsondata
from shared.core.secrets import Secret, secret_list
from shared.core.settings import Section, Settings
from shared.relay.schemas import IdError, Notification, notification_id, subject_token
from shared.relay.sources import (
    Attributes,
    Fields,
    SourceProfile,
    addresses,
    names,
    number,
    text,
)

SIGNATURE_HEADER = "X-Sqreen-Integrity"
SOURCE = "sqreen"
SECRET_VARIABLE = "SQREEN_WEBHOOK_SECRET"  # noqa: S105 - its name, not a secret
_DIGEST_HEX_LEN = hashlib.sha256().digest_size * 2


T = TypeVar("T")


class SignatureError(Exception):
    pass


class PayloadError(Exception):
    pass


def keys(secrets: Sequence[Secret]) -> tuple[hmac.HMAC, ...]:
    """One keyed HMAC-SHA256 per secret, made once: the gateway copies them for every request
    instead of keying (and looking up the digest) again."""
    return tuple(hmac.new(secret.reveal().encode(), digestmod=hashlib.sha256) for secret in secrets)


def verify(body: bytes, signature: str | None, keys: Sequence[hmac.HMAC]) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is the HMAC of ``body`` under one
    of ``keys`` (the webhook secrets as :func:`keys` makes them; several are accepted while
    a secret is being rotated)."""
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    signature = signature.strip().lower()
    if len(signature) != _DIGEST_HEX_LEN:
        raise SignatureError(f"{SIGNATURE_HEADER} must be {_DIGEST_HEX_LEN} hex characters")
    try:
        given = bytes.fromhex(signature)
    except ValueError:
        raise SignatureError(f"{SIGNATURE_HEADER} is not hexadecimal") from None
    valid = False
    for key in keys:
        mac = key.copy()
        mac.update(body)
        expected = mac.digest()
        # No early exit: the time taken does not tell which secret (if any) matched.
        valid |= hmac.compare_digest(expected, given)
    if not valid:
        raise SignatureError("signature does not match")


_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_JSON_SPACE = b" \t\r\n"  # what JSON allows around values (bytes.strip() takes more)
_any = msgspec.json.Decoder()
_raw = msgspec.json.Decoder(msgspec.Raw)
_canonical = msgspec.json.Encoder(order="sorted", decimal_format="number")


def check(body: bytes) -> None:
    """:class:`PayloadError` unless ``body`` is UTF-8 nested at most
    :data:`jsondata.MAX_DEPTH` deep: what every sink can read back (see shared/core/jsondata.py)."""
    try:
        jsondata.check(body)
    except jsondata.JsonError as exc:
        raise PayloadError(str(exc)) from None


def split(body: bytes, max_messages: int) -> list[msgspec.Raw]:
    """The raw JSON of each message, byte for byte as Sqreen sent it."""
    check(body)
    return _split(body, max_messages)


def _split(body: bytes, max_messages: int) -> list[msgspec.Raw]:
    stripped = body.lstrip()
    if stripped[:1] == b"{":
        try:
            _raw.decode(body)  # well-formed? (a number out of range is for parse() to see)
        except msgspec.DecodeError as exc:
            raise PayloadError(f"malformed JSON: {exc}") from None
        return [msgspec.Raw(stripped.rstrip())]
    if stripped[:1] != b"[":
        raise PayloadError("body must be a JSON array of messages or a single message object")
    try:
        items = _raw_list.decode(body)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    if not items:
        raise PayloadError("the array holds no messages")
    if len(items) > max_messages:
        raise PayloadError(f"{len(items)} messages in one request; at most {max_messages}")
    return items


def _first_text(*values: object) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _first_id(*values: object) -> str | None:
    """As :func:`_first_text`, but the text as it is: an id is kept whole, or refused."""
    for value in values:
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


class _Fields(msgspec.Struct):
    """Only what lookout reads of a message; msgspec skips every other field quickly."""

    message_id: object = None
    message_type: object = msgspec.UNSET
    sqreen_payload_type: object = msgspec.UNSET
    event_id: object = None
    id: object = None
    incident_thread: object = None
    incident_status: object = None
    date_last_updated: object = None
    date_created: object = None
    date_occurred: object = None


class _Message(_Fields):
    """The usual message: v2 with its ``message`` object read in the same pass, or v1 (flat,
    no ``message`` or a null one)."""

    message: _Fields | None = None


class _Loose(_Fields):
    """A message whose ``message`` is not an object: fine for v1, an error for v2."""

    message: msgspec.Raw = msgspec.Raw(b"null")


_fields = msgspec.json.Decoder(_Fields)
_message = msgspec.json.Decoder(_Message)
_messages = msgspec.json.Decoder(list[_Message])
_loose = msgspec.json.Decoder(_Loose)


def _identity(top: _Fields, body: _Fields, raw: msgspec.Raw) -> str:
    """A stable id: the same message re-sent (higher ``retry_count``) gets the same id."""
    explicit = _first_id(top.message_id)
    if explicit:
        return explicit
    thread = _first_id(body.incident_thread)
    if thread:
        # An incident thread is updated over time; each update is its own notification.
        stage = _first_id(body.date_last_updated, body.incident_status)
        return f"{thread}@{stage}" if stage else thread
    event = _first_id(body.event_id, body.id)
    if event:
        return event
    return "sha256-" + hashlib.sha256(_canonical_form(raw)).hexdigest()[:32]


def _canonical_form(raw: msgspec.Raw) -> bytes:
    """The message with sorted keys and without ``retry_count``: the same for every
    re-send of it. A number Python cannot hold (``1e999``) keeps its exact value (a
    Decimal, written as a number), so it never reads like another message's string."""
    try:
        message = _any.decode(raw)
    except msgspec.ValidationError:
        message = json.loads(bytes(raw), parse_float=Decimal, parse_int=_int)
    unchanging = {k: v for k, v in message.items() if k != "retry_count"}
    return _canonical.encode(unchanging)


def _int(text: str) -> int | Decimal:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        return Decimal(text)


def _decode(index: int, raw: msgspec.Raw, decoder: msgspec.json.Decoder[T]) -> T:
    """``raw`` read by ``decoder``; :class:`PayloadError` when it is not a JSON object, or a
    field lookout reads holds what JSON cannot (e.g. a number out of range)."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"message {index}: must be a JSON object ({exc})") from None
    except msgspec.DecodeError as exc:  # split() has decoded it; a direct caller may not
        raise PayloadError(f"message {index}: malformed JSON: {exc}") from None


def _read(index: int, raw: msgspec.Raw) -> _Message | _Loose:
    try:
        return _message.decode(raw)
    except msgspec.DecodeError:  # (ValidationError too) read loosely, which names the fault
        return _decode(index, raw, _loose)


def _notification(index: int, top: _Message | _Loose, raw: msgspec.Raw) -> Notification:
    body: _Fields
    if top.message_type is not msgspec.UNSET:
        kind = top.message_type
        inner = top.message
        if isinstance(inner, msgspec.Raw) and bytes(inner).lstrip().startswith(b"{"):
            # _Message could not read it in one pass (a duplicate key, a bad value in a
            # field lookout reads): read it alone, for the same result or error as ever
            inner = _decode(index, inner, _fields)
        if not isinstance(inner, _Fields):
            raise PayloadError(f"message {index}: v2 message needs an object under 'message'")
        body = inner
        timestamp = _first_text(top.date_created, body.date_occurred)
    elif top.sqreen_payload_type is not msgspec.UNSET:
        kind = top.sqreen_payload_type
        body = top
        timestamp = _first_text(top.date_occurred, top.date_created)
    else:
        raise PayloadError(
            f"message {index}: unknown shape: "
            "expected 'message_type' (v2) or 'sqreen_payload_type' (v1)"
        )
    if not isinstance(kind, str) or not kind.strip():
        raise PayloadError(f"message {index}: the message type must be a non-empty string")
    try:
        ident = notification_id(_identity(top, body, raw))
    except IdError as exc:
        raise PayloadError(f"message {index}: {exc}") from None
    return Notification(
        id=ident,
        type=subject_token(kind),
        source=SOURCE,
        timestamp=timestamp or utc_now(),
        data=raw,
    )


def parse(index: int, raw: msgspec.Raw) -> Notification:
    """One Sqreen message (v1 or v2) as a notification; :class:`PayloadError` if unknown."""
    return _notification(index, _read(index, raw), raw)


def notifications(body: bytes, max_messages: int) -> list[Notification]:
    """The notifications of a webhook body: what :func:`split` then :func:`parse` give, with
    the same errors, but reading the JSON once or twice instead of three times (the top level,
    each message, each message's ``message``) for the usual body, an array of messages."""
    check(body)
    stripped = body.strip(_JSON_SPACE)
    if stripped[:1] == b"[":
        try:
            tops = _messages.decode(stripped)
        except msgspec.DecodeError:
            tops = []  # split() and parse() find the fault and name it
        if len(tops) == 1 and max_messages >= 1:  # the usual body: one message
            raw = msgspec.Raw(stripped[1:-1].strip(_JSON_SPACE))  # as msgspec.Raw cuts it
            return [_notification(0, tops[0], raw)]
        if 1 < len(tops) <= max_messages:
            pairs = enumerate(zip(tops, _raw_list.decode(stripped), strict=True))
            return [_notification(i, top, raw) for i, (top, raw) in pairs]
    return [parse(i, raw) for i, raw in enumerate(_split(body, max_messages))]


# --------------------------------------------------------------------------- settings


def _load(settings: Settings) -> tuple[Secret, ...]:
    return secret_list(settings.env, SECRET_VARIABLE)


def _describe(secrets: tuple[Secret, ...]) -> dict[str, int]:
    return {"sqreen_secrets": len(secrets)}


SECTION = Section("sources.sqreen", _load, describe=_describe)
"""``SQREEN_WEBHOOK_SECRET``: the webhook secrets (several while one is rotated)."""


def secrets(settings: Settings) -> tuple[Secret, ...]:
    """The webhook secrets (none: ``/webhooks/sqreen`` answers 503)."""
    return settings.section(SECTION)


# --------------------------------------------------------------------------- source profile

TEMPLATES: dict[str, tuple[str, str]] = {
    "security_event": (
        "Security event{% if application %} in {{ application }}{% endif %}"
        "{% if environment %} ({{ environment }}){% endif %}"
        "{% if risk is not none %}: risk {{ risk }}{% endif %}",
        "{{ description or message.event_category or 'Security event' }}\n"
        "{% if message.event_kind %}Kind: {{ message.event_kind }}\n{% endif %}"
        "{% if ips %}From: {{ ips | join(', ') }}\n{% endif %}"
        "Time: {{ message.date_occurred or timestamp }}\n"
        "{% if url %}Details: {{ url }}\n{% endif %}"
        "Id: {{ id }}",
    ),
    "test": (
        "Test notification from {{ source | capitalize }}"
        "{% if application %} ({{ application }}){% endif %}",
        "The webhook works: lookout received and relayed this test message.\n"
        "Time: {{ timestamp }}\nId: {{ id }}",
    ),
    "security_response": (
        "Security response{% if message.playbook.name %}: {{ message.playbook.name }}{% endif %}"
        "{% if application %} in {{ application }}{% endif %}",
        "{{ description or 'A security automation playbook ran.' }}\n"
        "{% if ips %}IPs: {{ ips | join(', ') }}\n{% endif %}"
        "Time: {{ timestamp }}\nId: {{ id }}",
    ),
    "pulse": (
        "Pulse: {{ message.humanized_title or message.pulse_category or 'activity' }}"
        "{% if application %} in {{ application }}{% endif %}",
        "{{ message.humanized_title or description or 'New pulse' }}\n"
        "{% if message.humanized_accounts %}Accounts: {{ message.humanized_accounts }}\n"
        "{% endif %}{% if message.humanized_geos %}Where: {{ message.humanized_geos }}\n{% endif %}"
        "Time: {{ timestamp }}\nId: {{ id }}",
    ),
}
_INCIDENT = (
    "Incident {{ type | replace('_', ' ') }}"
    "{% if message.incident_status %} {{ message.incident_status }}{% endif %}"
    "{% if application %} in {{ application }}{% endif %}",
    "{{ description or (type | replace('_', ' ') | capitalize) }}\n"
    "{% if ips %}IPs: {{ ips | join(', ') }}\n{% endif %}"
    "{% if accounts %}Accounts: {{ accounts | join(', ') }}\n{% endif %}"
    "Started: {{ message.date_started or timestamp }}\n"
    "{% if url %}Details: {{ url }}\n{% endif %}"
    "Thread: {{ message.incident_thread or id }}",
)
for _incident in ("http_scan", "account_takeover", "incident"):
    TEMPLATES[_incident] = _INCIDENT


class SqreenProfile(SourceProfile):
    """Sqreen messages keep their fields in different places per version and type: v2 wraps
    them in ``message`` (v1 is flat); security events carry ``risk_coefficient``, v1 and the
    test message ``risk``; security responses nest ``application.name`` and
    ``application.environment``; events link to the dashboard with ``event_url`` and
    describe themselves in ``humanized_description``; incidents list ``new_related_ips``
    and ``new_compromised_accounts``. A digest of Sqreen notifications does not name its
    source (each member's default title says what it is)."""

    templates = TEMPLATES
    digest_names_source = False

    def message(self, data: Any) -> dict[str, Any]:
        inner = data.get("message") if isinstance(data, dict) else None
        return inner if isinstance(inner, dict) else data if isinstance(data, dict) else {}

    def attributes(self, message: dict[str, Any]) -> Attributes:
        nested = message.get("application")
        app: dict[str, Any] = nested if isinstance(nested, dict) else {}
        risk = number(message.get("risk_coefficient"))
        if risk is None:
            risk = number(message.get("risk"))
        application = text(message.get("application_name")) or text(app.get("name"))
        if application is None and isinstance(nested, str):
            application = nested
        environment = text(message.get("environment")) or text(app.get("environment"))
        return Attributes(risk=risk, application=application, environment=environment)

    def fields(self, message: dict[str, Any]) -> Fields:
        return Fields(
            ips=addresses(message.get("ips")) + addresses(message.get("new_related_ips")),
            accounts=names(message.get("new_compromised_accounts") or message.get("accounts")),
            url=message.get("event_url") or message.get("url"),
            description=message.get("humanized_description") or message.get("description") or "",
        )


PROFILE = SqreenProfile()
