"""Targets over HTTP: each configured target with its health (``GET /api/v1/targets``), as
its sinks share it in the KV bucket ``target_health`` (see shared.relay.health); also the
``lookout_target_paused`` gauges of the gateway's ``/metrics``. Documented beside the
handler (:data:`DOCS`)."""

from __future__ import annotations

import contextlib
from typing import Any, Final

import msgspec
from aiohttp import web

from services.gateway.answers import api_json, bus_reader
from services.gateway.apispec import JSON, Operations, answer, ref
from services.gateway.state import SETTINGS
from shared.bus import direct
from shared.core.settings import Settings
from shared.relay import health, streams
from shared.relay.config import relay

DOCS = Operations("targets", "Configured targets and their health.")
STATES: Final = ["active", "paused"]


async def healths(reader: direct.Reader) -> dict[str, health.TargetHealth]:
    """Every target's shared health record, by target name (read by direct gets)."""
    stored = await reader.scan(
        direct.kv_stream(streams.HEALTH_BUCKET), direct.kv_subject(streams.HEALTH_BUCKET, ">")
    )
    found: dict[str, health.TargetHealth] = {}
    for msg in stored:
        if msg.data and not msg.removed:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                record = health.decode(msg.data)
                found[record.target] = record
    return found


def describe(settings: Settings, records: dict[str, health.TargetHealth]) -> list[dict[str, Any]]:
    """The configured targets, in configuration order, each with its health."""
    out = []
    for target in relay(settings).targets:
        record = records.get(target.name, health.TargetHealth(target=target.name))
        out.append(
            {
                "name": target.name,
                "type": target.type,
                "state": record.state,
                "consecutive_failures": record.consecutive_failures,
                "last_error": record.last_error,
                "paused_at": record.paused_at,
                "resumed_at": record.resumed_at,
                "next_probe_at": (
                    health.epoch_text(record.next_probe_at) if record.state == "paused" else None
                ),
                "probes": record.probes,
                "pause_after": target.pause_after,
                "on_failure": target.on_failure,
            }
        )
    return out


@DOCS.get(
    "/api/v1/targets",
    DOCS.api(
        "listTargets",
        "The configured targets and their health",
        "In configuration order. A target is `paused` after `pause_after` consecutive failed "
        "deliveries or a `410 Gone`: its deliveries wait (nothing is dead-lettered for it) "
        "while a probe is tried now and then (`next_probe_at`); one success resumes it. "
        "Shared by every replica of its sink.",
        {"200": answer("The targets.", "TargetList")},
    ),
)
async def list_targets(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    records = await healths(bus_reader(request))
    return api_json(200, {"targets": describe(settings, records)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/targets", list_targets)


@DOCS.components
def _schemas() -> dict[str, JSON]:
    text = {"type": ["string", "null"]}
    return {
        "Target": {
            "title": "Target",
            "description": "A configured target and its health.",
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "type": {"type": "string", "examples": ["http"]},
                "state": {"enum": STATES},
                "consecutive_failures": {"type": "integer", "minimum": 0},
                "last_error": text,
                "paused_at": {**text, "description": "When it was last paused (UTC)."},
                "resumed_at": {**text, "description": "When it was last resumed (UTC)."},
                "next_probe_at": {
                    **text,
                    "description": "While paused: no probe delivery before then (UTC).",
                },
                "probes": {"type": "integer", "minimum": 0},
                "pause_after": {"type": "integer", "minimum": 0},
                "on_failure": {
                    **text,
                    "description": "The target told when this one is paused or resumed or "
                    "dead-letters a notification.",
                },
            },
            "required": ["name", "type", "state", "consecutive_failures", "pause_after"],
        },
        "TargetList": {
            "title": "TargetList",
            "type": "object",
            "properties": {"targets": {"type": "array", "items": ref("Target")}},
            "required": ["targets"],
        },
    }
