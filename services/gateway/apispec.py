"""What the gateway's route modules document their operations with (OpenAPI 3.1 pieces).

Each route module declares, beside its handlers, the operations it serves and the schemas
they refer to; :mod:`services.gateway.apidocs` assembles the document from every route
module's :class:`Operations` (its ``ROUTE_MODULES``)::

    DOCS = Operations("lookups", "Host lookups: submit, follow, export.")

    @DOCS.get(
        "/api/v1/lookups/{id}",
        DOCS.api("getLookup", "A lookup job", "…", {"200": answer("The job.", "LookupJob")}),
    )
    async def get_lookup(request: web.Request) -> web.Response: ...

    @DOCS.components
    def _schemas() -> dict[str, JSON]:
        return {"LookupJob": {...}}

The decorator records the documented path (as clients write it: ``/api/v1/…``, a path
parameter without its pattern) and returns the handler unchanged, so it fits a module
function, a method bound per app (the webhook) and a wrapped handler alike; routes are
registered where they always were, and ``tests/integration/test_openapi.py`` checks that
routes and documented operations are the same set.

Here too: the answers and headers every operation shares (errors, request ids, the rate
limit), the building of schemas from msgspec Structs, and the few enumerations both API
documents use (indicator kinds, a provider's name).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, get_args

import msgspec

from services.gateway import ui
from shared.lookups import indicators
from shared.relay import schemas

JSON = dict[str, Any]
Handler = TypeVar("Handler", bound=Callable[..., Any])

API_VERSION: Final = "1.0.0"
"""Version of both documents (the message schemas carry their own, ``Lookout-Schema``)."""

_REF: Final = "#/components/schemas/{name}"

KINDS: Final[list[str]] = list(get_args(indicators.Kind))
PROVIDER: Final[JSON] = {
    "type": "string",
    "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$",
    "description": "A provider's name: `GET /api/v1/providers` lists them (e.g. `dns`).",
}
"""A provider's name. The providers are the launcher's and the deployment's choice, so
the documents name none of them: adding a provider changes neither."""


def ref(name: str) -> JSON:
    """A reference to the component schema ``name``."""
    return {"$ref": _REF.format(name=name)}


def struct_schemas(types: Sequence[type[msgspec.Struct]]) -> dict[str, JSON]:
    """The component schemas of msgspec Structs (and of the Structs they hold)."""
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    return dict(components)


def path_pattern(route: str) -> str:
    """The pattern of an aiohttp route parameter (``{id:[0-9a-f]{8,40}}``) as a JSON
    Schema ``pattern`` (``^[0-9a-f]{8,40}$``): the document accepts what the route does."""
    found = re.fullmatch(r"\{\w+:(.+)\}", route)
    if found is None:
        raise ValueError(f"not a route parameter with a pattern: {route!r}")
    return f"^{found.group(1)}$"


def json_content(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def answer(description: str, schema_name: str = "Error", headers: JSON | None = None) -> JSON:
    """A JSON answer: ``schema_name``'s body (by default an error), with ``headers``."""
    found: JSON = {"description": description, "content": json_content(ref(schema_name))}
    if headers:
        found["headers"] = headers
    return found


# ------------------------------------------------------------- what operations share

REQUEST_ID_HEADERS: Final[JSON] = {
    "X-Request-Id": {
        "description": "The request's id (the sender's `X-Request-Id` when it gave a sane one).",
        "schema": {"type": "string"},
    }
}
"""The header of every answer of an operation that keeps a request id."""
REQUEST_ID_PARAM: Final[JSON] = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "Kept as the request id (at most 128 printable ASCII).",
    "schema": {"type": "string", "maxLength": 128},
}
RETRY_AFTER: Final[JSON] = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
TOO_LARGE_MESSAGE: Final = (
    "a message larger than one NATS message holds (its envelope may take the server's "
    f"`max_payload`, 1 MiB by default, less {schemas.ENVELOPE_RESERVE} bytes)"
)
"""Why a body that fits the HTTP limits is refused all the same (413)."""

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
_COMPRESSED: Final = (
    "A compressed body (`Content-Encoding` other than `identity`): the gateway never "
    "decompresses one. Send it uncompressed."
)
_TOO_LARGE: Final = (
    "Body larger than `LOOKOUT_MAX_JSON_BYTES` (never more than `LOOKOUT_MAX_BODY_BYTES`)."
)
_RATE_LIMITED: Final = (
    "Over this client's rate limit: `LOOKOUT_API_RATE` requests per second with bursts of "
    "`LOOKOUT_API_BURST`, per API token, web-UI session, or else remote address (refused "
    "requests count too), in each gateway process. Retry after `Retry-After` seconds."
)


def error_schemas() -> dict[str, JSON]:
    """The error bodies every operation may answer with."""
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
    }


# ------------------------------------------------------------------ a module's operations


class Operations:
    """The operations one route module serves, each documented beside its handler, and
    the component schemas they refer to; ``tag`` groups them in the document."""

    def __init__(self, tag: str, description: str) -> None:
        self.tag = tag
        self.description = description
        self.paths: dict[str, dict[str, JSON]] = {}
        self._components: list[Callable[[], dict[str, JSON]]] = []

    def get(self, path: str, operation: JSON) -> Callable[[Handler], Handler]:
        """Document the handler it decorates as ``GET path``."""
        return self._record("get", path, operation)

    def post(self, path: str, operation: JSON) -> Callable[[Handler], Handler]:
        """Document the handler it decorates as ``POST path``."""
        return self._record("post", path, operation)

    def delete(self, path: str, operation: JSON) -> Callable[[Handler], Handler]:
        """Document the handler it decorates as ``DELETE path``."""
        return self._record("delete", path, operation)

    def _record(self, method: str, path: str, operation: JSON) -> Callable[[Handler], Handler]:
        def record(handler: Handler) -> Handler:
            methods = self.paths.setdefault(path, {})
            if method in methods:
                raise ValueError(f"{method.upper()} {path} is documented twice")
            methods[method] = operation
            return handler

        return record

    def components(self, build: Callable[[], dict[str, JSON]]) -> Callable[[], dict[str, JSON]]:
        """Register (as a decorator) a function giving the component schemas this module's
        operations refer to; called when the document is assembled."""
        self._components.append(build)
        return build

    def schemas(self) -> dict[str, JSON]:
        found: dict[str, JSON] = {}
        for build in self._components:
            found.update(build())
        return found

    def api(
        self, operation_id: str, summary: str, description: str, responses: JSON, **extra: Any
    ) -> JSON:
        """An ``/api/v1`` operation: bearer auth (or the web UI's session), 401, 421, 429
        and 503 answers (and 403, 413 and 415 for one that takes a body); ``extra`` adds
        ``parameters``, ``requestBody``…"""
        answers: JSON = {**responses, "401": answer(_UNAUTHORIZED), "421": answer(_WRONG_HOST)}
        if "requestBody" in extra:
            answers["403"] = answer(_FORBIDDEN)
            answers.setdefault("413", answer(_TOO_LARGE))
            answers["415"] = answer(_COMPRESSED)
        answers["429"] = answer(_RATE_LIMITED, "RateLimited", {"Retry-After": RETRY_AFTER})
        answers.setdefault("503", answer(_BUS_DOWN))
        return {
            "operationId": operation_id,
            "tags": [self.tag],
            "summary": summary,
            "description": description,
            "security": _BEARER,
            **extra,
            "responses": answers,
        }

    def public(
        self, operation_id: str, summary: str, description: str, responses: JSON, **extra: Any
    ) -> JSON:
        """An operation outside the API tokens (``security: []``): what it answers is all
        in ``responses``."""
        return {
            "operationId": operation_id,
            "tags": [self.tag],
            "summary": summary,
            "description": description,
            "security": [],
            **extra,
            "responses": responses,
        }
