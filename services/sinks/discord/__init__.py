"""The ``discord`` target: execute a Discord webhook with one embed per notification.

``POST {webhook_url}?wait=true`` (wait: Discord answers once the message exists, so an
accepted request really was posted) with::

    {"content": null,
     "embeds": [{
        "title": "<title>",                     # at most 256 characters
        "description": "<body>",                # at most 4096, less when the rest is long
        "url": "<event url>",                   # makes the title a link; only with a URL
        "color": 0xE01E5A,                      # risk colour (see risk_colour), an int
        "fields": [{"name": "Risk", "value": "80", "inline": true},
                   Application, Environment, Source / Type (inline), IPs (not inline),
                   Silence: "[Silence similar](<LOOKOUT_PUBLIC_URL>/silences?…)"],
        "footer": {"text": "lookout · <id>"},
        "timestamp": "<when the event occurred, ISO 8601>"}],
     "allowed_mentions": {"parse": []}}

``allowed_mentions`` with an empty ``parse`` means nobody is ever notified, whatever the
text holds (``@everyone``, ``@here``, ``<@user>``, ``<@&role>``); mentions inside embeds
never ping anyway, and lookout puts no text in ``content``.

The title and body come from :func:`shared.relay.templates.render`. Titles, descriptions and
field texts are Markdown in Discord, so every piece of text has the Markdown that could
restyle it, hide it as a spoiler, disguise a link or render a mention or timestamp
(``<…>``) escaped with a backslash; bare URLs are left whole so they still work. Each
text is cut to Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits):
title 256, description 4096, 25 fields, field name 256 and value 1024, footer 2048, and at
most 6000 characters in all; lengths are counted in UTF-16 code units, which is never
less than Discord's count.

Discord's answers (https://discord.com/developers/docs/topics/rate-limits,
https://discord.com/developers/docs/topics/opcodes-and-status-codes#json): 200 (204
without ``wait``) is delivered; 400 (``50035`` Invalid Form Body, ``50006`` empty
message…), 401 (``50027`` Invalid Webhook Token), 403 and 404 (``10015`` Unknown Webhook)
are permanent; 429 and 5xx are retried. A 429 carries JSON ``{"message", "retry_after"
(seconds, with fractions), "global"}`` and the headers ``Retry-After`` and
``X-RateLimit-Reset-After``: the first of body, ``X-RateLimit-Reset-After`` and
``Retry-After`` gives the wait (raised as ``RetryableError(retry_after=…)``), and the sink
runner pauses every send until it has passed. A delivered message whose answer says
``X-RateLimit-Remaining: 0`` returns ``Delivered(pause=X-RateLimit-Reset-After)``: the
runner pauses the target until then, so the next send does not earn a 429 (Discord bans
clients that collect too many). ``per_second`` defaults to 1, kept by the runner, like
the pauses, across every replica of the sink.

The webhook URL carries the token: it is kept as a :class:`~shared.core.secrets.Secret`, never
logged and never part of an error message, nor of a dead letter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import yarl

from services.sinks.discord.config import DiscordTargetConfig
from shared.core.retryafter import parse_retry_after
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.markup import BLANK, MarkdownEscaper, by_risk, cut
from shared.relay.outbound import WebhookTarget
from shared.relay.schemas import Notification
from shared.relay.sources import Reading, read
from shared.relay.target import (
    RETRYABLE_STATUS,
    Delivered,
    Delivery,
    RetryableError,
    raise_for_status,
)
from shared.relay.templates import context, render

USER_AGENT = "lookout-discord/1"

TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
URL_MAX = 2048

RED = 0xE01E5A
AMBER = 0xECB22E
GREEN = 0x2EB67D
GREY = 0x9E9E9E

_MARKDOWN = MarkdownEscaper(
    # emphasis, strike, code, spoilers, links, mentions, timestamps and quotes
    inline="\\*_~`|[]<>",
    line_start="-+#",  # lists, headings, subtext
    # a list (``- ``), a heading (``# ``, ``## ``), subtext (``-# ``) or a rule (``---``)
    opens_block=lambda char, after: (
        after in BLANK or after == char or (char == "-" and after == "#")
    ),
)

CONFIG = DiscordTargetConfig
"""The ``[[targets]]`` table of a ``discord`` target (registered by the launcher)."""


def width(text: str) -> int:
    """Length in UTF-16 code units: characters beyond the BMP count twice."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def escape(text: str) -> str:
    """``text`` with its Markdown escaped, so Discord shows it as written."""
    return _MARKDOWN.escape(text)


def fit(text: str, limit: int) -> str:
    """``text`` escaped and, when wider than ``limit``, cut (never inside an escape) and
    ended with an ellipsis."""
    return cut(_MARKDOWN.pieces(text), limit, width)


def risk_colour(risk: int | None) -> int:
    """Red from 70, amber from 40, green below, grey when the message has no risk."""
    return by_risk(risk, RED, AMBER, GREEN, GREY)


def _timestamp(value: str) -> str | None:
    """``value`` as ISO 8601 with an offset (UTC when it had none), ``None`` if not a date."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


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
    pairs: list[tuple[str, str, bool]] = []
    if risk is not None:
        pairs.append(("Risk", str(risk), True))
    if values["application"]:
        pairs.append(("Application", values["application"], True))
    if values["environment"]:
        pairs.append(("Environment", values["environment"], True))
    pairs.append(("Source / Type", f"{note.source} / {note.type}", True))
    if values["ips"]:
        pairs.append(("IPs", ", ".join(values["ips"]), False))
    fields: list[dict[str, Any]] = [
        {"name": fit(name, FIELD_NAME_MAX), "value": fit(value, FIELD_VALUE_MAX), "inline": inline}
        for name, value, inline in pairs[: FIELDS_MAX - 1]
    ]
    link = f"[Silence similar]({silence_url})" if silence_url else ""
    if link and width(link) <= FIELD_VALUE_MAX:  # a masked link: its URL is not escaped
        fields.append({"name": "Silence", "value": link, "inline": False})
    footer = cut(list(f"lookout · {note.id}"), FOOTER_MAX, width)  # plain text

    used = width(title) + width(footer)
    used += sum(width(field["name"]) + width(field["value"]) for field in fields)
    room = min(DESCRIPTION_MAX, EMBED_TOTAL_MAX - used)

    embed: dict[str, Any] = {"title": title}
    if rendered.body and room > 1:
        embed["description"] = fit(rendered.body, room)
    url: str | None = values["url"]
    if url is not None and len(url) <= URL_MAX:
        embed["url"] = url
    embed["color"] = risk_colour(risk)
    embed["fields"] = fields
    embed["footer"] = {"text": footer}
    message = values["message"]
    occurred = message.get("date_occurred") if isinstance(message, dict) else None
    when = _timestamp(occurred) if isinstance(occurred, str) and occurred else None
    when = when or _timestamp(note.timestamp)
    if when is not None:
        embed["timestamp"] = when
    return {"content": None, "embeds": [embed], "allowed_mentions": {"parse": []}}


def _error_paths(errors: Any, path: str = "") -> list[str]:
    """``embeds.0.fields.6.value: Must be 1024 or fewer in length.`` for each error in
    Discord's nested ``errors`` object."""
    if not isinstance(errors, dict):
        return []
    found: list[str] = []
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            messages = [item.get("message") for item in value if isinstance(item, dict)]
            found.extend(f"{path or 'body'}: {text}" for text in messages if text)
        else:
            found.extend(_error_paths(value, f"{path}.{key}" if path else str(key)))
    return found


def _discord_error(body: str) -> tuple[str, dict[str, Any]]:
    """A readable error from Discord's answer body, and the decoded body (``{}`` if not
    JSON)."""
    text = body.strip()
    try:
        decoded = msgspec.json.decode(text) if text.startswith("{") else None
    except msgspec.DecodeError:
        decoded = None
    if not isinstance(decoded, dict):
        return text[:300], {}
    parts = [str(decoded.get("message") or "")]
    if decoded.get("code"):
        parts.append(f"(code {decoded['code']})")
    error = " ".join(part for part in parts if part)
    details = _error_paths(decoded.get("errors"))
    if details:
        error += ": " + "; ".join(details[:3])
    return error[:500], decoded


def _seconds(value: Any) -> float | None:
    """Seconds from a number or header value (fractions allowed, or an HTTP date)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            seconds = float(str(value))
        except ValueError:
            return parse_retry_after(str(value))
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def rate_limit_wait(body: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    """How long a 429 asks to wait: the body's ``retry_after``, else
    ``X-RateLimit-Reset-After``, else ``Retry-After``."""
    for value in (
        body.get("retry_after"),
        headers.get("X-RateLimit-Reset-After"),
        headers.get("Retry-After"),
    ):
        seconds = _seconds(value)
        if seconds is not None:
            return seconds
    return None


def execute_url(webhook_url: str) -> str:
    """The webhook URL with ``wait=true`` (other query parameters, e.g. ``thread_id``,
    kept)."""
    parts = urlsplit(webhook_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
    query.append(("wait", "true"))
    return urlunsplit(parts._replace(query=urlencode(query)))


class DiscordTarget(WebhookTarget):
    service = "Discord"
    user_agent = USER_AGENT

    def __init__(
        self,
        config: DiscordTargetConfig,
        webhook_url: Secret,
        allow: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        super().__init__(config, webhook_url, allow)
        self._url = yarl.URL(execute_url(webhook_url.reveal()), encoded=True)

    async def deliver(self, delivery: Delivery) -> Delivered | None:
        body = self.encode(build_message, delivery)
        reply = await self.post(self._url, body, read=2000)
        status, answer, headers = reply.status, reply.text, reply.headers
        if 200 <= status < 300:
            if headers.get("X-RateLimit-Remaining") == "0":
                reset_after = _seconds(headers.get("X-RateLimit-Reset-After"))
                if reset_after is not None:
                    return Delivered(pause=reset_after)  # the bucket is empty: no 429
            return None
        error, decoded = _discord_error(answer)
        detail = self.scrub(error)
        if status == 429:
            wait = rate_limit_wait(decoded, headers)
            if decoded.get("global") is True or headers.get("X-RateLimit-Global") == "true":
                detail += " (global)"
            raise RetryableError(f"HTTP 429: {detail}", wait)
        if status in RETRYABLE_STATUS or status >= 500:
            wait = _seconds(headers.get("Retry-After"))
            raise RetryableError(f"HTTP {status}" + (f": {detail}" if detail else ""), wait)
        raise_for_status(status, None, detail)  # permanent
        return None


def build(config: DiscordTargetConfig, settings: Settings) -> DiscordTarget:
    return DiscordTarget.from_settings(config, settings)
