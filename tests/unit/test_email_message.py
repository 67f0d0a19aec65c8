"""The email target's MIME message: headers survive a round trip through a mail parser."""

from __future__ import annotations

from email import message_from_bytes, policy

import msgspec

from services.sinks.email import build_message
from shared.config import EmailTargetConfig
from shared.schemas import Notification
from shared.templates import Rendered


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
    raw = build_message(config, note, note.subject, Rendered(title, "Corps ✓\nligne 2")).as_bytes()
    assert raw.isascii()  # everything 8-bit is encoded
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Événement: injection SQL — risque 85 Bcc: victim@example.com"
    assert parsed["Bcc"] is None  # no header injection through the title
    assert parsed["From"] == "Alerte Sécurité <soc@example.com>"
    assert parsed["To"] == "soc@example.com, oncall@example.com"
    assert parsed["X-Lookout-Notification-Id"] == "évt-1"
    assert parsed.get_content_type() == "multipart/alternative"
    text, page = parsed.iter_parts()
    assert text.get_content() == "Corps ✓\nligne 2\n"
    assert page.get_content_type() == "text/html"
    assert "Corps ✓<br>" in page.get_content()
