"""Listing dead letters costs what ``?limit=`` asks for, not one NATS round trip per entry
(issue 12, item 18), and ``lookout deadletters list`` shows a header, every target's count,
and refuses a target that does not exist (items 19 and 22).

The cost is measured on the real bus: a core NATS subscription on the stream's get subjects
(``$JS.API.DIRECT.GET.DEADLETTERS``, ``$JS.API.STREAM.MSG.GET.DEADLETTERS``) sees every read
request the gateway sends, as the stream's own responders do.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import nats
from helpers import LOOKOUT, api, http_target, jetstream, make_settings, running_gateway
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared.bus import messages
from shared.core.natsserver import NatsServer
from shared.relay import schemas, streams

SEEDED = {"ops-http": 2006, "other": 1000, "gone": 3}  # "gone" is no longer configured


async def seed(js: JetStreamContext) -> None:
    """Dead letters as a sink writes them, the targets' interleaved in the stream."""
    order = [(t, i) for t, n in SEEDED.items() for i in range(n)]
    order.sort(key=lambda item: item[1] / SEEDED[item[0]])
    for start in range(0, len(order), 256):
        publishes = []
        for target, i in order[start : start + 256]:
            note = schemas.Notification(
                id=f"{target}-{i}",
                type="security_event",
                source="sqreen",
                timestamp="2026-11-21T10:00:00Z",
                data=msgspec.Raw(b'{"risk": 80}'),
            )
            record = schemas.DeadLetter(
                target=target,
                subject=note.subject,
                error="HTTP 400 from the target",
                attempts=4,
                failed_at="2026-11-21T10:05:00Z",
                stream_seq=i + 1,
                notification=note,
            )
            publishes.append(
                js.publish(
                    f"deadletter.{target}",
                    messages.encode(record),
                    headers={"Nats-Msg-Id": f"{target}:{i}"},
                )
            )
        await asyncio.gather(*publishes)


class Requests:
    """Counts the read requests sent to the DEADLETTERS stream."""

    def __init__(self) -> None:
        self.count = 0

    async def on_request(self, _msg: Msg) -> None:
        self.count += 1


@asynccontextmanager
async def counting(url: str) -> AsyncIterator[tuple[Requests, nats.NATS]]:
    nc = await nats.connect(url)
    requests = Requests()
    try:
        for subject in (
            f"$JS.API.DIRECT.GET.{streams.DEADLETTERS}",
            f"$JS.API.DIRECT.GET.{streams.DEADLETTERS}.>",
            f"$JS.API.STREAM.MSG.GET.{streams.DEADLETTERS}",
        ):
            await nc.subscribe(subject, cb=requests.on_request)
        await nc.flush()
        yield requests, nc
    finally:
        await nc.close()


async def requests_for(requests: Requests, nc: nats.NATS, url: str) -> tuple[int, int, Any]:
    """(how many read requests ``GET url`` sent to the stream, its status, its answer)."""
    requests.count = 0
    code, answer = await api("GET", url)
    await nc.flush()  # every request the call caused has reached this subscriber
    return requests.count, code, answer


def targets_toml() -> str:
    return http_target("http://127.0.0.1:9/hook") + http_target(
        "http://127.0.0.1:9/hook", name="other"
    )


async def test_listing_is_bounded_by_limit(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url, targets_toml(), LOOKOUT_API_RATE="0")
    async with (
        jetstream(nats_server.url, settings) as js,
        running_gateway(settings) as base,
        counting(nats_server.url) as (requests, nc),
    ):
        await seed(js)
        api_base = f"{base}/api/v1/deadletters"
        newest = [f"ops-http-{i}" for i in range(2005, -1, -1)]
        for limit, shown in ((10, 10), (200, 200), (1000, 1000)):
            sent, code, found = await requests_for(
                requests, nc, f"{api_base}/ops-http?limit={limit}"
            )
            assert code == 200
            assert found["total"] == 2006
            assert [e["id"] for e in found["deadletters"]] == newest[:shown]
            # a bisection (about log2 of the stream) and the pages of `limit` entries
            assert sent <= 30 + limit // 256, (limit, sent)
        sent, code, found = await requests_for(requests, nc, f"{api_base}/ops-http")
        assert code == 200
        assert len(found["deadletters"]) == 200
        assert sent <= 30

        sent, code, listing = await requests_for(requests, nc, api_base)
        assert code == 200
        assert sent == 0  # the counts come from the stream's per-subject state
        counts = {t["name"]: (t["configured"], t["count"]) for t in listing["targets"]}
        assert counts == {"ops-http": (True, 2006), "other": (True, 1000), "gone": (False, 3)}

        code, gone = await api("GET", f"{api_base}/gone?limit=2")
        assert (code, gone["configured"], gone["total"]) == (200, False, 3)
        assert [e["id"] for e in gone["deadletters"]] == ["gone-2", "gone-1"]
        assert (await api("GET", f"{api_base}/nosuch"))[0] == 404

        # Replay by id still finds any entry, the oldest included, and by sequence too.
        code, replayed = await api("POST", f"{api_base}/ops-http/replay", json={"id": "ops-http-0"})
        assert (code, replayed["replayed"]) == (200, 1)
        code, found = await api("GET", f"{api_base}/other?limit=1000")
        seq = found["deadletters"][-1]["seq"]
        assert found["deadletters"][-1]["id"] == "other-0"
        code, replayed = await api("POST", f"{api_base}/other/replay", json={"id": str(seq)})
        assert (code, replayed["outcomes"][0]["id"]) == (200, "other-0")
        code, found = await api("GET", f"{api_base}/ops-http?limit=1000")
        assert found["total"] == 2005
        assert found["deadletters"][-1]["id"] == "ops-http-1006"


async def cli(tmp_path: Path, nats_server: NatsServer, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "LOOKOUT_CONFIG": str(tmp_path / "lookout.toml"),
    }
    proc = await asyncio.create_subprocess_exec(
        LOOKOUT,
        "deadletters",
        "list",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_list_every_target_header_and_unknown_target(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url, targets_toml())
    async with jetstream(nats_server.url, settings) as js:
        await seed(js)

    code, out, err = await cli(tmp_path, nats_server)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TARGET", "TYPE", "CONFIGURED", "DEAD", "LETTERS"]
    assert [line.split() for line in lines[1:]] == [
        ["ops-http", "http", "yes", "2006"],
        ["other", "http", "yes", "1000"],
        ["gone", "-", "no", "3"],
    ]

    code, out, err = await cli(tmp_path, nats_server, "ops-http", "--limit", "3")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["SEQ", "FAILED", "AT", "ID", "SOURCE/TYPE", "ATTEMPTS", "ERROR"]
    assert [row.split()[2] for row in rows] == ["ops-http-2003", "ops-http-2004", "ops-http-2005"]
    assert rows[0].split()[3:6] == ["sqreen/security_event", "4", "HTTP"]
    assert "2006 dead letter(s) for ops-http (3 newest shown)" in err

    code, out, err = await cli(tmp_path, nats_server, "gone")
    assert code == 0
    assert len(out.splitlines()) == 1 + 3

    code, out, err = await cli(tmp_path, nats_server, "nosuch")
    assert code == 2
    assert out == ""
    assert "no target named 'nosuch' is configured" in err

    for bad in (["ops-http", "--limit", "0"], ["--limit", "3"], ["*"], ["deadletter.>"]):
        code, out, err = await cli(tmp_path, nats_server, *bad)
        assert code == 2, bad
        assert out == ""
