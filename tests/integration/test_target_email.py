"""The email target end to end: a real nats-server, the gateway and the sink, and a
loopback SMTP server (aiosmtpd) in plain text, STARTTLS or implicit TLS with a trustme CA."""

from __future__ import annotations

import contextlib
import email
import hashlib
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import nats
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from helpers import (
    dead_lettered,
    dead_letters,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    wait_for,
)
from nats.js.errors import KeyNotFoundError

import services.sinks.email as email_sink
from services.sinks.email.config import EmailTargetConfig
from shared.core.natsserver import NatsServer, free_port
from shared.core.settings import Settings
from shared.relay import status as status_module
from shared.relay import streams
from shared.relay.config import relay

TARGET = "ops-mail"
SENDER = "lookout@example.org"
SOC = "soc@example.org"
ONCALL = "oncall@example.org"
USERNAME = "alerts"
PASSWORD = "correct horse battery staple"


@dataclass
class Received:
    """One DATA command the server saw (accepted or not)."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool
    peer: Any = None

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Mailbox:
    """The aiosmtpd handler: records every DATA, answers as scripted.

    ``refuse`` answers RCPT for an address with that reply every time; ``refuse_once``
    only the first time; ``data_script`` answers the next DATA commands (then 250)."""

    def __init__(self) -> None:
        self.attempts: list[Received] = []
        self.delivered: list[Received] = []
        self.refuse: dict[str, str] = {}
        self.refuse_once: dict[str, str] = {}
        self.data_script: list[str] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse_once:
            return self.refuse_once.pop(address)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        assert envelope.mail_from is not None
        transport = server.transport
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            content=envelope.content,
            tls=transport is not None and transport.get_extra_info("sslcontext") is not None,
            authenticated=bool(session.authenticated),
            peer=session.peer,
        )
        self.attempts.append(received)
        if self.data_script:
            return self.data_script.pop(0)
        self.delivered.append(received)
        return "250 2.0.0 Ok: queued"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.delivered if address in r.rcpt_tos]


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox, port: int | None = None, **kwargs: Any) -> Iterator[int]:
    """An aiosmtpd server on 127.0.0.1 (its own thread); yields its port."""
    port = port or free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def trust_test_ca(monkeypatch: pytest.MonkeyPatch, ca: trustme.CA) -> None:
    """Sinks built from now on trust the test CA (the constructor's ``tls_context``)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)

    def build(config: EmailTargetConfig, settings: Settings) -> email_sink.EmailTarget:
        password = relay(settings).secret(config.name, "password")
        return email_sink.EmailTarget(config, password, tls_context=context)

    monkeypatch.setattr(email_sink, "build", build)


def email_target(
    port: int,
    tls: str,
    to: tuple[str, ...] = (SOC,),
    extra: str = "",
    name: str = TARGET,
) -> str:
    recipients = ", ".join(json.dumps(address) for address in to)
    return f"""
[[targets]]
name = "{name}"
type = "email"
host = "127.0.0.1"
port = {port}
tls = "{tls}"
sender = "{SENDER}"
to = [{recipients}]
timeout = 3
retry = {{ max_attempts = 3, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }}
{extra}
"""


AUTH = f'username = "{USERNAME}"\npassword = "{PASSWORD}"'


def security_event(event_id: str, **message: Any) -> bytes:
    """A Sqreen v2 security event; ``message`` overrides its fields."""
    fields: dict[str, Any] = {
        "risk_coefficient": 85,
        "event_category": "injection",
        "event_kind": "sql_injection",
        "application_name": "billing-api",
        "environment": "production",
        "date_occurred": "2026-11-21T10:00:00.000000+00:00",
        "event_id": event_id,
        "event_url": f"https://my.sqreen.com/events/{event_id}",
        "humanized_description": "SQL injection attempt from 203.0.113.9",
        "ips": [{"address": "203.0.113.9"}],
        **message,
    }
    return json.dumps(
        [
            {
                "message_id": None,
                "api_version": "2",
                "date_created": "2026-11-21T10:00:01.000000+00:00",
                "message_type": "security_event",
                "retry_count": 0,
                "message": fields,
            }
        ]
    ).encode()


async def send(settings: Settings, body: bytes, until: Any, within: float = 15.0) -> list[str]:
    """Post ``body`` through the gateway with the sink running; wait for ``until``, then
    for the sink's consumer to settle. Returns the accepted notification ids."""
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        status, answer = await post_webhook(base, body)
        assert status == 200, answer
        await wait_for(until, within=within)
        await wait_for(lambda: settled(settings.effective_nats_url, TARGET))
    ids: list[str] = answer["ids"]
    return ids


def expected_message_id(notification_id: str) -> str:
    digest = hashlib.sha256(f"sqreen:{notification_id}".encode()).hexdigest()[:32]
    return f"<{digest}@lookout>"


# ----------------------------------------------------------------------------- delivered


@pytest.mark.usefixtures("trust_test_ca")
async def test_starttls_with_auth_delivers_both_parts_escaped(
    nats_server: NatsServer, tmp_path: Path, server_tls: ssl.SSLContext
) -> None:
    mailbox = Mailbox()
    xss = "<img src=x onerror=alert(1)>"
    body = security_event(
        "evt-xss-1",
        application_name="<script>alert('app')</script>",
        environment="prod & <b>co</b>",
        humanized_description=f"SQL injection from {xss} on café",
        event_url='https://my.sqreen.com/events/1?a=1&b="><script>alert(2)</script>',
    )
    with smtp_server(
        mailbox,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    ) as port:
        toml = email_target(port, "starttls", to=(SOC, ONCALL), extra=AUTH)
        settings = make_settings(tmp_path, nats_server.url, toml)
        [note_id] = await send(settings, body, lambda: len(mailbox.delivered) == 1)

    [received] = mailbox.delivered
    assert received.tls
    assert received.authenticated
    assert received.mail_from == SENDER
    assert sorted(received.rcpt_tos) == sorted([SOC, ONCALL])
    msg = received.message
    # (a long Subject is folded before its first word; mail clients trim the space)
    assert msg["Subject"].strip() == (
        "Security event in <script>alert('app')</script> (prod & <b>co</b>): risk 85"
    )
    assert msg["From"] == SENDER
    assert [str(a.addr_spec) for a in msg["To"].addresses] == [SOC, ONCALL]
    assert msg["Message-ID"] == expected_message_id(note_id)
    assert msg["X-Lookout-Notification-Id"] == note_id == "evt-xss-1"
    assert msg["X-Lookout-Type"] == "security_event"
    assert msg.get_content_type() == "multipart/alternative"

    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None
    assert html is not None
    text = plain.get_content()
    assert f"SQL injection from {xss} on café" in text  # plain text stays as written
    assert "Id: evt-xss-1" in text
    page = html.get_content()
    for raw in ("<script", "<img", "<b>co", '"><s'):
        assert raw not in page
    assert "&lt;script&gt;alert(&#x27;app&#x27;)&lt;/script&gt;" in page  # heading and table
    assert "prod &amp; &lt;b&gt;co&lt;/b&gt;" in page
    assert "SQL injection from &lt;img src=x onerror=alert(1)&gt; on café" in page
    assert (
        'href="https://my.sqreen.com/events/1?a=1&amp;b=&quot;&gt;&lt;script&gt;alert(2)'
        '&lt;/script&gt;"' in page
    )
    assert "<td" in page
    assert ">85</td>" in page
    assert await dead_letters(nats_server.url, TARGET) == []


@pytest.mark.usefixtures("trust_test_ca")
async def test_implicit_tls_delivers(
    nats_server: NatsServer, tmp_path: Path, server_tls: ssl.SSLContext
) -> None:
    mailbox = Mailbox()
    with smtp_server(
        mailbox,
        ssl_context=server_tls,
        authenticator=authenticator,
        auth_require_tls=False,  # aiosmtpd only counts STARTTLS as TLS; this is implicit
    ) as port:
        settings = make_settings(
            tmp_path, nats_server.url, email_target(port, "implicit", extra=AUTH)
        )
        [note_id] = await send(
            settings, security_event("evt-465"), lambda: len(mailbox.delivered) == 1
        )
    [received] = mailbox.delivered
    assert received.tls
    assert received.authenticated
    assert received.rcpt_tos == [SOC]
    assert received.message["Message-ID"] == expected_message_id(note_id)


async def test_plain_partial_refusal_delivers_to_the_others_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """One recipient refused for good (550: logged, not retried), one refused for now
    (450: retried alone), one accepted at once: each accepted recipient gets exactly one
    message and nothing is dead-lettered."""
    mailbox = Mailbox()
    gone, busy = "gone@example.org", "busy@example.org"
    mailbox.refuse[gone] = "550 5.1.1 <gone@example.org>: no such user"
    mailbox.refuse_once[busy] = "450 4.2.1 mailbox busy, try again later"
    with smtp_server(mailbox) as port:
        toml = email_target(port, "none", to=(SOC, gone, busy))
        settings = make_settings(tmp_path, nats_server.url, toml)
        await send(settings, security_event("evt-partial"), lambda: len(mailbox.delivered) == 2)
    first, second = mailbox.delivered
    assert not first.tls
    assert first.rcpt_tos == [SOC]  # busy was refused for now, gone for good
    assert second.rcpt_tos == [busy]  # the retry: only the one still missing it
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert len(mailbox.to(SOC)) == len(mailbox.to(busy)) == 1
    assert mailbox.to(gone) == []
    assert await dead_letters(nats_server.url, TARGET) == []


async def test_connection_is_kept_and_a_dropped_one_replaced_without_a_retry(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Messages share one SMTP connection; when the server has dropped the kept one, the
    next message goes out on a new connection at its first attempt."""
    mailbox = Mailbox()
    port = free_port()
    settings = make_settings(tmp_path, nats_server.url, email_target(port, "none"))
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        with smtp_server(mailbox, port):
            for n in range(3):
                status, _ = await post_webhook(base, security_event(f"evt-keep-{n}"))
                assert status == 200
                await wait_for(lambda n=n: len(mailbox.delivered) == n + 1)
        # the server went away (closing the kept connection) and comes back
        with smtp_server(mailbox, port):
            status, answer = await post_webhook(base, security_event("evt-after-drop"))
            assert status == 200
            await wait_for(lambda: len(mailbox.delivered) == 4)
            await wait_for(lambda: settled(settings.effective_nats_url, TARGET))
    assert len({r.peer for r in mailbox.delivered[:3]}) == 1  # one connection for three
    assert mailbox.delivered[3].peer != mailbox.delivered[0].peer
    assert len(mailbox.attempts) == 4  # no failed attempt, no duplicate
    [note_id] = answer["ids"]
    key = f"{status_module.notification_key(note_id)}.sqreen.{TARGET}"
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().key_value(streams.STATUS_BUCKET)

        async def recorded() -> bool:  # status is published without waiting for its ack
            try:
                return (await kv.get(key)).value is not None
            except KeyNotFoundError:
                return False

        await wait_for(recorded)
        entry = await kv.get(key)
    finally:
        await nc.close()
    assert entry.value is not None
    record = status_module.decode(entry.value)
    assert (record.state, record.attempts) == ("delivered", 1)


# ----------------------------------------------------------------------------- failures


async def test_transient_reply_is_retried_with_the_same_message_id(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    mailbox = Mailbox()
    mailbox.data_script = ["451 4.3.0 try again later"]
    with smtp_server(mailbox) as port:
        settings = make_settings(tmp_path, nats_server.url, email_target(port, "none"))
        [note_id] = await send(
            settings, security_event("evt-451"), lambda: len(mailbox.delivered) == 1
        )
    assert len(mailbox.attempts) == 2
    assert len(mailbox.delivered) == 1
    ids = {attempt.message["Message-ID"] for attempt in mailbox.attempts}
    assert ids == {expected_message_id(note_id)}  # stable across retries
    assert await dead_letters(nats_server.url, TARGET) == []


async def test_mailbox_unavailable_is_dead_lettered_at_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    mailbox = Mailbox()
    mailbox.refuse[SOC] = "550 5.1.1 no such user"
    with smtp_server(mailbox) as port:
        settings = make_settings(tmp_path, nats_server.url, email_target(port, "none"))
        [note_id] = await send(
            settings, security_event("evt-550"), dead_lettered(nats_server.url, TARGET)
        )
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.attempts == 1  # permanent: never retried
    assert "550" in record.error
    assert "no such user" in record.error
    assert record.notification is not None
    assert record.notification.id == note_id
    assert mailbox.attempts == []


@pytest.mark.usefixtures("trust_test_ca")
async def test_rejected_login_is_dead_lettered(
    nats_server: NatsServer, tmp_path: Path, server_tls: ssl.SSLContext
) -> None:
    mailbox = Mailbox()
    with smtp_server(
        mailbox, tls_context=server_tls, authenticator=authenticator, auth_required=True
    ) as port:
        extra = f'username = "{USERNAME}"\npassword = "not the password"'
        toml = email_target(port, "starttls", extra=extra)
        settings = make_settings(tmp_path, nats_server.url, toml)
        await send(settings, security_event("evt-535"), dead_lettered(nats_server.url, TARGET))
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.attempts == 1
    assert "authentication failed: 535" in record.error
    assert "not the password" not in record.error
    assert mailbox.attempts == []


async def test_starttls_required_but_not_offered_is_dead_lettered(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """tls = "starttls" never falls back to plain text."""
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:  # no tls_context: no STARTTLS
        settings = make_settings(tmp_path, nats_server.url, email_target(port, "starttls"))
        await send(settings, security_event("evt-notls"), dead_lettered(nats_server.url, TARGET))
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.attempts == 1
    assert "STARTTLS" in record.error
    assert mailbox.attempts == []


@pytest.mark.usefixtures("trust_test_ca")
async def test_plain_text_to_a_server_requiring_starttls_says_so(
    nats_server: NatsServer, tmp_path: Path, server_tls: ssl.SSLContext
) -> None:
    """The server's 530 "Must issue a STARTTLS command first" (RFC 3207) is a TLS
    setting to change, not a failed authentication (AUTH's 530 of RFC 4954)."""
    mailbox = Mailbox()
    with smtp_server(mailbox, tls_context=server_tls, require_starttls=True) as port:
        settings = make_settings(tmp_path, nats_server.url, email_target(port, "none"))
        await send(settings, security_event("evt-plain"), dead_lettered(nats_server.url, TARGET))
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.error.startswith('the server requires STARTTLS (tls = "starttls"): 530'), (
        record.error
    )
    assert mailbox.delivered == []


async def test_certificate_is_verified_unless_disabled(
    nats_server: NatsServer, tmp_path: Path, server_tls: ssl.SSLContext
) -> None:
    """The sink's own context (no test CA): an untrusted certificate fails every attempt
    (retryable: certificates get fixed), while ``verify_tls = false`` accepts it."""
    mailbox = Mailbox()
    with smtp_server(mailbox, tls_context=server_tls) as port:
        toml = email_target(port, "starttls", name="strict") + email_target(
            port, "starttls", name="lax", extra="verify_tls = false"
        )
        settings = make_settings(tmp_path, nats_server.url, toml)
        async with (
            running_gateway(settings) as base,
            running_sink(settings, "strict"),
            running_sink(settings, "lax"),
        ):
            status, _ = await post_webhook(base, security_event("evt-cert"))
            assert status == 200
            await wait_for(lambda: len(mailbox.delivered) == 1)
            await wait_for(dead_lettered(nats_server.url, "strict"))
    [record] = await dead_letters(nats_server.url, "strict")
    assert record.attempts == 3
    assert "CERTIFICATE_VERIFY_FAILED" in record.error
    assert len(mailbox.delivered) == 1  # the lax one only
    assert await dead_letters(nats_server.url, "lax") == []


async def test_an_internationalised_address_is_mailed_over_smtputf8(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """RFC 6531/6532: a non-ASCII mailbox goes in the envelope and the ``To`` header as
    UTF-8 in an SMTPUTF8 transaction (aiosmtpd refuses such a RCPT without it); the ASCII
    recipient beside it gets the same one message."""
    mailbox = Mailbox()
    josé = "josé@exämple.org"
    with smtp_server(mailbox, enable_SMTPUTF8=True) as port:  # the Controller's default
        to = (f"José Núñez <{josé}>", SOC)
        settings = make_settings(tmp_path, nats_server.url, email_target(port, "none", to=to))
        await send(settings, security_event("evt-utf8"), lambda: len(mailbox.delivered) == 1)
    [received] = mailbox.delivered
    assert received.rcpt_tos == [josé, SOC]
    parsed = email.message_from_string(received.content.decode("utf-8"), policy=policy.SMTPUTF8)
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ("José Núñez", josé),
        ("", SOC),
    ]
    assert await dead_letters(nats_server.url, TARGET) == []


async def test_an_internationalised_address_without_smtputf8_is_dead_lettered(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A server that does not offer SMTPUTF8 cannot take the address: a configuration
    mismatch, dead-lettered at once with the reason, never retried into a loop."""
    mailbox = Mailbox()
    with smtp_server(mailbox, enable_SMTPUTF8=False) as port:  # EHLO without SMTPUTF8
        toml = email_target(port, "none", to=("josé@exämple.org",))
        settings = make_settings(tmp_path, nats_server.url, toml)
        await send(settings, security_event("evt-no-utf8"), dead_lettered(nats_server.url, TARGET))
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.attempts == 1
    assert "SMTPUTF8" in record.error
    assert mailbox.attempts == []
