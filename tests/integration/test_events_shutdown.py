"""An open server-sent events stream does not hold the gateway's shutdown: on SIGTERM it
ends at once with a last ``shutdown`` event (so the browser's EventSource reconnects to
another replica or to the restarted gateway), and the process exits promptly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
from helpers import LOOKOUT, api, gateway_ready, wait_for

from shared.core.natsserver import NatsServer, free_port

SHUTDOWN_BOUND = 5.0  # seconds; the stream used to hold the exit for 15 s or more


async def test_sigterm_ends_an_open_event_stream_at_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKOUT_", "NATS_"))}
    env.update(
        NATS_URL=nats_server.url,
        LOOKOUT_HTTP_PORT=str(port),
        LOOKOUT_DATA_DIR=str(tmp_path / "data"),
    )
    log_path = tmp_path / "gateway.log"
    # No provider service runs: the job's results never come, the stream never completes.
    proc = subprocess.Popen(
        [LOOKOUT, "service", "gateway"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as session:
            await wait_for(lambda: gateway_ready(session, base), within=30)
            status, created = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={"indicators": ["example.com"], "providers": ["dns"]},
            )
            assert status == 202, created

            events: list[tuple[str, object]] = []
            lines: list[str] = []
            async with session.get(f"{base}/api/v1/lookups/{created['id']}/events") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/event-stream")

                async def read_all() -> None:
                    event = ""
                    async for raw in response.content:  # to the end of the stream
                        line = raw.decode().rstrip("\n")
                        lines.append(line)
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: "):
                            events.append((event, json.loads(line[6:])))

                reader = asyncio.create_task(read_all())
                await asyncio.sleep(1.0)  # the handler now waits for results that never come
                assert not reader.done()
                assert events == []
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                # the stream ends cleanly (a complete chunked body, no payload error) ...
                await asyncio.wait_for(reader, SHUTDOWN_BOUND)
                assert response.content.at_eof()
            # ... and the process exits, well before the stream's 15 s keep-alive
            code = await asyncio.to_thread(proc.wait, SHUTDOWN_BOUND * 2)
            elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, log_path.read_text()
    assert elapsed < SHUTDOWN_BOUND, f"exited {elapsed:.1f}s after SIGTERM"
    # the last event tells the client the server is going away, and when to come back
    assert [name for name, _ in events] == ["shutdown"]
    assert "retry: " in "\n".join(lines)
    assert "Traceback" not in log_path.read_text()
