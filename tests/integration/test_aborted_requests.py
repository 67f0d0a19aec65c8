"""A client that goes away in the middle of its request body (an aborted upload) is not
an error of lookout's: one quiet info line, no ERROR, no traceback (issue 12, item 19)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from helpers import make_settings, running_gateway

from shared.core import logging as log
from shared.core.natsserver import NatsServer

UPLOAD = (
    b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="hosts.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n" + b"example.com\n" * 20_000
)


async def send_part_and_leave(port: int, path: str, content_type: str, body: bytes) -> None:
    """Announce ``body`` and a little more, send part of it, and close the connection."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) + 100}\r\n\r\n"
    ).encode()
    writer.write(head + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(0.3)  # the gateway is reading the body by now
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/api/v1/lookups", "multipart/form-data; boundary=XyZ", UPLOAD),
        ("/api/v1/lookups", "application/json", b'{"text": "' + b"example.com " * 5000),
        ("/webhooks/sqreen", "application/json", b'[{"message_id": "' + b"x" * 60_000),
    ],
)
async def test_a_client_that_leaves_mid_body_is_one_quiet_line(
    nats_server: NatsServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    path: str,
    content_type: str,
    body: bytes,
) -> None:
    settings = make_settings(tmp_path, nats_server.url, SQREEN_WEBHOOK_SECRET="s" * 16)
    log.setup("gateway", "info")
    async with running_gateway(settings):
        capsys.readouterr()
        for _ in range(3):
            await send_part_and_leave(settings.http_port, path, content_type, body)
        await asyncio.sleep(0.5)
        out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    left = [e for e in lines if e["event"] == "client disconnected before its request was read"]
    assert len(left) == 3, out
    assert all(e["level"] == "info" for e in left)
    assert not [e for e in lines if e["level"] in ("error", "critical")], out
    assert "Traceback" not in out
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
