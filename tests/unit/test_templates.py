from __future__ import annotations

import json

import msgspec
import pytest
from helpers import sqreen_fixture

from services.gateway import sqreen
from services.sinks.log.config import LogTargetConfig
from shared.relay import templates as templates_module
from shared.relay.config import MessageTemplate
from shared.relay.schemas import Notification
from shared.relay.templates import (
    NAMES,
    TemplateError,
    compile_template,
    context,
    default_title,
    render,
    render_title,
    unknown_names,
)


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


@pytest.mark.parametrize(
    "fixture", ["v2_security_event.json", "v2_incidents.json", "v1_other.json"]
)
@pytest.mark.parametrize("title", [None, "  {{ risk }}\n {{ application | upper }}  " + "x" * 300])
def test_render_title_is_the_title_render_gives(fixture: str, title: str | None) -> None:
    for note in notes(fixture):
        rendered = render_title(note, context(note), title)
        assert rendered == render(note, title).title
        if title is not None:  # on one line, spaces collapsed, at most 250 characters
            assert len(rendered) == 250
            assert rendered == " ".join(rendered.split())


def test_the_sandbox_refuses_internals() -> None:
    _, high = notes("v2_security_event.json")
    with pytest.raises(TemplateError):
        render(high, title="{{ message.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match="line 1"):
        compile_template("{% if %}", "t")


def test_digest_renders_its_members_whatever_the_target_templates() -> None:
    from shared.relay.grouping import Member, digest
    from shared.relay.sources import attributes
    from shared.relay.target import Delivery

    members = []
    for note in notes("v2_security_event.json"):
        members.append(
            Member(msg=None, delivery=Delivery(note, note.subject, 1), attrs=attributes(note))
        )  # type: ignore[arg-type]
    config = LogTargetConfig(name="log", template=MessageTemplate(title="T {{ id }}", body="B"))
    delivery = digest(config, members, 30.0)
    rendered = render(delivery.notification, config.template.title, config.template.body)
    high = max(m.attrs.risk or 0 for m in members)
    assert rendered.title.startswith("2 security event notifications")
    assert rendered.title.endswith(f"risk up to {high}")
    # the target's title template renders each line of the digest
    for member in members:
        assert f"- T {member.delivery.notification.id} (" in rendered.body
    assert f"Digest: {delivery.notification.id}" in rendered.body
    # the same members give the same digest id (the idempotency key of a retry)
    assert digest(config, list(reversed(members)), 30.0).notification.id == delivery.notification.id
    # what a template can read, a digest's context included: no more than NAMES
    assert set(context(delivery.notification)) <= NAMES
    assert set(context(members[0].delivery.notification)) <= NAMES
    assert "from_source" in context(delivery.notification)


@pytest.mark.parametrize(
    ("source", "unknown"),
    [
        ("{{ aplication }}: {{ risk }}", ["aplication"]),
        ("{{ message.nope }} {{ data['x'] }}", []),  # the message's fields: any
        ("{% for i in range(3) %}{{ i }}{% endfor %}{% set y = 1 %}{{ y }}", []),
        ("{{ titel or title }}", ["titel", "title"]),
    ],
)
def test_unknown_names(source: str, unknown: list[str]) -> None:
    assert unknown_names(source) == unknown


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ risk + 10 }}", "TypeError: unsupported operand"),  # a message without a risk
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ('{{ "%d" % application }}', "TypeError"),
        ("{{ nothing + 1 }}", "'nothing' is undefined"),  # a Jinja error, as before
    ],
)
def test_an_expression_that_fails_at_render_time_is_a_template_error(
    template: str, error: str
) -> None:
    """Not only Jinja's own errors: whatever an expression raises is a :class:`TemplateError`
    (which every target turns into a permanent failure, never a retry)."""
    note = Notification(
        id="no-risk",
        type="port_scan",
        source="suricata",
        timestamp="2026-01-01T00:00:00Z",
        data=msgspec.Raw(b'{"description": "no risk here"}'),
    )
    for title, body in ((template, None), (None, template)):
        with pytest.raises(TemplateError, match=error):
            render(note, title=title, body=body)
    with pytest.raises(TemplateError, match=error):
        render_title(note, context(note), template)


def _generic(data: bytes, type_: str = "port_scan") -> Notification:
    return Notification(
        id="g-1",
        type=type_,
        source="suricata",
        timestamp="2026-01-01T00:00:00Z",
        data=msgspec.Raw(data),
    )


@pytest.mark.parametrize(
    "note",
    [
        *(
            n
            for f in ("v2_security_event.json", "v2_incidents.json", "v2_test.json")
            for n in notes(f)
        ),
        *notes("v2_other.json"),
        *notes("v1_other.json"),
        _generic(b'{"risk": 65, "application": "vpn", "environment": "prod"}'),
        _generic(b'{"description": "no attributes"}', "login_failed"),
        _generic(b"[1, 2]"),
    ],
    ids=lambda n: f"{n.source}-{n.type}-{n.id}",
)
def test_the_default_title_from_attributes_is_the_one_the_whole_context_gives(
    note: Notification,
) -> None:
    """A default title that reads only the notification's attributes (the generic one, and
    Sqreen's security event) is rendered from them alone, once per set of values: the same
    text as from the whole context, every time."""
    whole = render_title(note, context(note))
    assert default_title(note) == whole
    assert default_title(note) == whole  # from the cache, in a new reading
    assert render(note).title == whole


def test_the_generic_title_is_rendered_once_per_set_of_attributes() -> None:
    templates_module._attributes_title.cache_clear()
    for i in range(5):
        note = _generic(f'{{"risk": 65, "application": "vpn", "n": {i}}}'.encode())
        assert default_title(note) == "[suricata] port scan in vpn (risk 65)"
    assert templates_module._attributes_title.cache_info().misses == 1
