"""``POST /webhooks/sqreen``: verify, parse, store every message in JetStream, answer.

The gateway's hot path. What it needs from the configuration (the HMAC keys, the limits, the
metric children, whether any notification can go unrouted) is worked out once, when the app
is made, and each request runs in one coroutine with no helper awaits: under load every
extra call, lookup and resume costs several times what it costs in a micro-benchmark (see
BENCHMARKS.md). Its OpenAPI operation and the Sqreen message schemas are declared here
(:data:`DOCS`; the decorator on :meth:`SqreenWebhook.handle` only records them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import msgspec
from aiohttp import web

from services.gateway import hardening, sqreen
from services.gateway.answers import api_json
from services.gateway.apispec import (
    JSON,
    REQUEST_ID_HEADERS,
    REQUEST_ID_PARAM,
    RETRY_AFTER,
    TOO_LARGE_MESSAGE,
    Operations,
    answer,
    json_content,
    ref,
)
from services.gateway.state import Bus, Metrics
from services.gateway.stored import Outcome
from shared.bus import messages
from shared.bus.publish import PublishAck
from shared.core import jsondata, requestid
from shared.core import logging as log
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay import schemas

_log = log.get("gateway")
_json = msgspec.json.Encoder()
PATH = "/webhooks/sqreen"
DOCS = Operations("webhooks", "Signed notifications from Sqreen.")

# Outcome of a refused webhook → the reason label of lookout_webhooks_rejected_total.
_REJECT_REASONS = {
    "unauthorized": "bad_signature",
    "bad_request": "malformed",
    "too_large": "too_large",
    "unavailable": "bus_unavailable",
    "not_configured": "not_configured",
}


def reject(
    metrics: Metrics,
    request_id: str,
    source: str,
    status: int,
    outcome: str,
    reason: str,
    retry_after: str | None = None,
) -> web.Response:
    """A webhook of ``source`` refused: counted, logged, answered with the reason (and
    ``Retry-After`` when given); every webhook route answers refusals this way."""
    metrics.webhook(source, outcome).inc()
    metrics.rejected(source, _REJECT_REASONS.get(outcome, outcome)).inc()
    _log.info(
        "webhook rejected", request_id=request_id, source=source, status=status, reason=reason
    )
    headers = {requestid.HTTP_HEADER: request_id}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return hardening.hardened_json(status, _json.encode({"error": reason}), headers)


class SqreenWebhook:
    """The ``POST /webhooks/sqreen`` handler (:meth:`handle`) of one gateway app."""

    def __init__(
        self,
        settings: Settings,
        the_bus: Bus,
        metrics: Metrics,
        outcome: Outcome,
        secrets: Sequence[Secret] | None = None,
    ) -> None:
        """``secrets``: the webhook secrets of a ``[[sources]]`` entry named ``sqreen``
        (None: ``SQREEN_WEBHOOK_SECRET``)."""
        self._bus = the_bus
        self._metrics = metrics
        self._keys = sqreen.keys(sqreen.secrets(settings) if secrets is None else secrets)
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

    @DOCS.post(
        PATH,
        DOCS.public(
            "sqreenWebhook",
            "Receive Sqreen notifications",
            "The body as Sqreen sends it: a JSON array of up to 1000 messages (v2 with "
            "`message_type` and `message`, or v1 with `sqreen_payload_type`), or a single "
            "message object. Each message becomes one notification on "
            "`notification.sqreen.<type>`; the answer is 200 only after JetStream "
            "stored every one. A message re-sent by Sqreen keeps its id and is stored "
            "once. Not behind API tokens: the signature authenticates it.",
            {
                "200": answer("Every message is stored.", "WebhookAccepted", REQUEST_ID_HEADERS),
                "400": answer(
                    f"Malformed JSON, not UTF-8, nested more than {jsondata.MAX_DEPTH} levels "
                    "deep, an unknown message shape, or an id no header can carry (control "
                    "characters, other than printable ASCII, a leading or trailing space). "
                    "The reason names the message.",
                    headers=REQUEST_ID_HEADERS,
                ),
                "401": answer("Bad or missing signature.", headers=REQUEST_ID_HEADERS),
                "413": answer(
                    f"Body larger than `LOOKOUT_MAX_BODY_BYTES`, or {TOO_LARGE_MESSAGE}: "
                    "`message N is X bytes; the bus stores at most Y bytes per message`. "
                    "Nothing of the body is stored.",
                    headers=REQUEST_ID_HEADERS,
                ),
                "415": answer(
                    "A compressed body (`Content-Encoding` other than `identity`): never "
                    "decompressed. Nothing is stored.",
                    headers=REQUEST_ID_HEADERS,
                ),
                "503": answer(
                    "The bus is unavailable or did not store every message, or "
                    "`SQREEN_WEBHOOK_SECRET` is not configured: retry later.",
                    headers={**REQUEST_ID_HEADERS, "Retry-After": RETRY_AFTER},
                ),
            },
            parameters=[
                {
                    "name": sqreen.SIGNATURE_HEADER,
                    "in": "header",
                    "required": True,
                    "description": (
                        "Hex HMAC-SHA256 of the raw body keyed with `SQREEN_WEBHOOK_SECRET` "
                        "(any of its comma-separated secrets, during a rotation)."
                    ),
                    "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                },
                REQUEST_ID_PARAM,
            ],
            requestBody={
                "required": True,
                "content": json_content(
                    {
                        "anyOf": [
                            {
                                "type": "array",
                                "items": ref("SqreenMessage"),
                                "minItems": 1,
                                "maxItems": 1000,
                            },
                            ref("SqreenMessage"),
                        ]
                    }
                ),
            },
        ),
    )
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
            if (compressed := hardening.encoded(request)) is not None:
                return self._reject(request_id, 415, "unsupported", compressed)
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
            if publisher is None or not self._bus.publishing:
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
        return reject(
            self._metrics, request_id, sqreen.SOURCE, status, outcome, reason, retry_after
        )

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
        # At debug only: one structured line per accepted request would be a fifth of the
        # gateway's CPU per request at the default level (see BENCHMARKS.md); refusals and
        # failed publishes are logged at info and warning, every outcome is counted.
        if log.enabled(logging.DEBUG):
            _log.debug(
                "webhook accepted",
                request_id=request_id,
                source=sqreen.SOURCE,
                messages=len(results),
                duplicates=duplicates,
            )
        return hardening.hardened_json(
            200,
            _json.encode(
                {
                    "accepted": len(results),
                    "duplicates": duplicates,
                    "ids": [n.id for n in notifications],
                }
            ),
            {requestid.HTTP_HEADER: request_id},
        )


@DOCS.components
def _schemas() -> dict[str, JSON]:
    message_id = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
    return {
        "SqreenMessageV2": {
            "title": "SqreenMessageV2",
            "description": (
                "A Sqreen v2 message: the notification's type in `message_type`, its body "
                "under `message`. Other fields are kept unchanged in the notification."
            ),
            "type": "object",
            "properties": {
                "message_id": message_id,
                "api_version": {"type": "string"},
                "date_created": {"type": "string"},
                "message_type": {"type": "string", "minLength": 1},
                "retry_count": {"type": "integer"},
                "message": {"type": "object"},
            },
            "required": ["message_type", "message"],
        },
        "SqreenMessageV1": {
            "title": "SqreenMessageV1",
            "description": "A flat Sqreen v1 message; `sqreen_payload_type` names its type.",
            "type": "object",
            "properties": {
                "sqreen_payload_type": {"type": "string", "minLength": 1},
                "event_id": {"type": "string"},
                "date_occurred": {"type": "string"},
            },
            "required": ["sqreen_payload_type"],
        },
        "SqreenMessage": {
            "title": "SqreenMessage",
            "anyOf": [ref("SqreenMessageV2"), ref("SqreenMessageV1")],
        },
        "WebhookAccepted": {
            "title": "WebhookAccepted",
            "description": (
                "Every message is stored in JetStream. `ids` are the notification ids, in the "
                "order of the messages; `duplicates` counts messages stored before."
            ),
            "type": "object",
            "properties": {
                "accepted": {"type": "integer", "minimum": 1},
                "duplicates": {"type": "integer", "minimum": 0},
                "ids": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["accepted", "duplicates", "ids"],
        },
    }
