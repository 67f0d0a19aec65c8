"""Notifications API: delivery state per notification and target, and a way in for any
system that speaks HTTP rather than NATS (``POST /api/v1/notifications``); each operation
documented beside its handler (:data:`DOCS`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Mapping
from typing import Any, Final, get_args

import msgspec
from aiohttp import web

from services.gateway import hardening, targets_api
from services.gateway.answers import (
    api_json,
    bus_js,
    bus_publisher,
    bus_reader,
    query_limit,
    with_request_id,
)
from services.gateway.apispec import (
    JSON,
    REQUEST_ID_HEADERS,
    REQUEST_ID_PARAM,
    TOO_LARGE_MESSAGE,
    Operations,
    answer,
    json_content,
    ref,
)
from services.gateway.state import BUS, SETTINGS, Bus
from services.gateway.stored import OUTCOME
from shared.bus import direct, messages
from shared.bus.publish import PublishAck
from shared.core import jsondata
from shared.relay import health, schemas, status, streams
from shared.relay.config import relay
from shared.relay.schemas import Notification

DEFAULT_LIST = 50
MAX_LIST = 500
MIN_WINDOW = 2000
"""A listing reads at least this many of the newest delivery records (more for a large
``limit`` or many targets: twice one record per target for each notification asked for)."""
REFETCH_AT_ONCE = 32

DOCS = Operations("notifications", "Alerts from any system; delivery state.")
DELIVERY_STATES: Final[list[str]] = list(get_args(status.State))
ID_PATTERN: Final = "^[!-~](?:[ -~]*[!-~])?$"
"""A notification id lookout keeps (:func:`shared.relay.schemas.notification_id`)."""
SUBJECT_PART_PATTERN: Final = "^[a-z0-9-]([a-z0-9_-]{0,62}[a-z0-9-])?$"
"""What :func:`shared.relay.schemas.subject_token` leaves unchanged: ``source`` and ``type``."""


def _decoded(stored: list[direct.Stored]) -> list[status.DeliveryStatus]:
    found: list[status.DeliveryStatus] = []
    for msg in stored:
        if msg.data and not msg.removed:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                found.append(status.decode(msg.data))
    return found


_STARTED: weakref.WeakKeyDictionary[Bus, dict[str, str]] = weakref.WeakKeyDictionary()


async def _targets(request: web.Request) -> dict[str, str | None]:
    """Every configured target and since when it exists: its durable consumer's creation
    time (it takes the notifications stored from then on, ``DeliverPolicy.NEW``), read once
    per gateway (None when it cannot be read now: its records say ``pending``)."""
    names = [t.name for t in relay(request.config_dict[SETTINGS]).targets]
    the_bus = request.config_dict[BUS]
    known = _STARTED.setdefault(the_bus, {})
    js = the_bus.js
    for name in names:
        if name in known or js is None:
            continue
        with contextlib.suppress(Exception):  # best effort: the listing never fails for it
            info = await js.consumer_info(streams.NOTIFICATIONS, streams.sink_durable(name))
            created = status.utc_text(info.created)
            if created is not None:
                known[name] = created
    return {name: known.get(name) for name in names}


async def _statuses(request: web.Request, prefix: str = ">") -> list[status.DeliveryStatus]:
    """The delivery records under ``prefix`` in ``delivery_status``, read in pages of direct
    gets: a read makes no consumer (see shared.bus.direct)."""
    stored = await bus_reader(request).scan(
        direct.kv_stream(streams.STATUS_BUCKET), direct.kv_subject(streams.STATUS_BUCKET, prefix)
    )
    return _decoded(stored)


async def _recent(request: web.Request, window: int) -> tuple[list[status.DeliveryStatus], bool]:
    """The newest ``window`` delivery records (every one when there are no more), and whether
    that is all of them: never the whole bucket. The bucket's stream keeps one message per
    key, in the order they were last written, so the newest records are its last messages;
    where they start is found by bisection (:meth:`direct.Reader.start_of_newest`)."""
    reader = bus_reader(request)
    stream = direct.kv_stream(streams.STATUS_BUCKET)
    subjects = direct.kv_subject(streams.STATUS_BUCKET, ">")
    first = await reader.page(stream, subjects, 1, batch=1)
    if not first.messages:
        return [], True
    start = first.messages[0].seq
    if first.pending is None or first.pending + 1 <= window:  # all of them (or an old server)
        return _decoded(await reader.scan(stream, subjects, start)), True
    last = (await bus_js(request).stream_info(stream)).state.last_seq
    start = await reader.start_of_newest(stream, subjects, window, start, last)
    return _decoded(await reader.scan(stream, subjects, start)), False


async def _whole(
    request: web.Request,
    items: list[dict[str, Any]],
    targets: Mapping[str, str | None],
) -> list[dict[str, Any]]:
    """``items`` with every delivery record of each (those older than the records read
    included), a few requests at a time."""
    gate = asyncio.Semaphore(REFETCH_AT_ONCE)

    async def whole(item: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            prefix = f"{status.notification_key(item['id'])}.>"
            found = _group(await _statuses(request, prefix), targets)
        same = [i for i in found if i["source"] == item["source"] and i["id"] == item["id"]]
        return same[0] if same else item

    return list(await asyncio.gather(*(whole(item) for item in items)))


def _group(
    records: list[status.DeliveryStatus], targets: Mapping[str, str | None]
) -> list[dict[str, Any]]:
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
            "attempt_log": r.attempt_log,
        }
        if r.silence_id is not None:
            item["targets"][r.target]["silence_id"] = r.silence_id
    for item in grouped.values():
        received = item["received_at"]
        for name, since in targets.items():
            # A target made after the notification arrived never gets it (its consumer
            # starts with what comes next): not applicable, rather than pending for ever.
            late = since is not None and received is not None and received < since
            item["targets"].setdefault(
                name, {"state": "not_applicable" if late else "pending", "attempts": 0}
            )
        item["state"] = _overall(item)
    # Newest first by arrival (the sender's timestamp for records from before it was kept).
    return sorted(grouped.values(), key=lambda i: i["received_at"] or i["timestamp"], reverse=True)


def _overall(item: dict[str, Any]) -> str:
    """A notification's state: the most pressing of its targets'."""
    states = {t["state"] for t in item["targets"].values()}
    return next(
        (
            s
            for s in ("dead", "retrying", "paused", "pending", "delivered", "silenced")
            if s in states
        ),
        "skipped" if "skipped" in states else "not_applicable",
    )


async def _paused_now(
    request: web.Request, items: list[dict[str, Any]]
) -> dict[str, health.TargetHealth]:
    """The targets paused now, from their shared health records, read only when one of
    ``items`` waits or is pending at a target (none when the store is silent: the records'
    own states and times are shown then)."""
    if not any(t["state"] in ("paused", "pending") for i in items for t in i["targets"].values()):
        return {}
    try:
        now = await targets_api.healths(bus_reader(request))
    except Exception:
        return {}
    return {name: record for name, record in now.items() if record.state == "paused"}


def _show_paused(items: list[dict[str, Any]], paused: dict[str, health.TargetHealth]) -> None:
    """What waits on a target ``paused`` now: a delivery recorded ``paused`` shows the
    probe planned now (it moves on with each failed one), and one the target's sink has
    not taken yet (``pending``: every delivery slot holds a waiting one) shows ``paused``
    too, as it waits for the same thing."""
    for item in items:
        for name, shown in item["targets"].items():
            record = paused.get(name)
            if record is None or shown["state"] not in ("paused", "pending"):
                continue
            if shown["state"] == "pending":
                shown["state"] = "paused"
                shown["last_error"] = f"target paused: {record.last_error or 'failing'}"
                item["state"] = _overall(item)
            shown["next_attempt_at"] = health.epoch_text(record.next_probe_at)


@DOCS.get(
    "/api/v1/notifications",
    DOCS.api(
        "listNotifications",
        "Recent notifications and their delivery state per target",
        "Newest first, from the delivery records the sinks keep (7 days): among the "
        "notifications of the newest records (at least "
        f"{MIN_WINDOW}, twice one per target for each notification asked for), never the "
        "whole bucket; `partial` says older records were left unread (`total` is then the "
        "count among those read).",
        {
            "200": answer("The notifications.", "NotificationList"),
            "400": answer(
                f"`limit` is not a whole number from 1 to {MAX_LIST}, `state` is not a "
                "delivery state, or `target` no configured target."
            ),
        },
        parameters=[
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"At most this many (1…{MAX_LIST}).",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIST,
                    "default": DEFAULT_LIST,
                },
            },
            {
                "name": "state",
                "in": "query",
                "required": False,
                "description": (
                    "Only notifications in this state: their overall state, or with "
                    "`target` that target's (`?target=ops-mail&state=silenced`)."
                ),
                "schema": {"enum": DELIVERY_STATES},
            },
            {
                "name": "target",
                "in": "query",
                "required": False,
                "description": "With `state`: the configured target whose state is asked.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 63},
            },
        ],
    ),
)
async def list_notifications(request: web.Request) -> web.Response:
    limit = query_limit(request, DEFAULT_LIST, MAX_LIST)
    wanted_state = request.query.get("state")
    if wanted_state is not None and wanted_state not in DELIVERY_STATES:
        return api_json(400, {"error": f"state must be one of {', '.join(DELIVERY_STATES)}"})
    targets = await _targets(request)
    target = request.query.get("target")
    if target is not None and target not in targets:
        known = ", ".join(targets) or "none"
        return api_json(400, {"error": f"no target named {target[:64]!r} (targets: {known})"})

    def wanted(item: dict[str, Any]) -> bool:
        state = item["state"] if target is None else item["targets"][target]["state"]
        return wanted_state is None or state == wanted_state

    window = max(MIN_WINDOW, 2 * limit * max(1, len(targets)))
    records, complete = await _recent(request, window)
    items = _group(records, targets)
    paused = await _paused_now(request, items)  # read once, for the items read again too
    _show_paused(items, paused)
    items = [i for i in items if wanted(i)]
    total = len(items)
    shown = items[:limit]
    if not complete:
        # The oldest of those read may have records older still (another target's).
        shown = await _whole(request, shown, targets)
        _show_paused(shown, paused)
        shown = [i for i in shown if wanted(i)]
    return api_json(200, {"notifications": shown, "total": total, "partial": not complete})


@DOCS.get(
    "/api/v1/notifications/{id}",
    DOCS.api(
        "getNotification",
        "One notification's delivery state per target",
        "When several sources used the same id, every one of them is listed.",
        {
            "200": {
                "description": "The notification.",
                "content": json_content(
                    {"anyOf": [ref("NotificationState"), ref("NotificationsWithId")]}
                ),
            },
            "404": answer("No delivery recorded for that notification yet."),
        },
        parameters=[
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The notification id.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 256},
            }
        ],
    ),
)
async def get_notification(request: web.Request) -> web.Response:
    notification_id = request.match_info["id"]
    prefix = f"{status.notification_key(notification_id)}.>"
    items = _group(await _statuses(request, prefix), await _targets(request))
    items = [i for i in items if i["id"] == notification_id]
    if not items:
        return api_json(404, {"error": "no delivery recorded for that notification yet"})
    _show_paused(items, await _paused_now(request, items))
    return api_json(200, items[0] if len(items) == 1 else {"notifications": items})


class _Incoming(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: messages.Text
    source: messages.Text
    data: msgspec.Raw
    id: str | None = None
    timestamp: str | None = None


_incoming = msgspec.json.Decoder(_Incoming)
_EXPECTED = 'expected {"type", "source", "data", optional "id", "timestamp"}'


@DOCS.post(
    "/api/v1/notifications",
    DOCS.api(
        "postNotification",
        "Publish any system's alert",
        "Routed to the targets like a Sqreen notification. Other systems may instead publish "
        "on `notification.<source>.<type>` directly (see the AsyncAPI document). Answered "
        "after the JetStream acknowledgement. The request id (`X-Request-Id`, given or made) "
        "goes with the message into the sinks' log lines; a notification that no target's "
        "route takes is stored all the same, with a warning and "
        "`lookout_notifications_unrouted_total`.",
        {
            "202": answer("Stored.", "NotificationAccepted", REQUEST_ID_HEADERS),
            "400": answer(
                f"Malformed JSON, not UTF-8, nested more than {jsondata.MAX_DEPTH} levels "
                "deep, a missing or unknown field, a `source`/`type` that is not a lower-case "
                "subject token, or an `id` no header can carry.",
                headers=REQUEST_ID_HEADERS,
            ),
            "413": answer(
                f"A body larger than `LOOKOUT_MAX_JSON_BYTES`, or {TOO_LARGE_MESSAGE}: "
                "`data is X bytes; the bus stores at most Y bytes per message`.",
                headers=REQUEST_ID_HEADERS,
            ),
            "503": answer(
                "The message bus is unavailable or did not store it; retry later.",
                headers=REQUEST_ID_HEADERS,
            ),
        },
        parameters=[REQUEST_ID_PARAM],
        requestBody={"required": True, "content": json_content(ref("NotificationInput"))},
    ),
)
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
    if incoming.timestamp is not None and schemas.rfc3339(incoming.timestamp) is None:
        return api_json(
            400,
            {
                "error": f"timestamp {incoming.timestamp[:64]!r}: expected an RFC 3339 time "
                "with its offset, e.g. 2026-12-07T08:00:00Z"
            },
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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/notifications", list_notifications)
    app.router.add_post("/v1/notifications", with_request_id(post_notification))
    app.router.add_get("/v1/notifications/{id}", get_notification)


@DOCS.components
def _schemas() -> dict[str, JSON]:
    token = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": SUBJECT_PART_PATTERN}
    return {
        "NotificationInput": {
            "title": "NotificationInput",
            "description": (
                "Any system's alert, routed like a Sqreen notification and published on "
                "`notification.<source>.<type>`. The same `id` (per source) is stored once; "
                "without one, lookout makes one up."
            ),
            "type": "object",
            "properties": {
                "type": {**token, "examples": ["security_event"]},
                "source": {**token, "examples": ["ids"]},
                "data": {"description": "The alert itself, any JSON value, kept unchanged."},
                "id": {
                    "type": ["string", "null"],
                    "pattern": ID_PATTERN,
                    "description": (
                        "Printable ASCII, no leading or trailing space (it goes into HTTP and "
                        "NATS headers): anything else is refused with 400. Kept whole up to "
                        "256 characters; a longer one is stored as `sha256-` and the 64 hex "
                        "digits of its SHA-256, as the answer says."
                    ),
                },
                "timestamp": {
                    "type": ["string", "null"],
                    "description": "When it happened (RFC 3339); default: now.",
                },
            },
            "required": ["type", "source", "data"],
            "additionalProperties": False,
        },
        "NotificationAccepted": {
            "title": "NotificationAccepted",
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "subject": {"type": "string", "examples": ["notification.ids.security_event"]},
                "duplicate": {"type": "boolean"},
            },
            "required": ["id", "subject", "duplicate"],
        },
        "TargetState": {
            "title": "TargetState",
            "description": (
                "What one target did with a notification: `pending` (configured, nothing "
                "reported yet), `skipped` (its route does not match), `delivered`, "
                "`retrying` (see `last_error`, `next_attempt_at`), `paused` (waiting while "
                "its target is paused; `next_attempt_at` is the next probe), `dead` "
                "(dead-lettered), `silenced` (a silence held it back: acknowledged, not "
                "sent, never dead-lettered; `silence_id` says which), `not_applicable` (the "
                "target was made after the notification arrived: it never gets it). "
                "`attempt_log`: its newest calls to the target."
            ),
            "type": "object",
            "properties": {
                "state": {"enum": DELIVERY_STATES},
                "attempts": {
                    "type": "integer",
                    "minimum": 0,
                    "description": (
                        "How often the bus handed the notification to the target's sink "
                        "(a retry counts, probes while the target is paused do not); each "
                        "call to the target is in `attempt_log`."
                    ),
                },
                "last_error": {"type": ["string", "null"]},
                "next_attempt_at": {"type": ["string", "null"]},
                "updated_at": {"type": "string"},
                "attempt_log": {"type": "array", "items": ref("Attempt"), "maxItems": 20},
                "silence_id": {"type": "string"},
            },
            "required": ["state", "attempts"],
        },
        "Attempt": {
            "title": "Attempt",
            "description": (
                "One call to the target: when (`at`, UTC), its `outcome` (`delivered`; "
                "`failed`: retried, or waiting while the target is paused; `refused`: "
                "permanent), the HTTP `status` of the service's answer when it has one, "
                "`ms` how long the call took, and the start of the `error`."
            ),
            "type": "object",
            "properties": {
                "at": {"type": "string"},
                "outcome": {"enum": ["delivered", "failed", "refused"]},
                "status": {"type": ["integer", "null"]},
                "ms": {"type": "number", "minimum": 0},
                "error": {"type": ["string", "null"], "maxLength": 200},
            },
            "required": ["at", "outcome", "ms"],
        },
        "NotificationState": {
            "title": "NotificationState",
            "description": (
                "A notification and its state per target; `state` is the worst of its "
                "targets' (dead, retrying, paused, pending, delivered, silenced, skipped, "
                "not_applicable)."
            ),
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "source": {"type": "string"},
                "type": {"type": "string"},
                "timestamp": {
                    "type": "string",
                    "description": "The sender's own date (Sqreen's `date_created`).",
                },
                "received_at": {
                    "type": ["string", "null"],
                    "description": (
                        "When lookout received it (stored it in JetStream), UTC; null for "
                        "records written before lookout kept it."
                    ),
                },
                "title": {
                    "type": ["string", "null"],
                    "description": "Its default title (as the targets' default templates).",
                },
                "application": {"type": ["string", "null"]},
                "environment": {"type": ["string", "null"]},
                "risk": {"type": ["integer", "null"]},
                "subject": {"type": "string"},
                "state": {"enum": DELIVERY_STATES},
                "targets": {"type": "object", "additionalProperties": ref("TargetState")},
            },
            "required": ["id", "source", "type", "timestamp", "subject", "state", "targets"],
        },
        "NotificationList": {
            "title": "NotificationList",
            "description": (
                "Newest first (by `received_at`); `total` counts every match before `limit` "
                "(among the delivery records read: see `partial`)."
            ),
            "type": "object",
            "properties": {
                "notifications": {"type": "array", "items": ref("NotificationState")},
                "total": {"type": "integer", "minimum": 0},
                "partial": {
                    "type": "boolean",
                    "description": (
                        "Older delivery records were left unread: `total` counts the "
                        "matches among the newest ones."
                    ),
                },
            },
            "required": ["notifications", "total", "partial"],
        },
        "NotificationsWithId": {
            "title": "NotificationsWithId",
            "description": "When several sources used the same id: one entry per source.",
            "type": "object",
            "properties": {
                "notifications": {"type": "array", "items": ref("NotificationState")},
            },
            "required": ["notifications"],
        },
    }
