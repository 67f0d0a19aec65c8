"""A loopback fake of a Microsoft Teams Workflows webhook ("Post to a channel when a webhook
request is received"): ``POST /workflows/<id>/triggers/manual/paths/invoke?api-version=…
&sp=…&sv=1.0&sig=<signature>``.

It answers the way the Logic Apps trigger behind the webhook does, with JSON error bodies
``{"error": {"code": …, "message": …}}``:

* ``202`` (empty body) for an accepted message, whose decoded JSON is appended to
  ``messages`` and whose cards to ``cards``;
* ``404 WorkflowNotFound`` for a workflow this fake does not know (deleted, or a wrong URL);
* ``401 DirectApiAuthorizationRequired`` without ``sig``, ``401
  DirectApiInvalidAuthorizationSignature`` with a wrong one;
* ``413 MessageSizeLimitExceeded`` for a body over ``max_bytes`` (Teams' 28 KB);
* ``400 InvalidRequestContent`` for a body that is not a JSON object, or a message that
  Teams could not post: not ``{"type": "message", "attachments": [...]}``, an attachment
  that is not an Adaptive Card (``application/vnd.microsoft.card.adaptive``), or a card that
  breaks the schema (not ``type: AdaptiveCard``, a version Teams does not render, a
  TextBlock without text or with an unknown colour, size or weight, a FactSet without
  facts or a fact that is not two strings, an Action.OpenUrl without an absolute URL, an
  unknown element or action type…); the reason is appended to ``rejections``. (The real
  trigger answers 202 and the flow run fails afterwards, where nobody sees it; answering
  400 makes the mistake visible to tests.)
* ``429 TooManyRequests`` with ``Retry-After`` when ``rate_limit_per_second`` is exceeded.

Usage::

    async with FakeTeams(rate_limit_per_second=1) as teams:
        ...  # configure a teams target with webhook_url = teams.webhook_url
        teams.fail_next.append((429, "", {"Retry-After": "1"}))
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from fakes.base import Failure, RecordedRequest, RecordingFake, TokenBucket

__all__ = ["CARD_CONTENT_TYPE", "Failure", "FakeTeams", "RecordedRequest", "check_message"]

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
TEAMS_MAX_BYTES = 28 * 1024
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
"""Adaptive Card versions Teams renders."""
COLORS = ("default", "dark", "light", "accent", "good", "warning", "attention")
SIZES = ("default", "small", "medium", "large", "extralarge")
WEIGHTS = ("default", "lighter", "bolder")
_SIG_CHARS = string.ascii_letters + string.digits + "-_"
_PATH = re.compile(r"^/workflows/([0-9a-f]{32})/triggers/manual/paths/invoke$")
_DEFAULT_CODES: dict[int, str] = {
    400: "InvalidRequestContent",
    401: "DirectApiInvalidAuthorizationSignature",
    403: "AuthorizationFailed",
    404: "WorkflowNotFound",
    429: "TooManyRequests",
}


class InvalidCard(ValueError):
    pass


def error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


def _string(value: Any, where: str, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise InvalidCard(f"{where}: must be a string")


def _enum(value: Any, where: str, allowed: tuple[str, ...]) -> None:
    if value is None:
        return
    if not isinstance(value, str) or value.lower() not in allowed:
        raise InvalidCard(f"{where}: {value!r} is not one of {', '.join(allowed)}")


def _absolute_url(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidCard(f"{where}: a URL is required")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "mailto", "tel") or not (
        parts.netloc or parts.scheme in ("mailto", "tel")
    ):
        raise InvalidCard(f"{where}: {value[:80]!r} is not an absolute URL")


def _elements(items: Any, where: str) -> None:
    if not isinstance(items, list):
        raise InvalidCard(f"{where}: must be a list")
    for index, item in enumerate(items):
        _element(item, f"{where}[{index}]")


def _element(element: Any, where: str) -> None:
    if not isinstance(element, dict):
        raise InvalidCard(f"{where}: must be an object")
    kind = element.get("type")
    if kind == "TextBlock":
        _string(element.get("text"), f"{where}.text")
        _enum(element.get("color"), f"{where}.color", COLORS)
        _enum(element.get("size"), f"{where}.size", SIZES)
        _enum(element.get("weight"), f"{where}.weight", WEIGHTS)
        if "wrap" in element and not isinstance(element["wrap"], bool):
            raise InvalidCard(f"{where}.wrap: must be a boolean")
    elif kind == "FactSet":
        facts = element.get("facts")
        if not isinstance(facts, list) or not facts:
            raise InvalidCard(f"{where}.facts: a non-empty list")
        for index, fact in enumerate(facts):
            here = f"{where}.facts[{index}]"
            if not isinstance(fact, dict):
                raise InvalidCard(f"{here}: must be an object")
            _string(fact.get("title"), f"{here}.title")
            _string(fact.get("value"), f"{here}.value")
    elif kind == "Image":
        _absolute_url(element.get("url"), f"{where}.url")
    elif kind == "Container":
        _elements(element.get("items"), f"{where}.items")
    elif kind == "ColumnSet":
        columns = element.get("columns", [])
        if not isinstance(columns, list):
            raise InvalidCard(f"{where}.columns: must be a list")
        for index, column in enumerate(columns):
            if not isinstance(column, dict) or column.get("type", "Column") != "Column":
                raise InvalidCard(f"{where}.columns[{index}]: must be a Column")
            _elements(column.get("items", []), f"{where}.columns[{index}].items")
    elif kind == "ActionSet":
        _actions(element.get("actions"), f"{where}.actions")
    elif kind not in ("RichTextBlock", "ImageSet", "Table", "Media") and not (
        isinstance(kind, str) and kind.startswith("Input.")
    ):
        raise InvalidCard(f"{where}: unknown element type {kind!r}")


def _actions(actions: Any, where: str) -> None:
    if not isinstance(actions, list):
        raise InvalidCard(f"{where}: must be a list")
    for index, action in enumerate(actions):
        here = f"{where}[{index}]"
        if not isinstance(action, dict):
            raise InvalidCard(f"{here}: must be an object")
        kind = action.get("type")
        if kind == "Action.OpenUrl":
            _absolute_url(action.get("url"), f"{here}.url")
            _string(action.get("title"), f"{here}.title", required=False)
        elif kind not in (
            "Action.Submit",
            "Action.ShowCard",
            "Action.ToggleVisibility",
            "Action.Execute",
        ):
            raise InvalidCard(f"{here}: unknown action type {kind!r}")


def check_card(card: Any) -> None:
    """Raise :class:`InvalidCard` unless ``card`` is an Adaptive Card Teams would render."""
    if not isinstance(card, dict):
        raise InvalidCard("content: must be an object")
    if card.get("type") != "AdaptiveCard":
        raise InvalidCard(f"content.type: {card.get('type')!r}, expected 'AdaptiveCard'")
    version = card.get("version")
    if version not in VERSIONS:
        raise InvalidCard(f"content.version: {version!r} is not one of {', '.join(VERSIONS)}")
    _elements(card.get("body", []), "content.body")
    _actions(card.get("actions", []), "content.actions")


def check_message(payload: Any) -> str | None:
    """Why Teams could not post ``payload`` (a decoded body), ``None`` when it would."""
    if not isinstance(payload, dict):
        return "the body is not a JSON object"
    if payload.get("type") != "message":
        return f"type: {payload.get('type')!r}, expected 'message'"
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "attachments: a non-empty list is required"
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        if not isinstance(attachment, dict):
            return f"{where}: must be an object"
        if attachment.get("contentType") != CARD_CONTENT_TYPE:
            return f"{where}.contentType: {attachment.get('contentType')!r} is not an Adaptive Card"
        try:
            check_card(attachment.get("content"))
        except InvalidCard as exc:
            return f"{where}.{exc}"
    return None


class FakeTeams(RecordingFake):
    """Teams Workflows webhooks on 127.0.0.1 with a free port.

    Knobs (plain attributes, changeable while running), besides those of
    :class:`~fakes.base.RecordingFake` (``fail_next``, :meth:`fail`, ``delay``,
    ``delay_next``):

    * ``fail_next`` entries: ``500``, ``(502, "bad gateway")`` or
      ``(429, "", {"Retry-After": "1"})``; a bare status gets a Logic Apps error body;
    * ``rate_limit``: a :class:`~fakes.base.TokenBucket` of ``rate_limit_burst`` messages
      refilled at ``rate_limit_per_second``; a message beyond it answers 429 with
      ``Retry-After: retry_after``; no limit unless ``rate_limit_per_second`` is given.
      ``rate_limit_tolerance`` seconds of clock jitter are forgiven.
    * ``max_bytes``: the largest body accepted (Teams: 28 KB).

    Records: ``requests`` (every request), ``answers`` (the status of each, in order),
    ``messages`` (decoded bodies of accepted messages), ``cards`` (their Adaptive Cards)
    and ``rejections`` (why a message got a 400).
    """

    def __init__(
        self,
        *,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: int = 1,
        rate_limit_tolerance: float = 0.05,
        retry_after: str = "1",
        fail_next: Iterable[Failure] = (),
        max_bytes: int = TEAMS_MAX_BYTES,
        delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fail_next=fail_next, delay=delay, clock=clock)
        workflow, sig = self.new_workflow()
        self.workflows: dict[str, str] = {workflow: sig}
        """Known workflows: id → signature."""
        self.rate_limit = TokenBucket(
            rate_limit_per_second, rate_limit_burst, rate_limit_tolerance, lambda: self.clock()
        )
        self.retry_after = retry_after
        self.max_bytes = max_bytes
        self.client_max_size = max(max_bytes * 4, 1024**2)
        self.messages: list[dict[str, Any]] = []
        self.cards: list[dict[str, Any]] = []
        self.rejections: list[str] = []

    @staticmethod
    def new_workflow() -> tuple[str, str]:
        """A workflow id (32 hex digits) and a signature shaped like Teams' (43 characters)."""
        return secrets.token_hex(16), "".join(secrets.choice(_SIG_CHARS) for _ in range(43))

    def url_for(self, workflow: str, sig: str) -> str:
        query = urlencode(
            {"api-version": "2016-06-01", "sp": "/triggers/manual/run", "sv": "1.0", "sig": sig}
        )
        return f"{self.base_url}/workflows/{workflow}/triggers/manual/paths/invoke?{query}"

    def add_webhook(self) -> str:
        """Register one more workflow; its webhook URL."""
        workflow, sig = self.new_workflow()
        self.workflows[workflow] = sig
        return self.url_for(workflow, sig)

    def unknown_webhook_url(self) -> str:
        """A well-formed webhook URL of a workflow this fake does not know (deleted)."""
        return self.url_for(*self.new_workflow())

    # -------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: where ``https://prod-NN.<region>.logic.azure.com`` was."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The URL of the first workflow this fake knows."""
        workflow, sig = next(iter(self.workflows.items()))
        return self.url_for(workflow, sig)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/{tail:.*}", self._handle)

    # --------------------------------------------------------------- handlers

    def answer(
        self,
        status: int,
        text: str | None = "",
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> web.Response:
        all_headers = {"Content-Type": "application/json; charset=utf-8"} if text else {}
        all_headers.update(headers or {})
        return super().answer(status, text, all_headers)

    def _error(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return self.answer(status, error_body(code, message), headers)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        """A Logic Apps error body for ``status`` (``detail`` as its message)."""
        code = _DEFAULT_CODES.get(status, "InternalServerError")
        return self._error(status, code, detail or f"injected failure {status}", headers)

    async def _handle(self, request: web.Request) -> web.Response:
        if (injected := await self.gate(request)) is not None:
            return injected
        raw = self.requests[-1].body
        match = _PATH.match(request.path)
        if match is None or match.group(1) not in self.workflows:
            workflow = match.group(1) if match else "?"
            return self._error(
                404, "WorkflowNotFound", f"The workflow '{workflow}' could not be found."
            )
        if request.method != "POST":
            return self._error(
                405, "TriggerRequestMethodNotValid", "The HTTP method must be 'POST'."
            )
        sig = request.query.get("sig")
        if not sig:
            return self._error(
                401,
                "DirectApiAuthorizationRequired",
                "The request must be authenticated only by Shared Access scheme.",
            )
        if not secrets.compare_digest(sig, self.workflows[match.group(1)]):
            return self._error(
                401,
                "DirectApiInvalidAuthorizationSignature",
                "The provided authorization signature is not valid.",
            )
        if len(raw) > self.max_bytes:
            self.rejections.append(f"{len(raw)} bytes, at most {self.max_bytes}")
            return self._error(
                413, "MessageSizeLimitExceeded", f"Message size exceeded {self.max_bytes} bytes."
            )
        try:
            payload = json.loads(raw)
        except ValueError:
            self.rejections.append("invalid JSON")
            return self._error(400, "InvalidRequestContent", "The request body is not JSON.")
        error = check_message(payload)
        if error is not None:
            self.rejections.append(error)
            return self._error(400, "InvalidRequestContent", error)
        if not self.rate_limit.take():
            return self._error(
                429,
                "TooManyRequests",
                f"Rate limit is exceeded. Try again in {self.retry_after} seconds.",
                {"Retry-After": self.retry_after},
            )
        assert isinstance(payload, dict)
        self.messages.append(payload)
        self.cards.extend(attachment["content"] for attachment in payload["attachments"])
        return self.answer(202)
