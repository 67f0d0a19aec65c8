"""Source types: how ``POST /webhooks/<name>`` authenticates and reads each kind of sender.

One module per type (``services/gateway/sources/<type>.py``, ``-`` as ``_``), named by
``SOURCE_TYPES`` of ``services/registry.py``. A module holds:

- ``CONFIG``: its ``[[sources]]`` Struct (a :class:`~shared.relay.inbound.SourceConfig`
  subclass with its keys, secrets and profile);
- ``build(config, secrets, settings)``: its :class:`Receiver`, made once when the gateway
  starts.

The route itself (limits, publishing, answers, metrics) is ``services/gateway/hooks.py``,
the same for every type.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from multidict import CIMultiDictProxy

from shared.core import jsondata
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.inbound import SourceConfig
from shared.relay.schemas import IdError, Notification, notification_id

Headers = CIMultiDictProxy[str]
TOLERANCE = 300.0
"""Seconds a signed timestamp may be away from now, either way (Standard Webhooks')."""


class Refused(Exception):
    """A request the source does not take: ``status`` and the reason, for the sender."""

    status = 400
    outcome = "bad_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthorized(Refused):
    """Bad or missing signature, token or credentials: 401."""

    status = 401
    outcome = "unauthorized"


class Malformed(Refused):
    """A body or header the source cannot read: 400."""


@dataclass
class Received:
    """What a request brings: the notifications to store (none for a ping), and fields
    added to the answer (``{"zen": …}`` for a GitHub ping)."""

    notifications: list[Notification]
    extra: dict[str, Any] = field(default_factory=dict)


class Receiver(Protocol):
    def receive(self, headers: Headers, body: bytes) -> Received:
        """Authenticate and read one request (:class:`Unauthorized`, :class:`Malformed`)."""
        ...


class SourceModule(Protocol):
    CONFIG: type[SourceConfig]

    def build(self, config: Any, secrets: Mapping[str, Secret], settings: Settings) -> Receiver: ...


# --------------------------------------------------------------------------- helpers


def header(headers: Headers, name: str) -> str:
    """A required header's value, stripped; :class:`Unauthorized` when it is missing (every
    header a type requires authenticates or identifies the request)."""
    value = optional_header(headers, name)
    if value is None:
        raise Unauthorized(f"missing {name} header")
    return value


def optional_header(headers: Headers, name: str) -> str | None:
    """A header's value, stripped, or None when it is missing or blank."""
    value = headers.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def any_matches(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    """Whether any of ``given`` equals any of ``expected``, compared in constant time and
    without an early exit: the time taken does not tell which one (if any) matched."""
    valid = False
    for want in expected:
        for got in given:
            valid |= hmac.compare_digest(want, got)
    return valid


def mac(key: bytes, content: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, content, getattr(hashlib, algorithm)).digest()


def unhex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise Unauthorized(f"{what} is not hexadecimal") from None


def unbase64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized(f"{what} is not base64") from None


def timestamp(text: str, what: str, tolerance: float = TOLERANCE) -> int:
    """A signed unix timestamp within ``tolerance`` of now (:class:`Unauthorized` else)."""
    try:
        value = int(text)
    except ValueError:
        raise Unauthorized(f"{what} must be whole unix seconds") from None
    now = datetime.now(UTC).timestamp()
    if value < now - tolerance:
        raise Unauthorized(f"{what} is too old (more than {int(tolerance)} s)")
    if value > now + tolerance:
        raise Unauthorized(f"{what} is too new (more than {int(tolerance)} s ahead)")
    return value


def rfc3339(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def load_json(body: bytes) -> Any:
    """The body as Python values: UTF-8 JSON, at most :data:`jsondata.MAX_DEPTH` deep
    (what every sink can read back); :class:`Malformed` else."""
    try:
        jsondata.check(body)
    except jsondata.JsonError as exc:
        raise Malformed(str(exc)) from None
    try:
        return jsondata.load(body)
    except jsondata.JsonError as exc:
        raise Malformed(f"malformed JSON: {exc}") from None


_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()
_canonical = msgspec.json.Encoder(order="sorted")


def raw(value: Any) -> msgspec.Raw:
    """``value`` (decoded JSON) as the notification's ``data``."""
    return msgspec.Raw(_encoder.encode(value))


def raw_body(body: bytes) -> msgspec.Raw:
    """The body itself as the notification's ``data``, unchanged but for the white space
    around it (checked JSON: :func:`load_json`)."""
    return msgspec.Raw(body.strip(b" \t\r\n"))


def decodes(text: str) -> bytes | None:
    """Base64 ``text`` (padding optional), or None when it is not base64."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def digest_id(value: Any) -> str:
    """An id for a message that carries none: the hash of its JSON, keys sorted."""
    return "sha256-" + hashlib.sha256(_canonical.encode(value)).hexdigest()[:32]


def checked_id(value: str, what: str) -> str:
    try:
        return notification_id(value)
    except IdError as exc:
        raise Malformed(f"{what}: {exc}") from None


def text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
