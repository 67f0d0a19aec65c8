"""What the notification ways in refuse, and what they no longer lose (issue 12, items 7, 9,
10 and 11), against a real nats-server: the gateway's answer, what the stream holds, and
what the sink delivers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from helpers import (
    Receiver,
    api,
    http_target,
    login_nonce,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    wait_for,
)
from nats.js.errors import KeyNotFoundError

from shared.core import jsondata
from shared.core.natsserver import NatsServer
from shared.relay import schemas, status, streams


async def stored(url: str) -> list[schemas.Notification]:
    """Every notification in the NOTIFICATIONS stream."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(streams.NOTIFICATIONS)
        out = []
        for seq in range(info.state.first_seq, info.state.first_seq + info.state.messages):
            msg = await js.get_msg(streams.NOTIFICATIONS, seq)
            assert msg.data is not None
            out.append(schemas.decode_notification(msg.data))
        return out
    finally:
        await nc.close()


def deep(levels: int) -> bytes:
    """A JSON value ``levels`` arrays deep (2 bytes a level)."""
    return b"[" * levels + b"]" * levels


def sqreen_test(ident: str | None = None, **message: Any) -> dict[str, Any]:
    """A Sqreen v2 test message; ``ident`` is its ``message_id``."""
    return {
        "message_id": ident,
        "api_version": "2",
        "date_created": "2026-11-21T10:00:01.000000+00:00",
        "message_type": "test",
        "retry_count": 0,
        "message": {"test": True, **message},
    }


async def post_json(base: str, path: str, body: bytes, token: str | None = None) -> tuple[int, Any]:
    return await api(
        "POST",
        f"{base}{path}",
        token,
        data=body,
        headers={"Content-Type": "application/json"},
        allow_redirects=False,
    )


# ------------------------------------------------------------------- item 7: deep nesting


async def test_deeply_nested_json_is_400_on_every_json_way_in(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    token = "t0ken-abc"
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS=token)
    thousand = deep(1000)  # about 2 KB: msgspec gave up with a RecursionError (a 500)
    limit = jsondata.MAX_DEPTH
    async with running_gateway(settings) as base:
        answers = {
            "webhook array": await post_webhook(base, thousand),
            "webhook message": await post_webhook(
                base, b'[{"message_type": "test", "message": {"x": ' + thousand + b"}}]"
            ),
            "webhook object": await post_webhook(
                base, b'{"message_type": "test", "message": ' + deep(700) + b"}"
            ),
            "webhook one too deep": await post_webhook(
                base, b'[{"message_type": "test", "message": {"x": ' + deep(limit - 2) + b"}}]"
            ),
            "notification": await post_json(
                base,
                "/api/v1/notifications",
                b'{"type": "t", "source": "s", "data": ' + thousand + b"}",
                token,
            ),
            "notification one too deep": await post_json(
                base,
                "/api/v1/notifications",
                b'{"type": "t", "source": "s", "data": ' + deep(limit) + b"}",
                token,
            ),
        }
        # the deepest accepted: the body's own levels included
        deepest_webhook = await post_webhook(
            base,
            b'[{"message_type": "test", "message": {"x": ' + deep(limit - 3) + b"}}]",
        )
        deepest_notification = await post_json(
            base,
            "/api/v1/notifications",
            b'{"type": "t", "source": "s", "data": ' + deep(limit - 1) + b"}",
            token,
        )
        # every other way in that reads JSON: a 4xx, never a 500
        others = {
            "lookups": await post_json(base, "/api/v1/lookups", thousand, token),
            "lookups field": await post_json(
                base, "/api/v1/lookups", b'{"indicators": ' + thousand + b"}", token
            ),
            "lookups unknown field": await post_json(
                base, "/api/v1/lookups", b'{"x": ' + thousand + b"}", token
            ),
            "replay": await post_json(
                base,
                "/api/v1/deadletters/ops-http/replay",
                b'{"id": ' + thousand + b"}",
                token,
            ),
            "replay unknown field": await post_json(
                base, "/api/v1/deadletters/ops-http/replay", b'{"x": ' + thousand + b"}", token
            ),
        }
        logins = [await post_json(base, "/login", thousand)]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            nonce = await login_nonce(session, base)
            for form in ({"token": thousand.decode(), "csrf": nonce, "next": "/"},):
                async with session.post(
                    f"{base}/login", data=form, headers={"Origin": base}, allow_redirects=False
                ) as response:
                    logins.append((response.status, await response.text()))
    for name, (code, answer) in answers.items():
        assert code == 400, (name, answer)
        assert f"nested more than {limit} levels deep" in answer["error"], name
    assert deepest_webhook[0] == 200, deepest_webhook
    assert deepest_notification[0] == 202, deepest_notification
    for name, (code, _) in others.items():
        assert code == 400, name
    assert [code for code, _ in logins] == [403, 401]  # not from this site; a wrong token
    assert len(await stored(nats_server.url)) == 2


# --------------------------------------------------- item 9: a message the bus cannot store


def padded(ident: str, size: int) -> bytes:
    """A Sqreen test message of exactly ``size`` bytes, JSON as Sqreen sends it."""
    empty = json.dumps(sqreen_test(ident, pad="")).encode()
    return json.dumps(sqreen_test(ident, pad="x" * (size - len(empty)))).encode()


async def test_a_message_over_the_bus_limit_is_413_and_nothing_of_its_batch_is_stored(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    big = padded("big-1", 1_100_000)  # over the 1 MB max payload, under the 10 MB body limit
    batch = b"[" + padded("small-1", 200) + b"," + big + b"]"
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        first = await post_webhook(base, batch)
        again = await post_webhook(base, batch)  # as Sqreen would retry: the same answer
        # the reason says how large a message may be; one of exactly that size is stored
        found = re.search(r"at most (\d+) bytes per message", first[1]["error"])
        assert found is not None, first
        largest = int(found[1])
        over = await post_webhook(base, b"[" + padded("big-1", largest + 1) + b"]")
        fits = await post_webhook(base, b"[" + padded("big-1", largest) + b"]")
        await wait_for(lambda: len(receiver.requests) == 1)
        await wait_for(lambda: settled(settings.effective_nats_url, "ops-http"))
    for code, answer in (first, again):
        assert code == 413, answer
        assert answer["error"] == (
            f"message 1 is {len(big)} bytes; the bus stores at most {largest} bytes per message"
        )
    assert over[0] == 413
    assert f"message 0 is {largest + 1} bytes" in over[1]["error"]
    assert fits[0] == 200, fits
    assert 1_000_000 < largest < 1024 * 1024
    [note] = await stored(nats_server.url)  # nothing of the refused batches
    assert (note.id, len(note.data)) == ("big-1", largest)
    [(_, delivered)] = receiver.requests
    assert padded("big-1", largest) in delivered


async def test_posted_notification_over_the_bus_limit_is_413(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_MAX_JSON_BYTES=str(4 * 1024 * 1024))
    data = json.dumps({"pad": "x" * 1_100_000})
    body = f'{{"type": "t", "source": "s", "id": "n-1", "data": {data}}}'.encode()
    async with running_gateway(settings) as base:
        code, answer = await post_json(base, "/api/v1/notifications", body)
    assert code == 413, answer
    assert re.fullmatch(
        rf"data is {len(data)} bytes; the bus stores at most \d+ bytes per message",
        answer["error"],
    )
    assert await stored(nats_server.url) == []


# ----------------------------------------------- item 10: what no sink could carry, refused


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (sqreen_test("id-\r\nX-Injected: 1"), "control character"),
        (sqreen_test("nul-\x00"), "control character"),
        (sqreen_test("tab-\t"), "control character"),
        (sqreen_test("caf\u00e9"), "printable ASCII"),
        (sqreen_test(" padded"), "space"),
        ({**sqreen_test(), "message": {"event_id": "evt-\n1"}}, "control character"),
        ({**sqreen_test(), "message": {"incident_thread": "t-\r", "incident_status": "open"}}, ""),
        ({**sqreen_test(), "message": {"incident_thread": "t", "incident_status": "op\x00en"}}, ""),
    ],
)
async def test_an_id_no_header_can_carry_is_refused_naming_the_message(
    nats_server: NatsServer, tmp_path: Path, message: dict[str, Any], reason: str
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    body = json.dumps([sqreen_test("fine-1"), message]).encode()
    async with running_gateway(settings) as base:
        code, answer = await post_webhook(base, body)
    assert code == 400, answer
    assert answer["error"].startswith("message 1: id ")
    assert reason in answer["error"]
    assert await stored(nats_server.url) == []


@pytest.mark.parametrize(
    ("ident", "reason"),
    [
        ("a\r\nb", "control character"),
        ("a\x00", "control character"),
        ("", "empty"),
        ("\u00e9t\u00e9", "printable ASCII"),
        ("trailing ", "space"),
    ],
)
async def test_posted_notification_with_an_id_no_header_can_carry_is_400(
    nats_server: NatsServer, tmp_path: Path, ident: str, reason: str
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    body = {"type": "t", "source": "s", "id": ident, "data": {}}
    async with running_gateway(settings) as base:
        code, answer = await api("POST", f"{base}/api/v1/notifications", json=body)
    assert code == 400, answer
    assert reason in answer["error"]
    assert await stored(nats_server.url) == []


async def test_a_body_that_is_not_utf8_is_400(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    # the invalid bytes sit in a field the gateway does not read: msgspec skips them
    message = json.dumps([sqreen_test("u-1", note="\u00e9")]).encode().replace(b"\\u00e9", b"\xff")
    posted = b'{"type": "t", "source": "s", "data": {"note": "\xc3("}}'
    async with running_gateway(settings) as base:
        webhook = await post_webhook(base, message)
        api_answer = await post_json(base, "/api/v1/notifications", posted)
    for code, answer in (webhook, api_answer):
        assert code == 400, answer
        assert "not UTF-8" in answer["error"]
    assert await stored(nats_server.url) == []


# ------------------------------------------------------- item 11: nothing silently lost


async def test_long_ids_sharing_a_beginning_are_both_delivered_and_still_deduplicated(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    common = "m" * 256
    first, second = sqreen_test(common + "-first"), sqreen_test(common + "-second")
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        code, answer = await post_webhook(base, json.dumps([first, second]).encode())
        assert code == 200, answer
        resent = await post_webhook(base, json.dumps([{**first, "retry_count": 1}]).encode())
        await wait_for(lambda: len(receiver.requests) == 2)
        await wait_for(lambda: settled(settings.effective_nats_url, "ops-http"))
    ids = answer["ids"]
    assert len(set(ids)) == 2
    assert all(re.fullmatch("sha256-[0-9a-f]{64}", i) for i in ids)
    assert resent == (200, {"accepted": 1, "duplicates": 1, "ids": ids[:1]})
    webhook_ids = sorted(headers["webhook-id"] for headers, _ in receiver.requests)
    assert webhook_ids == sorted(ids)
    bodies = {b["id"]: b["data"]["message_id"] for b in receiver.bodies()}
    assert bodies == {ids[0]: first["message_id"], ids[1]: second["message_id"]}


async def test_same_id_from_two_sources_keeps_two_delivery_records(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        code, _ = await post_webhook(base, json.dumps([sqreen_test("x")]).encode())
        assert code == 200
        code, _ = await api(
            "POST",
            f"{base}/api/v1/notifications",
            json={"type": "t", "source": "other", "id": "x", "data": {}},
        )
        assert code == 202
        await wait_for(lambda: len(receiver.requests) == 2)
        await wait_for(lambda: settled(settings.effective_nats_url, "ops-http"))
    notes = await stored(nats_server.url)
    assert sorted((n.source, n.id) for n in notes) == [("other", "x"), ("sqreen", "x")]
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().key_value(streams.STATUS_BUCKET)
        records: dict[str, status.DeliveryStatus] = {}

        async def both_recorded() -> bool:
            for note in notes:
                try:
                    entry = await kv.get(status.key(note, "ops-http"))
                except KeyNotFoundError:
                    return False
                assert entry.value is not None
                records[note.source] = status.decode(entry.value)
            return all(r.state == "delivered" for r in records.values())

        await wait_for(both_recorded)
    finally:
        await nc.close()
    assert {source: r.source for source, r in records.items()} == {
        "other": "other",
        "sqreen": "sqreen",
    }
