"""Silences over HTTP: create one, list them, expire one (see :mod:`shared.relay.silences`);
each operation documented beside its handler (:data:`DOCS`).

Who made a silence is recorded: ``token-<n>`` for the n-th of ``LOOKOUT_API_TOKENS`` (a
bearer token, or the token the web UI's session logged in with), ``local`` in the open
(loopback, no tokens) mode."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from services.gateway import hardening, ui
from services.gateway.answers import api_json, bus_js, bus_reader
from services.gateway.apispec import JSON, Operations, answer, json_content, ref
from services.gateway.state import SETTINGS
from shared.core.settings import Settings
from shared.relay import silences
from shared.relay.silences import SilenceError

DOCS = Operations("silences", "Hold matching notifications back from the targets for a while.")

_ID_PARAM: Final[JSON] = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The silence's id (a UUID).",
    "schema": {"type": "string", "pattern": silences.ID_PATTERN},
}


async def creator(request: web.Request) -> str:
    """``local`` without tokens; else ``token-<n>`` (1-based) of the bearer token or of the
    token the web UI session logged in with (``session`` for a session from before that
    was recorded)."""
    settings: Settings = request.config_dict[SETTINGS]
    if not settings.api_tokens:
        return "local"
    given = request.headers.get("Authorization", "")
    if given:
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        index = ui.token_index(settings, token)
    else:
        try:
            session = await ui.session_of(request)
        except ui.SessionStoreUnavailable:  # checked a moment ago by the middleware
            session = None
        index = session.token if session is not None else None
    return "session" if index is None else f"token-{index + 1}"


def _silence_id(request: web.Request) -> str:
    silence_id = request.match_info["id"]
    if not silences.valid_id(silence_id):
        raise web.HTTPBadRequest(reason="not a silence id (a UUID, lower-case)")
    return silence_id


@DOCS.post(
    "/api/v1/silences",
    DOCS.api(
        "createSilence",
        "Silence matching notifications",
        "Until it ends, a notification every given matcher takes (exact strings; `ip` is one "
        "of its addresses, `target` the target's name) is not sent: each target it matches "
        "records it as `silenced`, acknowledged, never dead-lettered. At least one matcher; "
        f"from 1 s to {silences.MAX_DURATION / 86400:g} days (`duration` such as `2h`, "
        "`1h30m`, `1d`, or `ends_at`).",
        {
            "201": answer("Made; it applies at once.", "Silence"),
            "400": answer(
                "Not JSON, an unknown or empty matcher, no matcher, both or neither of "
                "`duration` and `ends_at`, a duration out of bounds, an end in the past, or a "
                "comment too long: the reason."
            ),
        },
        requestBody={"required": True, "content": json_content(ref("SilenceInput"))},
    ),
)
async def create_silence(request: web.Request) -> web.Response:
    settings: Settings = request.config_dict[SETTINGS]
    body = await hardening.read_capped(request, hardening.json_limit(settings))
    try:
        silence = silences.make(silences.decode_input(body), await creator(request))
    except SilenceError as exc:
        return api_json(400, {"error": str(exc)})
    await silences.save(bus_js(request), silence)
    return api_json(
        201,
        silences.view(silence),
        headers={"Location": f"/api/v1/silences/{silence.id}"},
    )


@DOCS.get(
    "/api/v1/silences",
    DOCS.api(
        "listSilences",
        "Silences",
        "Active ones first (soonest to end first), then those ended within the last "
        f"{silences.RETENTION / 86400:g} days (latest first).",
        {
            "200": answer("The silences.", "SilenceList"),
            "400": answer("`state` is neither `active` nor `expired`."),
        },
        parameters=[
            {
                "name": "state",
                "in": "query",
                "required": False,
                "description": "Only silences in this state.",
                "schema": {"enum": ["active", "expired"]},
            }
        ],
    ),
)
async def list_silences(request: web.Request) -> web.Response:
    wanted = request.query.get("state")
    if wanted not in (None, "active", "expired"):
        return api_json(400, {"error": "state must be active or expired"})
    found = [silences.view(s) for s in silences.ordered(await silences.stored(bus_reader(request)))]
    if wanted:
        found = [s for s in found if s["state"] == wanted]
    return api_json(200, {"silences": found, "total": len(found)})


@DOCS.get(
    "/api/v1/silences/{id}",
    DOCS.api(
        "getSilence",
        "One silence",
        "Its matchers, end, comment, author and state.",
        {
            "200": answer("The silence.", "Silence"),
            "400": answer("Not a silence id."),
            "404": answer("No such silence (or it ended long ago)."),
        },
        parameters=[_ID_PARAM],
    ),
)
async def get_silence(request: web.Request) -> web.Response:
    silence_id = _silence_id(request)
    found = await silences.one(bus_reader(request), silence_id)
    if found is None:
        return api_json(404, {"error": "no such silence"})
    return api_json(200, silences.view(found[0]))


@DOCS.delete(
    "/api/v1/silences/{id}",
    DOCS.api(
        "expireSilence",
        "Expire a silence",
        "It ends now (kept, listed as `expired`): matching notifications are sent again "
        "from this moment. Expiring one that has ended already changes nothing.",
        {
            "200": answer("The silence, ended.", "Silence"),
            "400": answer("Not a silence id."),
            "404": answer("No such silence."),
        },
        parameters=[_ID_PARAM],
    ),
)
async def expire_silence(request: web.Request) -> web.Response:
    silence_id = _silence_id(request)
    try:
        ended = await silences.expire(
            bus_js(request), bus_reader(request), silence_id, await creator(request)
        )
    except SilenceError as exc:
        return api_json(409, {"error": str(exc)})
    if ended is None:
        return api_json(404, {"error": "no such silence"})
    return api_json(200, silences.view(ended))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/silences", create_silence)
    app.router.add_get("/v1/silences", list_silences)
    app.router.add_get("/v1/silences/{id}", get_silence)
    app.router.add_delete("/v1/silences/{id}", expire_silence)


@DOCS.components
def _schemas() -> dict[str, JSON]:
    matcher = {"type": "string", "minLength": 1, "maxLength": silences.MAX_VALUE}
    matchers = {
        "type": "object",
        "description": (
            "An absent one matches anything. `source` and `type` are kept as notifications "
            "hold them (lower case, other characters than letters, digits, `_` and `-` as "
            "`_`); `ip`: an address or a network (`203.0.113.0/24`) holding one of the "
            "notification's addresses; `target`: a target's name; the others exact strings."
        ),
        "properties": dict.fromkeys(silences.MATCHERS, matcher),
        "additionalProperties": False,
    }
    time = {"type": "string", "format": "date-time"}
    return {
        "SilenceInput": {
            "title": "SilenceInput",
            "type": "object",
            "properties": {
                "matchers": {**matchers, "minProperties": 1},
                "duration": {
                    "type": ["string", "null"],
                    "description": "How long from now: `2h`, `90m`, `1h30m`, `1d`, `1w`.",
                    "examples": ["2h"],
                },
                "ends_at": {**time, "type": ["string", "null"], "description": "RFC 3339."},
                "comment": {"type": "string", "maxLength": silences.MAX_COMMENT},
            },
            "required": ["matchers"],
            "additionalProperties": False,
        },
        "Silence": {
            "title": "Silence",
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": silences.ID_PATTERN},
                "matchers": matchers,
                "starts_at": time,
                "ends_at": time,
                "created_by": {
                    "type": "string",
                    "description": "`token-<n>` (the n-th API token), or `local`.",
                },
                "created_at": time,
                "comment": {"type": "string"},
                "updated_at": {"type": "string"},
                "expired_by": {"type": ["string", "null"]},
                "state": {"enum": ["active", "expired"]},
            },
            "required": ["id", "matchers", "starts_at", "ends_at", "created_by", "state"],
        },
        "SilenceList": {
            "title": "SilenceList",
            "type": "object",
            "properties": {
                "silences": {"type": "array", "items": ref("Silence")},
                "total": {"type": "integer", "minimum": 0},
            },
            "required": ["silences", "total"],
        },
    }
