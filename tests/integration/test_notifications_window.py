"""``GET /api/v1/notifications`` reads the newest delivery records, never the whole bucket
(issue 15): with 16,000 records in ``delivery_status`` on a real nats-server, a listing
reads about its window of them, and still shows every target's state of the notifications
it lists, also one whose other records are older than the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from helpers import api, make_settings, running_gateway, wait_for
from nats.aio.msg import Msg

from services.gateway import notifications
from shared.bus import direct, messages
from shared.core.natsserver import NatsServer
from shared.relay import status, streams

TARGETS = ("t1", "t2")
COUNT = 8000
TOML = "".join(f'[[targets]]\nname = "{name}"\ntype = "log"\n' for name in TARGETS)


def record(n: int, target: str, state: status.State, received: str) -> tuple[str, bytes]:
    note_id = f"n-{n:05d}"
    entry = status.DeliveryStatus(
        notification_id=note_id,
        source="ids",
        type="port_scan",
        timestamp=received,
        subject="notification.ids.port_scan",
        target=target,
        state=state,
        attempts=1,
        updated_at=received,
        received_at=received,
    )
    key = f"{status.notification_key(note_id)}.{status.source_key('ids')}.{target}"
    return direct.kv_subject(streams.STATUS_BUCKET, key), messages.encode(entry)


def at(n: int) -> str:
    return status.utc_text(datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=n)) or ""


async def test_the_listing_reads_the_newest_records_not_the_whole_bucket(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url, TOML)
    async with running_gateway(settings) as base:  # provisions the bucket
        nc = await nats.connect(nats_server.url)
        try:
            # The newest notification's t1 record was written first of all: older than any
            # window; its t2 record is written last.
            newest = COUNT
            await nc.publish(*record(newest, "t1", "delivered", "2026-12-09T00:00:00.000Z"))
            for n in range(COUNT):
                for target in TARGETS:
                    await nc.publish(*record(n, target, "delivered", at(n)))
            await nc.publish(*record(newest, "t2", "retrying", "2026-12-09T00:00:00.000Z"))
            await nc.flush()
            js = nc.jetstream()
            stream = direct.kv_stream(streams.STATUS_BUCKET)

            async def stored() -> bool:
                info = await js.stream_info(stream)
                return info.state.messages == 2 * COUNT + 2

            await wait_for(stored, within=60)

            read: list[int] = []

            async def count(msg: Msg) -> None:
                if (msg.headers or {}).get(direct.SUBJECT, "").startswith("$KV.delivery_status."):
                    read.append(1)

            watcher = await nats.connect(nats_server.url)
            await watcher.subscribe("_INBOX.>", cb=count)
            await watcher.flush()
            try:
                status_code, listed = await api("GET", f"{base}/api/v1/notifications?limit=50")
                await watcher.flush()
            finally:
                await watcher.close()
        finally:
            await nc.close()

    assert status_code == 200
    assert listed["partial"] is True
    window = notifications.MIN_WINDOW
    assert window // 2 <= listed["total"] <= window // 2 + 2  # the notifications of the window
    shown: list[dict[str, Any]] = listed["notifications"]
    assert len(shown) == 50
    first = shown[0]
    assert first["id"] == f"n-{newest:05d}"
    # Both its states, though its t1 record is older than every record of the window.
    assert first["targets"]["t1"]["state"] == "delivered"
    assert first["targets"]["t2"]["state"] == "retrying"
    assert first["state"] == "retrying"
    assert [n["id"] for n in shown[1:]] == [f"n-{n:05d}" for n in range(COUNT - 1, COUNT - 50, -1)]
    assert all(set(n["targets"]) == set(TARGETS) for n in shown)
    # What it read: about the window and the records of the notifications it shows, far
    # from the whole bucket's 16,002.
    assert len(read) < 2 * window, len(read)
