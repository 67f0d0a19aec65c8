"""A loopback fake of the PagerDuty Events API v2 (``POST /v2/enqueue``).

It answers the way PagerDuty documents
(https://developer.pagerduty.com/docs/events-api-v2/trigger-events/), with JSON bodies:

* ``202 {"status": "success", "message": "Event processed", "dedup_key": …}`` for an
  accepted event, whose decoded JSON is appended to ``events``; a ``trigger`` whose
  ``dedup_key`` names an open incident adds to it, any other trigger opens a new one in
  ``incidents`` (without a ``dedup_key`` the fake makes one up, as PagerDuty does);
  ``acknowledge`` and ``resolve`` change the incident's status;
* ``400 {"status": "invalid event", "message": "Event object is invalid", "errors": […]}``
  for an event PagerDuty would refuse: a ``routing_key`` that is missing, not 32
  characters, not alphanumeric or not the fake's (``Invalid routing key``), a missing or
  unknown ``event_action``, a ``dedup_key`` over 255 characters, and for a trigger a missing
  ``payload.summary``/``source``/``severity``, a severity outside critical, error, warning
  and info, a summary over 1024 characters, links or images that are not objects with an
  ``href``/``src``; the errors are also appended to ``rejections``;
* ``429 {"status": "throttle event", …}`` when more than ``rate_limit`` events arrive for
  the routing key within ``rate_limit_window`` seconds (no ``Retry-After`` unless
  ``retry_after`` is set: PagerDuty usually sends none);
* ``404`` for another path, ``405`` for another method.

Usage::

    async with FakePagerDuty() as pagerduty:
        ...  # a pagerduty target with api_url = pagerduty.api_url and
        ...  # routing_key = pagerduty.routing_key
        pagerduty.fail_next.append(500)
"""

from __future__ import annotations

import json
import secrets
import string
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.base import Failure, RecordedRequest, RecordingFake, SlidingWindow

__all__ = ["Failure", "FakePagerDuty", "Incident", "RecordedRequest", "check_event"]

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
_KEY_CHARS = string.ascii_lowercase + string.digits

INVALID = "Event object is invalid"
THROTTLED = {
    "status": "throttle event",
    "message": "Requests for this service are arriving too quickly.  Please retry later.",
}


def _default_body(status: int, detail: str | None = None) -> str:
    if status == 400:
        errors = [detail or "error"]
        return json.dumps({"status": "invalid event", "message": INVALID, "errors": errors})
    if status == 429:
        return json.dumps({**THROTTLED, "message": detail or THROTTLED["message"]})
    if status >= 500:
        return json.dumps({"status": "error", "message": detail or "Internal server error"})
    return json.dumps({"status": "error", "message": detail or "error"})


@dataclass
class Incident:
    """An incident the fake opened: its dedup key, the event that opened it, every event
    added to it since (the first included) and its status."""

    dedup_key: str
    first: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    status: str = "triggered"

    @property
    def summary(self) -> str:
        return str(self.first["payload"]["summary"])

    @property
    def severity(self) -> str:
        return str(self.first["payload"]["severity"])


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def check_event(event: Any, routing_key: str | None = None) -> list[str]:
    """PagerDuty's errors for ``event`` (a decoded body), empty when it would be accepted.
    ``routing_key``: the only key accepted (``None``: any well-formed key)."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key.strip():
        errors.append("'routing_key' is missing or blank")
    else:
        if len(key) != 32:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        if not key.isascii() or not key.isalnum():
            errors.append("'routing_key' cannot contain non-alphanumeric characters.")
        if not errors and routing_key is not None and key != routing_key:
            errors.append("Invalid routing key")
    action = event.get("event_action")
    if _blank(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of: {', '.join(ACTIONS)})")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and _blank(dedup):
        errors.append("'dedup_key' is missing or blank")
    if action != "trigger":
        return errors
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [*errors, "'payload' is missing or not an object"]
    for name in ("summary", "source", "severity"):
        if _blank(payload.get(name)):
            errors.append(f"'payload.{name}' is missing or blank")
    severity = payload.get("severity")
    if isinstance(severity, str) and severity.strip() and severity not in SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of: {', '.join(SEVERITIES)})")
    summary = payload.get("summary")
    if isinstance(summary, str) and len(summary) > 1024:
        errors.append("'payload.summary' must be at most 1024 characters")
    details = payload.get("custom_details")
    if details is not None and not isinstance(details, dict | str):
        errors.append("'payload.custom_details' must be an object")
    for name, needed in (("links", "href"), ("images", "src")):
        items = event.get(name)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(item, dict) and not _blank(item.get(needed)) for item in items
        ):
            errors.append(f"'{name}' must be a list of objects with '{needed}'")
    return errors


class FakePagerDuty(RecordingFake):
    """The Events API v2 on 127.0.0.1 with a free port.

    Knobs (plain attributes, changeable while running), besides those of
    :class:`~fakes.base.RecordingFake` (``fail_next``, :meth:`fail`, ``delay``,
    ``delay_next``):

    * ``routing_key``: the one integration key it accepts (made up when not given);
    * ``fail_next`` entries: ``500``, ``(500, "oops")`` or ``(429, body, {"Retry-After":
      "1"})``; a bare status gets PagerDuty's JSON error body;
    * ``fail_after_accept``: answers to give next to events it *accepted*, one per event:
      PagerDuty took the event (it is in ``events`` and its incident) but lookout sees an
      error, so it sends the event again: a redelivery;
    * ``rate_limit``: events accepted per routing key within ``rate_limit_window`` seconds
      (a :class:`~fakes.base.SlidingWindow`; ``None``: no limit); beyond it 429 ``throttle
      event`` (with ``Retry-After: retry_after`` only when that is set).

    Records: ``requests`` (every request), ``answers`` (the status of each, in order),
    ``events`` (decoded bodies of accepted events), ``incidents`` (every incident opened, in
    order) and ``rejections`` (the errors of each 400).
    """

    def __init__(
        self,
        *,
        routing_key: str | None = None,
        rate_limit: int | None = None,
        rate_limit_window: float = 60.0,
        retry_after: str | None = None,
        fail_next: Iterable[Failure] = (),
        fail_after_accept: Iterable[Failure] = (),
        delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fail_next=fail_next, delay=delay, clock=clock)
        self.routing_key = routing_key or self.new_routing_key()
        self.rate_limit = SlidingWindow(rate_limit, rate_limit_window, lambda: self.clock())
        self.retry_after = retry_after
        self.fail_after_accept: list[Failure] = list(fail_after_accept)
        self.events: list[dict[str, Any]] = []
        self.incidents: list[Incident] = []
        self.rejections: list[list[str]] = []
        self._open: dict[str, Incident] = {}

    @staticmethod
    def new_routing_key() -> str:
        """A routing key shaped like PagerDuty's: 32 lower-case letters and digits."""
        return "".join(secrets.choice(_KEY_CHARS) for _ in range(32))

    def incident(self, dedup_key: str) -> Incident | None:
        """The latest incident with ``dedup_key``, open or not."""
        for incident in reversed(self.incidents):
            if incident.dedup_key == dedup_key:
                return incident
        return None

    # -------------------------------------------------------------- lifecycle

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT``: where ``https://events.pagerduty.com`` was."""
        return f"http://127.0.0.1:{self.port}"

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
        """A JSON answer (``text`` a string as is, else encoded)."""
        body = text if isinstance(text, str) else json.dumps(text)
        return super().answer(status, body, headers, "application/json")

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        """PagerDuty's JSON error for ``status`` (``detail`` as its message, or the error
        of an invalid event)."""
        return self.answer(status, _default_body(status, detail), headers)

    def _failure(self, failure: Failure, request: web.Request) -> web.Response:
        if isinstance(failure, int):
            return self.answer(failure, _default_body(failure))
        if not isinstance(failure, tuple):
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return self.error_answer(request, failure.status, failure.detail, headers)
        headers = failure[2] if len(failure) == 3 else None
        return self.answer(failure[0], failure[1], headers)

    def _record(self, event: dict[str, Any]) -> str:
        """Apply an accepted event; its dedup key."""
        self.events.append(event)
        action = event["event_action"]
        key = event.get("dedup_key") or uuid.uuid4().hex
        incident = self._open.get(key)
        if action == "trigger":
            if incident is None:
                incident = self._open[key] = Incident(key, event)
                self.incidents.append(incident)
            incident.events.append(event)
        elif incident is not None:
            incident.events.append(event)
            if action == "acknowledge":
                incident.status = "acknowledged"
            else:
                incident.status = "resolved"
                del self._open[key]
        return str(key)

    async def _handle(self, request: web.Request) -> web.Response:
        if (injected := await self.gate(request)) is not None:
            return injected
        raw = self.requests[-1].body
        if request.path != "/v2/enqueue":
            return self.answer(404, {"status": "not found", "message": "Not found"})
        if request.method != "POST":
            return self.answer(405, {"status": "error", "message": "Method not allowed"})
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        errors = check_event(event, self.routing_key)
        if errors:
            self.rejections.append(errors)
            return self.answer(
                400, {"status": "invalid event", "message": INVALID, "errors": errors}
            )
        assert isinstance(event, dict)
        if not self.rate_limit.take(event["routing_key"]):
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return self.answer(429, THROTTLED, headers)
        key = self._record(event)
        if self.fail_after_accept:
            return self._failure(self.fail_after_accept.pop(0), request)
        return self.answer(
            202, {"status": "success", "message": "Event processed", "dedup_key": key}
        )
