"""Source type ``sqreen``: Sqreen's webhook under another name (a second Sqreen
organisation, another secret). ``X-Sqreen-Integrity`` = hex HMAC-SHA256 of the raw body;
the body and its messages as for ``/webhooks/sqreen`` (see services/gateway/sqreen.py),
each notification's ``source`` being the source's name. The implicit source ``sqreen``
(``SQREEN_WEBHOOK_SECRET``, no configuration) keeps its own handler
(services/gateway/webhook.py); a ``[[sources]]`` entry named ``sqreen`` gives it its secret
from the configuration instead."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import msgspec

from services.gateway import sqreen
from services.gateway.sources import Headers, Malformed, Received, Unauthorized
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.inbound import SourceConfig
from shared.relay.sources import SourceProfile


class SqreenSourceConfig(SourceConfig, frozen=True, kw_only=True, tag="sqreen"):
    """``secret`` (or ``secret_file``): the webhook secret; a comma-separated list while
    one is rotated."""

    secrets: ClassVar[tuple[str, ...]] = ("secret",)
    required_secrets: ClassVar[tuple[str, ...]] = ("secret",)

    secret: str | None = None
    secret_file: str | None = None

    def profile(self) -> SourceProfile:
        return sqreen.PROFILE


CONFIG = SqreenSourceConfig


def split_secret(secret: Secret) -> tuple[Secret, ...]:
    return tuple(Secret(part.strip()) for part in secret.reveal().split(",") if part.strip())


class SqreenReceiver:
    def __init__(self, name: str, secret: Secret, max_messages: int) -> None:
        self.name = name
        self.keys = sqreen.keys(split_secret(secret))
        self.max_messages = max_messages

    def receive(self, headers: Headers, body: bytes) -> Received:
        try:
            sqreen.verify(body, headers.get(sqreen.SIGNATURE_HEADER), self.keys)
        except sqreen.SignatureError as exc:
            raise Unauthorized(str(exc)) from None
        try:
            found = sqreen.notifications(body, self.max_messages)
        except sqreen.PayloadError as exc:
            raise Malformed(str(exc)) from None
        return Received([msgspec.structs.replace(n, source=self.name) for n in found])


def build(
    config: SqreenSourceConfig, secrets: Mapping[str, Secret], settings: Settings
) -> SqreenReceiver:
    return SqreenReceiver(config.name, secrets["secret"], settings.max_messages)
