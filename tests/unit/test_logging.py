from __future__ import annotations

import json

import pytest

from services.gateway import sqreen
from shared.core import logging as log
from shared.core import settings as config


def test_secrets_never_reach_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    settings = config.load({"SQREEN_WEBHOOK_SECRET": "hunter2-very-secret"})
    log.setup("test", "debug")
    logger = log.get("t")
    logger.info("plain", note="key is hunter2-very-secret!", nested={"a": ["hunter2-very-secret"]})
    logger.info("by key", api_key="abc", headers={"Authorization": "Bearer x"})
    logger.info("objects", secrets=sqreen.secrets(settings))
    try:
        raise ValueError("failed with hunter2-very-secret")
    except ValueError:
        logger.exception("boom")
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4
    assert "hunter2-very-secret" not in out
    assert lines[0]["note"] == "key is [REDACTED]!"
    assert lines[0]["nested"] == {"a": ["[REDACTED]"]}
    assert lines[1]["api_key"] == "[REDACTED]"
    assert lines[1]["headers"] == {"Authorization": "[REDACTED]"}
    assert "[REDACTED]" in lines[3]["exception"]


def test_enabled_follows_the_configured_level(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    log.setup("test", "warning")
    assert not log.enabled(logging.INFO)
    assert log.enabled(logging.WARNING)
    log.get("t").info("filtered")
    assert capsys.readouterr().out == ""
    log.setup("test", "debug")
    assert log.enabled(logging.DEBUG)
    log.get("t").debug("written")
    assert "written" in capsys.readouterr().out
