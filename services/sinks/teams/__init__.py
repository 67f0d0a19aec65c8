"""The ``teams`` target: post an Adaptive Card to a Microsoft Teams Workflows webhook.

The webhook is a Workflows (Power Automate) flow built from the template "Post to a channel
when a webhook request is received": its trigger takes a message whose attachments are
Adaptive Cards and posts each card to the channel. One message per notification::

    {"type": "message",
     "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": null,
        "content": {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                TextBlock(<title>, weight bolder, size medium, color by risk),
                TextBlock(<body>, wrap),                 # when the body is not empty
                FactSet(Risk, Application, Environment, Source / Type, IPs, Time, Id),
            ],
            "actions": [Action.OpenUrl("View event" -> url),   # only with a URL
                        Action.OpenUrl("Silence similar" -> <LOOKOUT_PUBLIC_URL>/silences?…)],
        }}]}

The title colour is Adaptive Cards' ``attention`` (red) from risk 70, ``warning`` (amber)
from 40, ``good`` (green) below and ``default`` when the message has no risk.

The title and body come from :func:`shared.relay.templates.render`. TextBlock texts and fact
values are Markdown in Teams (bold, italic, lists and ``[links](url)``; HTML is not
rendered), so every piece of text has the Markdown that could restyle it or disguise a
link escaped with a backslash (bare URLs are left whole so they still work), and single
line breaks of the body are doubled, as Markdown needs. A card cannot mention anybody:
Teams mentions need ``<at>`` tags *and* ``msteams.entities``, which lookout never sends.
Teams refuses messages over 28 KB, so the body is cut until the message fits in 27 KB.

Answers (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook,
https://learn.microsoft.com/en-us/microsoftteams/platform/bots/how-to/rate-limit): the
trigger answers 202 Accepted (200 for flows that answer themselves): delivered. Errors come
from Logic Apps as JSON ``{"error": {"code": …, "message": …}}``: 400 (the request body),
401 (the URL's ``sig`` is wrong: the URL was regenerated), 403 and 404 (the flow was
deleted or the URL is wrong) are permanent; 408, 429 (with ``Retry-After``) and 5xx are
retried. A 429 also pauses every send of this target until ``Retry-After`` has passed
(the sink runner does: the target raises ``RetryableError`` with it). ``per_second``
defaults to 1, kept by the runner across every replica of the sink; Teams throttles
webhooks posting more than about four messages a second.

The webhook URL carries the credential (its ``sig`` query parameter): it is kept as a
:class:`~shared.core.secrets.Secret`, never logged and never part of an error message, nor of a
dead letter.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import yarl

from services.sinks.teams.config import TeamsTargetConfig
from shared.core.retryafter import parse_retry_after
from shared.core.settings import Settings
from shared.relay.markup import BLANK, MarkdownEscaper, by_risk, cut
from shared.relay.outbound import WebhookTarget
from shared.relay.schemas import Notification
from shared.relay.sources import Reading, read
from shared.relay.target import RETRYABLE_STATUS, Delivery, RetryableError, raise_for_status
from shared.relay.templates import context, render

USER_AGENT = "lookout-teams/1"

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"

TITLE_MAX = 400
BODY_MAX = 20_000
FACT_MAX = 1000
URL_MAX = 2048
PAYLOAD_MAX = 27 * 1024
"""Bytes of JSON per message; Teams refuses messages over 28 KB."""

ATTENTION = "attention"
WARNING = "warning"
GOOD = "good"
DEFAULT = "default"

HINTS: dict[int, str] = {
    400: "the flow refused the request",
    401: "the webhook URL's signature is wrong: was the URL regenerated?",
    403: "the flow may not be triggered (disabled, or its owner lost access)",
    404: "the flow was deleted or the webhook URL is wrong",
    413: "the message is too large for Teams",
    429: "Teams rate limit",
}

_MARKDOWN = MarkdownEscaper(
    inline="\\*_[]`",  # emphasis, links, code
    line_start="-+>#",  # lists, quotes, headings
    # a list (``- ``), a heading (``# ``), a quote (``>``) or a rule (``---``)
    opens_block=lambda char, after: char == ">" or after in BLANK or after == char,
)

CONFIG = TeamsTargetConfig
"""The ``[[targets]]`` table of a ``teams`` target (registered by the launcher)."""


def escape(text: str) -> str:
    """``text`` with its Markdown escaped, so Teams shows it as written."""
    return _MARKDOWN.escape(text)


def fit(text: str, limit: int) -> str:
    """``text`` escaped and, when longer than ``limit``, cut (never inside an escape) and
    ended with an ellipsis."""
    return cut(_MARKDOWN.pieces(text), limit)


def risk_colour(risk: int | None) -> str:
    """``attention`` from 70, ``warning`` from 40, ``good`` below, ``default`` without risk."""
    return by_risk(risk, ATTENTION, WARNING, GOOD, DEFAULT)


def _fact(title: str, value: str) -> dict[str, str]:
    return {"title": title, "value": fit(value, FACT_MAX)}


def _message(
    title: str,
    colour: str,
    body: str,
    facts: list[dict[str, str]],
    url: str | None,
    silence_url: str | None = None,
) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": title,
            "weight": "bolder",
            "size": "medium",
            "color": colour,
            "wrap": True,
        }
    ]
    if body:
        blocks.append({"type": "TextBlock", "text": body, "wrap": True})
    blocks.append({"type": "FactSet", "facts": facts})
    actions: list[dict[str, Any]] = []
    if url:
        actions.append({"type": "Action.OpenUrl", "title": "View event", "url": url})
    if silence_url:
        actions.append({"type": "Action.OpenUrl", "title": "Silence similar", "url": silence_url})
    card = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": blocks,
        "actions": actions,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


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
    title = fit(rendered.title or f"{note.source} {note.type}", TITLE_MAX)

    risk: int | None = values["risk"]
    facts: list[dict[str, str]] = []
    if risk is not None:
        facts.append(_fact("Risk", str(risk)))
    if values["application"]:
        facts.append(_fact("Application", values["application"]))
    if values["environment"]:
        facts.append(_fact("Environment", values["environment"]))
    facts.append(_fact("Source / Type", f"{note.source} / {note.type}"))
    if values["ips"]:
        facts.append(_fact("IPs", ", ".join(values["ips"])))
    message = values["message"]
    occurred = message.get("date_occurred") if isinstance(message, dict) else None
    facts.append(
        _fact("Time", occurred if isinstance(occurred, str) and occurred else note.timestamp)
    )
    facts.append(_fact("Id", note.id))

    url: str | None = values["url"]
    if url is not None and len(url) > URL_MAX:
        url = None
    if silence_url is not None and len(silence_url) > URL_MAX:
        silence_url = None
    # Markdown needs a blank line for a line break.
    source = "\n\n".join(rendered.body.splitlines())
    limit = BODY_MAX
    while True:
        body = fit(source, limit) if source and limit > 0 else ""
        payload = _message(title, risk_colour(risk), body, facts, url, silence_url)
        excess = len(msgspec.json.encode(payload)) - PAYLOAD_MAX
        if excess <= 0 or not body:
            return payload
        limit = min(limit, len(body)) - max(excess, 16)


def _teams_error(body: str) -> str:
    """``code: message`` from a Logic Apps error body, else the body itself."""
    text = body.strip()
    if text.startswith("{"):
        try:
            decoded = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return text[:300]
        error = decoded.get("error") if isinstance(decoded, dict) else None
        if isinstance(error, dict):
            parts = [str(error[key]) for key in ("code", "message") if error.get(key)]
            return ": ".join(parts)[:300]
    return text[:300]


def _seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds (fractions allowed) or a date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return parse_retry_after(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class TeamsTarget(WebhookTarget):
    service = "Teams"
    user_agent = USER_AGENT

    async def deliver(self, delivery: Delivery) -> None:
        body = self.encode(build_message, delivery)
        reply = await self.post(  # encoded: the signed query goes out exactly as Teams wrote it
            yarl.URL(self._webhook.reveal(), encoded=True), body, read=1000
        )
        status, answer = reply.status, reply.text
        retry_after = reply.headers.get("Retry-After")
        if 200 <= status < 300:
            return
        wait = _seconds(retry_after)
        error = self.scrub(_teams_error(answer))
        hint = HINTS.get(status)
        detail = f"{error} ({hint})" if error and hint else error or hint or ""
        if status in RETRYABLE_STATUS or status >= 500:
            # Retry-After may carry fractions, which raise_for_status would drop.
            raise RetryableError(f"HTTP {status}" + (f": {detail}" if detail else ""), wait)
        raise_for_status(status, None, detail)  # permanent


def build(config: TeamsTargetConfig, settings: Settings) -> TeamsTarget:
    return TeamsTarget.from_settings(config, settings)
