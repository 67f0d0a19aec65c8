"""``NATS_URL`` with several servers and credentials: nothing secret is ever shown, and
nothing raises on the way (issue 12, item 14)."""

from __future__ import annotations

import json

import pytest

from shared.core import logging as log
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.core.natsurl import safe_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://user:pw@h1:4222", "nats://***@h1:4222"),
        (
            "nats://a:secret-one@h1:4222,nats://b:secret-two@h2:4222",
            "nats://***@h1:4222,nats://***@h2:4222",
        ),
        ("nats://a:secret-one@h1:4222,nats://h2:4222", "nats://***@h1:4222,nats://h2:4222"),
        ("nats://h1:4222, tls://b:secret-two@h2", "nats://h1:4222,tls://***@h2"),
        ("nats://token-only@h1", "nats://***@h1"),
        ("nats://u:p%40ss@word@[::1]:4222/x", "nats://***@[::1]:4222/x"),
        ("u:secret@h1:4222", "***@h1:4222"),  # no scheme: nats-py accepts it
        ("nats://u:secret@h1:notaport", "nats://***@h1:notaport"),
    ],
)
def test_safe_url_hides_the_credentials_of_every_server(url: str, shown: str) -> None:
    assert safe_url(url) == shown
    for secret in ("secret", "pw", "word", "token-only"):
        assert secret not in safe_url(url)


def test_a_bad_server_in_nats_url_is_named_without_its_password() -> None:
    for url in (
        "nats://h1:4222,http://user:bad-entry-password@h2:80",
        "nats://h1:4222,nats://user:bad-entry-password@h2:port",
    ):
        with pytest.raises(ConfigError) as caught:
            config.load({"NATS_URL": url})
        assert "bad-entry-password" not in str(caught.value)
        assert "***@h2" in str(caught.value)


def test_nats_passwords_never_reach_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    url = "nats://lookout:first-nats-password@h1:4222,nats://lookout:second-nats-password@h2"
    settings = config.load({"NATS_URL": url})
    log.setup("test", "debug")
    log.get("t").info("as a library might", servers=url.split(","), text=f"failed: {url}")
    log.get("t").info("described", **config.describe(settings))
    out = capsys.readouterr().out
    assert "first-nats-password" not in out
    assert "second-nats-password" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[1]["nats"] == "nats://***@h1:4222,nats://***@h2"
    assert "lookout" in lines[0]["servers"][0], "a user name is no secret"
