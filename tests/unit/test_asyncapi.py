"""The AsyncAPI document of the NATS subjects: committed and current, structurally sound,
covering every stream's subjects, its schemas true to the msgspec Structs."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from services.gateway import apidocs
from shared.bus.messages import REQUEST_ID_HEADER, SCHEMA_HEADER, encode
from shared.lookups import schemas as lookup_schemas
from shared.lookups import streams as lookup_streams
from shared.relay import schemas, streams
from shared.relay.deadletters import ORIGINAL_SUBJECT_HEADER

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.json"
REGENERATE = "python -m services.gateway.apidocs asyncapi > docs/asyncapi.json"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return apidocs.asyncapi()


def test_committed_document_is_current() -> None:
    assert COMMITTED.exists(), f"missing {COMMITTED}: run {REGENERATE}"
    assert COMMITTED.read_text("utf-8") == apidocs.asyncapi_text(), (
        f"docs/asyncapi.json is stale: run {REGENERATE}"
    )


def test_module_prints_the_documents() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.gateway.apidocs", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    asyncapi = run("asyncapi")
    assert asyncapi.returncode == 0, asyncapi.stderr
    assert asyncapi.stdout == apidocs.asyncapi_text()
    openapi = run("openapi")
    assert openapi.returncode == 0, openapi.stderr
    assert json.loads(openapi.stdout) == apidocs.openapi()
    wrong = run("swagger")
    assert wrong.returncode == 2
    assert "usage" in wrong.stderr


# ------------------------------------------------------------------- subjects and streams


def stream_subjects() -> list[str]:
    """Every subject pattern of every ``StreamConfig(...)`` in shared/ (each domain's
    streams.py), read from the source so that a stream added anywhere in it is seen."""
    found: list[str] = []
    for node in (
        node
        for path in sorted((ROOT / "shared").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
    ):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name != "StreamConfig":
            continue
        subjects = [k.value for k in node.keywords if k.arg == "subjects"]
        assert len(subjects) == 1, f"line {node.lineno}: StreamConfig without subjects="
        listed = subjects[0]
        assert isinstance(listed, ast.List), f"line {node.lineno}: subjects is not a list"
        for item in listed.elts:
            literal = f"line {node.lineno}: a subject that is not a string literal"
            assert isinstance(item, ast.Constant), literal
            assert isinstance(item.value, str), literal
            found.append(item.value)
    return found


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more at the end. A ``*`` in
    ``subject`` (a channel parameter) is covered only by a wildcard in ``pattern``."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or token not in ("*", have[i]):
            return False
    return len(want) == len(have)


def channel_subjects(doc: dict[str, Any]) -> dict[str, str]:
    return {
        name: re.sub(r"\{[^}]+\}", "*", channel["address"])
        for name, channel in doc["channels"].items()
    }


def test_subject_matching() -> None:
    assert matches("notification.>", "notification.*.*")
    assert matches("replay.>", "replay.*")
    assert not matches("notification.>", "notification")
    assert not matches("lookup.result.>", "lookup.requested.*")
    assert not matches("a.b", "a.*")
    assert matches("a.*", "a.*")


def test_every_stream_subject_has_a_channel(doc: dict[str, Any]) -> None:
    patterns = stream_subjects()
    expected = {"notification.>", "replay.>", "deadletter.>"}
    expected |= {"lookup.requested.>", "lookup.result.>"}
    assert expected <= set(patterns), patterns  # the AST walk finds them all
    channels = channel_subjects(doc)
    uncovered = [p for p in patterns if not any(matches(p, s) for s in channels.values())]
    assert not uncovered, f"stream subjects without an AsyncAPI channel: {uncovered}"
    unstored = [n for n, s in channels.items() if not any(matches(p, s) for p in patterns)]
    assert not unstored, f"channels no stream stores: {unstored}"


def test_channels_name_their_streams(doc: dict[str, Any]) -> None:
    names = {
        streams.NOTIFICATIONS,
        streams.DEADLETTERS,
        lookup_streams.LOOKUPS,
        lookup_streams.LOOKUP_RESULTS,
        lookup_streams.RECENT_LOOKUPS,
    }
    for name, channel in doc["channels"].items():
        assert channel["x-jetstream-stream"] in names, name
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {
        "lookup.requested.{kind}",
        "lookup.result.{provider}",
        "lookup.created",
        "notification.{source}.{type}",
        "replay.{target}",
        "deadletter.{target}",
    }


# ------------------------------------------------------------------------------ structure


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict), f"unresolvable $ref {ref}"
        assert part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def test_structure(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(doc["info"])
    assert all(s["protocol"] == "nats" for s in doc["servers"].values())
    for ref in refs(doc):
        resolve(doc, ref)
    for name, channel in doc["channels"].items():
        in_address = set(re.findall(r"\{([^}]+)\}", channel["address"]))
        assert in_address == set(channel.get("parameters", {})), name
        for parameter in channel["parameters"].values():
            # AsyncAPI 3.0 parameters are not schemas: only these fields.
            assert set(parameter) <= {"enum", "default", "description", "examples", "location"}
        assert channel["messages"], name
    actions: dict[str, set[str]] = {}
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        channel = channel_ref.removeprefix("#/channels/")
        actions.setdefault(channel, set()).add(operation["action"])
        assert operation["messages"], name
        for message in operation["messages"]:
            # 3.0: an operation's messages are the channel's own.
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), name
    # Every channel has both a sender and a receiver.
    assert actions == {name: {"send", "receive"} for name in doc["channels"]}
    for name, message in doc["components"]["messages"].items():
        assert message["contentType"] == "application/json", name
        assert message["headers"]["type"] == "object", name
        jsonschema.Draft7Validator.check_schema(message["headers"])


def _validate(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    rooted = {**schema, "components": doc["components"]}
    jsonschema.Draft202012Validator(rooted).validate(instance)


def test_headers_are_the_ones_the_code_sets(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    versions = {
        "Notification": schemas.NOTIFICATION_SCHEMA,
        "Replay": schemas.NOTIFICATION_SCHEMA,
        "LookupRequest": lookup_schemas.LOOKUP_REQUEST_SCHEMA,
        "LookupResult": lookup_schemas.LOOKUP_RESULT_SCHEMA,
        "DeadLetter": schemas.DEADLETTER_SCHEMA,
        "JobCreated": lookup_schemas.LOOKUP_CREATED_SCHEMA,
    }
    assert set(messages) == set(versions)
    for name, version in versions.items():
        headers = messages[name]["headers"]
        assert headers["properties"][SCHEMA_HEADER]["const"] == version, name
        deduplicated = name != "LookupResult"
        assert ("Nats-Msg-Id" in headers["required"]) is deduplicated, name
    for name in ("Notification", "LookupRequest", "JobCreated"):  # the gateway's request id
        assert REQUEST_ID_HEADER in messages[name]["headers"]["properties"], name
        assert REQUEST_ID_HEADER not in messages[name]["headers"]["required"], name
    assert ORIGINAL_SUBJECT_HEADER in messages["Replay"]["headers"]["required"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc, messages["Notification"]["headers"], {SCHEMA_HEADER: "x/9"})


# ------------------------------------------------------------------------------- payloads


def test_examples_validate(doc: dict[str, Any]) -> None:
    for name, message in doc["components"]["messages"].items():
        assert message["examples"], name
        for example in message["examples"]:
            _validate(doc, message["headers"], example["headers"])
            _validate(doc, message["payload"], example["payload"])


def _payload(doc: dict[str, Any], message: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["components"]["messages"][message]["payload"]
    return schema


def test_real_messages_validate_and_bad_ones_do_not(doc: dict[str, Any]) -> None:
    note = schemas.Notification(
        id="a", type="test", source="sqreen", timestamp="t", data=msgspec.Raw(b"[1]")
    )
    encoded = {
        "Notification": note,
        "DeadLetter": schemas.DeadLetter(
            target="t", subject="s", error="e", attempts=3, failed_at="t", stream_seq=1, raw="x"
        ),
        "LookupRequest": lookup_schemas.LookupRequest(
            job_id="j", indicator="192.0.2.1", kind="ipv4"
        ),
        "LookupResult": lookup_schemas.LookupResult(
            job_id="j",
            indicator="192.0.2.1",
            kind="ipv4",
            provider="abuseipdb",
            status="quota_exhausted",
            retry_at="2026-01-01T00:00:00Z",
            error="daily quota used up",
        ),
        "JobCreated": lookup_schemas.JobCreated(
            id="j", created_at="t", indicators=1, sample=["192.0.2.1"], scheduled=True, watch="w"
        ),
    }
    for message, struct in encoded.items():
        _validate(doc, _payload(doc, message), json.loads(encode(struct)))
    bad = {
        "Notification": {"id": "", "type": "t", "source": "s", "timestamp": "t", "data": 1},
        "DeadLetter": {"target": "t", "subject": "s", "error": "e", "attempts": "3"},
        "LookupRequest": {"job_id": "j", "indicator": "x", "kind": "mac"},
        "LookupResult": {"job_id": "j", "indicator": "x", "kind": "ipv4", "provider": "dns"},
        "JobCreated": {"id": "j", "created_at": "t", "indicators": "1"},
    }
    for message, instance in bad.items():
        with pytest.raises(jsonschema.ValidationError):
            _validate(doc, _payload(doc, message), instance)


def test_payload_schemas_come_from_the_structs(doc: dict[str, Any]) -> None:
    components = doc["components"]["schemas"]
    for struct in (
        schemas.Notification,
        schemas.DeadLetter,
        lookup_schemas.LookupRequest,
        lookup_schemas.LookupResult,
        lookup_schemas.JobCreated,
    ):
        fields = {f.encode_name for f in msgspec.structs.fields(struct)}
        schema = components[struct.__name__]
        assert set(schema["properties"]) == fields, struct.__name__
        required = {
            f.encode_name
            for f in msgspec.structs.fields(struct)
            if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
        }
        assert set(schema["required"]) == required, struct.__name__
