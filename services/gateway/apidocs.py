"""API documents: OpenAPI 3.1 for the gateway's HTTP API and AsyncAPI 3.0 for the NATS side.

- ``GET /api/openapi.json`` serves the OpenAPI document and ``GET /api/docs`` a page that
  renders it (plain HTML, CSS and JavaScript from ``static/apidocs.*``: no CDN, no inline
  script or style, so it works under ``Content-Security-Policy: default-src 'self'``). Both
  are public: they are routes of the main application, outside the ``/api`` sub-application
  and its bearer-token middleware.
- ``python -m services.gateway.apidocs asyncapi > docs/asyncapi.json`` writes the AsyncAPI
  document of the subjects (checked in; a test fails when it is stale);
  ``python -m services.gateway.apidocs openapi`` prints the OpenAPI document.

Payload schemas of what crosses the bus, and of what the API returns that is a message
schema, are generated from the msgspec Structs in :mod:`shared.relay.schemas`; the rest is
written here. Enumerations (kinds, providers, verdicts, states) come from the code too.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, get_args

import msgspec
from aiohttp import web

from services.gateway import (
    deadletters_api,
    hosts,
    lookups,
    memory_docs,
    notifications,
    sqreen,
    ui,
)
from shared.bus import messages
from shared.core import jsondata
from shared.lookups import indicators
from shared.lookups import schemas as lookup_schemas
from shared.lookups import streams as lookup_streams
from shared.lookups.jobs import REJECTED_KEPT
from shared.lookups.verdicts import VERDICT_ORDER
from shared.relay import schemas, status, streams
from shared.relay.config import NAME_RE
from shared.relay.deadletters import ORIGINAL_SUBJECT_HEADER

JSON = dict[str, Any]

API_VERSION: Final = "1.0.0"
"""Version of both documents (the message schemas carry their own, ``Lookout-Schema``)."""

OPENAPI_PATH: Final = "/api/openapi.json"
DOCS_PATH: Final = "/api/docs"
STATIC: Final = Path(__file__).parent / "static"
_ASSETS: Final = {"apidocs.js": "text/javascript", "apidocs.css": "text/css"}
_REF: Final = "#/components/schemas/{name}"
_DOCS_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
"""The docs page's own policy; the headers every answer gets come from hardening.HEADERS."""

KINDS: Final[list[str]] = list(get_args(indicators.Kind))
SCOPES: Final[list[str]] = list(get_args(indicators.Scope))
PROVIDER: Final[JSON] = {
    "type": "string",
    "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$",
    "description": "A provider's name: `GET /api/v1/providers` lists them (e.g. `dns`).",
}
"""A provider's name. The providers are the launcher's and the deployment's choice, so
the documents name none of them: adding a provider changes neither."""
VERDICTS: Final[list[str]] = list(get_args(lookup_schemas.Verdict))
OVERALL_VERDICTS: Final[list[str]] = list(VERDICT_ORDER)
DELIVERY_STATES: Final[list[str]] = list(get_args(status.State))
SUBJECT_PART_PATTERN: Final = "^[a-z0-9-]([a-z0-9_-]{0,62}[a-z0-9-])?$"
"""What :func:`shared.relay.schemas.subject_token` leaves unchanged: ``source`` and ``type``."""


_REJECTED: Final[JSON] = {
    "type": "array",
    "items": {"$ref": "#/components/schemas/Rejected"},
    "maxItems": REJECTED_KEPT,
    "description": f"The first {REJECTED_KEPT} items that could not be read, with the reason.",
}
_REJECTED_TOTAL: Final[JSON] = {
    "type": "integer",
    "minimum": 0,
    "description": f"How many items could not be read (`rejected` lists {REJECTED_KEPT} at most).",
}


def ref(name: str) -> JSON:
    return {"$ref": _REF.format(name=name)}


def _struct_schemas(types: Sequence[type[msgspec.Struct]]) -> dict[str, JSON]:
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    return dict(components)


def _job_id_pattern() -> str:
    found = re.fullmatch(r"\{id:(.+)\}", lookups.JOB_ID)
    if found is None:  # pragma: no cover - lookups.JOB_ID is a constant
        raise RuntimeError(f"unexpected route pattern {lookups.JOB_ID!r}")
    return f"^{found.group(1)}$"


# --------------------------------------------------------------------------------- OpenAPI

_INTRO = """\
lookout's HTTP surface (the gateway): the Sqreen webhook, the host-lookups and notifications
REST API, and health, readiness and metrics endpoints.

**Authentication.** Every `/api/v1/*` operation needs `Authorization: Bearer <token>` when
`LOOKOUT_API_TOKENS` is set (lookout refuses to listen beyond loopback without tokens); a
missing or wrong token gets 401. The web UI's pages use a session cookie instead (opened by
logging in with a token at `/login`); a state-changing request with that cookie must carry
its `X-CSRF-Token`. The webhook is authenticated by its signature instead.
The API documents themselves, `GET /api/openapi.json` and the page `GET /api/docs`, are
public: no token is needed to read them.

**Host check.** Without API tokens (loopback only), or when `LOOKOUT_ALLOWED_HOSTS` is set,
`/api/*`, the API documents and the web UI answer only to a `Host` that is a loopback name
(`localhost`, `127.0.0.1`, `[::1]`, any port) or listed in `LOOKOUT_ALLOWED_HOSTS`; any other
gets 421 with the reason (DNS rebinding). The webhook, `/healthz`, `/readyz` and `/metrics`
are not checked.

**Errors** are JSON, `{"error": "<reason>"}`, sometimes with details (per-item reasons).

The NATS subjects behind this API are described by the AsyncAPI document `docs/asyncapi.json`.
"""


def _error_schemas() -> dict[str, JSON]:
    return {
        "Error": {
            "title": "Error",
            "description": "Every error answer: a short reason.",
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        },
        "RateLimited": {
            "title": "RateLimited",
            "description": (
                "Over the client's rate limit: the reason, and the seconds to wait "
                "(the same as the `Retry-After` header)."
            ),
            "allOf": [ref("Error")],
            "properties": {"retry_after": {"type": "integer", "minimum": 1}},
            "required": ["retry_after"],
        },
        "LookupError": {
            "title": "LookupError",
            "description": (
                "Why a lookup job was refused: the reason, and when it applies the items "
                "that could not be read (`rejected`) or the known providers (`providers`)."
            ),
            "allOf": [ref("Error")],
            "properties": {
                "rejected": _REJECTED,
                "rejected_total": _REJECTED_TOTAL,
                "providers": {"type": "array", "items": PROVIDER},
            },
        },
    }


def _webhook_schemas() -> dict[str, JSON]:
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


def _lookup_schemas() -> dict[str, JSON]:
    providers = {
        "type": "array",
        "items": PROVIDER,
        "description": "Only these providers (default: every provider of each kind).",
    }
    return {
        "Provider": {
            "title": "Provider",
            "description": "A lookup provider and what it answers for.",
            "type": "object",
            "properties": {
                "name": PROVIDER,
                "label": {"type": "string", "description": "How people call it."},
                "kinds": {
                    "type": "array",
                    "items": {"enum": KINDS},
                    "description": "The indicator kinds it answers for.",
                },
            },
            "required": ["name", "label", "kinds"],
        },
        "Providers": {
            "title": "Providers",
            "type": "object",
            "properties": {"providers": {"type": "array", "items": ref("Provider")}},
            "required": ["providers"],
        },
        "LookupInput": {
            "title": "LookupInput",
            "description": (
                "Exactly one of `indicators` (a list, one indicator per item) or `text` "
                "(free text: indicators are found in it, defanged forms included)."
            ),
            "type": "object",
            "properties": {
                "indicators": {"type": "array", "items": {"type": "string"}},
                "text": {"type": "string"},
                "providers": providers,
                "fresh": {
                    "type": "boolean",
                    "default": False,
                    "description": "Bypass the result cache.",
                },
            },
            "oneOf": [{"required": ["indicators"]}, {"required": ["text"]}],
            "additionalProperties": False,
        },
        "LookupUpload": {
            "title": "LookupUpload",
            "description": (
                "A file of indicators (text or CSV, read line by line) in the part `file` "
                "(a part named `text`, or any part with a file name, is read the same way)."
            ),
            "type": "object",
            "properties": {
                "file": {"type": "string", "contentMediaType": "text/plain"},
                "providers": {
                    "type": "string",
                    "description": "Comma-separated provider names.",
                    "examples": ["dns,whois"],
                },
                "fresh": {
                    "type": "string",
                    "description": "`1`, `true`, `on` or `yes` bypass the result cache.",
                    "examples": ["true"],
                },
            },
            "required": ["file"],
        },
        "LookupLinks": {
            "title": "LookupLinks",
            "type": "object",
            "properties": {
                "self": {"type": "string"},
                "events": {"type": "string"},
                "csv": {"type": "string"},
            },
            "required": ["self", "events", "csv"],
        },
        "JobProviders": {
            "title": "JobProviders",
            "description": "Per indicator kind, the providers that answer for it.",
            "type": "object",
            "propertyNames": {"enum": KINDS},
            "additionalProperties": {"type": "array", "items": PROVIDER},
        },
        "LookupCreated": {
            "title": "LookupCreated",
            "description": (
                "The job is stored and one request per indicator published; results arrive "
                "as providers answer (follow `links`)."
            ),
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": _job_id_pattern()},
                "indicators": {"type": "array", "items": ref("JobIndicator")},
                "rejected": _REJECTED,
                "rejected_total": _REJECTED_TOTAL,
                "providers": ref("JobProviders"),
                "links": ref("LookupLinks"),
            },
            "required": ["id", "indicators", "rejected", "rejected_total", "providers", "links"],
        },
        "IndicatorVerdict": {
            "title": "IndicatorVerdict",
            "description": (
                "An indicator with its overall verdict: the first of "
                f"{', '.join(OVERALL_VERDICTS)} that its results count as. A `done` result "
                "counts with its verdict; an `error` or `quota_exhausted` one (it could not "
                "be checked) as `error`; a `pending` or `queued` one as `pending`; a "
                "`not_configured` one not at all. So `error` is the verdict when every "
                "provider that applies failed, and never hides behind `unknown`."
            ),
            "allOf": [ref("JobIndicator")],
            "properties": {
                "verdict": {"enum": OVERALL_VERDICTS},
                "verdict_reasons": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": (
                        "Why: each provider whose result gave the verdict, with its summary "
                        "or, for `error`, its error (`VirusTotal: 9/74 engines`, `WHOIS: "
                        "cannot connect: Connection refused (RDAP, WHOIS)`). When no result "
                        "counts, the providers not configured, with why."
                    ),
                    "examples": [["VirusTotal: 9/74 engines", "AbuseIPDB: score 100"]],
                },
            },
            "required": ["verdict", "verdict_reasons"],
        },
        "LookupJob": {
            "title": "LookupJob",
            "description": (
                "A lookup job with one result per indicator and provider (`pending` until "
                "the provider answered); `complete` once nothing is pending or queued."
            ),
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "created_at": {"type": "string"},
                "request_id": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "description": (
                        "The request that created the job (the `X-Request-Id` answered by "
                        "`POST /api/v1/lookups`); the providers log it with each lookup."
                    ),
                },
                "complete": {"type": "boolean"},
                "providers": ref("JobProviders"),
                "rejected": _REJECTED,
                "rejected_total": _REJECTED_TOTAL,
                "indicators": {"type": "array", "items": ref("IndicatorVerdict")},
                "results": {"type": "array", "items": ref("LookupResult")},
            },
            "required": [
                "id",
                "created_at",
                "request_id",
                "complete",
                "providers",
                "rejected",
                "rejected_total",
                "indicators",
                "results",
            ],
        },
    }


def _notification_schemas() -> dict[str, JSON]:
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
                "`retrying` (see `last_error`, `next_attempt_at`), `dead` (dead-lettered)."
            ),
            "type": "object",
            "properties": {
                "state": {"enum": DELIVERY_STATES},
                "attempts": {"type": "integer", "minimum": 0},
                "last_error": {"type": ["string", "null"]},
                "next_attempt_at": {"type": ["string", "null"]},
                "updated_at": {"type": "string"},
            },
            "required": ["state", "attempts"],
        },
        "NotificationState": {
            "title": "NotificationState",
            "description": (
                "A notification and its state per target; `state` is the worst of its "
                "targets' (dead, retrying, pending, delivered, skipped)."
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
                "Newest first (by `received_at`); `total` counts every match before `limit`."
            ),
            "type": "object",
            "properties": {
                "notifications": {"type": "array", "items": ref("NotificationState")},
                "total": {"type": "integer", "minimum": 0},
            },
            "required": ["notifications", "total"],
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


def _deadletter_schemas() -> dict[str, JSON]:
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
                "raw": {"type": "string", "maxLength": deadletters_api.RAW_PREVIEW},
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


def _json_content(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema_name: str = "Error", headers: JSON | None = None) -> JSON:
    answer: JSON = {"description": description, "content": _json_content(ref(schema_name))}
    if headers:
        answer["headers"] = headers
    return answer


_REQUEST_ID: Final[JSON] = {
    "description": "The request's id (the sender's `X-Request-Id` when it gave a sane one).",
    "schema": {"type": "string"},
}
_REQUEST_ID_HEADERS: Final[JSON] = {"X-Request-Id": _REQUEST_ID}
_REQUEST_ID_PARAM: Final[JSON] = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "Kept as the request id (at most 128 printable ASCII).",
    "schema": {"type": "string", "maxLength": 128},
}
_RETRY_AFTER: Final[JSON] = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_BEARER: Final[list[JSON]] = [{"bearerAuth": []}, {"sessionCookie": []}]
_UNAUTHORIZED: Final = (
    "Missing or invalid bearer token, or an expired web-UI session (only when "
    "`LOOKOUT_API_TOKENS` is set)."
)
_FORBIDDEN: Final = (
    "A browser request from another site, or a web-UI session request without its "
    f"`{ui.CSRF_HEADER}` header."
)
_BUS_DOWN: Final = (
    "The message bus is unavailable, or JetStream refused or did not answer the read or "
    "write (the reason says which); retry later. Never a 500."
)
_WRONG_HOST: Final = (
    "The `Host` header names neither a loopback name (`localhost`, `127.0.0.1`, `[::1]`) nor "
    "one of `LOOKOUT_ALLOWED_HOSTS` (checked without API tokens, or when that variable is "
    "set): a request for another name may be a DNS rebinding attack."
)
_TOO_LARGE: Final = (
    "Body larger than `LOOKOUT_MAX_JSON_BYTES` (never more than `LOOKOUT_MAX_BODY_BYTES`)."
)
_TOO_LARGE_MESSAGE: Final = (
    "a message larger than one NATS message holds (its envelope may take the server's "
    f"`max_payload`, 1 MiB by default, less {schemas.ENVELOPE_RESERVE} bytes)"
)
ID_PATTERN: Final = "^[!-~](?:[ -~]*[!-~])?$"
"""A notification id lookout keeps (:func:`shared.relay.schemas.notification_id`)."""
_RATE_LIMITED: Final = (
    "Over this client's rate limit: `LOOKOUT_API_RATE` requests per second with bursts of "
    "`LOOKOUT_API_BURST`, per API token, web-UI session, or else remote address (refused "
    "requests count too), in each gateway process. Retry after `Retry-After` seconds."
)


def _api_op(
    operation_id: str, summary: str, description: str, tag: str, responses: JSON, **extra: Any
) -> JSON:
    """An ``/api/v1`` operation: bearer auth, 401, 421, 429 and 503 answers (and 403 and 413
    for one that takes a body)."""
    answers: JSON = {**responses, "401": _answer(_UNAUTHORIZED), "421": _answer(_WRONG_HOST)}
    if "requestBody" in extra:
        answers["403"] = _answer(_FORBIDDEN)
        answers.setdefault("413", _answer(_TOO_LARGE))
    answers["429"] = _answer(_RATE_LIMITED, "RateLimited", {"Retry-After": _RETRY_AFTER})
    answers.setdefault("503", _answer(_BUS_DOWN))
    return {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "security": _BEARER,
        **extra,
        "responses": answers,
    }


def _webhook_path() -> JSON:
    request_id = _REQUEST_ID_HEADERS
    return {
        "post": {
            "operationId": "sqreenWebhook",
            "tags": ["webhooks"],
            "summary": "Receive Sqreen notifications",
            "description": (
                "The body as Sqreen sends it: a JSON array of up to 1000 messages (v2 with "
                "`message_type` and `message`, or v1 with `sqreen_payload_type`), or a single "
                "message object. Each message becomes one notification on "
                "`notification.sqreen.<type>`; the answer is 200 only after JetStream "
                "stored every one. A message re-sent by Sqreen keeps its id and is stored "
                "once. Not behind API tokens: the signature authenticates it."
            ),
            "security": [],
            "parameters": [
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
                _REQUEST_ID_PARAM,
            ],
            "requestBody": {
                "required": True,
                "content": _json_content(
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
            "responses": {
                "200": _answer("Every message is stored.", "WebhookAccepted", request_id),
                "400": _answer(
                    f"Malformed JSON, not UTF-8, nested more than {jsondata.MAX_DEPTH} levels "
                    "deep, an unknown message shape, or an id no header can carry (control "
                    "characters, other than printable ASCII, a leading or trailing space). "
                    "The reason names the message.",
                    headers=request_id,
                ),
                "401": _answer("Bad or missing signature.", headers=request_id),
                "413": _answer(
                    f"Body larger than `LOOKOUT_MAX_BODY_BYTES`, or {_TOO_LARGE_MESSAGE}: "
                    "`message N is X bytes; the bus stores at most Y bytes per message`. "
                    "Nothing of the body is stored.",
                    headers=request_id,
                ),
                "503": _answer(
                    "The bus is unavailable or did not store every message, or "
                    "`SQREEN_WEBHOOK_SECRET` is not configured: retry later.",
                    headers={**request_id, "Retry-After": _RETRY_AFTER},
                ),
            },
        }
    }


def _operations_paths() -> JSON:
    def status_schema(value: str) -> JSON:
        return {
            "type": "object",
            "properties": {"status": {"const": value}},
            "required": ["status"],
        }

    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["operations"],
                "summary": "Liveness",
                "description": "The process is alive (says nothing about NATS).",
                "security": [],
                "responses": {
                    "200": {"description": "Alive.", "content": _json_content(status_schema("ok"))}
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "summary": "Readiness",
                "description": (
                    "Connected to NATS, the JetStream API answers, its streams exist, and "
                    "every stream the API reads answers a direct get (the reads make no "
                    "consumer): a bus that would refuse the API's work is not ready."
                ),
                "security": [],
                "responses": {
                    "200": {
                        "description": "Ready.",
                        "content": _json_content(status_schema("ready")),
                    },
                    "503": _answer(
                        "Not ready, with the reason: not connected to NATS, a stream "
                        "missing, or JetStream refusing or not answering reads."
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Prometheus metrics",
                "description": "Prometheus text exposition format.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "tags": ["documentation"],
                "summary": "This document",
                "description": (
                    f"The OpenAPI document (public, no token). `{DOCS_PATH}` renders it."
                ),
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": _json_content({"type": "object"}),
                    }
                },
            }
        },
    }


def _lookup_paths() -> JSON:
    job_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The job id from `POST /api/v1/lookups`.",
        "schema": {"type": "string", "pattern": _job_id_pattern()},
    }
    not_found = _answer("No such job (or it expired, after `LOOKOUT_JOB_TTL`).")
    request_id = _REQUEST_ID_HEADERS
    return {
        "/api/v1/lookups": {
            "post": _api_op(
                "createLookup",
                "Submit indicators for lookup",
                "Indicators are refanged, normalised, deduplicated and classified (ipv4, ipv6, "
                "domain, url, email); one lookup request per indicator is published and "
                "answered by every provider of its kind. Input that is not an indicator is "
                "listed in `rejected` with a reason; the job is refused only when nothing "
                "could be read, with more than `LOOKOUT_MAX_INDICATORS` indicators, or with "
                "unknown providers. The job keeps the request id (`X-Request-Id`, given or "
                "made), which goes with every lookup request to the providers and into "
                "their log lines.",
                "lookups",
                {
                    "202": _answer("The job is created.", "LookupCreated", request_id),
                    "400": _answer(
                        "Nothing could be read, too many indicators, unknown providers, "
                        "malformed JSON or a multipart body without a file.",
                        "LookupError",
                        request_id,
                    ),
                    "413": _answer(
                        "A JSON body larger than `LOOKOUT_MAX_JSON_BYTES`, or an upload "
                        "larger than `LOOKOUT_MAX_BODY_BYTES`.",
                        headers=request_id,
                    ),
                    "503": _answer(
                        "The message bus is unavailable or did not store every lookup "
                        "request; retry later.",
                        headers=request_id,
                    ),
                },
                parameters=[_REQUEST_ID_PARAM],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref("LookupInput")},
                        "multipart/form-data": {
                            "schema": ref("LookupUpload"),
                            "encoding": {"file": {"contentType": "text/plain, text/csv"}},
                        },
                    },
                },
            )
        },
        "/api/v1/providers": {
            "get": _api_op(
                "listProviders",
                "The lookup providers",
                "Every provider lookout runs, in the order of the web UI's columns: its name "
                "(for `providers` of `POST /api/v1/lookups`), how people call it and the "
                "indicator kinds it answers for.",
                "lookups",
                {"200": _answer("The providers.", "Providers")},
            )
        },
        "/api/v1/lookups/{id}": {
            "get": _api_op(
                "getLookup",
                "A lookup job and its results",
                "One result per indicator and provider, `pending` until the provider answered.",
                "lookups",
                {"200": _answer("The job.", "LookupJob"), "404": not_found},
                parameters=[job_id],
            )
        },
        "/api/v1/lookups/{id}/events": {
            "get": _api_op(
                "lookupEvents",
                "A lookup job's results as server-sent events",
                "Every result stored so far, then each new one as it lands: `event: result` "
                "with a `LookupResult` as `data`; finally `event: done` with the indicators "
                "and their overall verdicts (`IndicatorVerdict` list) once nothing is "
                "pending. A comment line (`: keep-alive`) is sent every 15 s of silence. "
                "The job is loaded and followed before the stream begins, so an unknown "
                "job is a 404 and a bus that refuses the read a 503, both as JSON. "
                "When the gateway shuts down, an open stream ends at once with "
                "`event: shutdown` (after `retry: 1000`): reconnect, to another replica or "
                "to the restarted gateway.",
                "lookups",
                {
                    "200": {
                        "description": "The event stream.",
                        "content": {
                            "text/event-stream": {
                                "schema": {"type": "string"},
                                "example": 'event: result\ndata: {"job_id": "…"}\n\n',
                            }
                        },
                    },
                    "404": not_found,
                },
                parameters=[job_id],
            )
        },
        "/api/v1/lookups/{id}.csv": {
            "get": _api_op(
                "lookupCsv",
                "A lookup job as CSV",
                "One row per indicator: `indicator`, `kind`, `scope`, `verdict`, "
                "`verdict_reasons` (joined with `; `), then `<provider>_status`, "
                "`<provider>_verdict`, `<provider>_summary` (an error's cause when it failed) "
                "per provider. "
                "Cells a spreadsheet would run as a formula are prefixed with `'`.",
                "lookups",
                {
                    "200": {
                        "description": "The CSV file (`Content-Disposition: attachment`).",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    "404": not_found,
                },
                parameters=[job_id],
            )
        },
    }


def _notification_paths() -> JSON:
    return {
        "/api/v1/notifications": {
            "get": _api_op(
                "listNotifications",
                "Recent notifications and their delivery state per target",
                "Newest first, from the delivery records the sinks keep (7 days).",
                "notifications",
                {
                    "200": _answer("The notifications.", "NotificationList"),
                    "400": _answer(
                        f"`limit` is not a whole number from 1 to {notifications.MAX_LIST}."
                    ),
                },
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": f"At most this many (1…{notifications.MAX_LIST}).",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": notifications.MAX_LIST,
                            "default": notifications.DEFAULT_LIST,
                        },
                    },
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "description": "Only notifications in this (overall) state.",
                        "schema": {"enum": DELIVERY_STATES},
                    },
                ],
            ),
            "post": _api_op(
                "postNotification",
                "Publish any system's alert",
                "Routed to the targets like a Sqreen notification. Other systems may instead "
                "publish on `notification.<source>.<type>` directly (see the AsyncAPI "
                "document). Answered after the JetStream acknowledgement. The request id "
                "(`X-Request-Id`, given or made) goes with the message into the sinks' log "
                "lines; a notification that no target's route takes is stored all the same, "
                "with a warning and `lookout_notifications_unrouted_total`.",
                "notifications",
                {
                    "202": _answer("Stored.", "NotificationAccepted", _REQUEST_ID_HEADERS),
                    "400": _answer(
                        "Malformed JSON, not UTF-8, nested more than "
                        f"{jsondata.MAX_DEPTH} levels deep, a missing or unknown field, a "
                        "`source`/`type` that is not a lower-case subject token, or an `id` "
                        "no header can carry.",
                        headers=_REQUEST_ID_HEADERS,
                    ),
                    "413": _answer(
                        f"A body larger than `LOOKOUT_MAX_JSON_BYTES`, or {_TOO_LARGE_MESSAGE}: "
                        "`data is X bytes; the bus stores at most Y bytes per message`.",
                        headers=_REQUEST_ID_HEADERS,
                    ),
                    "503": _answer(
                        "The message bus is unavailable or did not store it; retry later.",
                        headers=_REQUEST_ID_HEADERS,
                    ),
                },
                parameters=[_REQUEST_ID_PARAM],
                requestBody={"required": True, "content": _json_content(ref("NotificationInput"))},
            ),
        },
        "/api/v1/notifications/{id}": {
            "get": _api_op(
                "getNotification",
                "One notification's delivery state per target",
                "When several sources used the same id, every one of them is listed.",
                "notifications",
                {
                    "200": {
                        "description": "The notification.",
                        "content": _json_content(
                            {"anyOf": [ref("NotificationState"), ref("NotificationsWithId")]}
                        ),
                    },
                    "404": _answer("No delivery recorded for that notification yet."),
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
            )
        },
    }


def _deadletter_paths() -> JSON:
    target = {
        "name": "target",
        "in": "path",
        "required": True,
        "description": "A target's name.",
        "schema": {"type": "string", "pattern": NAME_RE.pattern},
    }
    bad_name = "Not a target name (lower-case letters, digits, `_` and `-`, at most 63)."
    return {
        "/api/v1/deadletters": {
            "get": _api_op(
                "listDeadLetterTargets",
                "Dead-letter counts per target",
                "Every configured target, and any other that still has dead letters.",
                "deadletters",
                {"200": _answer("The targets.", "DeadLetterTargets")},
            )
        },
        "/api/v1/deadletters/{target}": {
            "get": _api_op(
                "listDeadLetters",
                "A target's dead letters",
                "Newest first, as `lookout deadletters list TARGET` shows them.",
                "deadletters",
                {
                    "200": _answer("The dead letters.", "DeadLetterList"),
                    "400": _answer(f"{bad_name} Or `limit` is not a number."),
                    "404": _answer("No such target configured, and no dead letters for it."),
                },
                parameters=[
                    target,
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": f"At most this many (1…{deadletters_api.MAX_LIMIT}).",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": deadletters_api.MAX_LIMIT,
                            "default": deadletters_api.DEFAULT_LIMIT,
                        },
                    },
                ],
            )
        },
        "/api/v1/deadletters/{target}/replay": {
            "post": _api_op(
                "replayDeadLetters",
                "Replay dead letters to their target",
                "Delivered again to that target only (other targets are not re-sent "
                "anything), exactly as `lookout deadletters replay` does; a replayed dead "
                "letter leaves the list and comes back as a new one if the target fails again.",
                "deadletters",
                {
                    "200": _answer("What was replayed.", "ReplayResult"),
                    "400": _answer(f"{bad_name} Or not exactly one of `id` or `all`."),
                    "404": _answer("No such target configured, or nothing matches."),
                },
                parameters=[target],
                requestBody={"required": True, "content": _json_content(ref("ReplayInput"))},
            )
        },
    }


def openapi() -> JSON:
    """The OpenAPI 3.1 document of the gateway's HTTP API."""
    components = _struct_schemas(
        [lookup_schemas.LookupResult, lookup_schemas.JobIndicator, indicators.Rejected]
    )
    components["LookupResult"]["description"] = (
        "What one provider found for one indicator (the `lookup-result/1` message schema)."
    )
    components["LookupResult"]["properties"]["kind"]["enum"] = KINDS
    components["LookupResult"]["properties"]["provider"].update(PROVIDER)
    components["JobIndicator"]["properties"]["kind"]["enum"] = KINDS
    components["JobIndicator"]["properties"]["scope"]["enum"] = SCOPES
    for part in (
        _error_schemas,
        _webhook_schemas,
        _lookup_schemas,
        _notification_schemas,
        _deadletter_schemas,
    ):
        components.update(part())
    memory_docs.openapi_components(components)
    paths: JSON = {
        "/webhooks/sqreen": _webhook_path(),
        **_lookup_paths(),
        **_notification_paths(),
        **_deadletter_paths(),
        **_operations_paths(),
    }
    for path, method, operation in memory_docs.openapi_operations():
        paths.setdefault(path, {})[method] = _api_op(**operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lookout gateway",
            "version": API_VERSION,
            "summary": "Host lookups and a durable security-alert relay, on NATS JetStream.",
            "description": _INTRO,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "this gateway"}],
        "tags": [
            {"name": "webhooks", "description": "Signed notifications from Sqreen."},
            {"name": "lookups", "description": "Host lookups: submit, follow, export."},
            {"name": "notifications", "description": "Alerts from any system; delivery state."},
            {"name": "deadletters", "description": "What targets gave up on; replays."},
            {"name": memory_docs.TAG, "description": memory_docs.TAG_DESCRIPTION},
            {"name": "operations", "description": "Health, readiness, metrics."},
            {"name": "documentation", "description": "These documents (public)."},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "One of the tokens in `LOOKOUT_API_TOKENS`. Enforced on `/api/v1/*` "
                        "only when tokens are configured."
                    ),
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": ui.SESSION_COOKIE,
                    "description": (
                        "The web UI's session, opened by logging in at `/login` with an API "
                        f"token; a state-changing request also needs `{ui.CSRF_HEADER}`."
                    ),
                },
            },
        },
    }


# -------------------------------------------------------------------------------- AsyncAPI

_ASYNC_INTRO = """\
The NATS JetStream subjects lookout's services talk through. Services talk to each other
only through these subjects; any outside system may publish notifications and read results.

Every message is JSON and carries its schema version in the `Lookout-Schema` header
(e.g. `notification/1`); `Nats-Msg-Id` makes JetStream store a re-sent message once
(within the stream's duplicate window). Streams: `NOTIFICATIONS` (notification.>, replay.>;
7 days), `DEADLETTERS` (deadletter.>; 30 days), `LOOKUPS` (lookup.requested.>; 1 day),
`LOOKUP_RESULTS` (lookup.result.>; 1 day). Lookup results are also kept in the KV bucket
`lookup_results` under `<job id>.<indicator key>.<provider>`.

Generated by `python -m services.gateway.apidocs asyncapi` from the `schemas.py` of
`shared/relay` and `shared/lookups`.
"""


def _header(description: str, *, const: str | None = None, pattern: str | None = None) -> JSON:
    schema: JSON = {"type": "string", "description": description}
    if const is not None:
        schema["const"] = const
    if pattern is not None:
        schema["pattern"] = pattern
    return schema


def _headers(
    schema_version: str,
    msg_id: str | None,
    more: JSON | None = None,
    required: Sequence[str] = (),
) -> JSON:
    properties: JSON = {
        messages.SCHEMA_HEADER: _header("Schema name and version.", const=schema_version)
    }
    names = [messages.SCHEMA_HEADER]
    if msg_id is not None:
        properties["Nats-Msg-Id"] = _header(f"JetStream deduplication id: {msg_id}.")
        names.append("Nats-Msg-Id")
    properties.update(more or {})
    return {"type": "object", "properties": properties, "required": [*names, *required]}


_EXAMPLE_NOTIFICATION: Final = schemas.Notification(
    id="t-1",
    type="security_event",
    source="sqreen",
    timestamp="2026-11-21T10:00:00Z",
    data=msgspec.Raw(b'{"message_type":"security_event","message":{"id":"t-1","risk":42}}'),
)
_EXAMPLE_JOB: Final = "0194c9a1b2c3d4e5f6a7b8c9"
_EXAMPLE_REQUEST: Final = lookup_schemas.LookupRequest(
    job_id=_EXAMPLE_JOB,
    indicator="example.com",
    kind="domain",
    host="example.com",
    registered_domain="example.com",
    requested_at="2026-11-21T10:00:00.000Z",
)
_EXAMPLE_RESULT: Final = lookup_schemas.LookupResult(
    job_id=_EXAMPLE_JOB,
    indicator="example.com",
    kind="domain",
    provider="dns",
    status="done",
    verdict="unknown",
    summary="A, MX, NS",
    data={"host": "example.com", "records": {"A": ["192.0.2.10"]}},
    updated_at="2026-11-21T10:00:01.000Z",
)
_EXAMPLE_DEADLETTER: Final = schemas.DeadLetter(
    target="ops-http",
    subject="notification.sqreen.security_event",
    error="HTTP 410: gone",
    attempts=1,
    failed_at="2026-11-21T10:00:02.000Z",
    stream_seq=7,
    notification=_EXAMPLE_NOTIFICATION,
)


def _example(name: str, headers: dict[str, str], payload: msgspec.Struct) -> JSON:
    payload_json: JSON = msgspec.json.decode(messages.encode(payload))
    return {"name": name, "headers": headers, "payload": payload_json}


def _messages() -> JSON:
    note = _EXAMPLE_NOTIFICATION
    request = _EXAMPLE_REQUEST
    return {
        "Notification": {
            "name": "Notification",
            "title": "Notification",
            "summary": "An alert to relay to every target whose route matches it.",
            "description": (
                "`id` identifies the notification for its whole life: the JetStream "
                "`Nats-Msg-Id` (prefixed with the source), the `webhook-id` of every HTTP "
                "delivery and the idempotency key of targets. `source` and `type` should "
                "equal the subject's tokens; `data` is the original alert, unchanged. What "
                "the gateway stores every target can deliver; a direct publisher should "
                "keep to the same: an `id` of printable ASCII (one with a control character "
                "is dead-lettered at once), `data` in UTF-8 nested at most "
                f"{jsondata.MAX_DEPTH} levels deep, and the whole message at most the "
                f"server's `max_payload` less {schemas.ENVELOPE_RESERVE} bytes (room for "
                "the dead letter that may wrap it)."
            ),
            "contentType": "application/json",
            "headers": _headers(
                schemas.NOTIFICATION_SCHEMA,
                "`<source>:<id>`",
                {
                    messages.REQUEST_ID_HEADER: _header(
                        "The HTTP request that carried it in (gateway only)."
                    )
                },
            ),
            "payload": ref("Notification"),
            "examples": [
                _example(
                    "sqreen",
                    {
                        messages.SCHEMA_HEADER: schemas.NOTIFICATION_SCHEMA,
                        "Nats-Msg-Id": note.msg_id,
                    },
                    note,
                )
            ],
        },
        "Replay": {
            "name": "Replay",
            "title": "Replayed notification",
            "summary": "A dead-lettered notification sent again to one target only.",
            "contentType": "application/json",
            "headers": _headers(
                schemas.NOTIFICATION_SCHEMA,
                "`replay:<target>:<dead-letter sequence>`",
                {
                    ORIGINAL_SUBJECT_HEADER: _header(
                        "The notification's own subject, `notification.<source>.<type>`."
                    )
                },
                required=[ORIGINAL_SUBJECT_HEADER],
            ),
            "payload": ref("Notification"),
            "examples": [
                _example(
                    "replay",
                    {
                        messages.SCHEMA_HEADER: schemas.NOTIFICATION_SCHEMA,
                        "Nats-Msg-Id": "replay:ops-http:7",
                        ORIGINAL_SUBJECT_HEADER: note.subject,
                    },
                    note,
                )
            ],
        },
        "LookupRequest": {
            "name": "LookupRequest",
            "title": "Lookup request",
            "summary": "One indicator of one lookup job, for every provider of its kind.",
            "description": (
                "`providers` empty means every provider that handles the kind; `fresh` "
                "bypasses the cache. `host` is what DNS/WHOIS query (a URL's host, an "
                "e-mail's domain); `scope` is the address scope for IPs."
            ),
            "contentType": "application/json",
            "headers": _headers(
                lookup_schemas.LOOKUP_REQUEST_SCHEMA,
                "`<job id>:<indicator key>`",
                {
                    messages.REQUEST_ID_HEADER: _header(
                        "The request that created the job: the `X-Request-Id` of "
                        "`POST /api/v1/lookups` (or a `lookout lookup` run's own id); "
                        "the providers log it with the lookup."
                    )
                },
            ),
            "payload": ref("LookupRequest"),
            "examples": [
                _example(
                    "domain",
                    {
                        messages.SCHEMA_HEADER: lookup_schemas.LOOKUP_REQUEST_SCHEMA,
                        "Nats-Msg-Id": f"{request.job_id}:{request.key}",
                        messages.REQUEST_ID_HEADER: "0f3c5a9d2b7e41c81a",
                    },
                    request,
                )
            ],
        },
        "LookupResult": {
            "name": "LookupResult",
            "title": "Lookup result",
            "summary": "What one provider found for one indicator.",
            "description": (
                "`retry_at`: for `queued`, when the request is expected to go out; for "
                "`quota_exhausted`, when the quota resets. Also kept in the KV bucket "
                "`lookup_results`, which the API and the CLI read."
            ),
            "contentType": "application/json",
            "headers": _headers(lookup_schemas.LOOKUP_RESULT_SCHEMA, None),
            "payload": ref("LookupResult"),
            "examples": [
                _example(
                    "dns",
                    {messages.SCHEMA_HEADER: lookup_schemas.LOOKUP_RESULT_SCHEMA},
                    _EXAMPLE_RESULT,
                )
            ],
        },
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "Dead letter",
            "summary": "A notification a target gave up on, with why and how often.",
            "description": (
                "`notification` is the notification; `raw` instead holds the original bytes "
                "(as text) when the message was not a valid notification at all. "
                "`stream_seq` is its sequence in the NOTIFICATIONS stream."
            ),
            "contentType": "application/json",
            "headers": _headers(
                schemas.DEADLETTER_SCHEMA, "`<target>:<NOTIFICATIONS stream sequence>`"
            ),
            "payload": ref("DeadLetter"),
            "examples": [
                _example(
                    "http-410",
                    {
                        messages.SCHEMA_HEADER: schemas.DEADLETTER_SCHEMA,
                        "Nats-Msg-Id": "ops-http:7",
                    },
                    _EXAMPLE_DEADLETTER,
                )
            ],
        },
    }


def _channel(
    address: str,
    description: str,
    message: str,
    stream: str,
    parameters: JSON,
) -> JSON:
    return {
        "address": address,
        "description": description,
        "parameters": parameters,
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        "x-jetstream-stream": stream,
    }


def _channels() -> JSON:
    target = {"target": {"description": "A configured target's name.", "examples": ["ops-http"]}}
    return {
        "lookupRequested": _channel(
            "lookup.requested.{kind}",
            "Lookup requests, one per indicator of a job. Every provider has its own durable "
            "consumer `provider-<provider>` on the whole stream, so every provider sees "
            "every request; replicas of one provider share its consumer.",
            "LookupRequest",
            lookup_streams.LOOKUPS,
            {"kind": {"description": "The indicator's kind.", "enum": KINDS}},
        ),
        "lookupResult": _channel(
            "lookup.result.{provider}",
            "Lookup results, one per indicator and provider.",
            "LookupResult",
            lookup_streams.LOOKUP_RESULTS,
            {"provider": {"description": "The provider that answered (its name, e.g. `dns`)."}},
        ),
        "notification": _channel(
            "notification.{source}.{type}",
            "Notifications to relay. Every target has its own durable consumer "
            "`sink-<target>`; any system may publish its own alerts here.",
            "Notification",
            streams.NOTIFICATIONS,
            {
                "source": {
                    "description": "Who sent it: a lower-case token ([a-z0-9_-]).",
                    "examples": ["sqreen"],
                },
                "type": {
                    "description": "Its type: a lower-case token ([a-z0-9_-]).",
                    "examples": ["security_event"],
                },
            },
        ),
        "replay": _channel(
            "replay.{target}",
            "A dead-lettered notification replayed by `lookout deadletters replay`; only "
            "that target's consumer reads it, with a fresh attempt count.",
            "Replay",
            streams.NOTIFICATIONS,
            target,
        ),
        "deadletter": _channel(
            "deadletter.{target}",
            "Notifications a target gave up on (after its last attempt, or at once on a "
            "permanent failure); `lookout deadletters list|replay TARGET` reads them.",
            "DeadLetter",
            streams.DEADLETTERS,
            target,
        ),
    }


def _operation(
    action: str, channel: str, message: str, service: str, summary: str, description: str
) -> JSON:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "description": description,
        "tags": [{"name": service}],
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
    }


def _operations() -> JSON:
    return {
        "gatewaySendLookupRequest": _operation(
            "send",
            "lookupRequested",
            "LookupRequest",
            "gateway",
            "Publish one request per indicator of a new job",
            "`POST /api/v1/lookups` and `lookout lookup` store the job in the KV bucket "
            "`lookup_jobs`, then publish; the answer comes after every JetStream ack.",
        ),
        "providerReceiveLookupRequest": _operation(
            "receive",
            "lookupRequested",
            "LookupRequest",
            "provider",
            "Look an indicator up",
            "Pulled from the durable consumer `provider-<provider>`; acknowledged after the "
            "result is stored. Requests for kinds or providers it does not handle are acked.",
        ),
        "providerSendLookupResult": _operation(
            "send",
            "lookupResult",
            "LookupResult",
            "provider",
            "Publish a result",
            "Written to the KV bucket `lookup_results` first, then published.",
        ),
        "consumerReceiveLookupResult": _operation(
            "receive",
            "lookupResult",
            "LookupResult",
            "external",
            "Follow results",
            "For outside consumers of the LOOKUP_RESULTS stream; lookout's own API, UI and "
            "CLI read the KV bucket `lookup_results` instead.",
        ),
        "gatewaySendNotification": _operation(
            "send",
            "notification",
            "Notification",
            "gateway",
            "Publish a verified notification",
            "The Sqreen webhook and `POST /api/v1/notifications` publish, and answer 2xx "
            "only after the JetStream ack. Any other system may publish here too.",
        ),
        "sinkReceiveNotification": _operation(
            "receive",
            "notification",
            "Notification",
            "sink",
            "Deliver a notification to a target",
            "Pulled from the durable consumer `sink-<target>`; acknowledged after the target "
            "accepted it, after it was dead-lettered, or at once when the route does not "
            "match. Retries are negative acknowledgements with a delay.",
        ),
        "cliSendReplay": _operation(
            "send",
            "replay",
            "Replay",
            "cli",
            "Replay a dead letter to its target",
            "`lookout deadletters replay TARGET`; the dead letter is removed once stored.",
        ),
        "sinkReceiveReplay": _operation(
            "receive",
            "replay",
            "Replay",
            "sink",
            "Deliver a replayed notification",
            "Read by the target's own consumer only (its filter is `replay.<target>`).",
        ),
        "sinkSendDeadLetter": _operation(
            "send",
            "deadletter",
            "DeadLetter",
            "sink",
            "Give up on a notification",
            "After the last attempt, or at once on a permanent failure or an undecodable "
            "message; the notification is acknowledged only after this is stored.",
        ),
        "cliReceiveDeadLetter": _operation(
            "receive",
            "deadletter",
            "DeadLetter",
            "cli",
            "List dead letters",
            "`lookout deadletters list TARGET` reads the DEADLETTERS stream.",
        ),
    }


def asyncapi() -> JSON:
    """The AsyncAPI 3.0 document of lookout's NATS subjects."""
    document = _asyncapi()
    memory_docs.extend_asyncapi(document)
    return document


def _asyncapi() -> JSON:
    components = _struct_schemas(
        [
            schemas.Notification,
            schemas.DeadLetter,
            lookup_schemas.LookupRequest,
            lookup_schemas.LookupResult,
        ]
    )
    components["Notification"]["properties"]["data"]["description"] = (
        "The original alert, unchanged (any JSON value)."
    )
    components["LookupResult"]["properties"]["kind"]["enum"] = KINDS
    components["LookupResult"]["properties"]["provider"].update(PROVIDER)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "lookout NATS subjects",
            "version": API_VERSION,
            "description": _ASYNC_INTRO,
            "license": {"name": "Apache-2.0"},
            "tags": [
                {"name": "gateway", "description": "services/gateway"},
                {"name": "provider", "description": "services/providers/<provider>"},
                {"name": "sink", "description": "services/sinks/<type>, one per target"},
                {"name": "cli", "description": "the lookout command"},
                {"name": "external", "description": "any other system on the bus"},
            ],
        },
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": (
                    "The embedded nats-server of `lookout run` (port `LOOKOUT_NATS_PORT`), "
                    "or the servers in `NATS_URL`."
                ),
            }
        },
        "defaultContentType": "application/json",
        "channels": _channels(),
        "operations": _operations(),
        "components": {"schemas": components, "messages": _messages()},
    }


def asyncapi_text() -> str:
    """The AsyncAPI document as committed in ``docs/asyncapi.json``."""
    return json.dumps(asyncapi(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------- serving


@functools.cache
def openapi_bytes() -> bytes:
    return msgspec.json.encode(openapi())


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


async def openapi_json(_request: web.Request) -> web.Response:
    return web.Response(
        body=openapi_bytes(),
        content_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )


async def docs_page(_request: web.Request) -> web.Response:
    return web.Response(
        body=_static("apidocs.html"),
        content_type="text/html",
        charset="utf-8",
        headers=_DOCS_HEADERS,
    )


async def docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _ASSETS.get(name)
    if content_type is None:  # pragma: no cover - the route's pattern allows only these
        raise web.HTTPNotFound()
    return web.Response(
        body=_static(name), content_type=content_type, charset="utf-8", headers=_DOCS_HEADERS
    )


def setup(app: web.Application) -> None:
    """Serve the documents from the main application: call it before the ``/api/``
    sub-application is added, so they are public (no bearer-token middleware)."""
    app.router.add_get(OPENAPI_PATH, hosts.guarded(openapi_json))
    app.router.add_get(DOCS_PATH, hosts.guarded(docs_page))
    app.router.add_get(DOCS_PATH + r"/{name:apidocs\.(?:js|css)}", hosts.guarded(docs_asset))


def main(argv: Sequence[str]) -> int:
    usage = "usage: python -m services.gateway.apidocs {openapi|asyncapi}\n"
    if len(argv) != 1 or argv[0] not in ("openapi", "asyncapi"):
        sys.stderr.write(usage)
        return 2
    if argv[0] == "asyncapi":
        sys.stdout.write(asyncapi_text())
    else:
        sys.stdout.write(json.dumps(openapi(), indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
