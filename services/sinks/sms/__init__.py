"""The ``sms`` target: one text message per recipient through the Twilio Messages API.

``POST {api_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with HTTP Basic auth
(account SID, auth token) and the form fields ``To``, ``From`` (``sender``) and ``Body``.

The text is the rendered title and body squeezed onto one line, at most ``max_length``
characters (cut with ``...``), with typographic quotes, dashes and ellipses replaced by
their GSM-7 equivalents: one character outside the GSM alphabet would make the whole
message UCS-2, at 70 instead of 160 characters per segment.

Every recipient is sent to. This process remembers which recipients a notification
already reached, so a retry sends only to the others: nobody gets the same alert twice.
Outcomes per recipient: 2xx sent; 429 and 5xx (Twilio: "never processed and always safe to
retry"), timeouts and connection errors retried, honouring ``Retry-After``; 401 (error
20003) and any other 4xx, e.g. 21211 invalid ``To`` or 21610 unsubscribed recipient,
permanent. While any recipient may still succeed the delivery is retried (for those
only); once every remaining failure is permanent, it fails permanently.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from urllib.parse import quote, urlencode

import aiohttp
import msgspec

from services.sinks.sms.config import SmsTargetConfig
from shared.core import logging as log
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.config import relay
from shared.relay.outbound import SessionTarget
from shared.relay.recipients import RecipientProgress
from shared.relay.target import Delivery, PermanentError, RetryableError, raise_for_status
from shared.relay.templates import TemplateError, render

USER_AGENT = "lookout-sms/1"
API_VERSION = "2010-04-01"
ELLIPSIS = "..."
REMEMBERED_NOTIFICATIONS = 10_000
"""How many notifications the per-recipient progress is kept for (oldest forgotten first)."""
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# Characters outside the GSM 03.38 alphabet that have a faithful GSM replacement.
_GSM = str.maketrans(
    {
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark
        "\u201a": "'",  # single low-9 quotation mark
        "\u201b": "'",  # single high-reversed-9 quotation mark
        "\u2032": "'",  # prime
        "\u00b4": "'",  # acute accent
        "`": "'",
        "\u201c": '"',  # left double quotation mark
        "\u201d": '"',  # right double quotation mark
        "\u201e": '"',  # double low-9 quotation mark
        "\u201f": '"',  # double high-reversed-9 quotation mark
        "\u2033": '"',  # double prime
        "\u00ab": '"',  # left-pointing double angle quotation mark
        "\u00bb": '"',  # right-pointing double angle quotation mark
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u2022": "-",  # bullet
        "\u00b7": "-",  # middle dot
        "\u2026": "...",  # horizontal ellipsis
        "\u00a0": " ",  # no-break space
        "\u2009": " ",  # thin space
        "\u202f": " ",  # narrow no-break space
        "\u200b": None,  # zero width space
        "\ufeff": None,  # zero width no-break space
    }
)

CONFIG = SmsTargetConfig
"""The ``[[targets]]`` table of a ``sms`` target (registered by the launcher)."""


def length(text: str) -> int:
    """``text``'s length as Twilio counts ``Body`` against its limit: an emoji or another
    character beyond the Basic Multilingual Plane counts twice (UTF-16 code units; Twilio's
    error 21617: such characters "increase the encoded length")."""
    return len(text.encode("utf-16-le")) // 2


def sms_text(title: str, body: str, max_length: int) -> str:
    """``title - body`` on one line (body lines joined with ``; ``), GSM-friendly, at
    most ``max_length`` long as Twilio counts it (:func:`length`)."""
    lines = (" ".join(line.split()) for line in body.splitlines())
    one_line = "; ".join(line for line in lines if line)
    text = " - ".join(part for part in (" ".join(title.split()), one_line) if part)
    text = " ".join(text.translate(_GSM).split())
    if length(text) > max_length:
        room = 2 * (max_length - len(ELLIPSIS))  # bytes of UTF-16; a half pair is dropped
        kept = text.encode("utf-16-le")[:room].decode("utf-16-le", "ignore")
        text = kept.rstrip(" ;-") + ELLIPSIS
    return text


class _TwilioError(msgspec.Struct):
    code: int | None = None
    message: str | None = None
    more_info: str | None = None


def _twilio_error(raw: bytes) -> _TwilioError | None:
    try:
        error = msgspec.json.decode(raw, type=_TwilioError)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return error if error.code is not None or error.message else None


class SmsTarget(SessionTarget):
    def __init__(
        self,
        config: SmsTargetConfig,
        auth_token: Secret,
        allow: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        super().__init__(config.timeout, allow)
        self.name = config.name
        self.config = config
        credentials = f"{config.account_sid}:{auth_token.reveal()}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._secrets = (auth_token.reveal(), self._authorization.removeprefix("Basic "))
        base = config.api_url.rstrip("/")
        account = quote(config.account_sid, safe="")
        self.url = f"{base}/{API_VERSION}/Accounts/{account}/Messages.json"
        self._progress = RecipientProgress(REMEMBERED_NOTIFICATIONS)
        self.log = log.get("sink.sms").bind(target=config.name)

    def session_headers(self) -> dict[str, str]:
        return {
            "Authorization": self._authorization,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }

    async def deliver(self, delivery: Delivery) -> None:
        notification = delivery.notification
        template = self.config.template
        try:
            rendered = render(delivery.reading, template.title, template.body, delivery.subject)
        except TemplateError as exc:
            raise PermanentError(str(exc)) from None
        text = sms_text(rendered.title, rendered.body, self.config.max_length)
        if not text:
            text = f"[{notification.source}] {notification.type}"[: self.config.max_length]
        key = notification.msg_id
        done = self._progress.settled(key)
        pending = [to for to in dict.fromkeys(self.config.to) if to not in done]
        earlier = len(done)
        if not pending:
            return  # every recipient already has it (a redelivery after a lost ack)
        results = await asyncio.gather(
            *(self._send(to, text) for to in pending), return_exceptions=True
        )
        sent: list[str] = []
        retryable: dict[str, Exception] = {}
        permanent: dict[str, PermanentError] = {}
        for to, result in zip(pending, results, strict=True):
            if result is None:
                sent.append(to)
            elif isinstance(result, PermanentError):
                permanent[to] = result
            elif isinstance(result, Exception):
                if not isinstance(result, RetryableError):
                    self.log.error(
                        "unexpected error sending an SMS",
                        notification_id=notification.id,
                        recipient=to,
                        error=f"{type(result).__name__}: {result}",
                    )
                retryable[to] = result
            else:
                raise result  # cancelled
        self._progress.add(key, sent)
        if not retryable and not permanent:
            return
        failures = {**retryable, **permanent}
        for to, error in failures.items():
            self.log.warning(
                "SMS not sent",
                notification_id=notification.id,
                recipient=to,
                error=str(error),
                retry=to in retryable,
            )
        reason = "; ".join(f"{to}: {error}" for to, error in failures.items())
        if sent or earlier:
            reason += f" (sent to {len(sent) + earlier} other recipient(s))"
        if retryable:
            # Something may still succeed: retry, for the recipients not yet reached only.
            waits = [
                e.retry_after
                for e in retryable.values()
                if isinstance(e, RetryableError) and e.retry_after is not None
            ]
            raise RetryableError(reason, max(waits) if waits else None)
        raise PermanentError(reason)

    async def _send(self, to: str, text: str) -> None:
        session = self.session
        # Encoded here rather than by aiohttp's FormData (a third of this call's CPU).
        form = urlencode({"To": to, "From": self.config.sender, "Body": text}).encode()
        try:
            async with session.post(
                self.url, data=form, headers=_FORM, allow_redirects=False
            ) as response:
                raw = await response.content.read(4096)
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            raise RetryableError(f"no answer within {self.config.timeout}s") from None
        except aiohttp.ClientError as exc:
            raise RetryableError(self._scrub(f"{type(exc).__name__}: {exc}")) from None
        if 200 <= status < 300:
            return
        error = _twilio_error(raw)
        detail = _describe(error) if error else raw.decode("utf-8", "replace").strip()[:300]
        detail = self._scrub(detail)
        if status == 401:
            raise PermanentError(f"Twilio rejected the credentials (HTTP 401: {detail})")
        raise_for_status(status, retry_after, detail)

    def _scrub(self, text: str) -> str:
        """``text`` without the auth token (nor the credentials made of it), in case Twilio
        or a library quoted them."""
        for secret in self._secrets:
            text = text.replace(secret, "[auth_token]")
        return text


def _describe(error: _TwilioError) -> str:
    code = f"Twilio error {error.code}" if error.code is not None else ""
    text = ": ".join(part for part in (code, error.message or "") if part)
    if error.more_info:
        text += f" ({error.more_info})"
    return text


def build(config: SmsTargetConfig, settings: Settings) -> SmsTarget:
    token = relay(settings).secret(config.name, "auth_token")
    assert token is not None  # required: config.load() refuses an sms target without one
    return SmsTarget(config, token, settings.outbound_allow)
