"""The ``email`` target: one message per notification over SMTP (aiosmtplib).

Transport security (``tls``): ``starttls`` connects in plain text and upgrades with
STARTTLS, failing when the server does not offer it (no silent downgrade); ``implicit`` is
TLS from the first byte (SMTPS, port 465); ``none`` never encrypts. Certificates are
verified unless ``verify_tls = false``. With ``username`` set, the target authenticates
(AUTH) with ``password`` / ``password_file`` after TLS is up.

The message: ``Subject`` is the rendered title, ``From`` the configured ``sender``,
``To`` every recipient; a ``text/plain`` part with the risk, application and environment
(those the notification has) above the rendered body, and a ``text/html`` alternative with
the same (every value HTML-escaped); both end with a "Silence similar" link to the web UI's
silence form with the notification's source, type, application and environment filled in
(``LOOKOUT_PUBLIC_URL``). ``Message-ID`` is derived from the notification
identity, so every retry carries the same one and mail clients can spot duplicates;
``X-Lookout-Notification-Id`` and ``X-Lookout-Type`` name the notification.

Outcomes: connection failures, timeouts, a dropped connection and 4xx replies are retried;
5xx replies (authentication failed, sender or message refused) are permanent. Recipients
are judged one by one: when some are refused for good (5xx) the message still goes to the
others and the refusals are logged; when some are refused temporarily (4xx) the others
get it and the delivery is retried for the rest only. This process remembers which
recipients a notification already reached, so a retry never mails anyone twice. When
every remaining recipient is refused, the delivery fails: permanently if all refusals
are 5xx, else it is retried.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import hashlib
import html
import secrets
import ssl
import time
from collections.abc import Mapping
from email.header import Header
from typing import Any

import aiosmtplib

from services.sinks.email.config import EmailTargetConfig
from shared.core import logging as log
from shared.core import publicurl
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay import silences
from shared.relay.config import relay
from shared.relay.recipients import RecipientProgress
from shared.relay.schemas import Notification
from shared.relay.sources import Reading, read
from shared.relay.target import Delivery, PermanentError, RetryableError, Target
from shared.relay.templates import Rendered, TemplateError, context, render

REMEMBERED_NOTIFICATIONS = 10_000
"""How many notifications the per-recipient progress is kept for (oldest forgotten first)."""

QUIT_TIMEOUT = 2.0
"""Seconds granted to a polite QUIT once the message was accepted."""
IDLE_SECONDS = 30.0
"""A connection idle longer is closed rather than reused (servers drop idle clients after
a few minutes; RFC 5321 §4.5.3.2 asks them to wait at least five)."""

CONFIG = EmailTargetConfig
"""The ``[[targets]]`` table of a ``email`` target (registered by the launcher)."""


def message_id(notification: Notification) -> str:
    """The ``Message-ID`` of ``notification``'s email: the same on every attempt."""
    digest = hashlib.sha256(notification.msg_id.encode()).hexdigest()[:32]
    return f"<{digest}@lookout>"


def _header_value(value: str, limit: int = 200) -> str:
    """``value`` on one line, without control characters (no header injection)."""
    if not value.isprintable():  # nearly every value is: no pass over each character
        value = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(value.split())[:limit]


_STYLE_BODY = (
    "margin:0;padding:16px;color:#1f2328;line-height:1.45;"
    "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px"
)
_STYLE_TEXT = (
    "margin:0 0 12px;padding:12px;background:#f6f8fa;border-radius:6px;"
    "font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px"
)


FACTS = (("Risk", "risk"), ("Application", "application"), ("Environment", "environment"))
"""What both versions of the message show above the body, when the notification has it."""


def facts(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of each of :data:`FACTS` the notification has."""
    return [(label, str(values[key])) for label, key in FACTS if values.get(key) not in (None, "")]


def text_body(rendered: Rendered, values: Mapping[str, Any], silence_url: str | None = None) -> str:
    """The plain-text version: the same facts as the HTML one (risk, application,
    environment), then the rendered body (and the "Silence similar" link)."""
    head = "".join(f"{label}: {' '.join(value.split())}\n" for label, value in facts(values))
    tail = f"\nSilence similar: {silence_url}\n" if silence_url else ""
    return f"{head}\n{rendered.body}\n{tail}" if head else f"{rendered.body}\n{tail}"


def html_body(rendered: Rendered, values: Mapping[str, Any], silence_url: str | None = None) -> str:
    """A simple, readable HTML version of the message; every value is escaped."""
    esc = html.escape
    rows = "".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0">{label}</th>'
        f'<td style="padding:2px 0">{esc(value)}</td></tr>'
        for label, value in facts(values)
    )
    table = (
        f'<table role="presentation" style="border-collapse:collapse;margin:0 0 12px">'
        f"{rows}</table>\n"
        if rows
        else ""
    )
    text = "<br>\n".join(esc(line) for line in rendered.body.splitlines())
    url = values.get("url")
    link = (
        f'<p style="margin:0 0 12px"><a href="{esc(url, quote=True)}">Open the details</a></p>\n'
        if isinstance(url, str) and url
        else ""
    )
    if silence_url:
        link += (
            f'<p style="margin:0 0 12px"><a href="{esc(silence_url, quote=True)}">'
            "Silence similar</a></p>\n"
        )
    footer = f"Sent by lookout &middot; notification {esc(str(values.get('id', '')))}"
    return (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8">'
        f"<title>{esc(rendered.title)}</title></head>\n"
        f'<body style="{_STYLE_BODY}">\n'
        f'<h2 style="margin:0 0 12px;font-size:18px">{esc(rendered.title)}</h2>\n'
        f"{table}"
        f'<div style="{_STYLE_TEXT}">{text}</div>\n'
        f"{link}"
        f'<p style="margin:16px 0 0;color:#656d76;font-size:12px">{footer}</p>\n'
        "</body></html>\n"
    )


CRLF = "\r\n"
MAX_LINE = 78
"""Header lines are folded to this length where they can be (RFC 5322 §2.1.1)."""


def _header(name: str, value: str, utf8: bool = False) -> str:
    """``Name: value`` for the wire: RFC 2047 encoded words when the value is not ASCII
    (unless ``utf8``: RFC 6532 UTF-8 as it is, for internationalised addresses), else
    folded at spaces to :data:`MAX_LINE` columns; lines end in CRLF."""
    if not utf8 and not value.isascii():
        return f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=CRLF)}{CRLF}"
    line = f"{name}: {value}"
    if len(line) <= MAX_LINE:
        return line + CRLF
    lines: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if (
            len(current) + 1 + len(word) > MAX_LINE
            and current.strip()
            and not current.endswith(":")
        ):
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return CRLF.join(lines) + CRLF


def _address(value: str) -> tuple[str, bool]:
    """One address for a header, and whether it needs UTF-8 headers: a display name is
    RFC 2047-encoded, an ASCII address left as it is; an internationalised address
    (RFC 6531/6532, a non-ASCII mailbox or domain) goes as UTF-8, display name and all,
    which only an SMTPUTF8 transaction may carry (:meth:`EmailTarget._transmit`)."""
    name, address = email.utils.parseaddr(value)
    if address.isascii():
        return email.utils.formataddr((name, address), charset="utf-8"), False
    if not name:
        return address, True
    # the stdlib's formataddr and Address refuse a non-ASCII mailbox: quote the name here
    return f'"{email.utils.quote(name)}" <{address}>', True


@functools.lru_cache(maxsize=256)
def _address_header(header: str, values: tuple[str, ...]) -> str:
    """The ``From`` or ``To`` line (a target's addresses never change: computed once)."""
    shown = [_address(value) for value in values]
    return _header(header, ", ".join(text for text, _ in shown), any(u for _, u in shown))


def envelope_address(value: str) -> str:
    """The bare address of ``Name <address>`` for MAIL FROM / RCPT TO."""
    return email.utils.parseaddr(value)[1] or value


def _part(content_type: str, text: str) -> str:
    """One UTF-8 text part, base64 (76-column lines), as the stdlib would write it."""
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    body = "".join(f"{encoded[at : at + 76]}{CRLF}" for at in range(0, len(encoded), 76))
    return (
        f'Content-Type: {content_type}; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}{body}"
    )


def build_message(
    config: EmailTargetConfig,
    notification: Notification | Reading,
    subject: str,
    rendered: Rendered,
    silence_url: str | None = None,
) -> bytes:
    """The message as it goes on the wire: multipart/alternative, the text then the HTML
    version, both UTF-8 in base64, so the message is 7-bit clean.

    Composed directly rather than through the stdlib's MIME classes and generator, which
    took 40 % of the email sink's CPU for this one fixed shape (see BENCHMARKS.md); the
    tests parse the result back with the stdlib's parser. The boundary starts with ``=_``,
    which no base64 line can contain, so it can never occur in a part."""
    reading = read(notification)
    notification = reading.notification
    boundary = f"=_lookout_{secrets.token_hex(12)}"
    head = "".join(
        (
            f'Content-Type: multipart/alternative;{CRLF} boundary="{boundary}"{CRLF}',
            f"MIME-Version: 1.0{CRLF}",
            _header("Subject", _header_value(rendered.title, 250) or notification.type),
            _address_header("From", (config.sender,)),
            _address_header("To", tuple(config.to)),
            f"Date: {email.utils.formatdate(usegmt=True)}{CRLF}",
            f"Message-ID: {message_id(notification)}{CRLF}",
            f"Auto-Submitted: auto-generated{CRLF}",  # RFC 3834: no auto-replies, please
            _header("X-Lookout-Notification-Id", _header_value(notification.id)),
            _header("X-Lookout-Type", _header_value(notification.type)),
        )
    )
    values = context(reading, subject)
    page = html_body(rendered, values, silence_url)
    text = (
        f"{head}{CRLF}"
        f"--{boundary}{CRLF}{_part('text/plain', text_body(rendered, values, silence_url))}"
        f"--{boundary}{CRLF}{_part('text/html', page)}"
        f"--{boundary}--{CRLF}"
    )
    return text.encode("utf-8")  # ASCII unless an address itself is not (SMTPUTF8, RFC 6532)


def _client_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reply(code: int, text: str) -> str:
    return f"{code} {' '.join(text.split())}"[:300]


_STAGE: tuple[tuple[type[aiosmtplib.SMTPResponseException], str], ...] = (
    (aiosmtplib.SMTPAuthenticationError, "authentication failed"),
    (aiosmtplib.SMTPSenderRefused, "sender refused"),
    (aiosmtplib.SMTPDataError, "message refused"),
    (aiosmtplib.SMTPHeloError, "EHLO/HELO refused"),
    (aiosmtplib.SMTPConnectResponseError, "server refused the connection"),
)


def _outcome(exc: Exception, timeout: float) -> Exception:
    """What a failed SMTP transaction means for the delivery."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        details = "; ".join(f"{r.recipient}: {_reply(r.code, r.message)}" for r in exc.recipients)
        reason = f"every recipient refused ({details})"
        if any(r.code < 500 for r in exc.recipients):
            return RetryableError(reason)
        return PermanentError(reason)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        stage = next((name for kind, name in _STAGE if isinstance(exc, kind)), "SMTP error")
        if exc.code == 530 and "starttls" in exc.message.lower():  # RFC 3207, not AUTH's 530
            stage = 'the server requires STARTTLS (tls = "starttls")'
        reason = f"{stage}: {_reply(exc.code, exc.message)}"
        # 4xx is transient by definition (RFC 5321 4.2.1); 5xx is not.
        return PermanentError(reason) if exc.code >= 500 else RetryableError(reason)
    if isinstance(exc, TimeoutError):
        detail = f" ({exc})" if str(exc) else ""
        return RetryableError(f"no answer within {timeout}s{detail}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError):
        return RetryableError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # STARTTLS or AUTH not offered, SMTPUTF8 unsupported…: a configuration mismatch.
        return PermanentError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError):  # an address aiosmtplib refuses to send to
        return PermanentError(f"invalid address: {exc}")
    return exc  # unexpected: the runner logs it and retries


class EmailTarget(Target):
    def __init__(
        self,
        config: EmailTargetConfig,
        password: Secret | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """``tls_context`` replaces the context built from ``verify_tls`` (tests pass one
        that trusts their own CA)."""
        self.name = config.name
        self.config = config
        self._password = password
        self._tls_context: ssl.SSLContext | None = None
        if config.tls != "none":
            self._tls_context = tls_context or _client_context(config.verify_tls)
        self._progress = RecipientProgress(REMEMBERED_NOTIFICATIONS)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._closing: set[asyncio.Future[None]] = set()
        self._sender = envelope_address(config.sender)
        self.public_url: str | None = None  # LOOKOUT_PUBLIC_URL: the "Silence similar" link
        self.log = log.get("sink.email").bind(target=config.name)

    def _client(self) -> aiosmtplib.SMTP:
        config = self.config
        username = config.username
        return aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            timeout=config.timeout,
            use_tls=config.tls == "implicit",
            start_tls=config.tls == "starttls",
            validate_certs=config.verify_tls,
            tls_context=self._tls_context,
            username=username,
            password=(self._password.reveal() if self._password else "") if username else None,
        )

    async def deliver(self, delivery: Delivery) -> None:
        notification = delivery.notification
        template = self.config.template
        try:
            rendered = render(delivery.reading, template.title, template.body, delivery.subject)
        except TemplateError as exc:
            raise PermanentError(str(exc)) from None
        key = notification.msg_id
        settled = self._progress.settled(key)
        pending = [to for to in dict.fromkeys(self.config.to) if to not in settled]
        if not pending:
            return  # every recipient already has it (a redelivery after a lost ack)
        try:
            link = (
                silences.similar_url(self.public_url, delivery.reading) if self.public_url else None
            )
            message = build_message(self.config, delivery.reading, delivery.subject, rendered, link)
        except ValueError as exc:
            raise PermanentError(f"cannot build the message: {exc}") from None
        refused = await self._send(message, pending)
        sent = [to for to in pending if to not in refused]
        permanent = {to: reply for to, reply in refused.items() if reply.code >= 500}
        temporary = {to: reply for to, reply in refused.items() if reply.code < 500}
        self._progress.add(key, [*sent, *permanent])
        for to, reply in refused.items():
            self.log.warning(
                "recipient refused",
                notification_id=notification.id,
                recipient=to,
                reply=_reply(reply.code, reply.message),
                retry=to in temporary,
            )
        if temporary:
            details = "; ".join(f"{to}: {_reply(r.code, r.message)}" for to, r in temporary.items())
            raise RetryableError(
                f"recipients refused for now ({details}); sent to {len(sent)} other(s)"
            )

    async def _send(
        self, message: bytes, recipients: list[str]
    ) -> dict[str, aiosmtplib.SMTPResponse]:
        """Send to ``recipients``; returns the ones refused (when not all were).

        Connections are kept open between messages (at most ``concurrency`` idle ones, each
        for up to ``IDLE_SECONDS``). A kept connection the server has meanwhile dropped
        fails before MAIL FROM is accepted, so the message is sent again at once on a new
        connection: that can never deliver it twice."""
        timeout = self.config.timeout
        smtp = self._idle_connection()
        if smtp is not None:
            try:
                async with asyncio.timeout(timeout):
                    refused = await self._transmit(smtp, message, recipients)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                smtp.close()  # the server closed it while idle: use a fresh one
            except Exception as exc:
                smtp.close()
                raise _outcome(exc, timeout) from None
            except BaseException:
                smtp.close()
                raise
            else:
                self._keep(smtp)
                return refused
        smtp = self._client()
        try:
            # The whole transaction within ``timeout``.
            async with asyncio.timeout(timeout):
                await smtp.connect()
                refused = await self._transmit(smtp, message, recipients)
        except Exception as exc:
            smtp.close()
            raise _outcome(exc, timeout) from None
        except BaseException:  # cancelled: drop the connection, let it propagate
            smtp.close()
            raise
        self._keep(smtp)
        return refused

    async def _transmit(
        self, smtp: aiosmtplib.SMTP, message: bytes, recipients: list[str]
    ) -> dict[str, aiosmtplib.SMTPResponse]:
        """One SMTP transaction; SMTPUTF8 only when an envelope address needs it."""
        utf8 = not self._sender.isascii() or not all(to.isascii() for to in recipients)
        refused, _ = await smtp.sendmail(
            self._sender, recipients, message, mail_options=["SMTPUTF8"] if utf8 else []
        )
        return refused

    def _idle_connection(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and now - since < IDLE_SECONDS:
                return smtp
            self._quit_later(smtp)
        return None

    def _keep(self, smtp: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.config.concurrency and smtp.is_connected:
            self._idle.append((smtp, time.monotonic()))
        else:
            self._quit_later(smtp)

    def _quit_later(self, smtp: aiosmtplib.SMTP) -> None:
        """QUIT ``smtp`` in the background (:meth:`close` waits for it)."""
        task = asyncio.ensure_future(self._quit(smtp))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(smtp) for smtp, _ in idle))
        if self._closing:
            await asyncio.wait(self._closing, timeout=QUIT_TIMEOUT)

    async def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            async with asyncio.timeout(QUIT_TIMEOUT):
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            smtp.close()


def build(config: EmailTargetConfig, settings: Settings) -> EmailTarget:
    target = EmailTarget(config, relay(settings).secret(config.name, "password"))
    target.public_url = publicurl.public_url(settings)
    return target
