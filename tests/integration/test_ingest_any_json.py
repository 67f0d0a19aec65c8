"""Whatever JSON the gateway accepts, every sink delivers (issue 12, item 10).

One gateway and every kind of sink (log, http, email, sms, slack, teams, discord,
pagerduty) on a real nats-server, each against its loopback fake (aiosmtpd for email):
notifications carrying numbers Python cannot hold (``1e999``, an integer of 5,000 digits),
nesting as deep as the gateway allows, odd shapes where templates expect lists, and unusual
Unicode (NUL, line and paragraph separators, bidi overrides, astral characters, lone
combining marks, non-characters) are delivered by each, none dead-lettered."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fakes.discord import FakeDiscord
from fakes.pagerduty import FakePagerDuty
from fakes.slack import FakeSlack
from fakes.teams import FakeTeams
from fakes.twilio import DEFAULT_AUTH_TOKEN, FakeTwilio
from helpers import (
    WHSEC,
    Receiver,
    api,
    dead_letters,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    wait_for,
)

from shared.core import jsondata
from shared.core import logging as log
from shared.core.natsserver import NatsServer, free_port

RETRY = "retry = { max_attempts = 2, initial_backoff = 0.2, max_backoff = 0.5, jitter = 0 }"
TARGETS = ("notes", "ops-http", "ops-mail", "oncall-sms", "soc-slack", "soc-teams")
TARGETS += ("soc-discord", "soc-pagerduty")

ODD_TEXT = (
    "nul\u0000 cr\r lf\n tab\t sep\u2028\u2029 bidi\u202e\u2066 zwj\u200d bom\ufeff "
    "astral\U0001f6a8\U0001d54f combining\u0301\u20dd noncharacter\uffff\U0010ffff "
    "private\ue000 cjk\u8b66\u544a rtl\u05e9\u05dc\u05d5\u05dd del\u007f c1\u0085"
)


def nested(levels: int) -> Any:
    """``levels`` arrays and objects inside each other, around a string."""
    value: Any = "bottom"
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


def raw_json(value: Any, **numbers: str) -> str:
    """``value`` as JSON with each ``"@name"`` string replaced by the JSON number text
    ``numbers[name]`` (json.dumps cannot write 1e999)."""
    text = json.dumps(value)
    for name, number in numbers.items():
        text = text.replace(f'"@{name}"', number)
    return text


NUMBERS = {"huge": "1e999", "tiny": "-1e999", "under": "1e-999", "long": "7" * 5000}


def odd_message(event_id: str, depth: int) -> dict[str, Any]:
    """A Sqreen v2 security event whose fields hold everything awkward; ``depth`` is the
    nesting of its ``deep`` field."""
    return {
        "message_id": None,
        "api_version": "2",
        # not a time at all: the envelope's timestamp as a sender wrote it (the API checks
        # its own input's; a webhook's message is taken as sent)
        "date_created": "2026-13-45T99:99:99\u0000\u202e" + ODD_TEXT,
        "message_type": "security_event",
        "retry_count": 0,
        "message": {
            "event_id": event_id,
            "risk_coefficient": "@huge",
            "application_name": ODD_TEXT,
            "environment": "prod\u202e",
            "humanized_description": ODD_TEXT * 3,
            "event_category": {"not": "a string"},
            "event_kind": ["a", "list"],
            "date_occurred": "2026-11-21T10:00:00.000000+00:00",
            "event_url": "https://my.sqreen.com/events/\u2028\U0001f6a8",
            "ips": [{"address": ODD_TEXT}, "@huge", None, 5],
            "new_compromised_accounts": 12,
            "amounts": ["@huge", "@tiny", "@under", "@long"],
            "deep": depth and nested(depth),
        },
    }


def all_targets(ports: dict[str, Any]) -> str:
    return f"""
[[targets]]
name = "notes"
type = "log"
{RETRY}

[[targets]]
name = "ops-http"
type = "http"
url = "{ports["http"]}"
secret = "{WHSEC}"
timeout = 2
{RETRY}

[[targets]]
name = "ops-mail"
type = "email"
host = "127.0.0.1"
port = {ports["smtp"]}
tls = "none"
sender = "lookout@example.org"
to = ["soc@example.org"]
timeout = 3
{RETRY}

[[targets]]
name = "oncall-sms"
type = "sms"
account_sid = "{ports["twilio"].account_sid}"
auth_token = "{DEFAULT_AUTH_TOKEN}"
sender = "+15005550006"
to = ["+14155550101"]
api_url = "{ports["twilio"].api_url}"
timeout = 2
{RETRY}

[[targets]]
name = "soc-slack"
type = "slack"
webhook_url = "{ports["slack"]}"
timeout = 2
{RETRY}

[[targets]]
name = "soc-teams"
type = "teams"
webhook_url = "{ports["teams"]}"
timeout = 2
{RETRY}

[[targets]]
name = "soc-discord"
type = "discord"
webhook_url = "{ports["discord"]}"
timeout = 2
{RETRY}

[[targets]]
name = "soc-pagerduty"
type = "pagerduty"
routing_key = "{ports["pagerduty"].routing_key}"
api_url = "{ports["pagerduty"].api_url}"
timeout = 2
{RETRY}
"""


class Mailbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(envelope.content)
        return "250 2.0.0 Ok: queued"


@contextlib.contextmanager
def smtp(mailbox: Mailbox) -> Iterator[int]:
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextlib.asynccontextmanager
async def sinks(settings: Any) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for name in TARGETS:
            await stack.enter_async_context(running_sink(settings, name))
        yield


async def test_every_sink_delivers_any_json_the_gateway_accepts(
    nats_server: NatsServer,
    tmp_path: Path,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log.setup("test", "info")  # the JSON lines lookout writes, redaction included
    mailbox = Mailbox()
    async with (
        FakeSlack() as slack,
        FakeTeams() as teams,
        FakeDiscord() as discord,
        FakePagerDuty() as pagerduty,
        FakeTwilio() as twilio,
    ):
        with smtp(mailbox) as smtp_port:
            ports = {
                "http": receiver.url,
                "smtp": smtp_port,
                "twilio": twilio,
                "slack": slack.webhook_url,
                "teams": teams.webhook_url,
                "discord": discord.webhook_url,
                "pagerduty": pagerduty,
            }
            settings = make_settings(tmp_path, nats_server.url, all_targets(ports))
            # the body's own array, the message, "message", and the deep field's levels
            deepest = jsondata.MAX_DEPTH - 3
            webhook_body = raw_json(
                [odd_message("evt-odd", deepest), odd_message("evt-shallow", 0)], **NUMBERS
            ).encode()
            api_bodies = [
                raw_json(
                    {
                        "type": "scan",
                        "source": "scanner",
                        "id": "api-odd",
                        "timestamp": "2026-12-07T08:00:00.123456+14:00",
                        "data": data,
                    },
                    **NUMBERS,
                ).encode()
                for data in (
                    {"risk": "@huge", "application": ODD_TEXT, "deep": nested(126), "n": "@long"},
                    "@huge",
                    [ODD_TEXT, "@tiny"],
                    ODD_TEXT,
                )
            ]
            api_bodies = [
                body.replace(b'"api-odd"', f'"api-odd-{i}"'.encode())
                for i, body in enumerate(api_bodies)
            ]
            async with running_gateway(settings) as base, sinks(settings):
                status, answer = await post_webhook(base, webhook_body)
                assert status == 200, answer
                for body in api_bodies:
                    status, answer = await api(
                        "POST",
                        f"{base}/api/v1/notifications",
                        data=body,
                        headers={"Content-Type": "application/json"},
                    )
                    assert status == 202, answer
                total = 2 + len(api_bodies)
                delivered = {
                    "ops-http": lambda: len(receiver.requests),
                    "ops-mail": lambda: len(mailbox.messages),
                    "oncall-sms": lambda: len(twilio.messages),
                    "soc-slack": lambda: len(slack.messages),
                    "soc-teams": lambda: len(teams.messages),
                    "soc-discord": lambda: len(discord.messages),
                    "soc-pagerduty": lambda: len(pagerduty.events),
                }
                for count in delivered.values():
                    await wait_for(lambda count=count: count() >= total, within=30)
                await wait_for(lambda: settled(settings.effective_nats_url, *TARGETS), within=30)
                counts = {name: count() for name, count in delivered.items()}
    assert counts == dict.fromkeys(delivered, total)  # each once: no retry was needed
    for name in TARGETS:
        assert await dead_letters(nats_server.url, name) == [], name
    rejected = [slack.rejections, teams.rejections, discord.rejections]
    assert rejected == [[], [], []]
    # the http target passes each message on unchanged, byte for byte
    sent = {jsondata.load(body)["id"]: body for _, body in receiver.requests}
    assert len(sent) == total
    assert raw_json(odd_message("evt-odd", deepest), **NUMBERS).encode() in sent["evt-odd"]
    # the log sink wrote each notification, the numbers as their JSON text
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    logged = [line for line in lines if line.get("event") == "notification"]
    assert len(logged) == total
    api_first = next(line for line in logged if line["notification_id"] == "api-odd-0")
    assert api_first["data"]["risk"] == "1e999"
    assert api_first["data"]["n"] == "7" * 5000
    assert api_first["application"] == ODD_TEXT
    assert next(line for line in logged if line["notification_id"] == "api-odd-1")["data"] == (
        "1e999"
    )
