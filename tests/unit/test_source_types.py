"""Inbound source types (``[[sources]]``): how each authenticates and reads its requests,
against what others wrote: the official Standard Webhooks library and test vector, GitHub's
documented signature vector and the Octokit payload examples, requests captured from a real
Alertmanager (tests/fixtures/sources/SOURCES.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from standardwebhooks import Webhook

from services.gateway import hooks, sqreen
from services.gateway.sources import Malformed, Receiver, Unauthorized
from services.gateway.sources import alertmanager as am
from services.gateway.sources import github as gh
from services.gateway.sources import standard_webhooks as sw
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.relay import sources, templates
from shared.relay.inbound import inbound
from shared.relay.schemas import Notification
from shared.relay.sources import Attributes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GH_SECRET = "gh-secret-for-tests"


def load(tmp_path: Path, toml: str, **env: str) -> config.Settings:
    path = tmp_path / "lookout.toml"
    path.write_text(toml)
    return config.load({"LOOKOUT_CONFIG": str(path), **env})


def receivers(tmp_path: Path, toml: str) -> dict[str, Receiver]:
    return hooks.configured(load(tmp_path, toml))


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def captured(path: str) -> tuple[CIMultiDictProxy[str], bytes]:
    """A request captured from the real Alertmanager: its headers and raw body."""
    base = FIXTURES / "alertmanager" / "captured-am-0.25.0" / path
    lines = (base.parent / f"{base.name}.headers.txt").read_text().splitlines()[1:]
    pairs = [line.split(": ", 1) for line in lines if ": " in line]
    return CIMultiDictProxy(CIMultiDict(pairs)), (
        base.parent / f"{base.name}.body.json"
    ).read_bytes()


def reading(note: Notification) -> sources.Reading:
    return sources.Reading(note)


# --------------------------------------------------------------------------- standard webhooks

SW_TOML = f"""
[[sources]]
name = "svix"
type = "standard-webhooks"
secret = "{WHSEC}"
"""


def test_standard_webhooks_official_vector() -> None:
    vector = json.loads((FIXTURES / "standard-webhooks" / "test-vector.sign.json").read_text())
    key = sw.secret_key(vector["secret"])
    signed = vector["signed_content"].encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert f"v1,{expected}" == vector["expected_signature"]
    # the receiver signs the same content: its key and layout are the vector's
    receiver = sw.StandardWebhooksReceiver("svix", sw.Secret(vector["secret"]))
    assert receiver.key == key
    # and refuses the vector's own request now: its timestamp is years old
    with pytest.raises(Unauthorized, match="too old"):
        receiver.receive(
            headers(
                webhook_id=vector["msg_id"],
                webhook_timestamp=str(vector["timestamp"]),
                webhook_signature=vector["expected_signature"],
            ),
            vector["payload"].encode(),
        )


def signed(body: bytes, msg_id: str = "msg_1", when: datetime | None = None) -> dict[str, str]:
    when = when or datetime.now(UTC)
    signature = Webhook(WHSEC).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def test_standard_webhooks_signed_by_the_official_library(tmp_path: Path) -> None:
    receiver = receivers(tmp_path, SW_TOML)["svix"]
    body = json.dumps(
        {
            "type": "invoice.paid",
            "timestamp": "2026-12-07T08:00:00Z",
            "data": {"risk": 75, "application": "billing", "ips": ["203.0.113.9"]},
        }
    ).encode()
    received = receiver.receive(CIMultiDictProxy(CIMultiDict(signed(body, "msg_2x"))), body)
    (note,) = received.notifications
    assert (note.id, note.source, note.type) == ("msg_2x", "svix", "invoice_paid")
    assert note.timestamp == "2026-12-07T08:00:00Z"
    assert bytes(note.data) == body  # the body, unchanged
    read = reading(note)
    assert read.attributes == Attributes(75, "billing", None)
    assert read.fields.ips == ["203.0.113.9"]


def test_standard_webhooks_several_signatures_and_refusals(tmp_path: Path) -> None:
    receiver = receivers(tmp_path, SW_TOML)["svix"]
    vectors = json.loads(
        (FIXTURES / "standard-webhooks" / "test-vector.verify-negatives.json").read_text()
    )
    body = vectors["payload"].encode()
    good = signed(body, vectors["msg_id"])
    parts = [
        p if not p.startswith("<") else good["webhook-signature"]
        for p in vectors["multi_signature_header_parts"]
    ]
    several = {**good, "webhook-signature": " ".join(parts)}
    assert receiver.receive(CIMultiDictProxy(CIMultiDict(several)), body).notifications
    now = datetime.now(UTC)
    refused: list[dict[str, str]] = [
        {k: v for k, v in good.items() if k != "webhook-id"},
        {k: v for k, v in good.items() if k != "webhook-timestamp"},
        {k: v for k, v in good.items() if k != "webhook-signature"},
        {**good, "webhook-timestamp": "hello"},
        {**good, "webhook-signature": vectors["invalid_signature_header"]},
        {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")},
        signed(body, vectors["msg_id"], now - timedelta(minutes=6)),
        signed(body, vectors["msg_id"], now + timedelta(minutes=6)),
    ]
    for case in refused:
        with pytest.raises(Unauthorized):
            receiver.receive(CIMultiDictProxy(CIMultiDict(case)), body)
    # the body changed after signing
    with pytest.raises(Unauthorized, match="does not match"):
        receiver.receive(CIMultiDictProxy(CIMultiDict(good)), body + b" ")
    # within the tolerance, both ways
    for shift in (-4, 4):
        ok = signed(body, "msg_3", now + timedelta(minutes=shift))
        assert receiver.receive(CIMultiDictProxy(CIMultiDict(ok)), body).notifications


def test_standard_webhooks_secret_forms_the_libraries_accept() -> None:
    """The bare base64 and the unpadded secrets of the official tests: the same key as the
    official library makes, so both sign alike."""
    vectors = json.loads(
        (FIXTURES / "standard-webhooks" / "test-vector.verify-negatives.json").read_text()
    )
    when = datetime.now(UTC)
    for secret in [vectors["secret"], *vectors["unpadded_secrets_accepted"]]:
        for form in (secret, "whsec_" + secret):
            key = sw.secret_key(form)
            ours = base64.b64encode(
                hmac.new(key, f"m.{int(when.timestamp())}.x".encode(), hashlib.sha256).digest()
            ).decode()
            assert Webhook(form).sign("m", when, "x") == f"v1,{ours}"


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!"])
def test_standard_webhooks_bad_secret_is_refused_at_start(tmp_path: Path, secret: str) -> None:
    toml = SW_TOML.replace(WHSEC, secret)
    with pytest.raises(ConfigError, match=r"sources\[0\] \(svix\)\.secret"):
        load(tmp_path, toml)


# --------------------------------------------------------------------------- github

GH_TOML = f"""
[[sources]]
name = "gh"
type = "github"
secret = "{GH_SECRET}"
"""


def gh_headers(
    body: bytes, event: str, delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
) -> CIMultiDictProxy[str]:
    mac = hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return headers(
        X_Hub_Signature_256=f"sha256={mac}",
        X_GitHub_Event=event,
        X_GitHub_Delivery=delivery,
        Content_Type="application/json",
    )


def test_github_documented_signature_vector() -> None:
    vector = json.loads((FIXTURES / "github" / "signature-test-vector.json").read_text())
    receiver = gh.GitHubReceiver("gh", gh.Secret(vector["secret"]))
    good = headers(X_Hub_Signature_256=vector["X-Hub-Signature-256"], X_GitHub_Event="push")
    # The signature is GitHub's: accepted; the payload is not JSON: 400, not 401.
    with pytest.raises(Malformed):
        receiver.receive(good, vector["payload"].encode())
    with pytest.raises(Unauthorized, match="does not match"):
        receiver.receive(good, b"Hello, World?")
    for bad in ("sha1=757107ea", "sha256=zz", ""):
        with pytest.raises(Unauthorized):
            receiver.receive(
                headers(X_Hub_Signature_256=bad, X_GitHub_Event="push"), vector["payload"].encode()
            )


@pytest.mark.parametrize(
    ("file", "event"),
    [
        ("dependabot_alert/created.payload.json", "dependabot_alert"),
        ("dependabot_alert/fixed.payload.json", "dependabot_alert"),
        ("code_scanning_alert/created.payload.json", "code_scanning_alert"),
        (
            "code_scanning_alert/webhooks-net.created.with-instances-url.payload.json",
            "code_scanning_alert",
        ),
        ("secret_scanning_alert/reopened.payload.json", "secret_scanning_alert"),
        ("repository_vulnerability_alert/create.payload.json", "repository_vulnerability_alert"),
        ("security_advisory/published.payload.json", "security_advisory"),
        ("push/payload.json", "push"),
    ],
)
def test_github_events_from_octokit_examples(tmp_path: Path, file: str, event: str) -> None:
    receiver = receivers(tmp_path, GH_TOML)["gh"]
    body = (FIXTURES / "github" / file).read_bytes()
    (note,) = receiver.receive(gh_headers(body, event, "d-" + event), body).notifications
    assert (note.id, note.source, note.type) == ("d-" + event, "gh", event)
    assert json.loads(bytes(note.data)) == json.loads(body)  # the payload, unchanged
    read = reading(note)
    payload = json.loads(body)
    expected_risk = expected_github_risk(event, payload)
    assert read.attributes.risk == expected_risk
    if "repository" in payload:
        assert read.attributes.application == payload["repository"]["full_name"]
    title, text = templates.default_title(read), templates.render(read, None)
    assert title  # every event renders, with its own title
    assert text.body
    if event in gh.SECURITY_EVENTS:
        assert title.startswith("GitHub " + event.replace("_", " "))
        if expected_risk is not None:
            assert f"risk {expected_risk}" in title
        url = read.fields.url
        if event == "security_advisory":
            assert url == f"https://github.com/advisories/{payload['security_advisory']['ghsa_id']}"
        elif "html_url" in payload["alert"]:
            assert url == payload["alert"]["html_url"]


def expected_github_risk(event: str, payload: dict[str, Any]) -> int | None:
    """The risk documented in the README, worked out from the payload by hand."""
    words = {"critical": 90, "high": 70, "medium": 50, "moderate": 50, "low": 20}
    if event == "dependabot_alert":
        return words[payload["alert"]["security_advisory"]["severity"]]
    if event == "code_scanning_alert":
        rule = payload["alert"]["rule"]
        if rule.get("security_severity_level"):
            return words[rule["security_severity_level"]]
        return {"error": 50, "warning": 20, "note": 10, "none": 10}[rule["severity"]]
    if event == "secret_scanning_alert":
        return 70
    if event == "repository_vulnerability_alert":
        return words[payload["alert"]["severity"]]
    if event == "security_advisory":
        return words[payload["security_advisory"]["severity"]]
    return None


def test_github_ping_is_answered_and_stores_nothing(tmp_path: Path) -> None:
    receiver = receivers(tmp_path, GH_TOML)["gh"]
    body = (FIXTURES / "github" / "ping" / "payload.json").read_bytes()
    received = receiver.receive(gh_headers(body, "ping"), body)
    assert received.notifications == []
    assert received.extra == {"zen": json.loads(body)["zen"], "event": "ping"}


def test_github_form_content_and_missing_event(tmp_path: Path) -> None:
    receiver = receivers(tmp_path, GH_TOML)["gh"]
    payload = (FIXTURES / "github" / "dependabot_alert" / "created.payload.json").read_text()
    import urllib.parse

    body = urllib.parse.urlencode({"payload": payload}).encode()
    mac = hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()
    form = headers(
        X_Hub_Signature_256=f"sha256={mac}",
        X_GitHub_Event="dependabot_alert",
        X_GitHub_Delivery="form-1",
        Content_Type="application/x-www-form-urlencoded",
    )
    (note,) = receiver.receive(form, body).notifications
    assert json.loads(bytes(note.data)) == json.loads(payload)
    no_event = headers(X_Hub_Signature_256=f"sha256={mac}")
    with pytest.raises(Malformed, match="X-GitHub-Event"):
        receiver.receive(no_event, body)


# --------------------------------------------------------------------------- alertmanager

AM_TOML = """
[[sources]]
name = "prom"
type = "alertmanager"
token = "s3cr3t-token"

[[sources]]
name = "prom-basic"
type = "alertmanager"
username = "alertmanager"
password = "p4ss"
"""


def test_alertmanager_each_alert_its_own_notification(tmp_path: Path) -> None:
    receiver = receivers(tmp_path, AM_TOML)["prom"]
    head, body = captured("run1-bearer-basic/03_bearer")  # a mixed group
    group = json.loads(body)
    notes = receiver.receive(head, body).notifications
    assert len(notes) == len(group["alerts"]) == 2
    for note, alert in zip(notes, group["alerts"], strict=True):
        assert note.id == f"{alert['fingerprint']}:{alert['startsAt']}:{alert['status']}"
        assert (note.source, note.type) == ("prom", "sshbruteforce")
        data = json.loads(bytes(note.data))
        assert data["alert"] == alert
        assert data["receiver"] == "bearer"
        assert "alerts" not in data
    resolved, firing = notes
    assert resolved.timestamp == group["alerts"][0]["endsAt"]
    assert firing.timestamp == group["alerts"][1]["startsAt"]
    read = reading(resolved)
    assert read.attributes == Attributes(90, "bastion", "prod")  # severity critical
    assert read.fields.ips == ["203.0.113.7", "10.0.0.5"]  # src_ip, then the instance's
    assert read.fields.description == "SSH brute force from 203.0.113.7"
    assert reading(firing).attributes.risk == 50  # warning
    title = templates.default_title(read)
    assert title == "[RESOLVED] SSHBruteForce in bastion (prod): critical"


def test_alertmanager_firing_then_resolved_are_two_and_a_resent_group_is_one(
    tmp_path: Path,
) -> None:
    receiver = receivers(tmp_path, AM_TOML)["prom"]
    first = receiver.receive(*captured("run1-bearer-basic/01_bearer")).notifications
    mixed = receiver.receive(*captured("run1-bearer-basic/03_bearer")).notifications
    assert {n.id.rsplit(":", 1)[1] for n in mixed} == {"firing", "resolved"}
    by_print = {n.id.split(":")[0]: n.id for n in first}
    for note in mixed:  # same alert, new status: a new id
        fingerprint = note.id.split(":")[0]
        if note.id.endswith(":resolved"):
            assert by_print[fingerprint] != note.id
    repeats = [
        receiver.receive(*captured(f"run2-repeat/0{i}_bearer")).notifications for i in (1, 2, 3)
    ]
    assert [n.id for n in repeats[0]] == [n.id for n in repeats[1]] == [n.id for n in repeats[2]]


def test_alertmanager_basic_auth_and_refusals(tmp_path: Path) -> None:
    found = receivers(tmp_path, AM_TOML)
    head, body = captured("run1-bearer-basic/02_basic")
    assert found["prom-basic"].receive(head, body).notifications
    with pytest.raises(Unauthorized):
        found["prom"].receive(head, body)  # basic credentials to the bearer source
    for auth in ("Bearer wrong", "Basic YWxlcnRtYW5hZ2VyOnA0c3N4", ""):
        with pytest.raises(Unauthorized):
            found["prom"].receive(headers(Authorization=auth), body)
    bearer = headers(Authorization="bearer s3cr3t-token")  # the scheme is case-insensitive
    assert found["prom"].receive(bearer, body).notifications
    group = json.loads(body)
    for bad in (
        {**group, "version": "3"},
        {**group, "alerts": []},
        [group],
        {**group, "alerts": [{"labels": {}}]},
    ):
        with pytest.raises(Malformed):
            found["prom"].receive(bearer, json.dumps(bad).encode())


def test_alertmanager_old_payloads_and_grafana(tmp_path: Path) -> None:
    receiver = receivers(tmp_path, AM_TOML)["prom"]
    auth = headers(Authorization="Bearer s3cr3t-token")
    body = (FIXTURES / "alertmanager" / "published" / "alertmanager-bot.firing.json").read_bytes()
    (note,) = receiver.receive(auth, body).notifications  # no fingerprint: one from the labels
    alert = json.loads(body)["alerts"][0]
    assert note.id == f"{am.fingerprint(alert['labels'])}:{alert['startsAt']}:firing"
    assert reading(note).attributes.risk == 90
    grafana = (
        FIXTURES / "alertmanager" / "grafana" / "grafana-docs.webhook-notifier.example.json"
    ).read_bytes()
    notes = receiver.receive(auth, grafana).notifications
    assert len(notes) == len(json.loads(grafana)["alerts"])


def test_alertmanager_configurable_labels(tmp_path: Path) -> None:
    toml = """
[[sources]]
name = "prom-custom"
type = "alertmanager"
token = "t"
severity_label = "level"
risks = { page = 100 }
application_labels = ["job"]
environment_labels = ["cluster"]
environment = "staging"
"""
    receiver = receivers(tmp_path, toml)["prom-custom"]
    group = json.loads(captured("run1-bearer-basic/01_bearer")[1])
    group["alerts"][0]["labels"]["level"] = "page"
    (note, *_) = receiver.receive(
        headers(Authorization="Bearer t"), json.dumps(group).encode()
    ).notifications
    # job names the application; no "cluster" label: the source's default environment
    assert reading(note).attributes == Attributes(100, "node", "staging")


# --------------------------------------------------------------------------- generic


def test_generic_hmac_variants(tmp_path: Path) -> None:
    toml = """
[[sources]]
name = "plain"
type = "generic"
secret = "k"

[[sources]]
name = "grafana-hmac"
type = "generic"
secret = "k"
header = "X-Grafana-Alerting-Signature"
timestamp_header = "X-Grafana-Alerting-Timestamp"
timestamp_separator = ":"

[[sources]]
name = "b64"
type = "generic"
secret = "k"
algorithm = "sha512"
encoding = "base64"
prefix = "sha512="
"""
    found = receivers(tmp_path, toml)
    body = b'[{"id": 7, "type": "Port Scan", "risk": 40, "ips": ["198.51.100.1"]}, {"x": 1}]'
    sig = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    notes = found["plain"].receive(headers(X_Signature=sig), body).notifications
    assert (notes[0].id, notes[0].type) == ("7", "port_scan")
    assert notes[1].type == "alert"
    assert notes[1].id.startswith("sha256-")
    assert json.loads(bytes(notes[0].data)) == json.loads(body)[0]
    assert reading(notes[0]).attributes.risk == 40
    with pytest.raises(Unauthorized):
        found["plain"].receive(
            headers(X_Signature=sig.replace(sig[0], "0" if sig[0] != "0" else "1", 1)), body
        )
    now = str(int(time.time()))
    ts_sig = hmac.new(b"k", f"{now}:".encode() + body, hashlib.sha256).hexdigest()
    grafana = headers(X_Grafana_Alerting_Signature=ts_sig, X_Grafana_Alerting_Timestamp=now)
    assert found["grafana-hmac"].receive(grafana, body).notifications
    old = str(int(time.time()) - 600)
    old_sig = hmac.new(b"k", f"{old}:".encode() + body, hashlib.sha256).hexdigest()
    with pytest.raises(Unauthorized, match="too old"):
        found["grafana-hmac"].receive(
            headers(X_Grafana_Alerting_Signature=old_sig, X_Grafana_Alerting_Timestamp=old), body
        )
    b64 = base64.b64encode(hmac.new(b"k", body, hashlib.sha512).digest()).decode()
    assert found["b64"].receive(headers(X_Signature=f"sha512={b64}"), body).notifications
    with pytest.raises(Unauthorized):
        found["b64"].receive(headers(X_Signature=b64), body)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ('[[sources]]\nname = "Bad Name"\ntype = "github"\nsecret = "s"', "name"),
        ('[[sources]]\nname = "x"\ntype = "nope"\nsecret = "s"', "nope"),
        ('[[sources]]\nname = "x"\ntype = "github"', "needs secret"),
        ('[[sources]]\nname = "x"\ntype = "github"\nsecret = "s"\nsecret_file = "/f"', "either"),
        ('[[sources]]\nname = "x"\ntype = "github"\nsecret = "s"\ncolour = 1', "colour"),
        (
            '[[sources]]\nname = "x"\ntype = "github"\nsecret = "s"\n'
            '[[sources]]\nname = "x"\ntype = "github"\nsecret = "s"',
            "two sources",
        ),
        ('[[sources]]\nname = "x"\ntype = "alertmanager"', "needs token"),
        (
            '[[sources]]\nname = "x"\ntype = "alertmanager"\ntoken = "t"\n'
            'username = "u"\npassword = "p"',
            "either token",
        ),
        (
            '[[sources]]\nname = "x"\ntype = "alertmanager"\nusername = "u"',
            "both username and password",
        ),
        ('[[sources]]\nname = "x"\ntype = "generic"\nsecret = "s"\nalgorithm = "md5"', "algorithm"),
    ],
)
def test_bad_sources_are_refused(tmp_path: Path, toml: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load(tmp_path, toml)


def test_secret_files_and_the_reserved_name(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-a-file\n")
    settings = load(
        tmp_path,
        f'[[sources]]\nname = "am-file"\ntype = "alertmanager"\ntoken_file = "{tmp_path / "tok"}"',
    )
    receiver = hooks.configured(settings)["am-file"]
    _, body = captured("run1-bearer-basic/01_bearer")
    assert receiver.receive(headers(Authorization="Bearer from-a-file"), body).notifications
    assert [s.name for s in inbound(settings).sources] == ["am-file"]
    with pytest.raises(ConfigError, match="reserved"):
        load(tmp_path, '[[sources]]\nname = "sqreen"\ntype = "github"\nsecret = "s"')
    # refused when read: no process reads the implicit source with another profile
    assert sources.profile("sqreen") is sqreen.PROFILE
    # a source of type sqreen named sqreen gives /webhooks/sqreen its secret
    settings = load(tmp_path, '[[sources]]\nname = "sqreen"\ntype = "sqreen"\nsecret = "a, b"')
    assert [s.reveal() for s in hooks.sqreen_secrets(settings) or ()] == ["a", "b"]
    assert hooks.configured(settings) == {}


def test_alertmanager_basic_auth_from_files(tmp_path: Path) -> None:
    """``username_file`` and ``password_file``, as Alertmanager's ``basic_auth`` takes
    them; the captured basic-auth request (user ``alertmanager``) passes."""
    (tmp_path / "user").write_text("alertmanager\n")
    (tmp_path / "pass").write_text("p4ss\n")
    files = f'username_file = "{tmp_path / "user"}"\npassword_file = "{tmp_path / "pass"}"'
    settings = load(tmp_path, f'[[sources]]\nname = "am"\ntype = "alertmanager"\n{files}')
    head, body = captured("run1-bearer-basic/02_basic")
    assert hooks.configured(settings)["am"].receive(head, body).notifications
    for given, reason in [
        (f'username = "alertmanager"\n{files}', "either username or username_file"),
        (f'username = "a:b"\npassword_file = "{tmp_path / "pass"}"', "cannot hold ':'"),
        (f'username_file = "{tmp_path / "user"}"', "both username and password"),
        (f'username_file = "{tmp_path / "missing"}"\npassword = "p"', "username_file"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            load(tmp_path, f'[[sources]]\nname = "am"\ntype = "alertmanager"\n{given}')


def test_a_sink_process_reads_no_source_secret(tmp_path: Path) -> None:
    """A sink's process is given only its own target's secrets: a source's secret file
    missing there is no error (the gateway reads it)."""
    toml = '[[sources]]\nname = "gh-missing"\ntype = "github"\nsecret_file = "/nonexistent/secret"'
    path = tmp_path / "lookout.toml"
    path.write_text(toml)
    settings = config.load({"LOOKOUT_CONFIG": str(path)}, secrets_of=("log",))
    assert inbound(settings).source("gh-missing") is not None
    with pytest.raises(ConfigError, match="secret_file"):
        hooks.configured(settings)
    with pytest.raises(ConfigError, match="secret_file"):
        config.load({"LOOKOUT_CONFIG": str(path)})  # lookout run refuses it before starting


def test_lookout_services_refuses_a_misused_source_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services import cli

    path = tmp_path / "lookout.toml"
    path.write_text('[[sources]]\nname = "sqreen"\ntype = "generic"\nsecret = "s"\n')
    monkeypatch.setenv("LOOKOUT_CONFIG", str(path))
    assert cli.main(["services"]) == 2
    assert "reserved" in capsys.readouterr().err


def test_source_types_each_a_module_and_one_line() -> None:

    from services import registry
    from shared.relay.inbound import source_type, source_types

    folder = Path(__file__).resolve().parents[2] / "services" / "gateway" / "sources"
    modules = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    assert sorted(m.rsplit(".", 1)[1] for m in registry.SOURCE_TYPES.values()) == modules
    for name, module_name in registry.SOURCE_TYPES.items():
        module = importlib.import_module(module_name)
        assert module_name.endswith(name.replace("-", "_"))
        assert source_type(module.CONFIG) == name
        assert source_types()[name] is module.CONFIG
        assert callable(module.build)


def test_the_readme_sources_example_is_a_valid_configuration(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Sources") : readme.index("### Targets")]
    toml = section[
        section.index("```toml\n") + 8 : section.index("```", section.index("```toml") + 7)
    ]
    toml = toml.replace('secret_file = "/run/secrets/github_webhook"', 'secret = "x"')
    settings = load(tmp_path, toml)
    found = hooks.configured(settings)
    assert sorted(found) == ["github", "grafana", "prometheus", "sqreen-eu", "svix"]
    assert sorted(s.type for s in inbound(settings).sources) == sorted(
        ["standard-webhooks", "github", "alertmanager", "generic", "sqreen"]
    )
