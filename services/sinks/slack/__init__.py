"""The ``slack`` target: post a Block Kit message to a Slack incoming webhook.

Message layout (one message per notification)::

    {"text": "<title>",                     # notification and fallback text
     "blocks": [header(<title>)],           # the title, large and bold
     "attachments": [{
        "color": "#E01E5A",                 # risk colour bar (see risk_colour)
        "fallback": "<title>",
        "blocks": [
            section(mrkdwn <body>),         # the rendered body
            section(fields: Risk, Application, Environment, Source / Type, IPs),
            context(<time>, Id: <id>),
            actions(button "View event" -> url,    # only when the event has a URL
                    button "Silence similar" -> <LOOKOUT_PUBLIC_URL>/silences?source=…),
        ]}]}

The title and body come from :func:`shared.relay.templates.render` (the target's own templates,
else the default for the message type). Every piece of text is escaped per Slack's rules
(``&``, ``<`` and ``>`` only), so a notification can never inject a mention such as
``<!channel>`` or a disguised link, and each is cut to Slack's limits (header 150, section
3000, field 2000, button label 75 characters).

Slack's answers (https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks,
https://api.slack.com/docs/rate-limits): 200 ``ok`` is delivered; 400 ``invalid_payload``,
``no_text``, ``invalid_blocks``…, 403 ``action_prohibited``/``invalid_token``, 404
``no_service``/``channel_not_found``/``no_team`` and 410 ``channel_is_archived`` are
permanent; 429 ``rate_limited`` (with ``Retry-After``) and 5xx are retried. A 429 also
pauses this target's every send until ``Retry-After`` has passed (the sink runner does:
the target raises ``RetryableError`` with it): Slack warns that an app that keeps posting
while rate limited may be disabled.

Slack allows about one message per second per webhook, so the target's ``per_second``
defaults to 1: the runner spaces sends to it across every replica of its sink
(:class:`~shared.relay.pacing.Pacer`).

The webhook URL carries the token: it is kept as a :class:`~shared.core.secrets.Secret`, never
logged and never part of an error message (nor of a dead letter).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.sinks.slack.config import SlackTargetConfig
from shared.core.settings import Settings
from shared.relay.markup import by_risk, cut
from shared.relay.outbound import WebhookTarget
from shared.relay.schemas import Notification
from shared.relay.sources import Reading, read
from shared.relay.target import Delivery, raise_for_status
from shared.relay.templates import context, render

USER_AGENT = "lookout-slack/1"

HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
BUTTON_MAX = 75
URL_MAX = 3000

RED = "#E01E5A"
AMBER = "#ECB22E"
GREEN = "#2EB67D"
GREY = "#9E9E9E"

# What Slack's error strings mean, to make dead letters self-explanatory.
HINTS: dict[str, str] = {
    "invalid_payload": "Slack could not read the message",
    "no_text": "the message had no text",
    "invalid_blocks": "Slack refused the message blocks",
    "invalid_blocks_format": "Slack refused the message blocks",
    "too_many_attachments": "the message had too many attachments",
    "action_prohibited": "the workspace forbids this webhook to post here",
    "invalid_token": "the webhook token is invalid",
    "no_service": "the webhook was removed or its URL is wrong",
    "no_team": "the workspace of the webhook no longer exists",
    "no_service_id": "the webhook URL is incomplete",
    "channel_not_found": "the webhook's channel no longer exists",
    "channel_is_archived": "the webhook's channel is archived",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "user_not_found": "the user in the message does not exist",
    "rate_limited": "Slack rate limit",
}

CONFIG = SlackTargetConfig
"""The ``[[targets]]`` table of a ``slack`` target (registered by the launcher)."""


def escape(text: str) -> str:
    """Slack's escaping: ``&``, ``<`` and ``>`` as HTML entities, and nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> str:
    """``text`` escaped and, when longer than ``limit``, cut (never inside an entity) and
    ended with an ellipsis."""
    escaped = escape(text)
    if len(escaped) <= limit:  # the usual case, without escaping each character apart
        return escaped
    return cut([escape(char) for char in text], limit)


def risk_colour(risk: int | None) -> str:
    """Red from 70, amber from 40, green below, grey when the message has no risk."""
    return by_risk(risk, RED, AMBER, GREEN, GREY)


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": fit(text, limit), "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _field(label: str, value: str) -> dict[str, Any]:
    head = f"*{label}*\n"
    return _mrkdwn(head + fit(value, FIELD_MAX - len(head)))


def _when(value: str) -> str:
    """A Slack date token (shown in each reader's time zone) with the original as fallback."""
    fallback = fit(value, 100)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return fallback
    if moment.tzinfo is None:
        return fallback
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"


def build_message(
    notification: Notification | Reading,
    subject: str | None = None,
    title_template: str | None = None,
    body_template: str | None = None,
    silence_url: str | None = None,
) -> dict[str, Any]:
    """The webhook payload for ``notification`` (raises ``TemplateError``)."""
    reading = read(notification)
    note = reading.notification
    rendered = render(reading, title_template, body_template, subject)
    values = context(reading, subject)
    title = rendered.title or f"{note.source} {note.type}"

    details: list[dict[str, Any]] = []
    if rendered.body:
        details.append({"type": "section", "text": _mrkdwn(fit(rendered.body, SECTION_MAX))})

    risk: int | None = values["risk"]
    fields: list[dict[str, Any]] = []
    if risk is not None:
        fields.append(_field("Risk", str(risk)))
    if values["application"]:
        fields.append(_field("Application", values["application"]))
    if values["environment"]:
        fields.append(_field("Environment", values["environment"]))
    fields.append(_field("Source / Type", f"{note.source} / {note.type}"))
    if values["ips"]:
        fields.append(_field("IPs", ", ".join(values["ips"])))
    details.append({"type": "section", "fields": fields})

    message = values["message"]
    occurred = message.get("date_occurred") if isinstance(message, dict) else None
    when = occurred if isinstance(occurred, str) and occurred else note.timestamp
    details.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(_when(when)),
                _mrkdwn(f"Id: {fit(note.id, 300)}"),
            ],
        }
    )

    url: str | None = values["url"]
    buttons: list[dict[str, Any]] = []
    if url and len(url) <= URL_MAX:
        buttons.append(
            {
                "type": "button",
                "text": _plain("View event", BUTTON_MAX),
                "url": url,
                "action_id": "view_event",
            }
        )
    if silence_url and len(silence_url) <= URL_MAX:
        buttons.append(
            {
                "type": "button",
                "text": _plain("Silence similar", BUTTON_MAX),
                "url": silence_url,
                "action_id": "silence_similar",
            }
        )
    if buttons:
        details.append({"type": "actions", "elements": buttons})

    return {
        "text": fit(title, SECTION_MAX),
        "blocks": [{"type": "header", "text": _plain(title, HEADER_MAX)}],
        "attachments": [{"color": risk_colour(risk), "fallback": escape(title), "blocks": details}],
    }


def _slack_error(body: str) -> str:
    """Slack's error string from an answer body: plain text, or JSON ``{"error": …}``."""
    text = body.strip()
    if text.startswith("{"):
        try:
            decoded = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return text
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
            return str(decoded["error"])
    return text


class SlackTarget(WebhookTarget):
    service = "Slack"
    user_agent = USER_AGENT

    async def deliver(self, delivery: Delivery) -> None:
        body = self.encode(build_message, delivery)
        reply = await self.post(self._webhook.reveal(), body, read=300)
        status, answer = reply.status, reply.text
        retry_after = reply.headers.get("Retry-After")
        error = self.scrub(_slack_error(answer))
        hint = HINTS.get(error)
        raise_for_status(status, retry_after, f"{error} ({hint})" if hint else error)


def build(config: SlackTargetConfig, settings: Settings) -> SlackTarget:
    return SlackTarget.from_settings(config, settings)
