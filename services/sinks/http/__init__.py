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

from shared import schemas, ssrf
from shared.config import HttpTargetConfig, Secret, Settings, decode_webhook_secret
from shared.targets import Delivery, RetryableError, Target, raise_for_status

USER_AGENT = "lookout-webhooks/1"


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class HttpTarget(Target):
    def __init__(
        self,
        config: HttpTargetConfig,
        secret: Secret,
        allow: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        self.name = config.name
        self.config = config
        self._allow = tuple(allow)  # LOOKOUT_OUTBOUND_ALLOW
        self._key = decode_webhook_secret(secret.reveal(), f"target {config.name} secret")
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = ssrf.session(
            self._allow,
            self.config.timeout,
            headers={"User-Agent": USER_AGENT, **self.config.headers},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def deliver(self, delivery: Delivery) -> None:
        assert self._session is not None, "open() first"
        notification = delivery.notification
        body = schemas.encode(notification)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": notification.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, notification.id, timestamp, body),
        }
        if delivery.request_id:  # the webhook's request id, end to end
            headers["X-Request-Id"] = delivery.request_id
        try:
            async with self._session.post(
                self.config.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                detail = (await response.content.read(300)).decode("utf-8", "replace").strip()
                raise_for_status(response.status, response.headers.get("Retry-After"), detail)
        except TimeoutError:
            raise RetryableError(f"no answer within {self.config.timeout}s") from None
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None


def build(config: HttpTargetConfig, settings: Settings) -> HttpTarget:
    secret = settings.secret(config.name, "secret")
    assert secret is not None  # required: config.load() refuses an http target without one
    return HttpTarget(config, secret, settings.outbound_allow)
