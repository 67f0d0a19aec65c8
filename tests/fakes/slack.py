"""A loopback fake of Slack incoming webhooks (``POST /services/T…/B…/<token>``).

It answers the way Slack documents
(https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks,
https://api.slack.com/docs/rate-limits), with plain-text bodies:

* ``200 ok`` for an accepted message, whose decoded JSON is appended to ``messages``;
* ``400 invalid_payload``: the body is not a JSON object (``application/json``, or a form
  with a ``payload`` field, as Slack also accepts);
* ``400 no_text``: neither a non-empty ``text`` nor non-empty ``blocks``;
* ``400 invalid_blocks``: blocks that break Block Kit's structure or limits (more than 50
  blocks, a header that is not ``plain_text`` or is longer than 150 characters, a section
  text longer than 3000, more than 10 fields or a field longer than 2000, more than 10
  context elements, a button label longer than 75 or a URL longer than 3000, an unknown
  block type…); the reason is appended to ``rejections``;
* ``404 no_service`` for a path that is not one of its webhooks;
* ``429 rate_limited`` with ``Retry-After`` when ``rate_limit_per_second`` is exceeded.

Usage::

    async with FakeSlack(rate_limit_per_second=1) as slack:
        ...  # configure a slack target with webhook_url = slack.webhook_url
        slack.fail_next.append((429, "rate_limited", {"Retry-After": "1"}))
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from fakes.base import Failure, RecordedRequest, RecordingFake, TokenBucket

__all__ = ["Failure", "FakeSlack", "RecordedRequest", "check_message"]

_TEXT_TYPES = ("plain_text", "mrkdwn")
_COLOR = re.compile(r"^#?[0-9A-Fa-f]{6}$")
_TOKEN_CHARS = string.ascii_letters + string.digits
_DEFAULT_BODIES: dict[int, str] = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "channel_not_found",
    410: "channel_is_archived",
    429: "rate_limited",
}


class InvalidBlocks(ValueError):
    pass


def _text_object(value: Any, where: str, limit: int, plain_only: bool = False) -> None:
    if not isinstance(value, dict):
        raise InvalidBlocks(f"{where}: must be a text object")
    kind = value.get("type")
    if kind not in (("plain_text",) if plain_only else _TEXT_TYPES):
        raise InvalidBlocks(f"{where}: type {kind!r} not allowed")
    text = value.get("text")
    if not isinstance(text, str) or not text:
        raise InvalidBlocks(f"{where}: text must be a non-empty string")
    if len(text) > limit:
        raise InvalidBlocks(f"{where}: {len(text)} characters, at most {limit}")


def _block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise InvalidBlocks(f"{where}: must be an object")
    kind = block.get("type")
    if kind == "header":
        _text_object(block.get("text"), f"{where}.text", 150, plain_only=True)
    elif kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            raise InvalidBlocks(f"{where}: needs text or fields")
        if text is not None:
            _text_object(text, f"{where}.text", 3000)
        if fields is not None:
            if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                raise InvalidBlocks(f"{where}.fields: 1 to 10 items")
            for index, item in enumerate(fields):
                _text_object(item, f"{where}.fields[{index}]", 2000)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            raise InvalidBlocks(f"{where}.elements: 1 to 10 items")
        for index, item in enumerate(elements):
            if isinstance(item, dict) and item.get("type") == "image":
                continue
            _text_object(item, f"{where}.elements[{index}]", 3000)
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            raise InvalidBlocks(f"{where}.elements: 1 to 25 items")
        for index, item in enumerate(elements):
            here = f"{where}.elements[{index}]"
            if not isinstance(item, dict) or item.get("type") != "button":
                continue  # other interactive elements are not checked
            _text_object(item.get("text"), f"{here}.text", 75, plain_only=True)
            url = item.get("url")
            if url is not None and (not isinstance(url, str) or not 0 < len(url) <= 3000):
                raise InvalidBlocks(f"{here}.url: a string of at most 3000 characters")
    elif kind not in ("divider", "image", "rich_text", "markdown", "video", "file"):
        raise InvalidBlocks(f"{where}: unknown block type {kind!r}")


def _blocks(blocks: Any, where: str) -> int:
    if not isinstance(blocks, list):
        raise InvalidBlocks(f"{where}: must be a list")
    for index, block in enumerate(blocks):
        _block(block, f"{where}[{index}]")
    return len(blocks)


def check_message(payload: Any) -> str | None:
    """Slack's error string for ``payload`` (a decoded body), ``None`` when it would post."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    text, blocks = payload.get("text"), payload.get("blocks")
    has_text = isinstance(text, str) and bool(text.strip())
    has_blocks = isinstance(blocks, list) and bool(blocks)
    if not has_text and not has_blocks:
        return "no_text"
    if text is not None and not isinstance(text, str):
        return "invalid_payload"
    try:
        count = _blocks(blocks, "blocks") if blocks is not None else 0
        attachments = payload.get("attachments")
        if attachments is not None:
            if not isinstance(attachments, list) or len(attachments) > 100:
                raise InvalidBlocks("attachments: a list of at most 100")
            for index, attachment in enumerate(attachments):
                where = f"attachments[{index}]"
                if not isinstance(attachment, dict):
                    raise InvalidBlocks(f"{where}: must be an object")
                color = attachment.get("color")
                if color is not None and not (
                    isinstance(color, str)
                    and (color in ("good", "warning", "danger") or _COLOR.match(color))
                ):
                    raise InvalidBlocks(f"{where}.color: {color!r} is not a colour")
                if attachment.get("blocks") is not None:
                    count += _blocks(attachment["blocks"], f"{where}.blocks")
        if count > 50:
            raise InvalidBlocks(f"{count} blocks, at most 50")
    except InvalidBlocks as exc:
        return f"invalid_blocks: {exc}"
    return None


class FakeSlack(RecordingFake):
    """Slack incoming webhooks on 127.0.0.1 with a free port.

    Knobs (plain attributes, changeable while running), besides those of
    :class:`~fakes.base.RecordingFake` (``fail_next``, :meth:`fail`, ``delay``,
    ``delay_next``):

    * ``fail_next`` entries: ``500``, ``(500, "rollup_error")`` or
      ``(429, "rate_limited", {"Retry-After": "1"})``; a bare status gets Slack's error
      string for it;
    * ``rate_limit``: a :class:`~fakes.base.TokenBucket` of ``rate_limit_burst`` messages
      refilled at ``rate_limit_per_second``; a message beyond it answers 429
      ``rate_limited`` with ``Retry-After: retry_after``; no limit unless
      ``rate_limit_per_second`` is given. ``rate_limit_tolerance`` seconds of clock jitter
      are forgiven.

    Records: ``requests`` (every request), ``answers`` (the status of each, in order),
    ``messages`` (decoded bodies of accepted messages) and ``rejections`` (why a message
    got a 400).
    """

    def __init__(
        self,
        *,
        webhooks: Iterable[str] = (),
        rate_limit_per_second: float | None = None,
        rate_limit_burst: int = 1,
        rate_limit_tolerance: float = 0.05,
        retry_after: str = "1",
        fail_next: Iterable[Failure] = (),
        delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fail_next=fail_next, delay=delay, clock=clock)
        self.paths: list[str] = list(webhooks) or [self.new_path()]
        self.rate_limit = TokenBucket(
            rate_limit_per_second, rate_limit_burst, rate_limit_tolerance, lambda: self.clock()
        )
        self.retry_after = retry_after
        self.messages: list[dict[str, Any]] = []
        self.rejections: list[str] = []

    @staticmethod
    def new_path() -> str:
        """A webhook path shaped like Slack's: ``/services/T…/B…/<24 characters>``."""

        def token(length: int) -> str:
            return "".join(secrets.choice(_TOKEN_CHARS) for _ in range(length))

        return f"/services/T{token(8).upper()}/B{token(10).upper()}/{token(24)}"

    def add_webhook(self) -> str:
        """Register one more webhook; its URL."""
        path = self.new_path()
        self.paths.append(path)
        return self.base_url + path

    # -------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: where ``https://hooks.slack.com`` was."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The URL of the first webhook this fake knows."""
        return self.base_url + self.paths[0]

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/{tail:.*}", self._handle)

    # --------------------------------------------------------------- handlers

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        """Slack's plain-text error string for ``status`` (or ``detail``)."""
        body = detail or _DEFAULT_BODIES.get(status, "rollup_error" if status >= 500 else "error")
        return self.answer(status, body, headers)

    async def _handle(self, request: web.Request) -> web.Response:
        if (injected := await self.gate(request)) is not None:
            return injected
        raw = self.requests[-1].body
        if request.path not in self.paths:
            return self.answer(404, "no_service")
        if request.method != "POST":
            return self.answer(405, "invalid_method")
        try:
            payload = self._decode(request.content_type, raw)
        except ValueError:
            self.rejections.append("invalid_payload")
            return self.answer(400, "invalid_payload")
        error = check_message(payload)
        if error is not None:
            self.rejections.append(error)
            return self.answer(400, error.partition(":")[0])
        if not self.rate_limit.take():
            return self.answer(429, "rate_limited", {"Retry-After": self.retry_after})
        assert isinstance(payload, dict)
        self.messages.append(payload)
        return self.answer(200, "ok")

    @staticmethod
    def _decode(content_type: str, raw: bytes) -> Any:
        if content_type == "application/x-www-form-urlencoded":
            values = parse_qs(raw.decode("utf-8"), strict_parsing=True).get("payload")
            if not values:
                raise ValueError("no payload field")
            raw = values[0].encode()
        elif content_type != "application/json":
            raise ValueError(f"content type {content_type!r}")
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        return payload
