"""Silences end to end on a real nats-server: made through the API (and ``lookout silence``),
checked by a real sink delivering to a loopback http target; the target's state in the
notifications API, the acknowledgement, no dead letter, and expiry applying at once."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from helpers import (
    Receiver,
    api,
    dead_letters,
    http_target,
    jetstream,
    make_settings,
    run_lookout,
    running_gateway,
    running_sink,
    settled,
    wait_for,
)

from shared.bus import direct
from shared.core.natsserver import NatsServer
from shared.relay import silences

TOKENS = "tok-one,tok-two"


async def notify(base: str, note_id: str, kind: str = "port_scan", **data: Any) -> None:
    status, answer = await api(
        "POST",
        f"{base}/api/v1/notifications",
        "tok-one",
        json={"type": kind, "source": "ids", "id": note_id, "data": {"risk": 80, **data}},
    )
    assert status == 202, answer


async def target_state(base: str, note_id: str, target: str = "ops-http") -> dict[str, Any]:
    status, answer = await api("GET", f"{base}/api/v1/notifications/{note_id}", "tok-one")
    if status != 200:
        return {}
    state: dict[str, Any] = answer["targets"][target]
    return state


def reaches(base: str, note_id: str, state: str) -> Any:
    async def check() -> bool:
        return (await target_state(base, note_id)).get("state") == state

    return check


def received(receiver: Receiver) -> list[str]:
    return [body["id"] for body in receiver.bodies()]


async def silence(base: str, token: str = "tok-two", **body: Any) -> tuple[int, Any]:  # noqa: S107
    return await api("POST", f"{base}/api/v1/silences", token, json=body)


async def test_a_silence_holds_matching_notifications_back_until_it_is_expired(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, http_target(receiver.url), LOOKOUT_API_TOKENS=TOKENS
    )
    async with running_gateway(settings) as base:
        status, made = await silence(
            base,
            matchers={"source": "ids", "type": "port_scan", "application": "shop"},
            duration="2h",
            comment="scanner maintenance",
        )
        assert status == 201, made
        assert made["created_by"] == "token-2"  # the second API token
        assert made["state"] == "active"
        assert made["comment"] == "scanner maintenance"
        ends = datetime.fromisoformat(made["ends_at"]) - datetime.now(UTC)
        assert timedelta(minutes=119) < ends <= timedelta(hours=2)

        # The sink starts after the silence exists: it reads the bucket at start.
        async with running_sink(settings, "ops-http"):
            await notify(base, "scan-1", application="shop")
            await wait_for(reaches(base, "scan-1", "silenced"))
            state = await target_state(base, "scan-1")
            assert state["silence_id"] == made["id"]
            # Other notifications still go: another application, another type.
            await notify(base, "scan-2", application="blog")
            await notify(base, "probe-1", kind="probe", application="shop")
            await wait_for(reaches(base, "scan-2", "delivered"))
            await wait_for(reaches(base, "probe-1", "delivered"))
            await wait_for(lambda: settled(nats_server.url, "ops-http"))  # all acknowledged
            assert sorted(received(receiver)) == ["probe-1", "scan-2"]
            status, listed = await api("GET", f"{base}/api/v1/notifications", "tok-one")
            assert {n["id"]: n["state"] for n in listed["notifications"]}["scan-1"] == "silenced"
            status, only = await api(
                "GET", f"{base}/api/v1/notifications?state=silenced", "tok-one"
            )
            assert [n["id"] for n in only["notifications"]] == ["scan-1"]

            # Expired: it stops applying at once.
            status, ended = await api("DELETE", f"{base}/api/v1/silences/{made['id']}", "tok-one")
            assert status == 200, ended
            assert ended["state"] == "expired"
            assert ended["expired_by"] == "token-1"
            assert datetime.fromisoformat(ended["ends_at"]) <= datetime.now(UTC)
            await notify(base, "scan-3", application="shop")
            await wait_for(reaches(base, "scan-3", "delivered"))
            assert "scan-1" not in received(receiver)  # what was silenced stays so

            # Kept and listed as expired; expiring it again changes nothing.
            status, listed = await api("GET", f"{base}/api/v1/silences", "tok-one")
            assert status == 200
            [shown] = listed["silences"]
            assert shown["id"] == made["id"]
            assert shown["state"] == "expired"
            again = await api("DELETE", f"{base}/api/v1/silences/{made['id']}", "tok-one")
            assert again == (200, ended)
            status, active = await api("GET", f"{base}/api/v1/silences?state=active", "tok-one")
            assert active == {"silences": [], "total": 0}
        assert await dead_letters(nats_server.url, "ops-http") == []


async def test_a_silence_made_while_a_notification_retries_stops_it_never_dead_lettered(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = (503, {})  # the target is down
    settings = make_settings(
        tmp_path,
        nats_server.url,
        http_target(receiver.url, max_attempts=6),
        LOOKOUT_API_TOKENS=TOKENS,
    )
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        await notify(base, "down-1")
        await wait_for(reaches(base, "down-1", "retrying"))
        status, _ = await silence(
            base, matchers={"target": "ops-http", "type": "port_scan"}, duration="10m"
        )
        assert status == 201
        await wait_for(reaches(base, "down-1", "silenced"), within=20)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
        tries = len(receiver.requests)
        assert 1 <= tries < 6
        await asyncio.sleep(1.5)  # past the longest backoff: no attempt comes back
        assert len(receiver.requests) == tries
        assert await dead_letters(nats_server.url, "ops-http") == []


async def test_a_silence_stops_applying_when_it_ends_and_a_target_matcher_spares_others(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    other = Receiver()
    await other.start()
    toml = http_target(receiver.url) + http_target(other.url, name="other-http")
    settings = make_settings(tmp_path, nats_server.url, toml, LOOKOUT_API_TOKENS=TOKENS)
    try:
        async with (
            running_gateway(settings) as base,
            running_sink(settings, "ops-http"),
            running_sink(settings, "other-http"),
        ):
            ends_at = datetime.now(UTC) + timedelta(seconds=3)
            status, made = await silence(
                base,
                matchers={"target": "ops-http", "ip": "192.0.2.7"},
                ends_at=ends_at.isoformat(),
            )
            assert status == 201, made
            await notify(base, "addr-1", ips=["192.0.2.7"])
            await wait_for(reaches(base, "addr-1", "silenced"))
            await wait_for(lambda: received(other) == ["addr-1"])  # not silenced there

            async def listed(query: str) -> list[str]:
                status, body = await api("GET", f"{base}/api/v1/notifications?{query}", "tok-one")
                assert status == 200, body
                return [n["id"] for n in body["notifications"]]

            async def delivered_to_other() -> bool:
                return await listed("target=other-http&state=delivered") == ["addr-1"]

            await wait_for(delivered_to_other)
            # overall it was delivered; silenced is what one target's state says
            assert await listed("state=silenced") == []
            assert await listed("target=ops-http&state=silenced") == ["addr-1"]
            status, body = await api(
                "GET", f"{base}/api/v1/notifications?target=nope&state=dead", "tok-one"
            )
            assert status == 400
            assert "no target named 'nope'" in body["error"]
            await notify(base, "addr-2", ips=["192.0.2.8"])
            await wait_for(reaches(base, "addr-2", "delivered"))
            await asyncio.sleep(max(0.0, (ends_at - datetime.now(UTC)).total_seconds()) + 0.2)
            await notify(base, "addr-3", ips=["192.0.2.7"])  # it has ended
            await wait_for(reaches(base, "addr-3", "delivered"))
            assert received(receiver) == ["addr-2", "addr-3"]
    finally:
        await other.stop()


async def test_the_sinks_read_silences_without_consumers(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    """The view is a core subscription plus direct gets: however many sinks start and
    stop, the bucket's stream has no consumer."""
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base:
        for _ in range(3):
            async with running_sink(settings, "ops-http"):
                status, _ = await silence(
                    base, token="", matchers={"source": "nobody"}, duration="1m"
                )
                assert status == 201
        async with jetstream(nats_server.url) as js:
            info = await js.stream_info(direct.kv_stream(silences.BUCKET))
            assert info.state.consumer_count == 0
            assert info.state.messages == 3
        status, listed = await api("GET", f"{base}/api/v1/silences")
        assert [s["created_by"] for s in listed["silences"]] == ["local"] * 3  # open mode


async def test_bad_silences_get_a_reason(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS=TOKENS)
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/silences"
        for body, reason in [
            ({"matchers": {}, "duration": "1h"}, "at least one matcher"),
            ({"matchers": {"host": "x"}, "duration": "1h"}, "unknown matcher 'host'"),
            ({"matchers": {"source": "ids"}}, "either duration"),
            ({"matchers": {"source": "ids"}, "duration": "1y"}, "unit"),
            ({"matchers": {"source": "ids"}, "duration": "91d"}, "at most 90 days"),
            ({"matchers": {"source": "ids"}, "ends_at": "2020-01-01T00:00:00Z"}, "future"),
            ({"matchers": {"source": "ids"}, "duration": "1h", "x": 1}, "expected"),
            ({"matchers": {"ip": "not-an-ip"}, "duration": "1h"}, "not an IP address"),
            ({"matchers": {"type": "*>"}, "duration": "1h"}, "no letter or digit"),
        ]:
            status, answer = await api("POST", url, "tok-one", json=body)
            assert status == 400, body
            assert reason in answer["error"], (body, answer)
        # Kept as the notifications hold them (an Alertmanager alertname, a dotted type).
        status, made = await silence(
            base, matchers={"type": "SSHBruteForce", "ip": "10.0.0.0/8"}, duration="1h"
        )
        assert status == 201, made
        assert made["matchers"] == {"type": "sshbruteforce", "ip": "10.0.0.0/8"}
        status, answer = await api("POST", url, "tok-one", data=b"{")
        assert status == 400
        assert (await api("POST", url, json={"matchers": {"source": "x"}, "duration": "1h"}))[
            0
        ] == 401
        missing = "0b7e1c2a-3d4f-4a5b-8c9d-0e1f2a3b4c5d"
        assert (await api("DELETE", f"{url}/{missing}", "tok-one"))[0] == 404
        assert (await api("GET", f"{url}/{missing}", "tok-one"))[0] == 404
        assert (await api("DELETE", f"{url}/not-an-id", "tok-one"))[0] == 400
        assert (await api("GET", f"{url}?state=maybe", "tok-one"))[0] == 400


async def lookout_silence(nats: NatsServer, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "NATS_URL": nats.url}
    env.pop("LOOKOUT_CONFIG", None)
    return await run_lookout(env, "silence", *args)


async def test_lookout_silence_add_list_expire(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, http_target(receiver.url), LOOKOUT_API_TOKENS=TOKENS
    )
    code, out, err = await lookout_silence(
        nats_server, "add", "--source", "ids", "--duration", "1h", "--comment", "noisy"
    )
    assert code == 0, err
    silence_id = out.strip()
    assert silences.valid_id(silence_id)
    assert "source=ids" in err
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        await notify(base, "cli-1")
        await wait_for(reaches(base, "cli-1", "silenced"))
        status, shown = await api("GET", f"{base}/api/v1/silences/{silence_id}", "tok-one")
        assert status == 200
        assert shown["created_by"] == "local"
        assert shown["comment"] == "noisy"

        code, out, _ = await lookout_silence(nats_server, "list")
        assert code == 0
        header, row = out.strip().splitlines()
        assert header.split()[:3] == ["ID", "STATE", "ENDS"]
        assert row.split()[:2] == [silence_id, "active"]
        assert "source=ids" in row
        assert "noisy" in row

        code, out, err = await lookout_silence(nats_server, "expire", silence_id)
        assert code == 0, err
        assert out.startswith(f"expired {silence_id}")
        await notify(base, "cli-2")
        await wait_for(reaches(base, "cli-2", "delivered"))

        code, out, _ = await lookout_silence(nats_server, "list", "--json")
        [listed] = [json.loads(line) for line in out.splitlines()]
        assert listed["state"] == "expired"
        assert listed["expired_by"] == "local"
        code, out, _ = await lookout_silence(nats_server, "list", "--active", "--json")
        assert (code, out) == (0, "")

    code, _, err = await lookout_silence(nats_server, "add", "--duration", "1h")
    assert code == 2
    assert "at least one matcher" in err
    code, _, err = await lookout_silence(nats_server, "expire", "nope")
    assert code == 2
    code, _, err = await lookout_silence(
        nats_server, "expire", "0b7e1c2a-3d4f-4a5b-8c9d-0e1f2a3b4c5d"
    )
    assert code == 1
    assert "no silence" in err
