"""A loopback fake of Discord's execute-webhook endpoint
(``POST /api/webhooks/<id>/<token>[?wait=true]``).

It answers the way Discord documents (https://discord.com/developers/docs/resources/webhook#execute-webhook,
https://discord.com/developers/docs/topics/rate-limits,
https://discord.com/developers/docs/topics/opcodes-and-status-codes#json), with JSON
bodies ``{"message": …, "code": …}``:

* ``200`` with the created message object when ``wait=true``, else ``204``; the decoded
  request is appended to ``messages``;
* ``404 Unknown Webhook`` (code ``10015``) for a webhook id this fake does not know,
  ``401 Invalid Webhook Token`` (``50027``) for a known id with a wrong token;
* ``400 The request body contains invalid JSON.`` (``50109``);
* ``400 Cannot send an empty message`` (``50006``): no content and no embeds;
* ``400 Invalid Form Body`` (``50035``) with Discord's nested ``errors`` object for a
  message that breaks the limits: content over 2000 characters, more than 10 embeds, an
  embed title over 256, description over 4096, more than 25 fields, a field without a
  name or value or with a name over 256 or a value over 1024, a footer without text or
  over 2048, an author name over 256, a colour outside 0..0xFFFFFF, a URL that is not
  http(s), a timestamp that is not ISO 8601, more than 6000 characters in all embeds
  together, or ``allowed_mentions`` that are not valid; the errors are appended to
  ``rejections``;
* ``429`` with ``{"message": "You are being rate limited.", "retry_after": <seconds>,
  "global": false}`` and the headers ``Retry-After`` (whole seconds, rounded up) and
  ``X-RateLimit-*`` when the webhook's bucket (``rate_limit`` = (requests, per seconds))
  is empty. With a ``rate_limit`` every answer carries ``X-RateLimit-Limit``,
  ``-Remaining``, ``-Reset``, ``-Reset-After`` and ``-Bucket``.

It also records who an accepted message would notify, in ``pings``: ``@everyone`` /
``@here`` and ``<@user>`` / ``<@&role>`` in ``content`` ping unless ``allowed_mentions``
says otherwise; text in embeds never pings.

Usage::

    async with FakeDiscord(rate_limit=(5, 2.0)) as discord:
        ...  # configure a discord target with webhook_url = discord.webhook_url
        discord.fail_next.append(429)
"""

from __future__ import annotations

import json
import math
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from fakes.base import Failure, FixedWindow, RecordedRequest, RecordingFake

__all__ = ["Failure", "FakeDiscord", "RecordedRequest", "check_message", "embed_size"]

CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
EMBED_TOTAL_MAX = 6000
URL_MAX = 2048
COLOR_MAX = 0xFFFFFF
_TOKEN_CHARS = string.ascii_letters + string.digits + "-_"
_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/(\d+)/([A-Za-z0-9_-]+)$")
_EVERYONE = re.compile(r"@(everyone|here)\b")
_USER = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_DEFAULT_BODIES: dict[int, tuple[str, int]] = {
    400: ("Invalid Form Body", 50035),
    401: ("Invalid Webhook Token", 50027),
    403: ("Missing Permissions", 50013),
    404: ("Unknown Webhook", 10015),
}


class _Errors:
    """Discord's nested ``errors`` object, built one error at a time."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}
        self.flat: list[str] = []

    def add(self, path: list[str | int], code: str, message: str) -> None:
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
        self.flat.append(f"{'.'.join(str(key) for key in path)}: {message}")

    def text(self, value: Any, path: list[str | int], limit: int, required: bool = False) -> int:
        """Check a string no longer than ``limit``; its length (0 when missing)."""
        if value is None or (value == "" and not required):
            if required:
                self.add(path, "BASE_TYPE_REQUIRED", "This field is required")
            return 0
        if not isinstance(value, str):
            self.add(path, "STRING_TYPE_CONVERT", "Could not interpret value as string.")
            return 0
        if required and not value.strip():
            self.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        if len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
        return len(value)


def _url(errors: _Errors, value: Any, path: list[str | int]) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) > URL_MAX:
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")


def embed_size(embed: Mapping[str, Any]) -> int:
    """Characters that count towards the 6000 of a message: title, description, field
    names and values, footer text and author name."""

    def length(value: Any) -> int:
        return len(value) if isinstance(value, str) else 0

    total = length(embed.get("title")) + length(embed.get("description"))
    for field in embed.get("fields") or []:
        if isinstance(field, dict):
            total += length(field.get("name")) + length(field.get("value"))
    for key in ("footer", "author"):
        part = embed.get(key)
        if isinstance(part, dict):
            total += length(part.get("text" if key == "footer" else "name"))
    return total


def _embed(errors: _Errors, embed: Any, path: list[str | int]) -> None:
    if not isinstance(embed, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    errors.text(embed.get("title"), [*path, "title"], TITLE_MAX)
    errors.text(embed.get("description"), [*path, "description"], DESCRIPTION_MAX)
    _url(errors, embed.get("url"), [*path, "url"])
    color = embed.get("color")
    if color is not None and (
        not isinstance(color, int) or isinstance(color, bool) or not 0 <= color <= COLOR_MAX
    ):
        errors.add(
            [*path, "color"],
            "NUMBER_TYPE_MAX",
            f"int value should be less than or equal to {COLOR_MAX}.",
        )
    timestamp = embed.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp))
        except ValueError:
            errors.add(
                [*path, "timestamp"],
                "DATE_TIME_TYPE_PARSE",
                f"Could not parse {timestamp}. Should be ISO8601.",
            )
    fields = embed.get("fields")
    if fields is not None:
        if not isinstance(fields, list):
            errors.add([*path, "fields"], "LIST_TYPE_CONVERT", "Must be an array.")
        else:
            if len(fields) > FIELDS_MAX:
                errors.add(
                    [*path, "fields"], "BASE_TYPE_MAX_LENGTH", f"Must be {FIELDS_MAX} or fewer."
                )
            for index, field in enumerate(fields):
                here = [*path, "fields", index]
                if not isinstance(field, dict):
                    errors.add(here, "DICT_TYPE_CONVERT", "Only dictionaries may be used")
                    continue
                errors.text(field.get("name"), [*here, "name"], FIELD_NAME_MAX, required=True)
                errors.text(field.get("value"), [*here, "value"], FIELD_VALUE_MAX, required=True)
                inline = field.get("inline")
                if inline is not None and not isinstance(inline, bool):
                    errors.add([*here, "inline"], "BOOLEAN_TYPE_CONVERT", "Must be a boolean.")
    footer = embed.get("footer")
    if footer is not None:
        if not isinstance(footer, dict):
            errors.add([*path, "footer"], "DICT_TYPE_CONVERT", "Only dictionaries may be used")
        else:
            errors.text(footer.get("text"), [*path, "footer", "text"], FOOTER_MAX, required=True)
            _url(errors, footer.get("icon_url"), [*path, "footer", "icon_url"])
    author = embed.get("author")
    if author is not None:
        if not isinstance(author, dict):
            errors.add([*path, "author"], "DICT_TYPE_CONVERT", "Only dictionaries may be used")
        else:
            errors.text(author.get("name"), [*path, "author", "name"], AUTHOR_MAX, required=True)
            _url(errors, author.get("url"), [*path, "author", "url"])


def _allowed_mentions(errors: _Errors, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        errors.add(["allowed_mentions"], "DICT_TYPE_CONVERT", "Only dictionaries may be used")
        return
    parse = value.get("parse", [])
    if not isinstance(parse, list) or any(
        item not in ("roles", "users", "everyone") for item in parse
    ):
        errors.add(
            ["allowed_mentions", "parse"],
            "ENUM_TYPE_COERCE",
            "Value must be one of {'roles', 'users', 'everyone'}.",
        )
    for key in ("users", "roles"):
        ids = value.get(key, [])
        if not isinstance(ids, list) or len(ids) > 100:
            errors.add(["allowed_mentions", key], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer.")
        elif ids and key in parse:
            errors.add(
                ["allowed_mentions", key],
                "SET_TYPE_ALREADY_CONTAINS_VALUE",
                f"parse already contains {key}",
            )


def check_message(payload: Any) -> tuple[dict[str, Any], list[str]] | None:
    """Discord's 400 body for ``payload`` (a decoded body) and the errors in a flat list,
    ``None`` when Discord would post it."""
    if not isinstance(payload, dict):
        return {"message": "Invalid Form Body", "code": 50035, "errors": {}}, ["not an object"]
    errors = _Errors()
    content = payload.get("content")
    errors.text(content, ["content"], CONTENT_MAX)
    embeds = payload.get("embeds")
    if embeds is not None:
        if not isinstance(embeds, list):
            errors.add(["embeds"], "LIST_TYPE_CONVERT", "Must be an array.")
            embeds = []
        elif len(embeds) > EMBEDS_MAX:
            errors.add(["embeds"], "BASE_TYPE_MAX_LENGTH", f"Must be {EMBEDS_MAX} or fewer.")
        for index, embed in enumerate(embeds):
            _embed(errors, embed, ["embeds", index])
        total = sum(embed_size(embed) for embed in embeds if isinstance(embed, dict))
        if total > EMBED_TOTAL_MAX:
            errors.add(
                ["embeds"],
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}",
            )
    _allowed_mentions(errors, payload.get("allowed_mentions"))
    if errors.flat:
        body = {"message": "Invalid Form Body", "code": 50035, "errors": errors.tree}
        return body, errors.flat
    if not (isinstance(content, str) and content.strip()) and not embeds:
        return {"message": "Cannot send an empty message", "code": 50006}, ["empty message"]
    return None


def pings(payload: Mapping[str, Any]) -> list[str]:
    """Whom ``payload`` would notify: mentions in ``content`` that ``allowed_mentions``
    lets through (all of them when it is absent). Embeds never notify."""
    content = payload.get("content")
    if not isinstance(content, str):
        return []
    allowed = payload.get("allowed_mentions")
    parse = (
        ["everyone", "users", "roles"]
        if not isinstance(allowed, dict)
        else allowed.get("parse", [])
    )
    users = allowed.get("users", []) if isinstance(allowed, dict) else []
    roles = allowed.get("roles", []) if isinstance(allowed, dict) else []
    found: list[str] = []
    if "everyone" in parse:
        found.extend(f"@{name}" for name in _EVERYONE.findall(content))
    found.extend(f"<@{u}>" for u in _USER.findall(content) if "users" in parse or u in users)
    found.extend(f"<@&{r}>" for r in _ROLE.findall(content) if "roles" in parse or r in roles)
    return found


class FakeDiscord(RecordingFake):
    """Discord webhooks on 127.0.0.1 with a free port.

    Knobs (plain attributes, changeable while running), besides those of
    :class:`~fakes.base.RecordingFake` (``fail_next``, :meth:`fail`, ``delay``,
    ``delay_next``):

    * ``fail_next`` entries: ``500``, ``429`` (Discord's rate-limit answer, ``retry_after``
      1 second), ``(502, "<html>…")`` or ``(429, '{"retry_after": 0.3, …}', {"Retry-After":
      "1"})``;
    * ``rate_limit``: ``(requests, seconds)``: each webhook's bucket (a
      :class:`~fakes.base.FixedWindow`) allows this many requests per window, which starts
      with the first request and resets after ``seconds``; beyond it, 429. ``None`` for no
      limit (and no ``X-RateLimit-*``).

    Records: ``requests`` (every request), ``answers`` (the status of each, in order),
    ``messages`` (decoded bodies of accepted messages), ``pings`` (whom they notified)
    and ``rejections`` (the errors of each 400).
    """

    def __init__(
        self,
        *,
        rate_limit: tuple[int, float] | None = None,
        fail_next: Iterable[Failure] = (),
        delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fail_next=fail_next, delay=delay, clock=clock)
        webhook, token = self.new_webhook()
        self.webhooks: dict[str, str] = {webhook: token}
        """Known webhooks: id → token."""
        self.rate_limit = rate_limit
        self.messages: list[dict[str, Any]] = []
        self.pings: list[str] = []
        self.rejections: list[list[str]] = []
        self._windows: FixedWindow | None = None
        self._next_id = 1_300_000_000_000_000_000

    @staticmethod
    def new_webhook() -> tuple[str, str]:
        """A webhook id (a 19-digit snowflake) and a token (68 characters), as Discord's."""
        webhook = str(secrets.randbelow(9 * 10**18) + 10**18)
        return webhook, "".join(secrets.choice(_TOKEN_CHARS) for _ in range(68))

    def url_for(self, webhook: str, token: str) -> str:
        return f"{self.base_url}/api/webhooks/{webhook}/{token}"

    def add_webhook(self) -> str:
        """Register one more webhook; its URL."""
        webhook, token = self.new_webhook()
        self.webhooks[webhook] = token
        return self.url_for(webhook, token)

    def unknown_webhook_url(self) -> str:
        """A well-formed URL of a webhook this fake does not know (deleted)."""
        return self.url_for(*self.new_webhook())

    # -------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: where ``https://discord.com`` was."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The URL of the first webhook this fake knows."""
        webhook, token = next(iter(self.webhooks.items()))
        return self.url_for(webhook, token)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/{tail:.*}", self._handle)

    # --------------------------------------------------------------- handlers

    def answer(
        self,
        status: int,
        text: Any = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> web.Response:
        """A JSON answer (``text`` a string as is, else encoded), or none without one."""
        if text is None:
            return super().answer(status, None, headers)
        body = text if isinstance(text, str) else json.dumps(text)
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(headers or {})
        return super().answer(status, body, all_headers)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        """Discord's JSON error for ``status`` (``detail`` as its message); a 429 is its
        rate-limit answer, waiting ``Retry-After`` (1 second unless given)."""
        if status == 429:
            wait = float(headers["Retry-After"]) if "Retry-After" in headers else 1.0
            return self._rate_limited_answer(wait, "injected", detail)
        message, code = _DEFAULT_BODIES.get(status, (f"{status}: Server Error", 0))
        return self.answer(status, {"message": detail or message, "code": code}, headers)

    def _rate_limited_answer(
        self, retry_after: float, bucket: str, message: str | None = None
    ) -> web.Response:
        headers = {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Limit": str(self.rate_limit[0] if self.rate_limit else 5),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "user",
        }
        body = {
            "message": message or "You are being rate limited.",
            "retry_after": round(retry_after, 3),
            "global": False,
        }
        return self.answer(429, body, headers)

    def _take(self, webhook: str) -> tuple[bool, dict[str, str], float]:
        """Count one request against the webhook's bucket: (allowed, headers, reset after)."""
        if self.rate_limit is None:
            return True, {}, 0.0
        limit, per = self.rate_limit
        if self._windows is None or (self._windows.limit, self._windows.seconds) != (limit, per):
            self._windows = FixedWindow(limit, per, lambda: self.clock())
        state = self._windows.take(webhook)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(state.remaining),
            "X-RateLimit-Reset": f"{time.time() + state.reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{state.reset_after:.3f}",
            "X-RateLimit-Bucket": webhook[-8:],
        }
        return state.allowed, headers, state.reset_after

    async def _handle(self, request: web.Request) -> web.Response:
        if (injected := await self.gate(request)) is not None:
            return injected
        raw = self.requests[-1].body
        match = _PATH.match(request.path)
        if match is None or match.group(1) not in self.webhooks:
            return self.answer(404, {"message": "Unknown Webhook", "code": 10015})
        webhook, token = match.groups()
        if not secrets.compare_digest(token, self.webhooks[webhook]):
            return self.answer(401, {"message": "Invalid Webhook Token", "code": 50027})
        if request.method != "POST":
            return self.answer(405, {"message": "405: Method Not Allowed", "code": 0})
        allowed, limits, reset_after = self._take(webhook)
        if not allowed:
            return self._rate_limited_answer(reset_after, limits["X-RateLimit-Bucket"])
        try:
            payload = json.loads(raw) if request.content_type == "application/json" else None
        except ValueError:
            payload = None
        if payload is None:
            self.rejections.append(["invalid JSON"])
            invalid = {"message": "The request body contains invalid JSON.", "code": 50109}
            return self.answer(400, invalid, limits)
        problem = check_message(payload)
        if problem is not None:
            refusal, flat = problem
            self.rejections.append(flat)
            return self.answer(400, refusal, limits)
        assert isinstance(payload, dict)
        self.messages.append(payload)
        self.pings.extend(pings(payload))
        if request.query.get("wait", "false").lower() != "true":
            return self.answer(204, None, limits)
        self._next_id += 1
        created = {
            "id": str(self._next_id),
            "type": 0,
            "content": payload.get("content") or "",
            "channel_id": "1200000000000000000",
            "embeds": payload.get("embeds") or [],
            "webhook_id": webhook,
            "timestamp": datetime.now().astimezone().isoformat(),
        }
        return self.answer(200, created, limits)
