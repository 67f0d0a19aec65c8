"""Notifications API: delivery state per notification and target, and a way in for any
system that speaks HTTP rather than NATS (``POST /api/v1/notifications``)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import msgspec
from aiohttp import web

from services.gateway import hardening
from services.gateway.answers import api_json, bus_publisher, bus_reader, query_limit
from services.gateway.state import SETTINGS
from services.gateway.stored import OUTCOME
from shared.bus import direct, messages
from shared.bus.publish import PublishAck
from shared.core import jsondata
from shared.relay import schemas, status, streams
from shared.relay.config import relay
from shared.relay.schemas import Notification

DEFAULT_LIST = 50
MAX_LIST = 500


async def _statuses(request: web.Request, prefix: str = ">") -> list[status.DeliveryStatus]:
    """The delivery records under ``prefix`` in ``delivery_status``, read in pages of direct
    gets: a read makes no consumer (see shared.bus.direct)."""
    stored = await bus_reader(request).scan(
        direct.kv_stream(streams.STATUS_BUCKET), direct.kv_subject(streams.STATUS_BUCKET, prefix)
    )
    found: list[status.DeliveryStatus] = []
    for msg in stored:
        if msg.data and not msg.removed:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                found.append(status.decode(msg.data))
    return found


def _group(records: list[status.DeliveryStatus], targets: list[str]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        item = grouped.setdefault(
            (r.source, r.notification_id),
            {
                "id": r.notification_id,
                "source": r.source,
                "type": r.type,
                "timestamp": r.timestamp,
                "received_at": None,
                "title": None,
                "application": None,
                "environment": None,
                "risk": None,
                "subject": r.subject,
                "targets": {},
            },
        )
        # When lookout received it: the earliest any target saw (a replay is seen later).
        if r.received_at and (item["received_at"] is None or r.received_at < item["received_at"]):
            item["received_at"] = r.received_at
        for name in ("title", "application", "environment", "risk"):
            if item[name] is None:
                item[name] = getattr(r, name)
        item["targets"][r.target] = {
            "state": r.state,
            "attempts": r.attempts,
            "last_error": r.last_error,
            "next_attempt_at": r.next_attempt_at,
            "updated_at": r.updated_at,
        }
    for item in grouped.values():
        for name in targets:
            item["targets"].setdefault(name, {"state": "pending", "attempts": 0})
        states = {t["state"] for t in item["targets"].values()}
        item["state"] = next(
            (s for s in ("dead", "retrying", "pending", "delivered") if s in states), "skipped"
        )
    # Newest first by arrival (the sender's timestamp for records from before it was kept).
    return sorted(grouped.values(), key=lambda i: i["received_at"] or i["timestamp"], reverse=True)


async def list_notifications(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    limit = query_limit(request, DEFAULT_LIST, MAX_LIST)
    wanted_state = request.query.get("state")
    items = _group(await _statuses(request), [t.name for t in relay(settings).targets])
    if wanted_state:
        items = [i for i in items if i["state"] == wanted_state]
    return api_json(200, {"notifications": items[:limit], "total": len(items)})


async def get_notification(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    notification_id = request.match_info["id"]
    prefix = f"{status.notification_key(notification_id)}.>"
    items = _group(await _statuses(request, prefix), [t.name for t in relay(settings).targets])
    items = [i for i in items if i["id"] == notification_id]
    if not items:
        return api_json(404, {"error": "no delivery recorded for that notification yet"})
    return api_json(200, items[0] if len(items) == 1 else {"notifications": items})


class _Incoming(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: messages.Text
    source: messages.Text
    data: msgspec.Raw
    id: str | None = None
    timestamp: str | None = None


_incoming = msgspec.json.Decoder(_Incoming)
_EXPECTED = 'expected {"type", "source", "data", optional "id", "timestamp"}'


async def post_notification(request: web.Request, request_id: str) -> web.Response:
    """Any system's alert, routed like a Sqreen notification (authenticated by API tokens);
    every answer carries ``request_id`` (see :func:`answers.with_request_id`)."""
    settings = request.config_dict[SETTINGS]
    body = await hardening.read_capped(request, hardening.json_limit(settings))
    try:
        jsondata.check(body)  # what every sink can read back
        incoming = _incoming.decode(body)
    except jsondata.JsonError as exc:
        return api_json(400, {"error": str(exc)})
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return api_json(400, {"error": f"{_EXPECTED}: {exc}"})
    if (
        schemas.subject_token(incoming.source) != incoming.source
        or schemas.subject_token(incoming.type) != incoming.type
    ):
        return api_json(
            400, {"error": "source and type must be lower-case letters, digits, '_' or '-'"}
        )
    try:
        ident = (
            os.urandom(12).hex() if incoming.id is None else schemas.notification_id(incoming.id)
        )
    except schemas.IdError as exc:
        return api_json(400, {"error": str(exc)})
    publisher = bus_publisher(request)
    note = Notification(
        id=ident,
        type=incoming.type,
        source=incoming.source,
        timestamp=incoming.timestamp or messages.utc_now(),
        data=incoming.data,
    )
    payload = messages.encode(note)
    limit = schemas.envelope_limit(publisher.max_payload)
    if len(payload) > limit:  # it would never be stored: say why, do not ask for a retry
        return api_json(413, {"error": f"data is {schemas.too_large(payload, note.data, limit)}"})
    headers = schemas.notification_headers(note, request_id)
    result: PublishAck | BaseException
    try:
        result = await publisher.publish(note.subject, payload, headers, settings.publish_timeout)
    except Exception as exc:
        result = exc
    request.config_dict[OUTCOME].count([note], [result], request_id)
    if isinstance(result, BaseException):
        return api_json(503, {"error": "message bus did not store it, retry later"})
    return api_json(202, {"id": note.id, "subject": note.subject, "duplicate": result.duplicate})
