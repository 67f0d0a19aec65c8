"""Silences: what is accepted, what a silence matches, the "Silence similar" link, and the
in-memory view's rules (expiry at the check, newer writes win)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest

from shared.relay import silences
from shared.relay.schemas import Notification
from shared.relay.silences import SilenceError, SilenceInput, SilenceView
from shared.relay.sources import Reading

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def note(type_: str = "port_scan", source: str = "ids", **data: object) -> Reading:
    return Reading(
        Notification(
            id="n-1",
            type=type_,
            source=source,
            timestamp="2026-12-07T08:00:00Z",
            data=msgspec.Raw(msgspec.json.encode(data)),
        )
    )


def make(matchers: dict[str, object], **given: object) -> silences.Silence:
    if "duration" not in given and "ends_at" not in given:
        given["duration"] = "2h"
    return silences.make(SilenceInput(matchers=matchers, **given), "token-1", NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("1d", 86400), ("1w", 604800), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert silences.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "-1h", "2h x", "1y"])
def test_bad_durations_are_refused_with_the_units(text: str) -> None:
    with pytest.raises(SilenceError, match="unit"):
        silences.parse_duration(text)


def test_a_silence_records_its_end_and_author() -> None:
    made = make({"source": "ids", "type": "port_scan"}, comment="maintenance")
    assert made.ends_at == "2026-12-07T10:00:00.000Z"
    assert made.starts_at == made.created_at == "2026-12-07T08:00:00.000Z"
    assert made.created_by == "token-1"
    assert made.comment == "maintenance"
    assert silences.valid_id(made.id)
    assert made.state(NOW) == "active"
    assert made.state(NOW + timedelta(hours=2)) == "expired"
    shown = silences.view(made, NOW)
    assert shown["matchers"] == {"source": "ids", "type": "port_scan"}
    assert shown["state"] == "active"
    assert make({"ip": "192.0.2.1"}, ends_at="2026-12-08T00:00:00+01:00").ends_at == (
        "2026-12-07T23:00:00.000Z"
    )


@pytest.mark.parametrize(
    ("matchers", "given", "reason"),
    [
        ({}, {}, "at least one matcher"),
        ({"host": "x"}, {}, "unknown matcher 'host'"),
        ({"source": ""}, {}, "non-empty string"),
        ({"source": 3}, {}, "non-empty string"),
        ({"source": "x" * 300}, {}, "at most 256"),
        ({"source": "ids"}, {"duration": "2h", "ends_at": "2026-12-08T00:00:00Z"}, "either"),
        ({"source": "ids"}, {"duration": None}, "either"),
        ({"source": "ids"}, {"duration": "100d"}, "at most 90 days"),
        ({"source": "ids"}, {"ends_at": "2026-12-07T07:00:00Z"}, "in the future"),
        ({"source": "ids"}, {"ends_at": "tomorrow"}, "RFC 3339"),
        ({"source": "ids"}, {"ends_at": "2026-12-08T00:00:00"}, "offset"),
        ({"source": "ids"}, {"ends_at": "20261208T000000Z"}, "RFC 3339"),  # ISO 8601 basic
        ({"source": "ids"}, {"ends_at": "2026-12-08"}, "RFC 3339"),
        ({"source": "ids"}, {"comment": "x" * 1001}, "comment"),
        ({"ip": "not-an-ip"}, {}, "not an IP address or network"),
        ({"ip": "192.0.2.300"}, {}, "not an IP address or network"),
        ({"ip": "192.0.2.0/33"}, {}, "not an IP address or network"),
        ({"type": "../.. *>"}, {}, "no letter or digit"),
        ({"source": "!!!"}, {}, "no letter or digit"),
    ],
)
def test_refusals_say_why(
    matchers: dict[str, object], given: dict[str, object], reason: str
) -> None:
    with pytest.raises(SilenceError, match=reason):
        make(matchers, **given)


def test_matchers_are_kept_as_notifications_hold_them() -> None:
    """What the sender wrote is what the user types; the notification holds its subject
    token (Alertmanager's alertname ``SSHBruteForce`` is type ``sshbruteforce``, a Standard
    Webhooks ``invoice.paid`` is ``invoice_paid``)."""
    made = make({"source": "Prom", "type": "SSHBruteForce", "application": "Shop"})
    assert made.matchers == silences.Matchers(
        source="prom", type="sshbruteforce", application="Shop"
    )  # application and environment are the payload's own strings: kept as given
    assert make({"type": "invoice.paid"}).matchers.type == "invoice_paid"
    assert make({"type": "unknown"}).matchers.type == "unknown"
    assert make({"ip": " 2001:0DB8:0:0::1 "}).matchers.ip == "2001:db8::1"
    assert make({"ip": "192.0.2.77/24"}).matchers.ip == "192.0.2.0/24"
    kind = note(type_="invoice_paid", source="billing")
    assert silences.matches(make({"type": "invoice.paid"}).matchers, kind, "ops")
    assert silences.matches(make({"source": "Billing"}).matchers, kind, "ops")
    # published straight on NATS, the envelope as its sender wrote it: matched alike
    raw = note(type_="Port<Scan>", source="Audit")
    assert silences.matches(make({"type": "Port<Scan>", "source": "audit"}).matchers, raw, "ops")


def test_an_ip_matcher_takes_an_address_or_a_network() -> None:
    reading = note(ips=["192.0.2.7", "2001:db8::1"])
    assert silences.matches(make({"ip": "192.0.2.0/24"}).matchers, reading, "ops")
    assert silences.matches(make({"ip": "2001:db8::/32"}).matchers, reading, "ops")
    assert not silences.matches(make({"ip": "198.51.100.0/24"}).matchers, reading, "ops")
    assert not silences.matches(make({"ip": "192.0.2.8"}).matchers, reading, "ops")
    # a silence stored before matchers were checked, with a value that is no address
    assert not silences.matches(silences.Matchers(ip="not-an-ip"), reading, "ops")


def test_a_body_that_is_no_silence_is_refused() -> None:
    with pytest.raises(SilenceError, match="expected"):
        silences.decode_input(b'{"matchers": {"source": "ids"}, "until": "2h"}')
    with pytest.raises(SilenceError, match="expected"):
        silences.decode_input(b"[")


def test_every_matcher_given_must_match() -> None:
    reading = note(application="shop", environment="prod", ips=["192.0.2.7", "2001:db8::1"])
    m = silences.Matchers
    assert silences.matches(m(source="ids"), reading, "ops")
    assert silences.matches(m(source="ids", type="port_scan", target="ops"), reading, "ops")
    assert not silences.matches(m(source="ids", target="mail"), reading, "ops")
    assert not silences.matches(m(source="other"), reading, "ops")
    assert not silences.matches(m(type="other"), reading, "ops")
    assert silences.matches(m(application="shop", environment="prod"), reading, "ops")
    assert not silences.matches(m(application="shop", environment="dev"), reading, "ops")
    assert silences.matches(m(ip="192.0.2.7"), reading, "ops")
    assert silences.matches(m(ip="2001:0db8:0:0::1"), reading, "ops")  # the same address
    assert not silences.matches(m(ip="192.0.2.8"), reading, "ops")
    assert not silences.matches(m(application="shop"), note(), "ops")


def test_the_similar_link_fills_in_what_the_notification_has() -> None:
    url = silences.similar_url("https://lookout.example", note(application="shop & co"))
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://lookout.example/silences"
    assert dict(parse_qsl(parts.query)) == {
        "source": "ids",
        "type": "port_scan",
        "application": "shop & co",
    }


def test_the_view_applies_the_end_at_the_check_and_keeps_the_newest_write() -> None:
    view = SilenceView()
    reading = note()
    assert view.silencing(reading, "ops") is None
    now = datetime.now(UTC)
    active = silences.make(SilenceInput(matchers={"source": "ids"}, duration="1h"), "local", now)
    view.take(active)
    assert view.silencing(reading, "ops") == active
    ended = msgspec.structs.replace(
        active,
        ends_at=silences.text_time(now),
        updated_at=silences.text_time(now + timedelta(seconds=1)),
    )
    view.take(ended)
    assert view.silencing(reading, "ops") is None  # ended: stops applying at once
    view.take(active)  # an older write arriving late changes nothing
    assert view.silencing(reading, "ops") is None
    soon = silences.make(
        SilenceInput(
            matchers={"type": "port_scan"}, ends_at=silences.text_time(now + timedelta(seconds=2))
        ),
        "local",
        now,
    )
    view.take(soon)
    assert view.silencing(reading, "ops") == soon
