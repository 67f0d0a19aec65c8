"""A loopback fake of the Twilio Messages API (send an SMS).

It speaks the documented contract closely enough that a client written against
https://www.twilio.com/docs/messaging/api/message-resource works against it unchanged:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded ``To``, ``From``
  and ``Body``; success is **201** with the Message resource (``sid`` ``SM…``, ``status``
  ``queued``, ``num_segments`` as a string, RFC 2822 dates…).
* HTTP Basic authentication with the account SID and auth token: missing or wrong
  credentials answer 401 error 20003 ``Authenticate``; another account's path 404 20404.
* Errors as ``{"code", "message", "more_info", "status"}``: a ``To`` that is not E.164
  answers 400 error 21211, a bad ``From`` 21212, a missing ``To``/``From``/``Body``
  21604/21603/21602, a body over 1600 characters 21617, an opted-out recipient 21610.

Usage::

    async with FakeTwilio() as twilio:
        ...  # api_url = twilio.api_url, account_sid / auth_token = twilio.account_sid / …
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from aiohttp import web

from fakes.base import Failure, RecordedRequest, RecordingFake

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "FakeTwilio",
    "RecordedRequest",
    "SentMessage",
    "basic_credentials",
    "segments",
]

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "test-twilio-token-0123456789abcdef"
API_VERSION = "2010-04-01"

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_SHORT_CODE = re.compile(r"^\d{5,6}$")

# The GSM 03.38 alphabet: the basic set (one septet each) and the extension table (two).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

# Error codes for statuses injected with ``fail_next``.
_INJECTED: dict[int, tuple[int, str]] = {
    400: (21211, "The 'To' number is not a valid phone number."),
    401: (20003, "Authenticate"),
    403: (20403, "Forbidden"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


class SentMessage(NamedTuple):
    """A message the fake accepted: ``(to, from_, body)`` plus its ``sid``."""

    to: str
    from_: str
    body: str
    sid: str


def segments(body: str) -> int:
    """How many SMS segments ``body`` takes: GSM-7 (160, or 153 per part) when every
    character is in the GSM alphabet, else UCS-2 (70, or 67 per part)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in body):
        septets = sum(2 if ch in _GSM_EXTENSION else 1 for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """``(login, password)`` from an ``Authorization: Basic …`` header, if it is one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, sep, password = decoded.partition(":")
    return (login, password) if sep else None


def _more_info(code: int) -> str:
    return f"https://www.twilio.com/docs/errors/{code}"


class FakeTwilio(RecordingFake):
    """A Twilio Messages API server on 127.0.0.1 with a free port.

    Knobs (plain attributes, changeable while running):

    Knobs (plain attributes, changeable while running), besides those of
    :class:`~fakes.base.RecordingFake` (``fail_next``, :meth:`fail`, ``delay``,
    ``delay_next``):

    * ``account_sid`` / ``auth_token``: the credentials Basic auth must carry.
    * ``fail_next`` entries: statuses (e.g. ``[429, 503]``), with Twilio's error body for
      that status.
    * ``retry_after``: a ``Retry-After`` value added to injected 429 and 503 answers.
    * ``unsubscribed``: ``To`` numbers that answer 400 error 21610 (the recipient sent STOP).

    Records: ``requests`` (every request, as :class:`~fakes.base.RecordedRequest`; the
    body is the form as sent), ``answers`` (the status of each) and ``messages`` (every
    accepted message, as :class:`SentMessage`).
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        fail_next: Iterable[Failure] = (),
        retry_after: str | None = None,
        unsubscribed: Iterable[str] = (),
        delay: float = 0.0,
    ) -> None:
        super().__init__(fail_next=fail_next, delay=delay)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.retry_after = retry_after
        self.unsubscribed: set[str] = set(unsubscribed)
        self.messages: list[SentMessage] = []

    # -------------------------------------------------------------- lifecycle

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT``: where ``https://api.twilio.com`` was."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"/{API_VERSION}/Accounts/{{account}}/Messages.json", self._create)
        router.add_route("*", "/{tail:.*}", self._unknown)

    def sent_to(self, number: str) -> list[SentMessage]:
        return [message for message in self.messages if message.to == number]

    # --------------------------------------------------------------- handlers

    def _error(
        self, status: int, code: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        body = {"code": code, "message": message, "more_info": _more_info(code), "status": status}
        return self.answer(status, json.dumps(body), headers, "application/json")

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        """Twilio's JSON error for ``status`` (``detail`` as its message), with
        ``Retry-After: retry_after`` on a 429 or 503 when that is set."""
        code, message = _INJECTED.get(
            status, (20500 if status >= 500 else 21211, f"Injected failure (HTTP {status})")
        )
        all_headers = dict(headers)
        if self.retry_after is not None and status in (429, 503):
            all_headers.setdefault("Retry-After", self.retry_after)
        return self._error(status, code, detail or message, all_headers)

    def _authenticated(self, request: web.Request) -> bool:
        credentials = basic_credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            return False
        login, password = credentials
        return secrets.compare_digest(login, self.account_sid) & secrets.compare_digest(
            password, self.auth_token
        )

    async def _gate(self, request: web.Request) -> web.Response | None:
        """Record, delay, inject failures and authenticate; an answer ends the request."""
        if (injected := await self.gate(request)) is not None:
            return injected
        if not self._authenticated(request):
            return self._error(401, 20003, "Authenticate")
        return None

    async def _create(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        form = {key: str(value) for key, value in (await request.post()).items()}
        account = request.match_info["account"]
        if account != self.account_sid:
            return self._error(404, 20404, f"The requested resource {request.path} was not found")
        to, sender, body = form.get("To"), form.get("From"), form.get("Body")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not sender:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        if not _E164.match(to):
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not (
            _E164.match(sender) or _SHORT_CODE.match(sender) or _ALPHANUMERIC_SENDER.match(sender)
        ):
            return self._error(
                400,
                21212,
                f"The 'From' number {sender} is not a valid phone number, shortcode, "
                "or alphanumeric sender ID.",
            )
        if to == sender:
            return self._error(400, 21266, "'To' and 'From' number cannot be the same: " + to)
        if len(body.encode("utf-16-le")) // 2 > 1600:  # an emoji counts twice (error 21617)
            return self._error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if to in self.unsubscribed:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        sid = "SM" + secrets.token_hex(16)
        self.messages.append(SentMessage(to, sender, body, sid))
        return self.answer(
            201, json.dumps(self._resource(sid, to, sender, body)), None, "application/json"
        )

    def _resource(self, sid: str, to: str, sender: str, body: str) -> dict[str, Any]:
        now = email.utils.formatdate(usegmt=True).replace("GMT", "+0000")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }

    async def _unknown(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        return self._error(404, 20404, f"The requested resource {request.path} was not found")
