"""``POST /webhooks/sqreen``: verify, parse, store every message in JetStream, answer.

The gateway's hot path. What it needs from the configuration (the HMAC keys, the limits, the
metric children, whether any notification can go unrouted) is worked out once, when the app
is made, and each request runs in one coroutine with no helper awaits: under load every
extra call, lookup and resume costs several times what it costs in a micro-benchmark (see
BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from services.gateway import hardening, sqreen
from services.gateway.answers import api_json
from services.gateway.state import Bus, Metrics
from services.gateway.stored import Outcome
from shared.bus import messages
from shared.bus.publish import PublishAck
from shared.core import logging as log
from shared.core import requestid
from shared.core.settings import Settings
from shared.relay import schemas

_log = log.get("gateway")

# Outcome of a refused webhook → the reason label of lookout_webhooks_rejected_total.
_REJECT_REASONS = {
    "unauthorized": "bad_signature",
    "bad_request": "malformed",
    "too_large": "too_large",
    "unavailable": "bus_unavailable",
    "not_configured": "not_configured",
}


class SqreenWebhook:
    """The ``POST /webhooks/sqreen`` handler (:meth:`handle`) of one gateway app."""

    def __init__(
        self, settings: Settings, the_bus: Bus, metrics: Metrics, outcome: Outcome
    ) -> None:
        self._bus = the_bus
        self._metrics = metrics
        self._keys = sqreen.keys(sqreen.secrets(settings))
        self._max_body = settings.max_body_bytes
        self._too_large = hardening.too_large_reason(settings.max_body_bytes)
        self._max_messages = settings.max_messages
        self._timeout = settings.publish_timeout
        self._outcome = outcome
        self._received = metrics.received(sqreen.SOURCE)
        self._verified = metrics.verified(sqreen.SOURCE)
        self._accepted = metrics.webhook(sqreen.SOURCE, "accepted")
        self._stored = metrics.published(sqreen.SOURCE, False)
        self._publish_seconds = metrics.publish_seconds

    async def handle(self, request: web.Request) -> web.Response:
        request_id = requestid.from_headers(request.headers)
        try:
            self._received.inc()
            if not self._keys:
                return self._reject(
                    request_id, 503, "not_configured", "SQREEN_WEBHOOK_SECRET is not configured"
                )
            length = request.content_length
            if length is not None and length > self._max_body:
                return self._reject(request_id, 413, "too_large", self._too_large)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._reject(request_id, 413, "too_large", self._too_large)
            except ConnectionResetError:  # the sender went away mid-body: nobody to answer
                _log.info("client disconnected before its request was read", request_id=request_id)
                return web.Response(status=400)
            try:
                sqreen.verify(body, request.headers.get(sqreen.SIGNATURE_HEADER), self._keys)
            except sqreen.SignatureError as exc:
                return self._reject(request_id, 401, "unauthorized", str(exc))
            self._verified.inc()
            try:
                notifications = sqreen.notifications(body, self._max_messages)
            except sqreen.PayloadError as exc:
                return self._reject(request_id, 400, "bad_request", str(exc))
            publisher = self._bus.publisher
            if publisher is None or not self._bus.usable:
                return self._reject(
                    request_id,
                    503,
                    "unavailable",
                    "message bus unavailable, retry later",
                    retry_after="5",
                )

            timeout = self._timeout
            # Every message must fit the bus, or none is stored: one that never can would
            # make the sender retry the whole batch for ever.
            limit = schemas.envelope_limit(publisher.max_payload)
            started = time.perf_counter()
            results: list[PublishAck | BaseException]
            if len(notifications) == 1:  # the common case: no task, no gather
                n = notifications[0]
                payload = messages.encode(n)
                if len(payload) > limit:
                    return self._too_large_message(request_id, 0, n, payload, limit)
                headers = schemas.notification_headers(n, request_id)
                try:
                    ack = await publisher.publish(n.subject, payload, headers, timeout)
                    results = [ack]
                except Exception as exc:
                    results = [exc]
            else:
                payloads = [messages.encode(n) for n in notifications]
                for index, (n, payload) in enumerate(zip(notifications, payloads, strict=True)):
                    if len(payload) > limit:
                        return self._too_large_message(request_id, index, n, payload, limit)
                results = await asyncio.gather(
                    *(
                        publisher.publish(
                            n.subject,
                            payload,
                            schemas.notification_headers(n, request_id),
                            timeout,
                        )
                        for n, payload in zip(notifications, payloads, strict=True)
                    ),
                    return_exceptions=True,
                )
            self._publish_seconds.observe(time.perf_counter() - started)
            return self._answer(request_id, notifications, results)
        except Exception:
            # Never a traceback to the sender; a 500 makes Sqreen retry later.
            _log.exception("unhandled error in webhook handler", request_id=request_id)
            return api_json(500, {"error": "internal error"}, {requestid.HTTP_HEADER: request_id})

    def _too_large_message(
        self,
        request_id: str,
        index: int,
        notification: schemas.Notification,
        payload: bytes,
        limit: int,
    ) -> web.Response:
        reason = schemas.too_large(payload, notification.data, limit)
        return self._reject(request_id, 413, "too_large", f"message {index} is {reason}")

    def _reject(
        self,
        request_id: str,
        status: int,
        outcome: str,
        reason: str,
        retry_after: str | None = None,
    ) -> web.Response:
        self._metrics.webhook(sqreen.SOURCE, outcome).inc()
        self._metrics.rejected(sqreen.SOURCE, _REJECT_REASONS.get(outcome, outcome)).inc()
        _log.info(
            "webhook rejected",
            request_id=request_id,
            source=sqreen.SOURCE,
            status=status,
            reason=reason,
        )
        headers = {requestid.HTTP_HEADER: request_id}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return api_json(status, {"error": reason}, headers)

    def _answer(
        self,
        request_id: str,
        notifications: list[schemas.Notification],
        results: list[PublishAck | BaseException],
    ) -> web.Response:
        """200 only when JetStream acknowledged every message; else 503 so the sender retries
        (the messages that were stored are deduplicated when they come again)."""
        failed, duplicates = self._outcome.count(notifications, results, request_id)
        if failed:
            return self._reject(
                request_id,
                503,
                "unavailable",
                "message bus did not store every message, retry later",
                retry_after="5",
            )
        self._accepted.inc()
        self._stored.inc(len(results) - duplicates)
        if duplicates:
            self._metrics.published(sqreen.SOURCE, True).inc(duplicates)
        if log.enabled(logging.INFO):
            _log.info(
                "webhook accepted",
                request_id=request_id,
                source=sqreen.SOURCE,
                messages=len(results),
                duplicates=duplicates,
            )
        return api_json(
            200,
            {
                "accepted": len(results),
                "duplicates": duplicates,
                "ids": [n.id for n in notifications],
            },
            {requestid.HTTP_HEADER: request_id},
        )
