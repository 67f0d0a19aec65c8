"""The memory's API documents agree with its code (the routes themselves are checked
against the served app, with schemathesis, by tests/integration/test_openapi.py)."""

from __future__ import annotations

import msgspec

from services.gateway import apidocs, memory
from shared.lookups import watches


def test_the_watch_input_is_what_the_handler_decodes() -> None:
    schema = apidocs.openapi()["components"]["schemas"]["WatchInput"]
    fields = {f.encode_name for f in msgspec.structs.fields(watches.WatchInput)}
    assert set(schema["properties"]) == fields
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"indicators", "every"}


def test_every_memory_route_is_documented_under_its_tag() -> None:
    paths = apidocs.openapi()["paths"]
    documented = {
        (method, path)
        for path, item in paths.items()
        for method, op in item.items()
        if op.get("tags") == ["memory"]
    }
    assert documented == {
        ("get", "/api/v1/indicators/{value}"),
        ("post", "/api/v1/indicators/seen"),
        ("get", "/api/v1/lookups"),
        ("post", "/api/v1/watches"),
        ("get", "/api/v1/watches"),
        ("delete", "/api/v1/watches/{id}"),
    }
    assert "post" in paths["/api/v1/lookups"]  # next to the job submission, not instead
    limit = next(p for p in paths["/api/v1/lookups"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == memory.MAX_LIMIT
