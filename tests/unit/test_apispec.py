"""The toolkit route modules document their operations with (issue 13: API documents beside
their handlers): what a module declares is what the assembled OpenAPI document says."""

from __future__ import annotations

import pytest
from aiohttp import web

from services.gateway import apidocs, lookups
from services.gateway.apispec import Operations, answer, path_pattern, ref


async def _handler(_request: web.Request) -> web.Response:
    return web.Response()


def test_the_decorator_records_the_operation_and_keeps_the_handler() -> None:
    docs = Operations("things", "Things.")
    operation = docs.api("getThing", "A thing", "One thing.", {"200": answer("It.", "Thing")})
    decorated = docs.get("/api/v1/things/{id}", operation)(_handler)
    assert decorated is _handler  # routes are registered as before, wrappers and all
    assert docs.paths == {"/api/v1/things/{id}": {"get": operation}}
    with pytest.raises(ValueError, match="is documented twice"):
        docs.get("/api/v1/things/{id}", operation)(_handler)
    docs.post("/api/v1/things/{id}", docs.public("postThing", "Post", "Post.", {}))(_handler)
    assert list(docs.paths["/api/v1/things/{id}"]) == ["get", "post"]


def test_an_api_operation_gets_the_answers_every_api_route_gives() -> None:
    docs = Operations("things", "Things.")
    read = docs.api("getThing", "A thing", "One thing.", {"200": answer("It.", "Thing")})
    assert read["tags"] == ["things"]
    assert {"bearerAuth": []} in read["security"]
    assert set(read["responses"]) == {"200", "401", "421", "429", "503"}
    assert "Retry-After" in read["responses"]["429"]["headers"]
    body = {"required": True, "content": {"application/json": {"schema": ref("Thing")}}}
    write = docs.api("postThing", "Post", "Post.", {"200": answer("Done.")}, requestBody=body)
    assert {"403", "413"} <= set(write["responses"])
    public = docs.public("ping", "Ping", "Pong.", {"200": {"description": "pong"}})
    assert public["security"] == []
    assert set(public["responses"]) == {"200"}


def test_components_are_built_when_the_document_is() -> None:
    docs = Operations("things", "Things.")
    calls = []

    @docs.components
    def _schemas() -> dict[str, object]:
        calls.append(1)
        return {"Thing": {"type": "object"}}

    assert not calls
    assert docs.schemas() == {"Thing": {"type": "object"}}
    assert calls == [1]


def test_a_route_pattern_is_the_documented_pattern() -> None:
    assert path_pattern(lookups.JOB_ID) == "^[0-9a-f]{8,40}$"
    with pytest.raises(ValueError, match="not a route parameter"):
        path_pattern("{id}")


def test_the_document_is_put_together_from_the_route_modules() -> None:
    document = apidocs.openapi()
    assert [tag["name"] for tag in document["tags"]] == [m.tag for m in apidocs.ROUTE_MODULES]
    for module in apidocs.ROUTE_MODULES:
        for path, methods in module.paths.items():
            for method, operation in methods.items():
                assert document["paths"][path][method] == operation
        for name, schema in module.schemas().items():
            assert document["components"]["schemas"][name] == schema
    # Every call is a new copy: a caller changing it changes nothing for the next.
    document["paths"]["/healthz"]["get"]["summary"] = "changed"
    document["components"]["schemas"]["Error"]["title"] = "changed"
    again = apidocs.openapi()
    assert again["paths"]["/healthz"]["get"]["summary"] == "Liveness"
    assert again["components"]["schemas"]["Error"]["title"] == "Error"
