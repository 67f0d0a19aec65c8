"""``POST /webhooks/<name>``: every configured source (``[[sources]]``) but the Sqreen route.

Each source's type authenticates and reads its requests (its :class:`Receiver`, made once
at start from ``services/gateway/sources/<type>.py``); this module does the rest, the same
for every type and as the Sqreen webhook does it: body limits, storing every notification
in JetStream before answering, the answers (401 bad or missing signature or credentials,
400 malformed, 413 too large, 503 bus down, 404 no such source) and metrics labelled with
the source's name. ``/webhooks/sqreen`` keeps its own handler (services/gateway/webhook.py),
registered before this route.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Mapping

from aiohttp import web

from services.gateway import hardening
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
)
from services.gateway.sources import Receiver, Refused, SourceModule
from services.gateway.state import Bus, Metrics
from services.gateway.stored import Outcome
from services.gateway.webhook import reject
from shared.bus import messages
from shared.bus.publish import PublishAck
from shared.core import jsondata, requestid
from shared.core import logging as log
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay import schemas
from shared.relay.inbound import SourceConfig, inbound, source_secrets

_log = log.get("gateway")
PATH = "/webhooks/{name}"
RESERVED = "sqreen"
"""The implicit source's name: only a source of type sqreen may take it (its route is
``/webhooks/sqreen``, services/gateway/webhook.py)."""
DOCS = Operations(
    "sources",
    "Notifications from the configured sources (`[[sources]]`): Standard Webhooks senders, "
    "GitHub, Alertmanager, any HMAC-signing system, other Sqreen organisations.",
)


def receiver(config: SourceConfig, secrets: Mapping[str, Secret], settings: Settings) -> Receiver:
    """The receiver of one configured source, from its type's module."""
    module: SourceModule = importlib.import_module(type(config).__module__)
    return module.build(config, secrets, settings)


def sqreen_secrets(settings: Settings) -> tuple[Secret, ...] | None:
    """The secrets of a ``[[sources]]`` entry named ``sqreen`` (a comma-separated list while
    one is rotated), which ``/webhooks/sqreen`` then takes instead of
    ``SQREEN_WEBHOOK_SECRET``; None without one."""
    config = inbound(settings).source(RESERVED)
    if config is None or config.type != RESERVED:
        return None
    secret = source_secrets(settings).get((RESERVED, "secret"))
    if secret is None:
        return ()
    return tuple(Secret(p.strip()) for p in secret.reveal().split(",") if p.strip())


def configured(settings: Settings) -> dict[str, Receiver]:
    """A receiver per configured source but the one named ``sqreen`` (by name);
    :class:`ConfigError` for a missing secret."""
    found: dict[str, Receiver] = {}
    secrets = source_secrets(settings)
    for config in inbound(settings).sources:
        if config.name == RESERVED:  # /webhooks/sqreen's (shared.relay.inbound.reserve)
            continue
        own = {field: s for (name, field), s in secrets.items() if name == config.name}
        found[config.name] = receiver(config, own, settings)
    return found


class SourceWebhooks:
    """The ``POST /webhooks/{name}`` handler (:meth:`handle`) of one gateway app."""

    def __init__(
        self, settings: Settings, the_bus: Bus, metrics: Metrics, outcome: Outcome
    ) -> None:
        self._receivers = configured(settings)
        self._bus = the_bus
        self._metrics = metrics
        self._max_body = settings.max_body_bytes
        self._too_large = hardening.too_large_reason(settings.max_body_bytes)
        self._timeout = settings.publish_timeout
        self._outcome = outcome

    @property
    def names(self) -> list[str]:
        return list(self._receivers)

    @DOCS.post(
        PATH,
        DOCS.public(
            "sourceWebhook",
            "Receive a configured source's notifications",
            "One route per `[[sources]]` entry, `name` its last segment; each type "
            "authenticates and reads its requests:\n\n"
            "- `standard-webhooks`: `webhook-id`, `webhook-timestamp` (within 5 minutes), "
            "`webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, several "
            "space-separated); the `webhook-id` is the notification's id (a message "
            "delivered again is answered 200 as a duplicate and stored once);\n"
            "- `github`: `X-Hub-Signature-256` (`sha256=<hex>`), `X-GitHub-Event`, "
            "`X-GitHub-Delivery` (the id); `ping` is answered with its `zen` and stored as "
            "nothing; any other event is stored with its name as type;\n"
            "- `alertmanager`: the webhook payload (version 4), `Authorization: Bearer "
            "<token>` or basic auth; each alert of the group is its own notification, its "
            "id `<fingerprint>:<startsAt>:<status>`;\n"
            "- `generic`: an HMAC of the body (or of `<timestamp>.<body>`) in the configured "
            "header; a JSON object or an array of them;\n"
            "- `sqreen`: as `/webhooks/sqreen`, with the source's own secret.\n\n"
            "Each notification is published on `notification.<name>.<type>`; the answer is "
            "200 only after JetStream stored every one. Not behind API tokens: the "
            "signature or credentials authenticate it.",
            {
                "200": answer(
                    "Every notification is stored (none for a GitHub ping).",
                    "SourceWebhookAccepted",
                    REQUEST_ID_HEADERS,
                ),
                "400": answer(
                    f"Malformed JSON, not UTF-8, nested more than {jsondata.MAX_DEPTH} levels "
                    "deep, a missing event header, a payload the type cannot read (e.g. an "
                    "Alertmanager payload of another version), or an id no header can carry.",
                    headers=REQUEST_ID_HEADERS,
                ),
                "401": answer(
                    "Bad or missing signature or credentials, or a signed timestamp more than "
                    "5 minutes away (a replay).",
                    headers=REQUEST_ID_HEADERS,
                ),
                "404": answer("No source of that name is configured."),
                "413": answer(
                    f"Body larger than `LOOKOUT_MAX_BODY_BYTES`, or {TOO_LARGE_MESSAGE}. "
                    "Nothing of the body is stored.",
                    headers=REQUEST_ID_HEADERS,
                ),
                "415": answer(
                    "A compressed body (`Content-Encoding` other than `identity`): never "
                    "decompressed. Nothing is stored.",
                    headers=REQUEST_ID_HEADERS,
                ),
                "503": answer(
                    "The bus is unavailable or did not store every notification: retry later.",
                    headers={**REQUEST_ID_HEADERS, "Retry-After": RETRY_AFTER},
                ),
            },
            parameters=[
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "The source's `name` in `[[sources]]`.",
                    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
                },
                *(
                    {
                        "name": name,
                        "in": "header",
                        "required": False,
                        "description": description,
                        "schema": {"type": "string"},
                    }
                    for name, description in (
                        ("webhook-id", "standard-webhooks: the message id."),
                        ("webhook-timestamp", "standard-webhooks: unix seconds."),
                        ("webhook-signature", "standard-webhooks: `v1,<base64>` entries."),
                        ("X-Hub-Signature-256", "github: `sha256=<hex HMAC-SHA256>`."),
                        ("X-GitHub-Event", "github: the event's name."),
                        ("X-GitHub-Delivery", "github: the delivery's GUID."),
                        ("Authorization", "alertmanager: `Bearer <token>` or `Basic …`."),
                    )
                ),
                REQUEST_ID_PARAM,
            ],
            requestBody={
                "required": True,
                "content": {
                    **json_content({"description": "As the source's type sends it."}),
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "description": "github: a hook set to send `payload=<JSON>`.",
                            "properties": {"payload": {"type": "string"}},
                        }
                    },
                },
            },
        ),
    )
    async def handle(self, request: web.Request) -> web.Response:
        request_id = requestid.from_headers(request.headers)
        name = request.match_info["name"]
        source = self._receivers.get(name)
        if source is None:
            return api_json(
                404, {"error": f"no source named {name!r}"}, {requestid.HTTP_HEADER: request_id}
            )
        try:
            return await self._handle(request, request_id, name, source)
        except Exception:
            _log.exception("unhandled error in webhook handler", request_id=request_id)
            return api_json(500, {"error": "internal error"}, {requestid.HTTP_HEADER: request_id})

    async def _handle(
        self, request: web.Request, request_id: str, name: str, source: Receiver
    ) -> web.Response:
        self._metrics.received(name).inc()
        length = request.content_length
        if length is not None and length > self._max_body:
            return reject(self._metrics, request_id, name, 413, "too_large", self._too_large)
        if (compressed := hardening.encoded(request)) is not None:
            return reject(self._metrics, request_id, name, 415, "unsupported", compressed)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return reject(self._metrics, request_id, name, 413, "too_large", self._too_large)
        except ConnectionResetError:
            _log.info("client disconnected before its request was read", request_id=request_id)
            return web.Response(status=400)
        try:
            received = source.receive(request.headers, body)
        except Refused as exc:
            if exc.status != 401:
                self._metrics.verified(name).inc()
            return reject(self._metrics, request_id, name, exc.status, exc.outcome, exc.reason)
        self._metrics.verified(name).inc()
        notifications = received.notifications
        if not notifications:
            self._metrics.webhook(name, "accepted").inc()
            _log.info("webhook answered, nothing to store", request_id=request_id, source=name)
            return api_json(
                200,
                {"accepted": 0, "duplicates": 0, "ids": [], **received.extra},
                {requestid.HTTP_HEADER: request_id},
            )
        publisher = self._bus.publisher
        if publisher is None or not self._bus.publishing:
            reason = "message bus unavailable, retry later"
            return reject(self._metrics, request_id, name, 503, "unavailable", reason, "5")
        limit = schemas.envelope_limit(publisher.max_payload)
        payloads = [messages.encode(n) for n in notifications]
        for index, (n, payload) in enumerate(zip(notifications, payloads, strict=True)):
            if len(payload) > limit:
                reason = f"message {index} is {schemas.too_large(payload, n.data, limit)}"
                return reject(self._metrics, request_id, name, 413, "too_large", reason)
        started = time.perf_counter()
        results: list[PublishAck | BaseException] = await asyncio.gather(
            *(
                publisher.publish(
                    n.subject, payload, schemas.notification_headers(n, request_id), self._timeout
                )
                for n, payload in zip(notifications, payloads, strict=True)
            ),
            return_exceptions=True,
        )
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        failed, duplicates = self._outcome.count(notifications, results, request_id)
        if failed:
            return reject(
                self._metrics,
                request_id,
                name,
                503,
                "unavailable",
                "message bus did not store every message, retry later",
                "5",
            )
        self._metrics.webhook(name, "accepted").inc()
        self._metrics.published(name, False).inc(len(results) - duplicates)
        if duplicates:
            self._metrics.published(name, True).inc(duplicates)
        if log.enabled(logging.DEBUG):  # as the Sqreen route (services/gateway/webhook.py)
            _log.debug(
                "webhook accepted",
                request_id=request_id,
                source=name,
                messages=len(results),
                duplicates=duplicates,
            )
        return api_json(
            200,
            {
                "accepted": len(results),
                "duplicates": duplicates,
                "ids": [n.id for n in notifications],
                **received.extra,
            },
            {requestid.HTTP_HEADER: request_id},
        )


@DOCS.components
def _schemas() -> dict[str, JSON]:
    return {
        "SourceWebhookAccepted": {
            "title": "SourceWebhookAccepted",
            "description": (
                "Every notification is stored in JetStream. `ids` are the notification ids, in "
                "the order of the body's messages (an Alertmanager group: its alerts); "
                "`duplicates` counts those stored before. A GitHub ping stores nothing and "
                "answers `zen` and `event`."
            ),
            "type": "object",
            "properties": {
                "accepted": {"type": "integer", "minimum": 0},
                "duplicates": {"type": "integer", "minimum": 0},
                "ids": {"type": "array", "items": {"type": "string"}},
                "zen": {"type": "string"},
                "event": {"type": "string"},
            },
            "required": ["accepted", "duplicates", "ids"],
        },
    }
