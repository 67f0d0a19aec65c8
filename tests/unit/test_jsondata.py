"""shared.core.jsondata: the JSON the gateway accepts, and how a sink reads it back; notification
ids (shared.relay.schemas.notification_id) and delivery-status keys (shared.relay.status.key)."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core import jsondata
from shared.relay import schemas, status


def depth(value: Any) -> int:
    """The nesting of arrays and objects in ``value`` (a scalar is 0 deep)."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


# strings full of what could fool a bracket count: brackets, quotes, backslashes, escapes
_tricky = st.text(alphabet='[]{}"\\/ab\u00e9\U0001f6a8\n', max_size=6)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _tricky,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_tricky, children),
    max_leaves=40,
)


@given(_values, st.integers(0, 12), st.booleans())
def test_too_deep_is_exact_for_any_json(value: Any, limit: int, pretty: bool) -> None:
    body = json.dumps(value, indent=1 if pretty else None, ensure_ascii=False).encode()
    assert jsondata.too_deep(body, limit) == (depth(value) > limit)


@pytest.mark.parametrize("levels", [1, 2, 127, 128, 129, 1000, 100_000])
def test_too_deep_at_and_around_the_limit(levels: int) -> None:
    arrays = b"[" * levels + b"]" * levels
    objects = b'{"a":' * levels + b"1" + b"}" * levels
    mixed = b'[{"a":' * (levels // 2) + b"0" + b"}]" * (levels // 2)
    assert jsondata.too_deep(arrays) == (levels > jsondata.MAX_DEPTH)
    assert jsondata.too_deep(objects) == (levels > jsondata.MAX_DEPTH)
    assert jsondata.too_deep(mixed) == (levels // 2 * 2 > jsondata.MAX_DEPTH)


def test_brackets_in_strings_do_not_count() -> None:
    text = '["' + "[" * 500 + '\\"' + "{" * 500 + '"]'
    assert not jsondata.too_deep(text.encode())
    assert json.loads(text)  # it is JSON


def test_check_refuses_what_is_not_utf8_or_too_deep() -> None:
    jsondata.check('{"a": "\u00e9\U0001f6a8"}'.encode())
    jsondata.check(b"[" * 128 + b"]" * 128)
    with pytest.raises(jsondata.JsonError, match="not UTF-8"):
        jsondata.check(b'{"a": "\xff"}')
    with pytest.raises(jsondata.JsonError, match="not UTF-8"):
        jsondata.check(b'{"a": "\xed\xa0\x80"}')  # an encoded lone surrogate
    with pytest.raises(jsondata.JsonError, match="nested more than 128 levels deep"):
        jsondata.check(b"[" * 129 + b"]" * 129)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"1e999", "1e999"),
        (b"[-1E+999, 1e-999, 1.5, 2]", ["-1E+999", 0.0, 1.5, 2]),
        (b'{"n": ' + b"7" * 5000 + b', "m": 1}', {"n": "7" * 5000, "m": 1}),
        (b'{"risk": 80, "a": [1e400]}', {"risk": 80, "a": ["1e400"]}),
        (b'{"plain": [1, 2.5, "x", null, true]}', {"plain": [1, 2.5, "x", None, True]}),
    ],
)
def test_load_reads_numbers_python_cannot_hold_as_their_text(text: bytes, expected: Any) -> None:
    assert jsondata.load(text) == expected
    assert jsondata.load(msgspec.Raw(text)) == expected


@pytest.mark.parametrize("text", [b"{not json", b"NaN", b'[1e999, "\xff"]', b"[" * 5000])
def test_load_says_what_it_cannot_read(text: bytes) -> None:
    with pytest.raises(jsondata.JsonError):
        jsondata.load(text)


# ------------------------------------------------------------------------ notification ids


@pytest.mark.parametrize(
    "ident", ["a", "4f2b8c1d-9e0a", "thread@2026-01-02T03:04:05Z", "with inner space", "x" * 256]
)
def test_an_id_is_kept_whole(ident: str) -> None:
    assert schemas.notification_id(ident) == ident


def test_a_long_id_is_replaced_by_a_hash_of_all_of_it() -> None:
    common = "m" * 300
    first = schemas.notification_id(common + "a")
    second = schemas.notification_id(common + "b")
    assert first != second
    assert first == schemas.notification_id(common + "a")  # a re-send is recognised
    assert re.fullmatch("sha256-[0-9a-f]{64}", first)
    assert len(schemas.notification_id("x" * 257)) == 71


@pytest.mark.parametrize(
    ("ident", "reason"),
    [
        ("", "empty"),
        ("a\r\nb", "control character"),
        ("a\x00", "control character"),
        ("a\tb", "control character"),
        ("a\x7f", "control character"),
        ("x" * 300 + "\n", "control character"),
        ("caf\u00e9", "printable ASCII"),
        ("a\u2028b", "printable ASCII"),
        (" a", "space"),
        ("a ", "space"),
        ("   ", "space"),
    ],
)
def test_an_id_no_header_can_carry_is_refused(ident: str, reason: str) -> None:
    with pytest.raises(schemas.IdError, match=reason):
        schemas.notification_id(ident)


def note(source: str, ident: str = "x") -> schemas.Notification:
    return schemas.Notification(
        id=ident, type="t", source=source, timestamp="2026-01-01T00:00:00Z", data=msgspec.Raw(b"{}")
    )


def test_delivery_status_key_includes_the_source() -> None:
    keys = {status.key(note(source), "ops") for source in ("sqreen", "other", "Other", "a.b c")}
    assert len(keys) == 4
    prefix = status.notification_key("x")
    assert status.key(note("sqreen"), "ops") == f"{prefix}.sqreen.ops"
    for key in keys:  # every record of one id stays under its prefix, each a KV-safe key
        assert key.startswith(prefix + ".")
        assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", key)
        assert len(key.split(".")) == 3
