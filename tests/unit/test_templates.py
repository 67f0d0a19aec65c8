from __future__ import annotations

import json

import msgspec
import pytest
from helpers import sqreen_fixture

from services.gateway import sqreen
from shared.schemas import Notification
from shared.templates import TemplateError, compile_template, render


def notes(fixture: str) -> list[Notification]:
    body = sqreen_fixture(fixture)
    return [sqreen.parse(i, raw) for i, raw in enumerate(sqreen.split(body, 1000))]


def test_security_event_default() -> None:
    low, high = notes("v2_security_event.json")
    message = json.loads(sqreen_fixture("v2_security_event.json"))[1]["message"]
    rendered = render(high)
    assert rendered.title == (
        f"Security event in {message['application_name']} ({message['environment']}): "
        f"risk {message['risk_coefficient']}"
    )
    assert message["humanized_description"] in rendered.body
    assert message["event_url"] in rendered.body
    assert message["ips"][0]["address"] in rendered.body
    assert render(low).title.endswith(": risk 30")


@pytest.mark.parametrize(
    ("fixture", "starts"),
    [
        ("v2_test.json", ["Test notification from Sqreen"]),
        (
            "v2_incidents.json",
            [
                "Incident account takeover",
                "Incident http scan created",
                "Incident http scan updated",
            ],
        ),
        ("v2_other.json", ["Security response: ", "Pulse: "]),
        (
            "v1_other.json",
            ["Test notification", "Pulse: ", "Incident incident", "Security response"],
        ),
    ],
)
def test_every_type_has_a_default(fixture: str, starts: list[str]) -> None:
    titles = [render(n).title for n in notes(fixture)]
    assert [t[: len(s)] for t, s in zip(titles, starts, strict=True)] == starts


def test_compromised_accounts_are_listed_readably() -> None:
    takeover = notes("v2_incidents.json")[0]
    body = render(takeover).body
    assert "Accounts: bob@example.com, carol@example.com" in body


def test_other_sources_use_the_generic_template() -> None:
    note = Notification(
        id="ids-1",
        type="port_scan",
        source="suricata",
        timestamp="2026-01-01T00:00:00Z",
        data=msgspec.Raw(b'{"risk": 65, "application": "vpn", "ips": ["203.0.113.5"]}'),
    )
    rendered = render(note)
    assert rendered.title == "[suricata] port scan in vpn (risk 65)"
    assert "IPs: 203.0.113.5" in rendered.body


def test_custom_templates_and_undefined_names() -> None:
    _, high = notes("v2_security_event.json")
    rendered = render(
        high,
        title="{{ risk }}/{{ application | upper }}",
        body="{{ message.no_such_field.deeper }}|{{ nothing }}|{{ id }}",
    )
    assert rendered.title == "80/" + render(high, title="{{ application | upper }}").title
    assert rendered.body == f"||{high.id}"


def test_the_sandbox_refuses_internals() -> None:
    _, high = notes("v2_security_event.json")
    with pytest.raises(TemplateError):
        render(high, title="{{ message.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match="line 1"):
        compile_template("{% if %}", "t")
