"""Dead letters over HTTP: what each target gave up on, and a replay to that target alone.

``GET /api/v1/deadletters``: every configured target (and any other that still has dead
letters) with its count. ``GET /api/v1/deadletters/{target}``: its dead letters, newest
first (``?limit=``, default 200). ``POST /api/v1/deadletters/{target}/replay`` with
``{"id": "<notification id or sequence>"}`` or ``{"all": true}``: replayed exactly as
``lookout deadletters replay`` does (see :mod:`shared.relay.deadletters`). Each operation
is documented beside its handler (:data:`DOCS`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from typing import Any, Final

import msgspec
from aiohttp import web

from services.gateway.answers import api_json, bus_js, bus_reader, json_input, query_limit
from services.gateway.apispec import JSON, Operations, answer, json_content, ref
from services.gateway.state import SETTINGS
from shared.core import logging as log
from shared.core.errors import ConfigError
from shared.core.settings import Settings
from shared.relay import deadletters
from shared.relay.config import NAME_RE, relay

_log = log.get("gateway")
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
RAW_PREVIEW = 500

DOCS = Operations("deadletters", "What targets gave up on; replays.")
_TARGET_PARAM: Final[JSON] = {
    "name": "target",
    "in": "path",
    "required": True,
    "description": "A target's name.",
    "schema": {"type": "string", "pattern": NAME_RE.pattern},
}
_BAD_NAME: Final = "Not a target name (lower-case letters, digits, `_` and `-`, at most 63)."

# One replay per target at a time in this process (two clicks must not race on the same
# entries); keyed by event loop so that no lock is ever shared between loops.
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _target_name(request: web.Request) -> str:
    name = request.match_info["target"]
    if not NAME_RE.fullmatch(name):
        raise web.HTTPBadRequest(
            reason="not a target name (lower-case letters, digits, '_' and '-', at most 63)"
        )
    return name


@DOCS.get(
    "/api/v1/deadletters",
    DOCS.api(
        "listDeadLetterTargets",
        "Dead-letter counts per target",
        "Every configured target, and any other that still has dead letters.",
        {"200": answer("The targets.", "DeadLetterTargets")},
    ),
)
async def list_targets(request: web.Request) -> web.Response:
    settings: Settings = request.config_dict[SETTINGS]
    counts = await deadletters.counts(bus_js(request))
    targets = [dataclasses.asdict(t) for t in deadletters.per_target(settings, counts)]
    return api_json(200, {"targets": targets, "total": sum(counts.values())})


def _entry_json(entry: deadletters.Entry) -> dict[str, Any]:
    record = entry.record
    note = record.notification
    item: dict[str, Any] = {
        "seq": entry.seq,
        "id": note.id if note else None,
        "type": note.type if note else None,
        "source": note.source if note else None,
        "timestamp": note.timestamp if note else None,
        "subject": record.subject,
        "error": record.error,
        "attempts": record.attempts,
        "failed_at": record.failed_at,
        "replayable": note is not None,
    }
    if note is None and record.raw is not None:
        item["raw"] = record.raw[:RAW_PREVIEW]
    return item


@DOCS.get(
    "/api/v1/deadletters/{target}",
    DOCS.api(
        "listDeadLetters",
        "A target's dead letters",
        "Newest first, as `lookout deadletters list TARGET` shows them.",
        {
            "200": answer("The dead letters.", "DeadLetterList"),
            "400": answer(f"{_BAD_NAME} Or `limit` is not a number."),
            "404": answer("No such target configured, and no dead letters for it."),
        },
        parameters=[
            _TARGET_PARAM,
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"At most this many (1…{MAX_LIMIT}).",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                },
            },
        ],
    ),
)
async def list_entries(request: web.Request) -> web.Response:
    settings: Settings = request.config_dict[SETTINGS]
    name = _target_name(request)
    limit = query_limit(request, DEFAULT_LIMIT, MAX_LIMIT)
    newest, total = await deadletters.newest(bus_reader(request), name, limit)
    configured = deadletters.target_type(settings, name) is not None
    if not configured and not total:
        return api_json(404, {"error": f"no target named {name!r} is configured"})
    return api_json(
        200,
        {
            "target": name,
            "configured": configured,
            "total": total,
            "deadletters": [_entry_json(e) for e in newest],
        },
    )


class _Replay(msgspec.Struct, forbid_unknown_fields=True):
    id: str | None = None
    all: bool = False


@DOCS.post(
    "/api/v1/deadletters/{target}/replay",
    DOCS.api(
        "replayDeadLetters",
        "Replay dead letters to their target",
        "Delivered again to that target only (other targets are not re-sent anything), "
        "exactly as `lookout deadletters replay` does; a replayed dead letter leaves the list "
        "and comes back as a new one if the target fails again.",
        {
            "200": answer("What was replayed.", "ReplayResult"),
            "400": answer(f"{_BAD_NAME} Or not exactly one of `id` or `all`."),
            "404": answer("No such target configured, or nothing matches."),
        },
        parameters=[_TARGET_PARAM],
        requestBody={"required": True, "content": json_content(ref("ReplayInput"))},
    ),
)
async def replay(request: web.Request) -> web.Response:
    settings: Settings = request.config_dict[SETTINGS]
    name = _target_name(request)
    usage = 'give exactly one of "id" (a notification id or sequence) or "all": true'
    wanted = await json_input(request, _Replay, usage)
    if isinstance(wanted, web.Response):
        return wanted
    if (wanted.id is not None) == wanted.all or (wanted.id is not None and not wanted.id.strip()):
        return api_json(400, {"error": usage})
    try:
        relay(settings).target(name)  # a replay needs the target's consumer
    except ConfigError as exc:
        return api_json(404, {"error": str(exc)})
    js = bus_js(request)
    locks = _locks.setdefault(asyncio.get_running_loop(), {})
    async with locks.setdefault(name, asyncio.Lock()):
        found = await deadletters.entries(bus_reader(request), name)
        ident = wanted.id.strip() if wanted.id is not None else None
        chosen = deadletters.select(found, ident)
        if not chosen:
            what = f"matching {ident!r}" if ident is not None else "to replay"
            return api_json(404, {"error": f"no dead letter of {name} {what}"})
        try:
            outcomes = await deadletters.replay(js, settings, name, chosen)
        except Exception as exc:
            _log.warning("replay failed", target=name, error=str(exc) or type(exc).__name__)
            return api_json(503, {"error": "message bus did not store the replay, retry later"})
    replayed = sum(1 for o in outcomes if o.replayed)
    _log.info("dead letters replayed", target=name, replayed=replayed, chosen=len(chosen))
    return api_json(
        200,
        {
            "target": name,
            "replayed": replayed,
            "skipped": len(outcomes) - replayed,
            "outcomes": [
                {
                    "seq": o.seq,
                    "id": o.notification_id,
                    "replayed": o.replayed,
                    "reason": o.reason or None,
                }
                for o in outcomes
            ],
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/deadletters", list_targets)
    app.router.add_get("/v1/deadletters/{target}", list_entries)
    app.router.add_post("/v1/deadletters/{target}/replay", replay)


@DOCS.components
def _schemas() -> dict[str, JSON]:
    text_or_null = {"type": ["string", "null"]}
    return {
        "DeadLetterTargets": {
            "title": "DeadLetterTargets",
            "description": (
                "Every configured target, and any other that still has dead letters, with "
                "its count; `total` counts them all."
            ),
            "type": "object",
            "properties": {
                "targets": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "type": {**text_or_null, "description": "The target's type."},
                            "configured": {"type": "boolean"},
                            "count": {"type": "integer", "minimum": 0},
                        },
                        "required": ["name", "type", "configured", "count"],
                    },
                },
                "total": {"type": "integer", "minimum": 0},
            },
            "required": ["targets", "total"],
        },
        "DeadLetterEntry": {
            "title": "DeadLetterEntry",
            "description": (
                "One dead letter: `seq` is its sequence in the DEADLETTERS stream. A message "
                "that was not a valid notification has no id, is not `replayable`, and shows "
                "the start of its original text in `raw`."
            ),
            "type": "object",
            "properties": {
                "seq": {"type": "integer", "minimum": 1},
                "id": text_or_null,
                "type": text_or_null,
                "source": text_or_null,
                "timestamp": text_or_null,
                "subject": {"type": "string"},
                "error": {"type": "string"},
                "attempts": {"type": "integer", "minimum": 0},
                "failed_at": {"type": "string"},
                "replayable": {"type": "boolean"},
                "raw": {"type": "string", "maxLength": RAW_PREVIEW},
            },
            "required": [
                "seq",
                "id",
                "type",
                "source",
                "timestamp",
                "subject",
                "error",
                "attempts",
                "failed_at",
                "replayable",
            ],
        },
        "DeadLetterList": {
            "title": "DeadLetterList",
            "description": "A target's dead letters, newest first; `total` before `limit`.",
            "type": "object",
            "properties": {
                "target": {"type": "string"},
                "configured": {"type": "boolean"},
                "total": {"type": "integer", "minimum": 0},
                "deadletters": {"type": "array", "items": ref("DeadLetterEntry")},
            },
            "required": ["target", "configured", "total", "deadletters"],
        },
        "ReplayInput": {
            "title": "ReplayInput",
            "description": (
                "Exactly one of `id` (a notification id, or a dead letter's `seq`) or `all: true`."
            ),
            "type": "object",
            "properties": {
                "id": {"type": ["string", "null"], "pattern": "\\S"},
                "all": {"type": "boolean", "default": False},
            },
            "additionalProperties": False,
        },
        "ReplayResult": {
            "title": "ReplayResult",
            "description": (
                "What was replayed to the target; an entry that is not a valid "
                "notification is skipped with a reason."
            ),
            "type": "object",
            "properties": {
                "target": {"type": "string"},
                "replayed": {"type": "integer", "minimum": 0},
                "skipped": {"type": "integer", "minimum": 0},
                "outcomes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "seq": {"type": "integer"},
                            "id": text_or_null,
                            "replayed": {"type": "boolean"},
                            "reason": text_or_null,
                        },
                        "required": ["seq", "id", "replayed", "reason"],
                    },
                },
            },
            "required": ["target", "replayed", "skipped", "outcomes"],
        },
    }
