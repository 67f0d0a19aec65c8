"""The sms target end to end: a real nats-server, the gateway and the sink, and a loopback
Twilio Messages API (tests/fakes/twilio.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fakes.twilio import DEFAULT_AUTH_TOKEN, FakeTwilio, basic_credentials, segments
from helpers import (
    dead_lettered,
    dead_letters,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    wait_for,
)

from services.sinks.sms import sms_text
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings

TARGET = "oncall-sms"
SENDER = "+15005550006"
ALICE = "+14155550101"
BOB = "+447700900123"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


def sms_target(
    twilio: FakeTwilio,
    to: tuple[str, ...] = (ALICE, BOB),
    token: str = DEFAULT_AUTH_TOKEN,
    max_length: int = 320,
) -> str:
    return f"""
[[targets]]
name = "{TARGET}"
type = "sms"
account_sid = "{twilio.account_sid}"
auth_token = "{token}"
sender = "{SENDER}"
to = {json.dumps(list(to))}
api_url = "{twilio.api_url}"
max_length = {max_length}
timeout = 2
retry = {{ max_attempts = 3, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }}
"""


def security_event(event_id: str, **message: Any) -> bytes:
    """A Sqreen v2 security event; ``message`` overrides its fields."""
    fields: dict[str, Any] = {
        "risk_coefficient": 85,
        "event_category": "authentication",
        "event_kind": "auth_tor_tentative",
        "application_name": "billing-api",
        "environment": "production",
        "date_occurred": "2026-11-21T10:00:00.000000+00:00",
        "event_id": event_id,
        "event_url": f"https://my.sqreen.com/events/{event_id}",
        "humanized_description": "Connection to alice@example.com from TOR (203.0.113.77)",
        "ips": [{"address": "203.0.113.77"}],
        **message,
    }
    envelope = {
        "message_id": None,
        "api_version": "2",
        "date_created": "2026-11-21T10:00:01.000000+00:00",
        "message_type": "security_event",
        "retry_count": 0,
        "message": fields,
    }
    return json.dumps([envelope]).encode()


async def send(
    settings: Settings, body: bytes, until: Callable[[], Any], within: float = 15.0
) -> list[str]:
    """Post ``body`` through the gateway with the sink running; wait for ``until``, then
    for the sink's consumer to settle. Returns the accepted notification ids."""
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        status, answer = await post_webhook(base, body)
        assert status == 200, answer
        await wait_for(until, within=within)
        await wait_for(lambda: settled(settings.effective_nats_url, TARGET))
    ids: list[str] = answer["ids"]
    return ids


def test_text_is_one_gsm_line_cut_at_max_length() -> None:
    text = sms_text(
        "Security event in \u201cbilling\u201d",
        "It\u2019s a \u2014 test\u2026\n\nKind: sqli\nFrom: 203.0.113.9",
        max_length=200,
    )
    assert text == 'Security event in "billing" - It\'s a - test...; Kind: sqli; From: 203.0.113.9'
    cut = sms_text("Title", "word " * 100, max_length=40)
    assert len(cut) == 40
    assert cut.endswith("...")
    assert sms_text("Short", "body", max_length=40) == "Short - body"
    # an emoji counts twice against Twilio's limit (error 21617): fewer of them fit
    emoji = sms_text("Alert", "\U0001f6a8" * 1700, max_length=1600)
    assert len(emoji.encode("utf-16-le")) // 2 <= 1600
    assert emoji.endswith("...")
    assert len(emoji) < 810


async def test_delivered_to_every_recipient_within_the_length_cap(
    nats_server: NatsServer, tmp_path: Path, twilio: FakeTwilio
) -> None:
    settings = make_settings(tmp_path, nats_server.url, sms_target(twilio, max_length=80))
    body = security_event(
        "evt-sms-1", humanized_description="Login to \u2018admin\u2019 from \u201cTOR\u201d"
    )
    await send(settings, body, lambda: len(twilio.messages) == 2)

    assert sorted(message.to for message in twilio.messages) == sorted([ALICE, BOB])
    texts = {message.body for message in twilio.messages}
    assert len(texts) == 1  # the same text for everyone
    [text] = texts
    assert text.startswith("Security event in billing-api (production): risk 85 - Login to 'admin'")
    assert len(text) <= 80
    assert text.endswith("...")
    assert "\n" not in text
    assert segments(text) == 1  # GSM-7: the fancy quotes were replaced
    for message in twilio.messages:
        assert message.from_ == SENDER
        assert message.sid.startswith("SM")
    for request in twilio.requests:
        assert request.path == twilio.messages_path
        credentials = basic_credentials(request.headers["Authorization"])
        assert credentials == (twilio.account_sid, twilio.auth_token)
    assert await dead_letters(nats_server.url, TARGET) == []


async def test_rate_limited_then_delivered_without_duplicates(
    nats_server: NatsServer, tmp_path: Path, twilio: FakeTwilio
) -> None:
    """One of the two sends gets 429: the retry goes to that recipient only."""
    twilio.fail_next = [429]
    twilio.retry_after = "1"
    settings = make_settings(tmp_path, nats_server.url, sms_target(twilio))
    await send(settings, security_event("evt-sms-429"), lambda: len(twilio.messages) == 2)
    assert len(twilio.requests) == 3  # two, then the one that was refused
    assert len(twilio.sent_to(ALICE)) == len(twilio.sent_to(BOB)) == 1
    assert await dead_letters(nats_server.url, TARGET) == []


async def test_invalid_number_is_dead_lettered_and_the_others_served(
    nats_server: NatsServer, tmp_path: Path, twilio: FakeTwilio
) -> None:
    toml = sms_target(twilio, to=(ALICE, "0800 NOT E164"))
    settings = make_settings(tmp_path, nats_server.url, toml)
    [note_id] = await send(
        settings, security_event("evt-sms-21211"), dead_lettered(nats_server.url, TARGET)
    )
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.attempts == 1  # permanent: never retried
    assert "Twilio error 21211" in record.error
    assert "not a valid phone number" in record.error
    assert record.notification is not None
    assert record.notification.id == note_id
    assert [message.to for message in twilio.messages] == [ALICE]


async def test_rejected_credentials_are_dead_lettered(
    nats_server: NatsServer, tmp_path: Path, twilio: FakeTwilio
) -> None:
    wrong = "wrong-token-0123456789"
    settings = make_settings(tmp_path, nats_server.url, sms_target(twilio, token=wrong))
    await send(settings, security_event("evt-sms-401"), dead_lettered(nats_server.url, TARGET))
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.attempts == 1
    assert "Twilio rejected the credentials" in record.error
    assert "20003" in record.error
    assert wrong not in record.error
    assert twilio.messages == []
