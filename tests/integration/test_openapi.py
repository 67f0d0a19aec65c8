"""The OpenAPI document: valid OpenAPI 3.1, covers every route of the real app, public, and
true to the live gateway (schemathesis against a real nats-server; real answers validated
against the documented schemas)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis
import jsonschema
import msgspec
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from dnsserver import ZoneServer
from helpers import (
    api,
    make_settings,
    post_webhook,
    running_gateway,
    running_provider,
    running_sink,
    sqreen_fixture,
    wait_for,
    wait_job,
)
from openapi_spec_validator import validate as validate_openapi
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from services.gateway import (
    additions,
    apidocs,
    apilimit,
    deadletters_api,
    hardening,
    lookups,
    notifications,
    webhook,
)
from services.gateway.app import create_app
from shared.core.natsserver import NatsServer
from shared.relay import silences

TOKEN = "openapi-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# Routes that are not part of the HTTP API: the web UI's pages and files, and the docs page.
UNDOCUMENTED_PATHS = {"/", "/notifications", "/silences", "/login", "/logout", "/watches"}
UNDOCUMENTED_PREFIXES = ("/static/", "/api/docs", "/indicator/")


def doc() -> dict[str, Any]:
    return apidocs.openapi()


# ------------------------------------------------------------------ the document and routes


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route of ``app`` and its sub-applications; the
    HEAD that aiohttp adds to every GET is left out."""
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        info = resource.get_info()
        sub = info.get("app")
        if isinstance(sub, web.Application):
            found |= app_routes(sub)  # canonical paths already carry the prefix
            continue
        methods = {route.method for route in resource}
        for method in methods:
            if method == "HEAD" and "GET" in methods:
                continue
            found.add((method, resource.canonical))
    return found


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def exempt(path: str) -> bool:
    return path in UNDOCUMENTED_PATHS or any(
        path == prefix.rstrip("/") or path.startswith(prefix) for prefix in UNDOCUMENTED_PREFIXES
    )


def coverage_problems(app: web.Application, document: dict[str, Any]) -> list[str]:
    routes = {r for r in app_routes(app) if not exempt(r[1])}
    ops = documented(document)
    problems = [
        f"undocumented route: {method} {path}  (add it to its module's DOCS, beside the "
        "handler; a new route module goes in services/gateway/apidocs.py ROUTE_MODULES)"
        for method, path in sorted(routes - ops, key=lambda r: (r[1], r[0]))
    ]
    problems += [
        f"documented but not served: {method} {path}"
        for method, path in sorted(ops - routes, key=lambda r: (r[1], r[0]))
    ]
    return problems


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    # No bus is needed to build the app (it connects in the background once started).
    settings = make_settings(tmp_path, "nats://127.0.0.1:1", LOOKOUT_API_TOKENS=TOKEN)
    return create_app(settings)


def test_document_is_valid_openapi_3_1() -> None:
    document = doc()
    assert document["openapi"].startswith("3.1.")
    validate_openapi(document)  # raises with the first problem
    ids = [
        op["operationId"]
        for item in document["paths"].values()
        for method, op in item.items()
        if method in METHODS
    ]
    assert len(ids) == len(set(ids)), "operationId must be unique"
    # The served bytes are the document.
    assert json.loads(apidocs.openapi_bytes()) == document


def test_security_is_documented_per_operation() -> None:
    document = doc()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            if path.startswith("/api/v1/"):
                assert {"bearerAuth": []} in op["security"], where
                assert "401" in op["responses"], where
            else:
                assert op["security"] == [], f"{where} is public: say so with security: []"
    assert "public" in document["info"]["description"]


def _schema_of(document: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    schema = answer["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def test_rate_limit_and_body_size_answers_are_documented() -> None:
    """Every operation behind the /api limiter lists 429 (with Retry-After), every one that
    takes a body lists 413; both with the bodies the gateway really sends."""
    document = doc()
    limited = apilimit.too_many(2.5)
    limited_body = json.loads(limited.body)  # type: ignore[arg-type]
    assert limited.headers["Retry-After"] == "3"
    too_large = json.loads(hardening.too_large(1024).body)  # type: ignore[arg-type]
    seen = {"429": 0, "413": 0}
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            answers = op["responses"]
            # the documents are served by the main app, outside the limiter
            if path.startswith("/api/") and path != apidocs.OPENAPI_PATH:
                assert "429" in answers, f"{where}: no 429 (rate limit)"
                assert "Retry-After" in answers["429"]["headers"], where
                schema = _schema_of(document, answers["429"])
                jsonschema.Draft202012Validator(schema).validate(limited_body)
                with pytest.raises(jsonschema.ValidationError):  # the Error schema, extended
                    jsonschema.Draft202012Validator(schema).validate({"retry_after": 3})
                seen["429"] += 1
            else:
                assert "429" not in answers, f"{where} is never rate-limited"
            if "requestBody" in op:
                assert "413" in answers, f"{where}: takes a body, no 413"
                schema = _schema_of(document, answers["413"])
                jsonschema.Draft202012Validator(schema).validate(too_large)
                seen["413"] += 1
    assert seen["429"] >= 10
    assert seen["413"] >= 4  # the webhook, lookups, notifications, replays


def test_every_route_is_documented(app: web.Application) -> None:
    problems = coverage_problems(app, doc())
    assert not problems, "OpenAPI document and routes differ:\n  " + "\n  ".join(problems)


def test_route_check_catches_an_undocumented_route(app: web.Application) -> None:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v1/brand-new/{thing}", handler)
    app.router.add_post("/webhooks/other", handler)
    problems = coverage_problems(app, doc())
    assert "undocumented route: GET /api/v1/brand-new/{thing}  (add it to" in problems[0]
    assert any("POST /webhooks/other" in p for p in problems)
    trimmed = doc()
    del trimmed["paths"]["/healthz"]
    trimmed["paths"]["/api/v1/gone"] = {"get": {"responses": {}}}
    problems = coverage_problems(app, trimmed)
    assert any("undocumented route: GET /healthz" in p for p in problems)
    assert "documented but not served: GET /api/v1/gone" in problems


def app_handlers(app: web.Application) -> dict[tuple[str, str], Any]:
    """(METHOD, path template) → the handler, unwrapped (``hosts.guarded``,
    ``with_request_id``), of every route of ``app`` and its sub-applications."""
    found: dict[tuple[str, str], Any] = {}
    for resource in app.router.resources():
        sub = resource.get_info().get("app")
        if isinstance(sub, web.Application):
            found |= app_handlers(sub)
            continue
        for route in resource:
            if route.method != "HEAD":
                found[(route.method, resource.canonical)] = inspect.unwrap(route.handler)
    return found


def test_each_operation_is_documented_beside_its_handler(app: web.Application) -> None:
    """Issue 13: a route's operation is declared by the module of its handler (its
    ``DOCS``), not in a document kept elsewhere."""
    elsewhere = []
    for (method, path), handler in sorted(app_handlers(app).items()):
        if exempt(path):
            continue
        module = sys.modules[handler.__module__]
        docs = getattr(module, "DOCS", None)
        if docs is None or method.lower() not in docs.paths.get(path, {}):
            elsewhere.append(f"{method} {path}: not in {module.__name__}.DOCS")
    assert not elsewhere, "\n".join(elsewhere)
    assert "sqreenWebhook" in json.dumps(webhook.DOCS.paths)  # a method bound per app too


def test_provider_schema_is_what_the_api_answers() -> None:
    """The `Provider` schema lists every field `GET /api/v1/providers` gives, all required:
    a field added to the answer is documented beside it."""
    schema = doc()["components"]["schemas"]["Provider"]
    from shared.core import settings as config

    given = lookups.provider_list(config.load({}))
    assert given, "the launcher registered the providers"
    for provider in given:
        assert set(schema["properties"]) == set(provider), provider["name"]
        jsonschema.Draft202012Validator({**schema, "components": doc()["components"]}).validate(
            provider
        )
    assert set(schema["required"]) == set(schema["properties"])


def _field_names(struct: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(struct)}


def test_request_schemas_match_what_the_handlers_decode() -> None:
    schemas = doc()["components"]["schemas"]
    pairs = {
        "LookupInput": lookups._Input,
        "NotificationInput": notifications._Incoming,
        "ReplayInput": deadletters_api._Replay,
        "IndicatorsInput": additions._Added,
        "SilenceInput": silences.SilenceInput,
    }
    for name, struct in pairs.items():
        assert set(schemas[name]["properties"]) == _field_names(struct), name
        assert schemas[name]["additionalProperties"] is False, name


async def test_docs_are_public_and_csp_clean(app: web.Application) -> None:
    async with TestClient(TestServer(app)) as client:
        # The API itself still wants the token …
        answer = await client.get("/api/v1/notifications")
        assert answer.status == 401
        # … the documents do not.
        answer = await client.get(apidocs.OPENAPI_PATH)
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert await answer.json() == doc()

        page = await client.get(apidocs.DOCS_PATH)
        assert page.status == 200
        assert page.content_type == "text/html"
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        html = await page.text()
        # Nothing inline: no <script> body, no <style>, no style= or on*= attributes.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
        assert "<style" not in html
        assert not re.search(r"\s(style|on[a-z]+)\s*=", html), "inline style or handler"
        assert not re.search(r"(src|href)=\"(https?:)?//", html), "nothing from elsewhere"
        assets = re.findall(r"(?:src|href)=\"(docs/[^\"]+)\"", html)
        assert sorted(assets) == ["docs/apidocs.css", "docs/apidocs.js"]
        for asset, content_type in (
            ("apidocs.js", "text/javascript"),
            ("apidocs.css", "text/css"),
        ):
            # Relative to /api/docs, as the browser resolves them.
            answer = await client.get(f"/api/docs/{asset}")
            assert answer.status == 200, asset
            assert answer.content_type == content_type
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
        script = (apidocs.STATIC / "apidocs.js").read_text()
        for unsafe in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "eval(", "new Function"):
            assert unsafe not in script, unsafe
        assert 'fetch("openapi.json"' in script
        assert (await client.get("/api/docs/other.js")).status == 401  # not ours: the API's


# --------------------------------------------------------------- against the live gateway

ZONE = """
$ORIGIN example.com.
$TTL 600
@        IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300
@        IN NS  ns1.example.com.
@        IN A   192.0.2.10
@        IN MX  10 mail.example.com.
@        IN TXT "v=spf1 mx -all"
mail     IN A   192.0.2.25
"""


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as server:
        yield server


def _examples() -> int:
    """Examples per operation and mode; ``LOOKOUT_SCHEMATHESIS_EXAMPLES`` for a longer run
    (with ``LOOKOUT_SCHEMATHESIS_RANDOM=1`` to explore beyond the fixed examples)."""
    return int(os.environ.get("LOOKOUT_SCHEMATHESIS_EXAMPLES", "20"))


def run_schemathesis(url: str, base: str, examples: int) -> tuple[list[str], int]:
    """Every operation, valid and invalid data, ``not_a_server_error``; (failures, calls).
    Synchronous (schemathesis uses requests): run it off the event loop."""
    schema = schemathesis.openapi.from_url(url, timeout=10)
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=os.environ.get("LOOKOUT_SCHEMATHESIS_RANDOM") != "1",
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=base, headers=AUTH, timeout=10)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): no negative case.
                if mode != schemathesis.GenerationMode.NEGATIVE:
                    raise
            except (Exception, FailureGroup) as exc:  # one line per failing operation and mode
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    return failures, calls


async def test_schemathesis_finds_no_server_error(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS=TOKEN)
    async with running_gateway(settings) as base:
        failures, calls = await asyncio.to_thread(
            run_schemathesis, f"{base}{apidocs.OPENAPI_PATH}", base, _examples()
        )
    assert calls >= len(documented(doc())), "every operation was called"
    assert not failures, "\n\n".join(failures)


class Validator:
    """Check real answers against the document: status and media type documented, and a
    JSON body valid against the documented schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.checked: list[str] = []

    def __call__(
        self, path: str, method: str, status: int, body: Any, media: str = "application/json"
    ) -> None:
        where = f"{method.upper()} {path} → {status}"
        answers = self.document["paths"][path][method]["responses"]
        assert str(status) in answers, f"{where}: status not documented"
        content = answers[str(status)].get("content", {})
        assert media in content, f"{where}: {media} not documented"
        if media == "application/json":
            schema = {**content[media]["schema"], "components": self.document["components"]}
            jsonschema.Draft202012Validator(schema).validate(body)
        self.checked.append(where)


async def test_real_answers_match_documented_schemas(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        LOOKOUT_API_TOKENS=TOKEN,
        LOOKOUT_DNS_NAMESERVERS=zone.nameserver,
        LOOKOUT_DNS_TIMEOUT="1",
    )
    check = Validator(doc())
    async with (
        running_gateway(settings) as base,
        running_provider(settings, "dns"),
        running_sink(settings, "log"),
    ):
        api_base = f"{base}/api/v1"
        check("/healthz", "get", *await api("GET", f"{base}/healthz"))
        check("/readyz", "get", *await api("GET", f"{base}/readyz"))
        status, text = await api("GET", f"{base}/metrics")
        check("/metrics", "get", status, text, "text/plain")

        # Lookups: JSON, multipart, the job, its events and CSV, errors.
        status, created = await api(
            "POST",
            f"{api_base}/lookups",
            TOKEN,
            json={"text": "example[.]com and mail.example.com, not-a-host", "providers": ["dns"]},
        )
        check("/api/v1/lookups", "post", status, created)
        assert status == 202
        form = aiohttp.FormData()
        form.add_field("file", b"example.com\n192.0.2.10\n", filename="hosts.txt")
        form.add_field("providers", "dns")
        check(
            "/api/v1/lookups", "post", *await api("POST", f"{api_base}/lookups", TOKEN, data=form)
        )
        check(
            "/api/v1/lookups",
            "post",
            *await api("POST", f"{api_base}/lookups", TOKEN, json={"indicators": ["%%%"]}),
        )
        check(
            "/api/v1/lookups",
            "post",
            *await api(
                "POST", f"{api_base}/lookups", TOKEN, json={"text": "x", "providers": ["no"]}
            ),
        )
        check("/api/v1/lookups", "post", *await api("POST", f"{api_base}/lookups", json={}))
        job = await wait_job(base, created["id"], token=TOKEN)
        assert any(r["status"] == "done" and r["data"] for r in job["results"])
        check("/api/v1/lookups/{id}", "get", 200, job)
        check(
            "/api/v1/lookups/{id}",
            "get",
            *await api("GET", f"{api_base}/lookups/0123456789abcdef", TOKEN),
        )
        status, csv_text = await api("GET", f"{api_base}/lookups/{created['id']}.csv", TOKEN)
        check("/api/v1/lookups/{id}.csv", "get", status, csv_text, "text/csv")
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.get(f"{api_base}/lookups/{created['id']}/events") as response,
        ):
            check(
                "/api/v1/lookups/{id}/events", "get", response.status, None, response.content_type
            )
            events = _sse(await response.text())
        lookup_result = {"$ref": "#/components/schemas/LookupResult"}
        verdicts = {"type": "array", "items": {"$ref": "#/components/schemas/IndicatorVerdict"}}
        components = {"components": check.document["components"]}
        assert [name for name, _ in events][-1] == "done"
        for name, data in events:
            schema = lookup_result if name == "result" else verdicts
            jsonschema.Draft202012Validator({**schema, **components}).validate(data)

        # Notifications: the webhook, the API, their state per target.
        body = sqreen_fixture("v2_security_event.json")
        check("/webhooks/sqreen", "post", *await post_webhook(base, body))
        check("/webhooks/sqreen", "post", *await post_webhook(base, body, signature="00" * 32))
        check("/webhooks/sqreen", "post", *await post_webhook(base, b"[1,", signature="sign"))
        status, accepted = await api(
            "POST",
            f"{api_base}/notifications",
            TOKEN,
            json={"type": "port_scan", "source": "ids", "data": {"risk": 80}, "id": "ids-1"},
        )
        check("/api/v1/notifications", "post", status, accepted)
        check(
            "/api/v1/notifications",
            "post",
            *await api("POST", f"{api_base}/notifications", TOKEN, json={"type": "X"}),
        )

        async def delivered() -> bool:
            status, listed = await api("GET", f"{api_base}/notifications", TOKEN)
            return status == 200 and any(n["id"] == "ids-1" for n in listed["notifications"])

        await wait_for(delivered)
        check("/api/v1/notifications", "get", *await api("GET", f"{api_base}/notifications", TOKEN))
        check(
            "/api/v1/notifications",
            "get",
            *await api("GET", f"{api_base}/notifications?limit=x", TOKEN),
        )
        check(
            "/api/v1/notifications/{id}",
            "get",
            *await api("GET", f"{api_base}/notifications/ids-1", TOKEN),
        )
        check(
            "/api/v1/notifications/{id}",
            "get",
            *await api("GET", f"{api_base}/notifications/nope", TOKEN),
        )

        # Dead letters.
        check("/api/v1/deadletters", "get", *await api("GET", f"{api_base}/deadletters", TOKEN))
        check(
            "/api/v1/deadletters/{target}",
            "get",
            *await api("GET", f"{api_base}/deadletters/log", TOKEN),
        )
        check(
            "/api/v1/deadletters/{target}/replay",
            "post",
            *await api("POST", f"{api_base}/deadletters/log/replay", TOKEN, json={"all": True}),
        )
        # Silences: made, listed, read, expired, refused.
        silences_url = f"{api_base}/silences"
        status, made = await api(
            "POST", silences_url, TOKEN, json={"matchers": {"source": "ids"}, "duration": "1h"}
        )
        check("/api/v1/silences", "post", status, made)
        check(
            "/api/v1/silences",
            "post",
            *await api("POST", silences_url, TOKEN, json={"matchers": {}, "duration": "1h"}),
        )
        check("/api/v1/silences", "get", *await api("GET", silences_url, TOKEN))
        check("/api/v1/silences", "get", *await api("GET", f"{silences_url}?state=x", TOKEN))
        one = f"{silences_url}/{made['id']}"
        check("/api/v1/silences/{id}", "get", *await api("GET", one, TOKEN))
        check("/api/v1/silences/{id}", "delete", *await api("DELETE", one, TOKEN))
        missing = f"{silences_url}/0b7e1c2a-3d4f-4a5b-8c9d-0e1f2a3b4c5d"
        check("/api/v1/silences/{id}", "get", *await api("GET", missing, TOKEN))
        check("/api/v1/silences/{id}", "delete", *await api("DELETE", missing, TOKEN))
        check("/api/v1/silences/{id}", "delete", *await api("DELETE", f"{silences_url}/x", TOKEN))

        status, document = await api("GET", f"{base}{apidocs.OPENAPI_PATH}")
        check(apidocs.OPENAPI_PATH, "get", status, document)
    assert len(check.checked) >= 25


async def test_real_413_and_429_answers_match_the_document(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Each body-taking /api operation over its size limit, then one request too many:
    the real answers, status, body and headers, are the documented ones."""
    settings = make_settings(
        tmp_path,
        nats_server.url,
        LOOKOUT_API_TOKENS=TOKEN,
        LOOKOUT_MAX_JSON_BYTES="1024",
        LOOKOUT_MAX_BODY_BYTES="4096",
        LOOKOUT_API_RATE="0.01",  # no token back during the test
        LOOKOUT_API_BURST="4",
    )
    check = Validator(doc())
    big_json = {"text": "x" * 2000}
    form = aiohttp.FormData()
    form.add_field("file", b"example.com\n" * 1000, filename="hosts.txt")

    async def send(method: str, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.request(method, url, **kwargs) as response,
        ):
            return response.status, response.headers, await response.json()

    async with running_gateway(settings) as base:
        api_base = f"{base}/api/v1"
        calls = [
            ("/api/v1/lookups", "post", {"json": big_json}),
            ("/api/v1/lookups", "post", {"data": form}),
            ("/api/v1/notifications", "post", {"json": big_json}),
            ("/api/v1/deadletters/{target}/replay", "post", {"json": big_json}),
        ]
        for path, method, kwargs in calls:
            url = base + path.replace("{target}", "log")
            status, headers, body = await send(method.upper(), url, **kwargs)
            assert status == 413, (path, body)
            check(path, method, status, body)
            documented = check.document["paths"][path][method]["responses"]["413"]
            missing = [name for name in documented.get("headers", {}) if name not in headers]
            assert not missing, (path, missing, dict(headers))
        # the burst of 4 is spent: the next request on any route is refused
        for path, url in (
            ("/api/v1/notifications", f"{api_base}/notifications"),
            ("/api/v1/lookups/{id}", f"{api_base}/lookups/0123456789abcdef"),
        ):
            status, headers, body = await send("GET", url)
            assert status == 429, (path, body)
            check(path, "get", status, body)
            documented = check.document["paths"][path]["get"]["responses"]["429"]
            missing = [name for name in documented["headers"] if name not in headers]
            assert not missing, (path, missing, dict(headers))
            assert int(headers["Retry-After"]) == body["retry_after"] >= 1
    assert len(check.checked) == 6


def _sse(text: str) -> list[tuple[str, Any]]:
    """(event, decoded data) of each event in a server-sent-events body."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events
