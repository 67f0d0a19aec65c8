"""The API documents of lookout's memory (:mod:`services.gateway.memory`): its OpenAPI
schemas and operations, and on the NATS side the recent-jobs subject ``lookup.created`` and
the ``verdict_changed`` notification. :mod:`services.gateway.apidocs` merges them in
(``openapi_components``, ``openapi_operations``, ``extend_asyncapi``)."""

from __future__ import annotations

from typing import Any, Final, get_args

import msgspec

from services.gateway import memory
from shared.bus import messages
from shared.lookups import indicators, watches
from shared.lookups import schemas as lookup_schemas
from shared.lookups import streams as lookup_streams
from shared.lookups.verdicts import VERDICT_ORDER
from shared.relay import schemas as relay_schemas

JSON = dict[str, Any]
TAG: Final = "memory"
TAG_DESCRIPTION: Final = "History of indicators, past jobs, watch lists."
_REF: Final = "#/components/schemas/{name}"
KINDS: Final[list[str]] = list(get_args(indicators.Kind))
VERDICTS: Final[list[str]] = list(get_args(lookup_schemas.Verdict))
STATUSES: Final[list[str]] = list(get_args(lookup_schemas.Status))
OVERALL: Final[list[str]] = list(VERDICT_ORDER)
_PROVIDER: Final[JSON] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}
_TIME: Final[JSON] = {"type": "string", "description": "UTC, RFC 3339."}
_TIME_OR_NULL: Final[JSON] = {"anyOf": [_TIME, {"type": "null"}]}
_TEXT_OR_NULL: Final[JSON] = {"anyOf": [{"type": "string"}, {"type": "null"}]}


def ref(name: str) -> JSON:
    return {"$ref": _REF.format(name=name)}


def _answer(description: str, schema: str = "Error") -> JSON:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def _object(properties: JSON, required: list[str] | None = None, **extra: Any) -> JSON:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        **extra,
    }


def openapi_components(components: JSON) -> None:
    """Add the memory's schemas to ``components`` (and the job's ``scheduled`` and
    ``watch`` to ``LookupJob``)."""
    job_links = _object({"self": {"type": "string"}})
    components["JobSummary"] = {
        "title": "JobSummary",
        "description": "A past lookup job (its results: `links.self`, while the job lasts).",
        **_object(
            {
                "id": {"type": "string"},
                "created_at": _TIME,
                "indicators": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "How many indicators it has (0: not known any more).",
                },
                "sample": {
                    "type": "array",
                    "items": {"type": "string"},
                    "maxItems": lookup_schemas.SAMPLE,
                    "description": "Its first indicators (a long one cut, ending with `…`).",
                },
                "scheduled": {"type": "boolean", "description": "Run by a watch."},
                "watch": {**_TEXT_OR_NULL, "description": "The watch that ran it."},
                "links": job_links,
            }
        ),
    }
    components["JobList"] = {
        "title": "JobList",
        **_object(
            {
                "indicator": {
                    "anyOf": [
                        _object({"value": {"type": "string"}, "kind": {"enum": KINDS}}),
                        {"type": "null"},
                    ],
                    "description": "The indicator asked for, normalised (null: recent jobs).",
                },
                "jobs": {"type": "array", "items": ref("JobSummary")},
            }
        ),
    }
    finding = _object(
        {
            "verdict": {"enum": VERDICTS},
            "summary": {"type": "string"},
            "at": _TIME,
            "job_id": {"type": "string"},
        }
    )
    components["ProviderHistory"] = {
        "title": "ProviderHistory",
        "description": (
            "A provider's latest final result for the indicator, and its latest finding "
            "(`done` result), which counts for the overall verdict: an error later does not "
            "erase what it found before."
        ),
        **_object(
            {
                "provider": _PROVIDER,
                "label": {"type": "string"},
                "status": {"enum": STATUSES},
                "verdict": {"enum": VERDICTS},
                "summary": {"type": "string"},
                "error": _TEXT_OR_NULL,
                "cached": {"type": "boolean"},
                "data": {"type": "object"},
                "data_left_out": {
                    "type": "boolean",
                    "description": "Its data was too large to keep (more than 32 KiB).",
                },
                "checked_at": _TIME,
                "job_id": {"type": "string"},
                "finding": {"anyOf": [finding, {"type": "null"}]},
            }
        ),
    }
    components["VerdictHistoryEntry"] = {
        "title": "VerdictHistoryEntry",
        "description": "The overall verdict from `at` on, as the job `job_id` found it.",
        **_object(
            {
                "verdict": {"enum": OVERALL},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "at": _TIME,
                "job_id": {"type": "string"},
            }
        ),
    }
    components["IndicatorHistory"] = {
        "title": "IndicatorHistory",
        "description": (
            "What lookout found about one indicator over time (kept `LOOKOUT_HISTORY_TTL` "
            "after its last result): its overall `verdict` now (from each provider's latest "
            "finding), the latest result per provider, `verdict_history` (each change of the "
            "overall verdict, newest first), the jobs it was in (newest first) and the jobs "
            "whose results are still coming in (`pending_jobs`)."
        ),
        **_object(
            {
                "value": {"type": "string"},
                "kind": {"enum": KINDS},
                "first_seen": _TIME,
                "last_seen": _TIME,
                "verdict": {"enum": OVERALL},
                "verdict_reasons": {"type": "array", "items": {"type": "string"}},
                "providers": {"type": "array", "items": ref("ProviderHistory")},
                "verdict_history": {"type": "array", "items": ref("VerdictHistoryEntry")},
                "jobs": {"type": "array", "items": ref("JobSummary")},
                "pending_jobs": {"type": "array", "items": {"type": "string"}},
                "links": _object(
                    {
                        "self": {"type": "string"},
                        "lookups": {"type": "string"},
                        "page": {"type": "string", "description": "The web UI's page."},
                    }
                ),
            }
        ),
    }
    notify_on = {
        "enum": list(watches.NOTIFY_ON),
        "description": (
            "`any_change`: when the overall verdict or a provider's verdict changes; "
            "`worse`: only when the overall verdict gets worse (to suspicious or malicious)."
        ),
    }
    every_text = {
        "type": "string",
        "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*[smhdwSMHDW]?\s*$",
        "examples": ["6h", "30m", "1d"],
    }
    components["WatchInput"] = {
        "title": "WatchInput",
        "description": (
            "Indicators to look up again every `every` (from `LOOKOUT_WATCH_MIN_EVERY`, 5 "
            "minutes by default, to 30 days): a duration (`30m`, `6h`, `1d`, `2w`) or "
            "seconds. Every item must be an indicator (refanged and normalised as for a "
            f"lookup), at most {watches.MAX_INDICATORS}."
        ),
        "type": "object",
        "properties": {
            "indicators": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": watches.MAX_INDICATORS,
            },
            "every": {"anyOf": [every_text, {"type": "number", "exclusiveMinimum": 0}]},
            "providers": {
                "type": "array",
                "items": _PROVIDER,
                "description": "Only these providers (default: every provider of each kind).",
            },
            "notify_on": {**notify_on, "default": "any_change"},
            "comment": {"type": "string", "maxLength": watches.MAX_COMMENT},
        },
        "required": ["indicators", "every"],
        "additionalProperties": False,
    }
    components["Watch"] = {
        "title": "Watch",
        "description": (
            "A watch list and its schedule: `runs` so far, when it ran last (`last_run_at`, "
            "`last_job`) and runs next (`next_run_at`; null until the scheduler first saw it)."
        ),
        **_object(
            {
                "id": {"type": "string", "pattern": f"^{watches.WATCH_ID}$"},
                "created_at": _TIME,
                "indicators": {"type": "array", "items": ref("JobIndicator")},
                "every": {"type": "string", "examples": ["6h"]},
                "every_seconds": {"type": "number"},
                "providers": {"type": "array", "items": _PROVIDER},
                "notify_on": notify_on,
                "comment": {"type": "string"},
                "runs": {"type": "integer", "minimum": 0},
                "last_run_at": _TIME_OR_NULL,
                "last_job": _TEXT_OR_NULL,
                "next_run_at": _TIME_OR_NULL,
            }
        ),
    }
    components["WatchList"] = {
        "title": "WatchList",
        **_object({"watches": {"type": "array", "items": ref("Watch")}}),
    }
    components["WatchError"] = {
        "title": "WatchError",
        "description": "Why a watch was refused; `rejected`: the items that are not indicators.",
        "allOf": [ref("Error")],
        "properties": {"rejected": {"type": "array", "items": ref("Rejected")}},
    }
    job = components["LookupJob"]["properties"]
    job["scheduled"] = {"type": "boolean", "description": "Run by a watch, not by a person."}
    job["watch"] = {**_TEXT_OR_NULL, "description": "The watch that ran it, if any."}


def openapi_operations() -> list[tuple[str, str, JSON]]:
    """``(path, method, arguments of apidocs._api_op)`` for each route of the memory."""
    value = {
        "name": "value",
        "in": "path",
        "required": True,
        "description": (
            "An indicator as on input (defanged forms welcome), percent-encoded: "
            "`https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc` for a URL."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": memory.MAX_VALUE},
    }
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"At most this many jobs (1…{memory.MAX_LIMIT}).",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": memory.MAX_LIMIT,
            "default": memory.DEFAULT_LIMIT,
        },
    }
    since = {
        "name": "since",
        "in": "query",
        "required": False,
        "description": "Only jobs created then or later: an RFC 3339 time, or an age (`24h`).",
        "schema": {"type": "string", "examples": ["2026-01-02T03:04:05Z", "7d"]},
    }
    indicator = {
        "name": "indicator",
        "in": "query",
        "required": False,
        "description": "Only the jobs this indicator was in (refanged and normalised).",
        "schema": {"type": "string", "minLength": 1, "maxLength": memory.MAX_VALUE},
    }
    watch_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The watch's id.",
        "schema": {"type": "string"},
    }
    return [
        (
            "/api/v1/indicators/{value}",
            "get",
            {
                "operation_id": "getIndicator",
                "summary": "An indicator's history",
                "description": (
                    "What lookout found about the indicator over its lookups, kept beyond the "
                    "jobs (`LOOKOUT_HISTORY_TTL`, 90 days by default). Read from the bus: "
                    "asks no provider, spends no quota."
                ),
                "tag": TAG,
                "responses": {
                    "200": _answer("The history.", "IndicatorHistory"),
                    "400": _answer("Not an indicator (the reason says why)."),
                    "404": _answer("Never looked up, or its history expired."),
                },
                "parameters": [value],
            },
        ),
        (
            "/api/v1/lookups",
            "get",
            {
                "operation_id": "listLookups",
                "summary": "Past lookup jobs",
                "description": (
                    "Newest first: the jobs an indicator was in (`indicator`; its latest "
                    "50), or the most recent jobs (the latest 10,000 are indexed, for "
                    "`LOOKOUT_HISTORY_TTL` at most). A job's own results last "
                    "`LOOKOUT_JOB_TTL`."
                ),
                "tag": TAG,
                "responses": {
                    "200": _answer("The jobs.", "JobList"),
                    "400": _answer("`indicator` is not an indicator, or a bad `since`/`limit`."),
                },
                "parameters": [indicator, since, limit],
            },
        ),
        (
            "/api/v1/watches",
            "post",
            {
                "operation_id": "createWatch",
                "summary": "Watch indicators",
                "description": (
                    "The scheduler service looks them up again every `every` (fresh answers; "
                    "the shared quotas are spent after interactive lookups) and publishes "
                    "`notification.lookout.verdict_changed` when a verdict changes, as "
                    "`notify_on` says. The first run comes at once."
                ),
                "tag": TAG,
                "responses": {
                    "201": _answer("The watch.", "Watch"),
                    "400": _answer(
                        "Malformed, an item that is not an indicator, too many indicators, "
                        f"`every` out of bounds, unknown providers, or {watches.MAX_WATCHES} "
                        "watches already.",
                        "WatchError",
                    ),
                },
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("WatchInput")}},
                },
            },
        ),
        (
            "/api/v1/watches",
            "get",
            {
                "operation_id": "listWatches",
                "summary": "The watch lists",
                "description": "Every watch, oldest first, with its schedule.",
                "tag": TAG,
                "responses": {"200": _answer("The watches.", "WatchList")},
            },
        ),
        (
            "/api/v1/watches/{id}",
            "delete",
            {
                "operation_id": "deleteWatch",
                "summary": "Stop watching",
                "description": "The watch and its schedule are removed; its jobs stay.",
                "tag": TAG,
                "responses": {
                    "204": {"description": "Removed."},
                    "404": _answer("No such watch."),
                },
                "parameters": [watch_id],
            },
        ),
    ]


_EXAMPLE_CREATED: Final = lookup_schemas.JobCreated(
    id="0194c9a1b2c3d4e5f6a7b8c9",
    created_at="2026-11-21T10:00:00.000Z",
    indicators=2,
    sample=["example.com", "192.0.2.10"],
)
_EXAMPLE_CHANGE: Final[JSON] = {
    "indicator": "example.com",
    "kind": "domain",
    "old_verdict": "harmless",
    "new_verdict": "malicious",
    "verdict_reasons": ["Reputation: 7/85 engines"],
    "changes": [
        {
            "provider": "reputation",
            "label": "Reputation",
            "old_verdict": "harmless",
            "new_verdict": "malicious",
            "old_summary": "0/85 engines",
            "new_summary": "7/85 engines",
        }
    ],
    "job_id": "0194c9a1b2c3d4e5f6a7b8c9",
    "scheduled": True,
    "watches": ["0194c9a0a1b2c3d4e5f6a7b8"],
    "checked_at": "2026-11-21T10:00:03.000Z",
    "url": "https://lookout.example/indicator/example.com",
    "description": "example.com is now malicious (was harmless): Reputation 0/85 engines → "
    "7/85 engines",
}


def extend_asyncapi(document: JSON) -> None:
    """Add ``lookup.created`` (channel, message, schema, operations) and an example of the
    ``verdict_changed`` notification to the AsyncAPI ``document``."""
    schema = msgspec.json.schema_components([lookup_schemas.JobCreated], ref_template=_REF)[1]
    document["components"]["schemas"].update(schema)
    headers = {
        "type": "object",
        "properties": {
            messages.SCHEMA_HEADER: {
                "type": "string",
                "description": "Schema name and version.",
                "const": lookup_schemas.LOOKUP_CREATED_SCHEMA,
            },
            "Nats-Msg-Id": {"type": "string", "description": "The job id."},
            messages.REQUEST_ID_HEADER: {
                "type": "string",
                "description": "The request that created the job.",
            },
        },
        "required": [messages.SCHEMA_HEADER, "Nats-Msg-Id"],
    }
    document["components"]["messages"]["JobCreated"] = {
        "name": "JobCreated",
        "title": "Lookup job created",
        "summary": "A new job's summary: the recent-jobs index.",
        "description": (
            "Published when a job is stored, before its requests; `GET /api/v1/lookups` "
            f"reads the newest (the stream keeps {lookup_streams.RECENT_KEPT}, for "
            "`LOOKOUT_HISTORY_TTL` at most)."
        ),
        "contentType": "application/json",
        "headers": headers,
        "payload": ref("JobCreated"),
        "examples": [
            {
                "name": "job",
                "headers": {
                    messages.SCHEMA_HEADER: lookup_schemas.LOOKUP_CREATED_SCHEMA,
                    "Nats-Msg-Id": _EXAMPLE_CREATED.id,
                },
                "payload": msgspec.to_builtins(_EXAMPLE_CREATED),
            }
        ],
    }
    document["channels"]["lookupCreated"] = {
        "address": lookup_schemas.LOOKUP_CREATED_SUBJECT,
        "description": "One summary per new lookup job (the recent-jobs index).",
        "parameters": {},
        "messages": {"JobCreated": {"$ref": "#/components/messages/JobCreated"}},
        "x-jetstream-stream": lookup_streams.RECENT_LOOKUPS,
    }
    message = [{"$ref": "#/channels/lookupCreated/messages/JobCreated"}]
    document["operations"]["gatewaySendJobCreated"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/lookupCreated"},
        "summary": "Index a new job",
        "description": "`POST /api/v1/lookups`, `lookout lookup` and the scheduler.",
        "tags": [{"name": "gateway"}],
        "messages": message,
    }
    document["operations"]["gatewayReceiveJobCreated"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/lookupCreated"},
        "summary": "List recent jobs",
        "description": "`GET /api/v1/lookups` reads the newest with direct gets.",
        "tags": [{"name": "gateway"}],
        "messages": message,
    }
    document["operations"]["schedulerSendVerdictChanged"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/notification"},
        "summary": "Tell that a watched indicator's verdict changed",
        "description": (
            "`notification.lookout.verdict_changed`, published by the scheduler service's "
            "history indexer once a job's results for a watched indicator are in and its "
            "overall verdict or a provider's verdict changed (`notify_on` of its watches)."
        ),
        "tags": [{"name": "scheduler"}],
        "messages": [{"$ref": "#/channels/notification/messages/Notification"}],
    }
    document["info"]["tags"].append(
        {"name": "scheduler", "description": "services/scheduler: history, watch lists"}
    )
    note = relay_schemas.Notification(
        id="verdict-5d0b5e1c0e5a2f3b4c6d-0194c9a1b2c3d4e5f6a7b8c9",
        type=relay_schemas.VERDICT_CHANGED_TYPE,
        source=relay_schemas.LOOKOUT_SOURCE,
        timestamp="2026-11-21T10:00:03.000Z",
        data=msgspec.Raw(msgspec.json.encode(_EXAMPLE_CHANGE)),
    )
    document["components"]["messages"]["Notification"]["examples"].append(
        {
            "name": "verdict_changed",
            "headers": {
                messages.SCHEMA_HEADER: relay_schemas.NOTIFICATION_SCHEMA,
                "Nats-Msg-Id": note.msg_id,
            },
            "payload": msgspec.json.decode(messages.encode(note)),
        }
    )
