from __future__ import annotations

import hashlib
import hmac
import json

import msgspec
import pytest
from helpers import sqreen_fixture
from hypothesis import given
from hypothesis import strategies as st

from services.gateway import sqreen
from shared.core.secrets import Secret
from shared.relay.schemas import Notification

BODY = b'[{"message_type": "test", "message": {"id": "1"}}]'
SECRETS = sqreen.keys([Secret("current-secret")])


def sig(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_valid_signature_passes() -> None:
    sqreen.verify(BODY, sig(BODY, "current-secret"), SECRETS)
    sqreen.verify(BODY, sig(BODY, "current-secret").upper(), SECRETS)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        (sig(BODY, "wrong-secret"), "does not match"),
        (sig(BODY + b" ", "current-secret"), "does not match"),
        ("z" * 64, "not hexadecimal"),
        (sig(BODY, "current-secret")[:-2], "must be 64 hex"),
        (sig(BODY, "current-secret") + "00", "must be 64 hex"),
    ],
)
def test_bad_signatures_are_rejected(signature: str | None, reason: str) -> None:
    with pytest.raises(sqreen.SignatureError, match=reason):
        sqreen.verify(BODY, signature, SECRETS)


def test_rotated_secrets_both_verify() -> None:
    rotating = sqreen.keys([Secret("old-secret"), Secret("new-secret")])
    sqreen.verify(BODY, sig(BODY, "old-secret"), rotating)
    sqreen.verify(BODY, sig(BODY, "new-secret"), rotating)
    with pytest.raises(sqreen.SignatureError):
        sqreen.verify(BODY, sig(BODY, "older-secret"), rotating)


@pytest.mark.parametrize(
    ("fixture", "types"),
    [
        ("v2_security_event.json", ["security_event", "security_event"]),
        ("v2_test.json", ["test"]),
        ("v2_incidents.json", ["account_takeover", "http_scan", "http_scan"]),
        ("v2_other.json", ["security_response", "pulse"]),
        ("v1_security_event.json", ["security_event", "security_event"]),
        ("v1_other.json", ["test", "pulse", "incident", "security_response"]),
    ],
)
def test_every_documented_shape_parses(fixture: str, types: list[str]) -> None:
    body = sqreen_fixture(fixture)
    notes = [sqreen.parse(i, raw) for i, raw in enumerate(sqreen.split(body, 1000))]
    assert [n.type for n in notes] == types
    assert all(n.source == "sqreen" for n in notes)
    # data is each original message, unchanged
    assert [json.loads(bytes(n.data)) for n in notes] == json.loads(body)
    assert len({n.id for n in notes}) == len(notes)


def test_single_object_is_accepted() -> None:
    one = json.dumps(json.loads(sqreen_fixture("v2_test.json"))[0]).encode()
    [raw] = sqreen.split(one, 1000)
    note = sqreen.parse(0, raw)
    assert note.type == "test"
    assert note.subject == "notification.sqreen.test"


def reparse(message: dict[str, object]) -> str:
    return sqreen.parse(0, msgspec.Raw(json.dumps(message).encode())).id


def test_id_is_stable_when_resent_with_higher_retry_count() -> None:
    for fixture in (
        "v2_security_event.json",
        "v2_incidents.json",
        "v1_other.json",
        "v2_other.json",
    ):
        for message in json.loads(sqreen_fixture(fixture)):
            again = {**message, "retry_count": (message.get("retry_count") or 0) + 3}
            assert reparse(message) == reparse(again)


def test_id_rules() -> None:
    v2 = json.loads(sqreen_fixture("v2_security_event.json"))
    assert reparse(v2[0]) == v2[0]["message_id"]
    assert v2[1]["message_id"] is None
    assert reparse(v2[1]) == v2[1]["message"]["event_id"]
    assert (
        reparse(json.loads(sqreen_fixture("v2_test.json"))[0]) == "4f2b8c1d9e0a47b6a3c5d7e9f1a2b3c4"
    )
    # incident updates of one thread are distinct notifications
    _, scan, update = json.loads(sqreen_fixture("v2_incidents.json"))
    assert scan["message"]["incident_thread"] == update["message"]["incident_thread"]
    assert reparse(scan) != reparse(update)
    assert reparse(scan).startswith(scan["message"]["incident_thread"])
    # no identifier at all: a content hash, which differs when the content does
    bare = {"message_type": "custom", "message": {"x": 1}, "retry_count": 0}
    assert reparse(bare).startswith("sha256-")
    assert reparse(bare) != reparse({**bare, "message": {"x": 2}})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2", "malformed JSON"),
        (b'"text"', "JSON array"),
        (b"[]", "no messages"),
        (b"[1]", "must be a JSON object"),
        (b'[{"hello": "world"}]', "unknown shape"),
        (b'[{"message_type": "test", "message": "flat"}]', "object under 'message'"),
        (b'[{"message_type": "", "message": {}}]', "non-empty string"),
        (b'[{"sqreen_payload_type": 3}]', "non-empty string"),
    ],
)
def test_bad_payloads_are_explained(body: bytes, reason: str) -> None:
    with pytest.raises(sqreen.PayloadError, match=reason):
        [sqreen.parse(i, raw) for i, raw in enumerate(sqreen.split(body, 1000))]


def test_too_many_messages() -> None:
    body = json.dumps([{"message_type": "test", "message": {"id": i}} for i in range(1001)])
    with pytest.raises(sqreen.PayloadError, match="1001 messages"):
        sqreen.split(body.encode(), 1000)
    assert len(sqreen.split(body.encode(), 1001)) == 1001


def test_type_becomes_a_safe_subject_token() -> None:
    note = sqreen.parse(
        0, msgspec.Raw(b'{"message_type": "Weird Type.>*", "message": {"id": "a"}}')
    )
    assert note.subject == "notification.sqreen.weird_type"


# notifications(): the gateway's one-pass reading gives what split() + parse() give.

_FIELDS = (
    "message_id",
    "message_type",
    "sqreen_payload_type",
    "event_id",
    "id",
    "incident_thread",
    "incident_status",
    "date_last_updated",
    "date_created",
    "date_occurred",
    "retry_count",
    "other",
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", " ", "x", "Ab.>"]),
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=2), children, max_size=2)
    ),
    max_leaves=4,
)
_fields = st.dictionaries(st.sampled_from(_FIELDS), _json_values, max_size=6)
_messages = st.one_of(
    _fields,
    st.builds(lambda top, inner: {**top, "message": inner}, _fields, _fields | _json_values),
    _json_values,
)


def _reference(body: bytes, max_messages: int) -> list[Notification] | str:
    try:
        return [sqreen.parse(i, raw) for i, raw in enumerate(sqreen.split(body, max_messages))]
    except sqreen.PayloadError as exc:
        return f"PayloadError: {exc}"


def _one_pass(body: bytes, max_messages: int) -> list[Notification] | str:
    try:
        return sqreen.notifications(body, max_messages)
    except sqreen.PayloadError as exc:
        return f"PayloadError: {exc}"


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # a message without any date gets "now": the same now on both sides
    monkeypatch.setattr(sqreen, "utc_now", lambda: "2026-11-21T00:00:00.000Z")


@pytest.mark.usefixtures("fixed_clock")
@pytest.mark.parametrize(
    "name",
    [
        "v2_security_event.json",
        "v2_test.json",
        "v2_incidents.json",
        "v2_other.json",
        "v1_security_event.json",
        "v1_other.json",
    ],
)
def test_one_pass_reading_equals_split_and_parse_on_every_fixture(name: str) -> None:
    body = sqreen_fixture(name)
    messages = json.loads(body)
    bodies = [
        body,
        b"  \n" + body + b"\r\n ",
        json.dumps(messages[0]).encode(),  # a single object
        json.dumps(messages[:1]).encode(),  # a one-message array
        json.dumps(messages[:1], indent=3).encode(),
    ]
    for each in bodies:
        expected = _reference(each, 1000)
        assert not isinstance(expected, str)
        assert _one_pass(each, 1000) == expected
        assert [bytes(n.data) for n in sqreen.notifications(each, 1000)] == [
            bytes(n.data) for n in expected
        ]
    assert _one_pass(body, len(messages) - 1) == _reference(body, len(messages) - 1)


@pytest.mark.usefixtures("fixed_clock")
@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2",
        b'"text"',
        b"[]",
        b"[1]",
        b'[{"hello": "world"}]',
        b'[{"message_type": "test", "message": "flat"}]',
        b'[{"message_type": "test", "message": null}]',
        b'[{"message_type": "test"}]',
        b'[{"message_type": "", "message": {}}]',
        b'[{"sqreen_payload_type": 3}]',
        b'[{"sqreen_payload_type": "pulse", "message": "v1 may carry any message"}]',
        b'[{"message_type": "test", "message": {"id": 1}}, {"message_type": "test", "message": 2}]',
        b'[{"message_type": "test", "message": {"id": 1}}] trailing',
        # around the array, only JSON's whitespace: bytes.strip() would take more
        b'[{"message_type": "test", "message": {"id": 1}}]\x0c',
        b'\x0b[{"message_type": "test", "message": {"id": 1}}]',
        b'[\x0c{"message_type": "test", "message": {"id": 1}}]',
    ],
)
def test_one_pass_reading_gives_the_same_errors(body: bytes) -> None:
    assert _one_pass(body, 1000) == _reference(body, 1000)


@given(st.lists(_messages, min_size=1, max_size=3), st.sampled_from([1, 2, 1000]))
def test_one_pass_reading_equals_split_and_parse(messages: list[object], limit: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqreen, "utc_now", lambda: "2026-11-21T00:00:00.000Z")
        for body in (json.dumps(messages).encode(), json.dumps(messages[0]).encode()):
            assert _one_pass(body, limit) == _reference(body, limit)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # a duplicate key: the last value counts, as in every JSON reader lookout uses
        (b'{"message_type":"t","message":1,"message":{"id":"a"}}', "a"),
        # a value JSON cannot hold, in a field lookout reads: named, with its place
        (
            b'{"message_type":"t","message":{"id":"a","date_occurred":1e400}}',
            "must be a JSON object (Number out of range - at `$.date_occurred`)",
        ),
        (
            b'{"message_type":"t","date_created":1e400,"message":{"id":"a"}}',
            "must be a JSON object (Number out of range - at `$.date_created`)",
        ),
        # split() has read the JSON before; a direct caller may hand anything
        (b'{"message_type":"t","message":{"id":"a"}', "malformed JSON"),
    ],
)
def test_parse_reads_what_the_one_pass_cannot(raw: bytes, expected: str) -> None:
    try:
        got = sqreen.parse(0, msgspec.Raw(raw)).id
    except sqreen.PayloadError as exc:
        got = str(exc)
    assert expected in got
    body = b"[" + raw + b"]"
    if raw.count(b"{") == raw.count(b"}"):  # well-formed: the webhook's way gives the same
        with pytest.MonkeyPatch.context() as patch:  # one clock for both (no date in it)
            patch.setattr(sqreen, "utc_now", lambda: "2026-11-21T00:00:00.000Z")
            assert _one_pass(body, 10) == _reference(body, 10)


# Issue 12: what every sink can read back, ids kept whole or refused.


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,  # 2 KB: msgspec's RecursionError, a 500, before
        b'[{"message_type": "test", "message": {"x": ' + b"[" * 1000 + b"]" * 1000 + b"}}]",
        b'{"message_type": "test", "message": {"x": ' + b"[" * 127 + b"]" * 127 + b"}}",
        b'[{"message_type": "test", "message": {"x": ' + b"[" * 126 + b"]" * 126 + b"}}]",
    ],
)
def test_json_nested_too_deep_is_a_payload_error(body: bytes) -> None:
    for read in (
        lambda: sqreen.notifications(body, 1000),
        lambda: sqreen.split(body, 1000),
    ):
        with pytest.raises(sqreen.PayloadError, match="nested more than 128 levels deep"):
            read()


def test_json_nested_as_deep_as_allowed_is_read() -> None:
    inner = b"[" * 125 + b"]" * 125
    body = b'[{"message_type": "test", "message": {"x": ' + inner + b"}}]"
    [note] = sqreen.notifications(body, 1000)
    assert note.id.startswith("sha256-")  # the content hash reads it whole


def test_a_body_that_is_not_utf8_is_a_payload_error() -> None:
    body = b'[{"message_type": "test", "message": {"id": "1", "note": "\xff"}}]'
    with pytest.raises(sqreen.PayloadError, match="not UTF-8"):
        sqreen.notifications(body, 1000)


@pytest.mark.usefixtures("fixed_clock")
@pytest.mark.parametrize("shape", ["array", "object"])
def test_numbers_python_cannot_hold_are_accepted_where_lookout_does_not_read(shape: str) -> None:
    message = b'{"message_type": "test", "message": {"id": "n-1", "x": 1e999, "y": ' + (
        b"7" * 5000 + b"}}"
    )
    body = b"[" + message + b"]" if shape == "array" else message
    [note] = sqreen.notifications(body, 1000)
    assert (note.id, bytes(note.data)) == ("n-1", message)


def test_content_hash_of_a_message_with_huge_numbers_tells_them_from_strings() -> None:
    def ident(raw: bytes) -> str:
        return sqreen.parse(0, msgspec.Raw(raw)).id

    number = ident(b'{"message_type": "custom", "message": {"x": 1e999}, "retry_count": 0}')
    text = ident(b'{"message_type": "custom", "message": {"x": "1e999"}, "retry_count": 0}')
    again = ident(b'{"message_type": "custom", "message": {"x": 1e999}, "retry_count": 4}')
    assert number.startswith("sha256-")
    assert number != text
    assert number == again


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"message_id": "a\r\nb"}, "control character"),
        ({"message_id": "a\x00"}, "control character"),
        ({"message_id": "x\n"}, "control character"),  # was cut to "x": one id for two
        ({"message": {"event_id": "e\x1f"}}, "control character"),
        ({"message": {"incident_thread": "t\r"}}, "control character"),
        ({"message": {"incident_thread": "t", "incident_status": "open\n"}}, "control"),
        ({"message_id": "caf\u00e9"}, "printable ASCII"),
        ({"message_id": " x"}, "space"),
    ],
)
def test_an_id_no_header_can_carry_is_refused_naming_the_message(
    message: dict[str, object], reason: str
) -> None:
    fine = {"message_type": "test", "message": {"id": "ok"}}
    bad = {"message_type": "test", "message": {}, **message}
    body = json.dumps([fine, bad]).encode()
    for read in (
        lambda: sqreen.notifications(body, 1000),
        lambda: [sqreen.parse(i, raw) for i, raw in enumerate(sqreen.split(body, 1000))],
    ):
        with pytest.raises(sqreen.PayloadError, match=f"^message 1: id .*{reason}"):
            read()


def test_long_ids_are_hashed_whole_so_a_shared_beginning_is_no_collision() -> None:
    common = "m" * 256
    body = json.dumps(
        [
            {"message_id": common + "-first", "message_type": "test", "message": {}},
            {"message_id": common + "-second", "message_type": "test", "message": {}},
            {"message_id": "m" * 256, "message_type": "test", "message": {}},
        ]
    ).encode()
    first, second, whole = sqreen.notifications(body, 1000)
    assert first.id != second.id
    assert first.id.startswith("sha256-")
    assert second.id.startswith("sha256-")
    assert whole.id == "m" * 256  # at the limit: kept as it is
    again = json.dumps([{"message_id": common + "-first", "message_type": "test", "message": {}}])
    assert sqreen.notifications(again.encode(), 1000)[0].id == first.id
