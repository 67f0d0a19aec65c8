"""The "Silence similar" link of Slack, Teams, Discord and email messages: the real sinks on
a real nats-server, each against its loopback fake (aiosmtpd for email), with
``LOOKOUT_PUBLIC_URL`` set; the link is the web UI's silence form with the notification's
source, type, application and environment filled in."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fakes.discord import FakeDiscord
from fakes.slack import FakeSlack
from fakes.teams import FakeTeams
from helpers import jetstream, make_settings, publish_alerts, running_sink, wait_for
from test_target_email import Mailbox, smtp_server

from shared.core import publicurl
from shared.core.natsserver import NatsServer

PUBLIC = "https://lookout.example/ops"
EXPECTED = {"source": "scanner", "type": "http_scan", "application": "shop", "environment": "prod"}


def _checked(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{PUBLIC}/silences", url
    assert dict(parse_qsl(parts.query)) == EXPECTED, url
    return url


def _body(fake: Any) -> Any:
    [request] = fake.requests
    return json.loads(request.body)


async def test_chat_and_email_messages_link_to_a_prefilled_silence(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    mailbox = Mailbox()
    async with AsyncExitStack() as stack:
        slack = await stack.enter_async_context(FakeSlack())
        teams = await stack.enter_async_context(FakeTeams())
        discord = await stack.enter_async_context(FakeDiscord())
        port = stack.enter_context(smtp_server(mailbox))
        toml = f"""
[[targets]]
name = "chat-slack"
type = "slack"
webhook_url = "{slack.webhook_url}"
per_second = 0
[[targets]]
name = "chat-teams"
type = "teams"
webhook_url = "{teams.webhook_url}"
per_second = 0
[[targets]]
name = "chat-discord"
type = "discord"
webhook_url = "{discord.webhook_url}"
per_second = 0
[[targets]]
name = "mail"
type = "email"
host = "127.0.0.1"
port = {port}
tls = "none"
sender = "lookout@example.org"
to = ["soc@example.org"]
"""
        settings = make_settings(tmp_path, nats_server.url, toml, LOOKOUT_PUBLIC_URL=PUBLIC + "/")
        assert publicurl.public_url(settings) == PUBLIC
        js = await stack.enter_async_context(jetstream(nats_server.url, settings))
        for name in ("chat-slack", "chat-teams", "chat-discord", "mail"):
            await stack.enter_async_context(running_sink(settings, name))
        message = {"risk": 70, "application": "shop", "environment": "prod", "ips": ["192.0.2.7"]}
        await publish_alerts(js, 1, "link", data=lambda i: message)
        await wait_for(
            lambda: all(f.requests for f in (slack, teams, discord)) and bool(mailbox.delivered)
        )

    [actions] = [b for b in _body(slack)["attachments"][0]["blocks"] if b["type"] == "actions"]
    [button] = [e for e in actions["elements"] if e["action_id"] == "silence_similar"]
    assert button["text"]["text"] == "Silence similar"
    _checked(button["url"])

    card = _body(teams)["attachments"][0]["content"]
    [action] = [a for a in card["actions"] if a["title"] == "Silence similar"]
    assert action["type"] == "Action.OpenUrl"
    _checked(action["url"])

    [embed] = _body(discord)["embeds"]
    [field] = [f for f in embed["fields"] if f["name"] == "Silence"]
    assert field["value"].startswith("[Silence similar](")
    _checked(field["value"].removeprefix("[Silence similar](").removesuffix(")"))

    [mail] = mailbox.delivered
    parsed = message_from_bytes(mail.content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None
    assert html is not None
    [line] = [ln for ln in text.get_content().splitlines() if ln.startswith("Silence similar: ")]
    url = _checked(line.removeprefix("Silence similar: "))
    assert f'<a href="{url.replace("&", "&amp;")}">Silence similar</a>' in html.get_content()


def test_the_public_url_defaults_to_the_gateways(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "nats://127.0.0.1:4222", LOOKOUT_HTTP_PORT="8123")
    assert publicurl.public_url(settings) == "http://127.0.0.1:8123"
    settings = make_settings(
        tmp_path,
        "nats://127.0.0.1:4222",
        LOOKOUT_HTTP_HOST="0.0.0.0",
        LOOKOUT_HTTP_PORT="8123",
        LOOKOUT_API_TOKENS="tok",
    )
    assert publicurl.public_url(settings) == "http://127.0.0.1:8123"
