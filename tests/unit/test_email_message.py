"""The email target's MIME message: headers survive a round trip through a mail parser."""

from __future__ import annotations

from email import message_from_bytes, message_from_string, policy

import msgspec
import pytest
from helpers import sqreen_fixture

from services.gateway import sqreen
from services.sinks.email import build_message, envelope_address
from services.sinks.email.config import EmailTargetConfig, address_problem
from shared.relay.schemas import Notification
from shared.relay.templates import Rendered, render


def test_non_ascii_headers_and_bodies_round_trip() -> None:
    config = EmailTargetConfig(
        name="mail",
        host="smtp.example.com",
        sender="Alerte Sécurité <soc@example.com>",
        to=["soc@example.com", "oncall@example.com"],
    )
    note = Notification(
        id="évt-1",
        type="security_event",
        source="sqreen",
        timestamp="2026-11-21T10:00:00Z",
        data=msgspec.Raw(b'{"message": {"risk_coefficient": 85}}'),
    )
    title = "Événement: injection SQL — risque 85\r\nBcc: victim@example.com"
    raw = build_message(config, note, note.subject, Rendered(title, "Corps ✓\nligne 2"))
    assert raw.isascii()  # everything 8-bit is encoded
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Événement: injection SQL — risque 85 Bcc: victim@example.com"
    assert parsed["Bcc"] is None  # no header injection through the title
    assert parsed["From"] == "Alerte Sécurité <soc@example.com>"
    assert parsed["To"] == "soc@example.com, oncall@example.com"
    assert parsed["X-Lookout-Notification-Id"] == "évt-1"
    assert parsed.get_content_type() == "multipart/alternative"
    text, page = parsed.iter_parts()
    assert text.get_content() == "Risk: 85\n\nCorps ✓\nligne 2\n"
    assert page.get_content_type() == "text/html"
    assert "Corps ✓<br>" in page.get_content()


def _note(note_id: str = "n-1") -> Notification:
    return Notification(
        id=note_id,
        type="security_event",
        source="sqreen",
        timestamp="2026-11-21T10:00:00Z",
        data=msgspec.Raw(b'{"message": {"risk_coefficient": 40}}'),
    )


def test_long_ascii_headers_are_folded_and_read_back_whole() -> None:
    config = EmailTargetConfig(
        name="mail",
        host="smtp.example.com",
        sender="soc@example.com",
        to=[f"analyst-{i}@example.com" for i in range(8)],
    )
    title = " ".join(f"word{i}" for i in range(35))  # 234 characters: three folds
    note = _note()
    raw = build_message(config, note, note.subject, Rendered(title, "body"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == title
    assert parsed["To"] == ", ".join(config.to)
    assert parsed["Message-ID"].startswith("<")
    assert parsed["Auto-Submitted"] == "auto-generated"


def test_lines_end_in_crlf_and_a_body_quoting_the_boundary_stays_one_part() -> None:
    config = EmailTargetConfig(name="mail", host="h", sender="a@example.com", to=["b@example.com"])
    note = _note()
    body = "--=_lookout_0123\n--=_lookout_\n.\nend"
    raw = build_message(config, note, note.subject, Rendered("t", body))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    parsed = message_from_bytes(raw, policy=policy.default)
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == "Risk: 40\n\n" + body + "\n"
    # a fresh boundary per message
    again = build_message(config, note, note.subject, Rendered("t", body))
    assert parsed.get_boundary() != message_from_bytes(again).get_boundary()


def test_envelope_addresses_drop_the_display_name() -> None:
    assert envelope_address("Alerte Sécurité <soc@example.com>") == "soc@example.com"
    assert envelope_address("soc@example.com") == "soc@example.com"


def test_the_plain_text_part_has_risk_application_and_environment() -> None:
    """As the HTML part has them (a mail client showing the text part lost them)."""
    body = sqreen_fixture("v2_security_event.json")
    _, note = (sqreen.parse(i, raw) for i, raw in enumerate(sqreen.split(body, 10)))
    config = EmailTargetConfig(name="mail", host="h", sender="a@example.com", to=["b@example.com"])
    rendered = render(note)
    parsed = message_from_bytes(
        build_message(config, note, note.subject, rendered), policy=policy.default
    )
    text, page = (part.get_content() for part in parsed.iter_parts())
    facts = ["Risk: 80", "Application: billing-api", "Environment: production"]
    assert text.splitlines()[:4] == [*facts, ""]
    assert text.endswith(rendered.body + "\n")
    for fact in facts:
        label, value = fact.split(": ")
        assert f'>{label}</th><td style="padding:2px 0">{value}</td>' in page
    # without any of them, the text part is the body alone
    bare = Notification(
        id="n-2",
        type="test",
        source="other",
        timestamp="2026-01-01T00:00:00Z",
        data=msgspec.Raw(b"{}"),
    )
    raw = build_message(config, bare, bare.subject, Rendered("t", "just the body"))
    plain = next(message_from_bytes(raw, policy=policy.default).iter_parts())
    assert plain.get_content() == "just the body\n"


def test_an_internationalised_address_is_written_as_utf8_and_read_back() -> None:
    """RFC 6532: a non-ASCII mailbox cannot be RFC 2047-encoded; the ``To`` line goes as
    UTF-8 (the target sends it with SMTPUTF8), a display name quoted, an ASCII one beside
    it unchanged; the stdlib's own formataddr refuses such an address."""
    config = EmailTargetConfig(
        name="mail",
        host="h",
        sender="Alerte Sécurité <soc@example.com>",
        to=['"Núñez, José" <josé@exämple.com>', "b@example.com", "用户@例子.广告"],
    )
    note = _note()
    raw = build_message(config, note, note.subject, Rendered("t", "body"))
    parsed = message_from_string(raw.decode("utf-8"), policy=policy.SMTPUTF8)
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ("Núñez, José", "josé@exämple.com"),
        ("", "b@example.com"),
        ("", "用户@例子.广告"),
    ]
    assert b"=?utf-8?" in raw.split(b"\r\nTo:", 1)[0]  # the From name is still encoded
    assert envelope_address(config.to[0]) == "josé@exämple.com"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not an address", "no user@domain"),
        ("soc@example.com, cto@example.com", "2 addresses"),
        ("soc@example.com\r\nBcc: victim@example.com", "line breaks"),
        ("@example.com", "no user@domain"),
        ("soc@", "no user@domain"),
    ],
)
def test_what_is_not_one_address_is_named(value: str, problem: str) -> None:
    assert problem in (address_problem(value) or "")


@pytest.mark.parametrize(
    "value", ["soc@example.com", "SOC Team <soc@example.com>", "José <josé@exämple.com>"]
)
def test_addresses_are_accepted(value: str) -> None:
    assert address_problem(value) is None
