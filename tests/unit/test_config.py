from __future__ import annotations

from pathlib import Path

import pytest
from helpers import WHSEC

from services.gateway import sqreen
from services.sinks.http.config import HttpTargetConfig
from services.sinks.log.config import LogTargetConfig
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.core.secrets import Secret, read_secret_file
from shared.lookups.config import lookups
from shared.relay.config import relay
from shared.relay.inbound import inbound


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "lookout.toml"
    path.write_text(text)
    return str(path)


def test_defaults_give_one_log_target_and_loopback() -> None:
    settings = config.load({})
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 8080
    assert settings.nats_url is None
    assert settings.effective_nats_url == "nats://127.0.0.1:4222"
    assert settings.data_dir == Path.home() / ".local" / "state" / "lookout"
    assert [(t.name, type(t)) for t in relay(settings).targets] == [("log", LogTargetConfig)]


def test_secret_list_for_rotation_and_masking() -> None:
    settings = config.load({"SQREEN_WEBHOOK_SECRET": "old-secret, new-secret"})
    assert [s.reveal() for s in sqreen.secrets(settings)] == ["old-secret", "new-secret"]
    assert "old-secret" not in repr(settings)
    assert "new-secret" not in str(sqreen.secrets(settings))


def test_secret_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "sqreen"
    secret_file.write_text("from-a-file\n")
    settings = config.load({"SQREEN_WEBHOOK_SECRET_FILE": str(secret_file)})
    assert [s.reveal() for s in sqreen.secrets(settings)] == ["from-a-file"]


def test_secret_file_problems_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SQREEN_WEBHOOK_SECRET_FILE: cannot read"):
        config.load({"SQREEN_WEBHOOK_SECRET_FILE": str(tmp_path / "missing")})
    with pytest.raises(
        ConfigError, match="either SQREEN_WEBHOOK_SECRET or SQREEN_WEBHOOK_SECRET_FILE"
    ):
        config.load({"SQREEN_WEBHOOK_SECRET": "a", "SQREEN_WEBHOOK_SECRET_FILE": "/x"})


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize(
    "example",
    sorted([*DEPLOY.glob("secrets/*.txt.example"), *DEPLOY.glob("k8s/secrets/*.txt.example")]),
    ids=lambda p: p.relative_to(DEPLOY).as_posix(),
)
def test_every_shipped_secret_example_is_refused(example: Path) -> None:
    """The examples are public: a copy never edited must not guard an API, sign webhooks
    or stand for a key. Refused where it is read, naming the setting, never the value."""
    value = example.read_text().strip()
    with pytest.raises(ConfigError, match="placeholder of the shipped example") as refused:
        read_secret_file(str(example), "SOME_SECRET_FILE")
    assert "SOME_SECRET_FILE" in str(refused.value)
    assert value not in str(refused.value)
    with pytest.raises(ConfigError, match="LOOKOUT_API_TOKENS: still the placeholder"):
        config.load({"LOOKOUT_API_TOKENS": value})


def test_placeholder_secrets_in_the_config_are_refused(tmp_path: Path) -> None:
    placeholder = (DEPLOY / "secrets" / "ops_http_secret.txt.example").read_text().strip()
    toml = '[[targets]]\nname = "ops"\ntype = "http"\nurl = "https://x.example"\n'
    toml += f'secret = "{placeholder}"\n'
    (tmp_path / "l.toml").write_text(toml)
    with pytest.raises(ConfigError, match=r"targets\[0\] \(ops\)\.secret: still the placeholder"):
        relay(config.load({"LOOKOUT_CONFIG": str(tmp_path / "l.toml")}))
    sources = '[[sources]]\nname = "gh"\ntype = "github"\nsecret = "example-only-change-me-x"\n'
    (tmp_path / "s.toml").write_text(sources)
    with pytest.raises(ConfigError, match="still the placeholder"):
        inbound(config.load({"LOOKOUT_CONFIG": str(tmp_path / "s.toml")}))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOOKOUT_HTTP_PORT": "eighty"}, "LOOKOUT_HTTP_PORT must be an integer"),
        ({"LOOKOUT_HTTP_PORT": "70000"}, "LOOKOUT_HTTP_PORT must be between"),
        ({"NATS_URL": "http://x:4222"}, "NATS_URL"),
        ({"LOOKOUT_LOG_LEVEL": "loud"}, "LOOKOUT_LOG_LEVEL"),
        ({"LOOKOUT_DEDUP_WINDOW": "-1"}, "LOOKOUT_DEDUP_WINDOW"),
        ({"LOOKOUT_STREAM_REPLICAS": "three"}, "LOOKOUT_STREAM_REPLICAS must be an integer"),
        ({"LOOKOUT_STREAM_REPLICAS": "0"}, "LOOKOUT_STREAM_REPLICAS must be between 1 and 5"),
        ({"LOOKOUT_STREAM_REPLICAS": "6"}, "LOOKOUT_STREAM_REPLICAS must be between 1 and 5"),
        ({"LOOKOUT_STREAM_REPLICAS": "2.5"}, "LOOKOUT_STREAM_REPLICAS must be an integer"),
    ],
)
def test_bad_env_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(env)


@pytest.mark.parametrize(("raw", "replicas"), [(None, 1), ("", 1), ("1", 1), ("3", 3), ("5", 5)])
def test_stream_replicas(raw: str | None, replicas: int) -> None:
    env = {} if raw is None else {"LOOKOUT_STREAM_REPLICAS": raw}
    assert config.load(env).stream_replicas == replicas


def test_targets_from_toml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[[targets]]
name = "ops-http"
type = "http"
url = "https://hooks.example.com/in"
secret = "{WHSEC}"
match = {{ types = ["security_event"], min_risk = 50 }}
retry = {{ max_attempts = 3, initial_backoff = 0.5 }}

[[targets]]
name = "audit"
type = "log"
""",
    )
    settings = config.load({"LOOKOUT_CONFIG": path})
    http, audit = relay(settings).targets
    assert isinstance(http, HttpTargetConfig)
    assert http.url == "https://hooks.example.com/in"
    assert http.match.min_risk == 50
    assert http.retry.max_attempts == 3
    assert relay(settings).secret("ops-http", "secret") == Secret(WHSEC)
    assert audit.name == "audit"
    assert relay(settings).target("audit") is audit
    with pytest.raises(ConfigError, match="no target named 'nope'"):
        relay(settings).target("nope")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[targets]]\nname = "x"\ntype = "http"\nurl = 5\n', r"\$\.targets\[0\]\.url"),
        ('[[targets]]\nname = "x"\ntype = "pigeon"\n', "Invalid value 'pigeon'"),
        ('[[targets]]\nname = "x"\ntype = "log"\ncolour = "red"\n', "unknown field `colour`"),
        ('[[targets]]\nname = "Bad Name"\ntype = "log"\n', r"\$\.targets\[0\]\.name"),
        ('[[targets]]\nname = "x"\ntype = "http"\nurl = "ftp://h/"\n', "absolute http"),
        ('[[targets]]\nname = "x"\ntype = "http"\nurl = "http://h/"\n', "needs secret"),
        (
            '[[targets]]\nname = "x"\ntype = "http"\nurl = "http://h/"\nsecret = "plain"\n',
            "must start with 'whsec_'",
        ),
        (
            '[[targets]]\nname = "x"\ntype = "http"\nurl = "http://h/"\nsecret = "whsec_!!"\n',
            "not valid base64",
        ),
        (
            '[[targets]]\nname = "a"\ntype = "log"\n[[targets]]\nname = "a"\ntype = "log"\n',
            "two targets",
        ),
        ('[[targets]\nname = "a"\n', "not valid TOML"),
        ('[[targets]]\nname = "a"\ntype = "log"\non_failure = "a"\n', "on_failure names itself"),
        (
            '[[targets]]\nname = "a"\ntype = "log"\non_failure = "b"\n',
            "on_failure names 'b', which is not a configured target",
        ),
        (
            '[[targets]]\nname = "a"\ntype = "log"\nretry = { schedule = [5], multiplier = 2 }\n',
            "set either schedule or",
        ),
        (
            '[[targets]]\nname = "a"\ntype = "log"\nper_second = -1\n',
            r"\$\.targets\[0\]\.per_second",
        ),
        (
            '[[targets]]\nname = "a"\ntype = "log"\ngroup_window = 7200\n',
            r"<= 3600.0 - at `\$\.targets\[0\]\.group_window`",
        ),
        (
            '[[targets]]\nname = "a"\ntype = "log"\ngroup_by = ["colour"]\n',
            r"\$\.targets\[0\]\.group_by\[0\]",
        ),
        (
            '[[targets]]\nname = "m"\ntype = "email"\nhost = "h"\nsender = "a@b.c"\n'
            'to = ["soc@example.com", "the soc team"]\n',
            r"to: 'the soc team' is not one e-mail address .* - at `\$\.targets\[0\]`",
        ),
        ("tragets = []\n", "unknown field `tragets`"),
    ],
)
def test_bad_toml_is_reported_with_its_key(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError, match=message) as info:
        config.load({"LOOKOUT_CONFIG": path})
    assert path in str(info.value)


def test_http_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "whsec"
    secret.write_text(WHSEC + "\n")
    path = write(
        tmp_path,
        f'[[targets]]\nname = "h"\ntype = "http"\nurl = "http://h/"\nsecret_file = "{secret}"\n',
    )
    assert relay(config.load({"LOOKOUT_CONFIG": path})).secret("h", "secret") == Secret(WHSEC)


def test_refuses_public_bind_without_tokens() -> None:
    with pytest.raises(ConfigError, match="LOOKOUT_API_TOKENS"):
        config.load({"LOOKOUT_HTTP_HOST": "0.0.0.0"}).check_bind()
    config.load({"LOOKOUT_HTTP_HOST": "0.0.0.0", "LOOKOUT_API_TOKENS": "t0ken-abc"}).check_bind()
    config.load({"LOOKOUT_HTTP_HOST": "::1"}).check_bind()


def test_dns_nameservers() -> None:
    settings = config.load(
        {"LOOKOUT_DNS_NAMESERVERS": "127.0.0.1:5353, 9.9.9.9,[::1]:53,[2620:fe::fe]"}
    )
    assert lookups(settings).dns_nameservers == (
        ("127.0.0.1", 5353),
        ("9.9.9.9", 53),
        ("::1", 53),
        ("2620:fe::fe", 53),
    )
    assert lookups(config.load({})).dns_nameservers == ()
    for bad in ("dns.google", "1.1.1.1:99999", "1.1.1.1:x"):
        with pytest.raises(ConfigError, match="LOOKOUT_DNS_NAMESERVERS"):
            config.load({"LOOKOUT_DNS_NAMESERVERS": bad})


def test_template_syntax_errors_stop_startup(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[targets]]\nname = "a"\ntype = "log"\ntemplate = { title = "{{ risk " }\n',
    )
    with pytest.raises(ConfigError, match=r"targets\[0\] \(a\)\.template\.title: template error"):
        config.load({"LOOKOUT_CONFIG": path})
    # a name no notification has (a typo): it would render empty for ever
    path = write(
        tmp_path,
        '[[targets]]\nname = "a"\ntype = "log"\ntemplate = { body = "{{ aplication }}" }\n',
    )
    with pytest.raises(
        ConfigError, match=r"\(a\)\.template\.body: no notification has aplication \(a template"
    ):
        config.load({"LOOKOUT_CONFIG": path})


def sms_and_slack(tmp_path: Path, slack_line: str = "") -> str:
    """A config with an SMS target whose token is in a file and a Slack target (whose
    webhook URL is ``slack_line``, none by default)."""
    token = tmp_path / "twilio-token"
    token.write_text("twilio-token-123\n")
    return write(
        tmp_path,
        f"""
[[targets]]
name = "pager-sms"
type = "sms"
account_sid = "AC123"
auth_token_file = "{token}"
sender = "+15550000000"
to = ["+15551111111"]

[[targets]]
name = "soc-slack"
type = "slack"
{slack_line}
""",
    )


def test_secret_fields_of_other_targets(tmp_path: Path) -> None:
    path = sms_and_slack(tmp_path)
    with pytest.raises(ConfigError, match=r"\(soc-slack\): needs webhook_url"):
        config.load({"LOOKOUT_CONFIG": path})
    text = (
        (tmp_path / "lookout.toml")
        .read_text()
        .replace(
            'type = "slack"\n',
            'type = "slack"\nwebhook_url = "https://hooks.slack.com/services/T/B/X"\n',
        )
    )
    (tmp_path / "lookout.toml").write_text(text)
    settings = config.load({"LOOKOUT_CONFIG": path})
    assert relay(settings).secret("pager-sms", "auth_token") == Secret("twilio-token-123")
    assert relay(settings).secret("soc-slack", "webhook_url") is not None


def test_each_service_reads_only_the_secrets_it_uses(tmp_path: Path) -> None:
    """A sink reads (and requires) its own target's secrets only, the gateway and providers
    none, so a deployment can mount each secret only where it is used; without a scope
    (``lookout run``) every target's secret is required."""
    path = sms_and_slack(tmp_path, f'webhook_url_file = "{tmp_path / "not-mounted-here"}"')
    env = {"LOOKOUT_CONFIG": path}
    with pytest.raises(ConfigError, match=r"soc-slack"):
        config.load(env)  # every target's secrets: the Slack URL's file is missing
    with pytest.raises(ConfigError, match=r"soc-slack"):
        config.load(env, secrets_of=("soc-slack",))
    sms_sink = config.load(env, secrets_of=("pager-sms",))
    assert relay(sms_sink).secret("pager-sms", "auth_token") == Secret("twilio-token-123")
    assert relay(sms_sink).secret("soc-slack", "webhook_url") is None
    gateway = config.load(env, secrets_of=())
    assert relay(gateway).target_secrets == {}
    assert [t.name for t in relay(gateway).targets] == [
        "pager-sms",
        "soc-slack",
    ]  # routes still known


def test_the_data_dir_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not ``.lookout`` under wherever lookout was started (state and dead letters changed
    with the directory): ``LOOKOUT_DATA_DIR``, else the XDG state directory."""
    home = tmp_path / "home"
    for where in (tmp_path / "a", tmp_path / "b"):
        where.mkdir()
        monkeypatch.chdir(where)
        assert config.load({"HOME": str(home)}).data_dir == home / ".local/state/lookout"
    assert config.data_dir({"HOME": str(home), "XDG_STATE_HOME": "/var/state"}) == Path(
        "/var/state/lookout"
    )
    relative = {"HOME": str(home), "XDG_STATE_HOME": "state"}  # ignored, as the spec says
    assert config.data_dir(relative) == home / ".local/state/lookout"
    chosen = {"HOME": str(home), "XDG_STATE_HOME": "/x", "LOOKOUT_DATA_DIR": "/srv/lookout"}
    assert config.load(chosen).data_dir == Path("/srv/lookout")
