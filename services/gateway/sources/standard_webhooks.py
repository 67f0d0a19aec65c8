"""Source type ``standard-webhooks``: any sender that signs per the Standard Webhooks
specification (https://www.standardwebhooks.com, Svix and others).

Headers ``webhook-id`` (the message id, the same on every retry), ``webhook-timestamp``
(unix seconds) and ``webhook-signature``: space-separated ``v1,<base64>`` entries, each an
HMAC-SHA256 of ``"<id>.<timestamp>.<raw body>"`` keyed with the base64-decoded part of the
``whsec_`` secret. A request is taken when any ``v1`` entry matches (compared in constant
time; other versions are ignored) and its timestamp is within 5 minutes of now, either way.

Replays: the notification's id is the ``webhook-id``, so a message delivered again is
answered 200 and counted as a duplicate but stored once (JetStream's duplicate window,
``LOOKOUT_DEDUP_WINDOW``); a replay older than the tolerance is refused with 401.

The body is JSON; the specification's payload shape ``{"type", "timestamp", "data"}`` gives
the notification's type (else ``webhook``) and its fields are read from ``data`` (risk,
application, environment, description, url, ips; else from the top level).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, ClassVar

from services.gateway.sources import (
    Headers,
    Malformed,
    Received,
    Unauthorized,
    any_matches,
    checked_id,
    decodes,
    header,
    load_json,
    mac,
    raw_body,
    rfc3339,
    text,
    timestamp,
)
from shared.core.errors import ConfigError
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.inbound import SourceConfig
from shared.relay.schemas import Notification, subject_token
from shared.relay.sources import SourceProfile

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
PREFIX = "whsec_"
DEFAULT_TYPE = "webhook"


def secret_key(value: str) -> bytes:
    """The HMAC key of a secret: base64 after ``whsec_`` (the bare base64 is accepted too,
    as the official libraries do); ValueError when it is not base64."""
    encoded = value.strip().removeprefix(PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be whsec_ followed by base64") from None
    if not key:
        raise ValueError("must be whsec_ followed by base64")
    return key


class StandardWebhooksProfile(SourceProfile):
    """The specification's payload ``{"type", "timestamp", "data": {...}}``: the fields are
    in ``data``; any other JSON object is read at its top level."""

    def message(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            inner = data.get("data")
            if isinstance(inner, dict) and isinstance(data.get("type"), str):
                return inner
            return data
        return {}


PROFILE = StandardWebhooksProfile()


class StandardWebhooksSourceConfig(
    SourceConfig, frozen=True, kw_only=True, tag="standard-webhooks"
):
    """``secret`` (or ``secret_file``): ``whsec_`` and the base64 key the sender signs
    with."""

    secrets: ClassVar[tuple[str, ...]] = ("secret",)
    required_secrets: ClassVar[tuple[str, ...]] = ("secret",)

    secret: str | None = None
    secret_file: str | None = None

    def profile(self) -> SourceProfile:
        return PROFILE

    def check(self, secrets: Mapping[str, Secret], where: str) -> None:
        super().check(secrets, where)
        try:
            secret_key(secrets["secret"].reveal())
        except ValueError as exc:
            raise ConfigError(f"{where}.secret {exc}") from None


CONFIG = StandardWebhooksSourceConfig


class StandardWebhooksReceiver:
    def __init__(self, name: str, secret: Secret) -> None:
        self.name = name
        self.key = secret_key(secret.reveal())

    def receive(self, headers: Headers, body: bytes) -> Received:
        msg_id = header(headers, ID_HEADER)
        sent = header(headers, TIMESTAMP_HEADER)
        signatures = header(headers, SIGNATURE_HEADER)
        when = timestamp(sent, TIMESTAMP_HEADER)
        given = [
            decoded
            for entry in signatures.split()
            if entry.startswith("v1,") and (decoded := decodes(entry[3:])) is not None
        ]
        if not given:
            raise Unauthorized(f"{SIGNATURE_HEADER} has no v1 signature")
        expected = mac(self.key, f"{msg_id}.{sent}.".encode() + body)
        if not any_matches([expected], given):
            raise Unauthorized("signature does not match")
        payload = load_json(body)
        if not isinstance(payload, dict):
            raise Malformed("the body must be a JSON object")
        kind = text(payload.get("type")) or DEFAULT_TYPE
        stamp = text(payload.get("timestamp")) or rfc3339(when)
        note = Notification(
            id=checked_id(msg_id, ID_HEADER),
            type=subject_token(kind),
            source=self.name,
            timestamp=stamp,
            data=raw_body(body),
        )
        return Received([note])


def build(
    config: StandardWebhooksSourceConfig, secrets: Mapping[str, Secret], settings: Settings
) -> StandardWebhooksReceiver:
    return StandardWebhooksReceiver(config.name, secrets["secret"])
