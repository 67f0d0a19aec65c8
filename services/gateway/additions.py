"""``POST /api/v1/lookups/{id}/indicators``: add indicators to a job (the web UI's "add to
this job" on a pivot). Documented with the lookups' operations (:data:`lookups.DOCS
<services.gateway.lookups.DOCS>`), beside this handler.

The added indicators are read as on creation, those the job holds already are left out,
and the job never holds more than ``LOOKOUT_MAX_INDICATORS``; they are answered by the
providers the job was asked for (:func:`shared.lookups.jobs.add`).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from aiohttp import web

from services.gateway.answers import api_error, api_json, bus_js, json_input, with_request_id
from services.gateway.apispec import (
    JSON,
    REQUEST_ID_HEADERS,
    REQUEST_ID_PARAM,
    answer,
    json_content,
    path_pattern,
    ref,
)
from services.gateway.lookups import DOCS, JOB_ID, nothing_read
from services.gateway.state import SETTINGS
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import indicators, jobs
from shared.lookups.config import lookups

_log = log.get("gateway")
_JOB_ID_PARAM: Final[JSON] = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The job id from `POST /api/v1/lookups`.",
    "schema": {"type": "string", "pattern": path_pattern(JOB_ID)},
}


class _Added(msgspec.Struct, forbid_unknown_fields=True):
    indicators: list[Any]  # an item that is no string: rejected alone


@DOCS.post(
    "/api/v1/lookups/{id}/indicators",
    DOCS.api(
        "addLookupIndicators",
        "Add indicators to a lookup job",
        "Each item is read as on creation (refanged, normalised); those the job holds "
        "already are left out, and the job holds at most `LOOKOUT_MAX_INDICATORS` (the "
        "rest is counted in `left_out`). The added ones are looked up by the providers the "
        "job was asked for; their results join the job's (an open event stream of the job "
        "ends with `event: grown`).",
        {
            "200": answer("What was added.", "IndicatorsAdded", REQUEST_ID_HEADERS),
            "400": answer("Malformed, or nothing could be read.", "LookupError"),
            "404": answer("No such job (or it expired, after `LOOKOUT_JOB_TTL`)."),
        },
        parameters=[_JOB_ID_PARAM, REQUEST_ID_PARAM],
        requestBody={"required": True, "content": json_content(ref("IndicatorsInput"))},
    ),
)
async def add_indicators(request: web.Request, request_id: str) -> web.Response:
    settings: Settings = request.config_dict[SETTINGS]
    given = await json_input(request, _Added, 'expected {"indicators": [...]}')
    if isinstance(given, web.Response):
        return given
    most = lookups(settings).max_indicators
    if len(given.indicators) > most:
        return api_error(400, f"{len(given.indicators)} items; at most {most} per job")
    parsed = indicators.parse_items(given.indicators)
    rejected, rejected_total = jobs.rejected_items(parsed)
    if not parsed.indicators:
        return nothing_read(rejected, rejected_total)
    job_id = request.match_info["id"]
    try:
        added = await jobs.add(
            bus_js(request),
            settings,
            job_id,
            parsed.indicators,
            request_id=request_id,
            most=most,
        )
    except jobs.NoSuchJob:
        return api_error(404, "no such lookup job (or it expired)")
    except jobs.SubmitError as exc:
        return api_error(503, str(exc))
    _log.info("indicators added to a lookup job", job=job_id, added=len(added))
    return api_json(
        200,
        {
            "id": job_id,
            "added": [{"value": i.value, "kind": i.kind, "scope": i.scope} for i in added],
            "rejected": rejected,
            "rejected_total": rejected_total,
            "left_out": len(parsed.indicators) - len(added),
            "links": {"self": f"/api/v1/lookups/{job_id}"},
        },
    )


@DOCS.components
def _schemas() -> dict[str, JSON]:
    return {
        "IndicatorsInput": {
            "title": "IndicatorsInput",
            "type": "object",
            "properties": {"indicators": {"type": "array", "items": {"type": "string"}}},
            "required": ["indicators"],
            "additionalProperties": False,
        },
        "IndicatorsAdded": {
            "title": "IndicatorsAdded",
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "added": {"type": "array", "items": ref("JobIndicator")},
                "rejected": {"type": "array", "items": ref("Rejected")},
                "rejected_total": {"type": "integer", "minimum": 0},
                "left_out": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Indicators not added: the job held them already, or was "
                    "full (`LOOKOUT_MAX_INDICATORS`).",
                },
                "links": {
                    "type": "object",
                    "properties": {"self": {"type": "string"}},
                    "required": ["self"],
                },
            },
            "required": ["id", "added", "rejected", "rejected_total", "left_out", "links"],
        },
    }


ADD_PATH: Final = f"/v1/lookups/{JOB_ID}/indicators"


def add_routes(app: web.Application) -> None:
    app.router.add_post(ADD_PATH, with_request_id(add_indicators))
