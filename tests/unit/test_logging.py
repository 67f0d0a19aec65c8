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


def test_line_is_rendered_as_json_dumps_renders_it(capsys: pytest.CaptureFixture[str]) -> None:
    """The one encoder made at setup writes what structlog's JSONRenderer (``json.dumps``)
    wrote: its spacing, ASCII escapes, ``__structlog__()`` and ``repr`` for the rest."""

    class Custom:
        def __structlog__(self) -> dict[str, int]:
            return {"n": 1}

    log.setup("test", "debug")
    log.get("t").info("shapes", text="é\n", n=3, f=1.5, ok=True, none=None, c=Custom(), s={1})
    line = capsys.readouterr().out.splitlines()[0]
    assert '"text": "\\u00e9\\n", "n": 3, "f": 1.5, "ok": true, "none": null' in line
    assert '"c": {"n": 1}, "s": "{1}"' in line
    assert json.loads(line)["event"] == "shapes"


def test_secrets_json_escapes_are_redacted_in_values_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A secret JSON writes as it is is found in the rendered line; one it escapes
    (quotes, backslashes, non-ASCII, control characters) would not be found there, so
    values are scrubbed for those before rendering."""
    escaped = ['pa"ss\\word-1', "mot-de-passe-é", "tab\tsecret"]
    for secret in [*escaped, "plain-secret-42"]:
        log.register_secret(secret)
    log.setup("test", "debug")
    logger = log.get("t")
    for secret in [*escaped, "plain-secret-42"]:
        logger.info("line", note=f"<{secret}>", nested={"a": [f"x{secret}"]}, raw=secret.encode())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4
    for line in lines:
        assert line["note"] == "<[REDACTED]>"
        assert line["nested"] == {"a": ["x[REDACTED]"]}
        assert line["raw"] == "[REDACTED]"


async def test_a_request_the_server_cannot_parse_is_one_warning_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An over-long request line from a client: aiohttp answers 400 and logs it at error
    level with a traceback; lookout makes it one warning line with the reason."""
    import asyncio

    from aiohttp import web

    log.setup("test", "info")
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /" + b"x" * 10_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
    finally:
        await runner.cleanup()
    assert status_line.split()[1] == b"400", status_line
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [line] = [x for x in lines if x["logger"] == "aiohttp.server"]
    assert line["level"] == "warning"
    assert "HTTP 400" in line["event"]
    assert "exception" not in line
