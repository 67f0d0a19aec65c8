"""The ``http`` target: POST the notification envelope, signed per Standard Webhooks.

Headers ``webhook-id`` (the notification id, the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, keyed with the base64-decoded part of
the ``whsec_`` secret). Body: ``{"id", "type", "source", "timestamp", "data"}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

import aiohttp

from services.sinks.http.config import HttpTargetConfig, decode_webhook_secret
from shared.bus import messages
from shared.core import requestid
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.config import relay
from shared.relay.outbound import SessionTarget
from shared.relay.target import Delivery, RetryableError, raise_for_status

USER_AGENT = "lookout-webhooks/1"

CONFIG = HttpTargetConfig
"""The ``[[targets]]`` table of a ``http`` target (registered by the launcher)."""


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class HttpTarget(SessionTarget):
    def __init__(
        self,
        config: HttpTargetConfig,
        secret: Secret,
        allow: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        super().__init__(config.timeout, allow)
        self.name = config.name
        self.config = config
        self._key = decode_webhook_secret(secret.reveal(), f"target {config.name} secret")

    def session_headers(self) -> dict[str, str]:
        return {"User-Agent": USER_AGENT, **self.config.headers}

    async def deliver(self, delivery: Delivery) -> None:
        session = self.session
        notification = delivery.notification
        body = messages.encode(notification)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": notification.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, notification.id, timestamp, body),
        }
        if delivery.request_id:  # the webhook's request id, end to end
            headers[requestid.HTTP_HEADER] = delivery.request_id
        try:
            async with session.post(
                self.config.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                detail = (await response.content.read(300)).decode("utf-8", "replace").strip()
                raise_for_status(response.status, response.headers.get("Retry-After"), detail)
        except TimeoutError:
            raise RetryableError(f"no answer within {self.config.timeout}s") from None
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None


def build(config: HttpTargetConfig, settings: Settings) -> HttpTarget:
    secret = relay(settings).secret(config.name, "secret")
    assert secret is not None  # required: config.load() refuses an http target without one
    return HttpTarget(config, secret, settings.outbound_allow)
