"""``/api/v1/deadletters``: list a target's dead letters and replay them over HTTP, on a real
bus with real sinks and loopback receivers; and who may do it (bearer token, or the web
UI's session cookie with its CSRF token)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from helpers import (
    Receiver,
    api,
    dead_lettered,
    dead_letters,
    http_target,
    login_nonce,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    sqreen_fixture,
    ui_login,
    wait_for,
)

from shared.core.natsserver import NatsServer


async def test_list_and_replay_over_http(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    other = Receiver()
    await other.start()
    receiver.default = (400, {})  # ops-http refuses everything: dead letters
    settings = make_settings(
        tmp_path, nats_server.url, http_target(receiver.url) + http_target(other.url, name="other")
    )
    try:
        async with (
            running_gateway(settings) as base,
            running_sink(settings, "ops-http"),
            running_sink(settings, "other"),
        ):
            api_base = f"{base}/api/v1/deadletters"
            _, answer = await post_webhook(base, sqreen_fixture("v2_security_event.json"))
            first, second = answer["ids"]
            await wait_for(dead_lettered(nats_server.url, "ops-http", 2))
            await wait_for(lambda: len(other.requests) == 2)

            status, listing = await api("GET", api_base)
            assert status == 200
            assert listing["total"] == 2
            targets = {t["name"]: t for t in listing["targets"]}
            assert targets["ops-http"] == {
                "name": "ops-http",
                "type": "http",
                "configured": True,
                "count": 2,
            }
            assert targets["other"]["count"] == 0

            status, found = await api("GET", f"{api_base}/ops-http")
            assert status == 200
            assert (found["target"], found["configured"], found["total"]) == ("ops-http", True, 2)
            entries = found["deadletters"]
            assert [e["id"] for e in entries] == [second, first]  # newest first
            assert entries[0]["seq"] > entries[1]["seq"]
            for entry in entries:
                assert "HTTP 400" in entry["error"]
                assert entry["attempts"] >= 1
                assert (entry["source"], entry["type"]) == ("sqreen", "security_event")
                assert entry["replayable"] is True
                assert entry["subject"] == "notification.sqreen.security_event"
            status, limited = await api("GET", f"{api_base}/ops-http?limit=1")
            assert [e["id"] for e in limited["deadletters"]] == [second]
            assert limited["total"] == 2
            assert (await api("GET", f"{api_base}/other"))[1]["deadletters"] == []

            # unknown target, bad names, bad bodies: a status and a reason
            status, body = await api("GET", f"{api_base}/ghost")
            assert status == 404
            assert "ghost" in body["error"]
            status, body = await api("GET", f"{api_base}/Not.A.Name")
            assert status == 400
            assert "not a target name" in body["error"]
            status, body = await api("GET", f"{api_base}/ops-http?limit=x")
            assert status == 400
            for out_of_range in ("0", "-3", "1001"):
                status, body = await api("GET", f"{api_base}/ops-http?limit={out_of_range}")
                assert status == 400, out_of_range
                assert body["error"] == "limit must be from 1 to 1000"
            replay_url = f"{api_base}/ops-http/replay"
            for bad in ({}, {"id": first, "all": True}, {"all": False}, {"id": " "}, {"x": 1}):
                status, body = await api("POST", replay_url, json=bad)
                assert status == 400, bad
                assert '"id"' in body["error"], bad
            status, body = await api("POST", replay_url, data=b"{not json")
            assert status == 400
            status, body = await api("POST", f"{api_base}/ghost/replay", json={"all": True})
            assert status == 404
            assert "no target named 'ghost'" in body["error"]
            status, body = await api("POST", replay_url, json={"id": "no-such-id"})
            assert status == 404
            assert "no-such-id" in body["error"]
            assert len(await dead_letters(nats_server.url, "ops-http")) == 2  # nothing moved

            # the target is fixed: replay one by notification id, one by sequence
            receiver.default = (200, {})
            before = len(receiver.requests)
            status, body = await api("POST", replay_url, json={"id": first})
            assert status == 200, body
            assert body["replayed"] == 1
            assert body["skipped"] == 0
            assert [(o["id"], o["replayed"]) for o in body["outcomes"]] == [(first, True)]
            await wait_for(lambda: first in [b["id"] for b in receiver.bodies()[before:]])
            status, found = await api("GET", f"{api_base}/ops-http")
            assert [e["id"] for e in found["deadletters"]] == [second]

            seq = str(found["deadletters"][0]["seq"])
            status, body = await api("POST", replay_url, json={"id": seq})
            assert (status, body["outcomes"][0]["id"]) == (200, second)
            await wait_for(lambda: second in [b["id"] for b in receiver.bodies()[before:]])
            assert (await api("GET", api_base))[1]["total"] == 0
            status, body = await api("POST", replay_url, json={"all": True})
            assert status == 404
            assert "no dead letter" in body["error"]

            # delivered now, as the notifications API says too
            async def delivered() -> bool:
                _, note = await api("GET", f"{base}/api/v1/notifications/{second}")
                return bool(note.get("targets", {}).get("ops-http", {}).get("state") == "delivered")

            await wait_for(delivered)
        # replays went to ops-http alone: the other target saw each notification once
        assert len(other.requests) == 2
        # the replayed envelope carries the original message, unchanged
        assert (
            receiver.bodies()[-1]["data"] == json.loads(sqreen_fixture("v2_security_event.json"))[1]
        )
    finally:
        await other.stop()


async def test_replay_all_replays_every_dead_letter(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = (400, {})
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        _, answer = await post_webhook(base, sqreen_fixture("v2_security_event.json"))
        await wait_for(dead_lettered(nats_server.url, "ops-http", 2))
        receiver.default = (200, {})
        before = len(receiver.requests)
        status, body = await api(
            "POST", f"{base}/api/v1/deadletters/ops-http/replay", json={"all": True}
        )
        assert status == 200
        assert body["replayed"] == 2
        assert sorted(o["id"] for o in body["outcomes"]) == sorted(answer["ids"])
        await wait_for(
            lambda: sorted(b["id"] for b in receiver.bodies()[before:]) == sorted(answer["ids"])
        )
        assert await dead_letters(nats_server.url, "ops-http") == []


async def test_who_may_list_and_replay(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, http_target("http://127.0.0.1:9/hook"), LOOKOUT_API_TOKENS="tok"
    )
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/deadletters"
        replay_url = f"{url}/ops-http/replay"
        assert (await api("GET", url))[0] == 401
        assert (await api("GET", url, "wrong"))[0] == 401
        assert (await api("GET", url, "tok"))[0] == 200
        # a bearer client needs no CSRF token; here nothing is dead yet
        assert (await api("POST", replay_url, "tok", json={"all": True}))[0] == 404

        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            csrf = await ui_login(browser, base, "tok", next="/notifications")
            cookies = {c.key: c for c in jar}
            session_cookie = cookies["lookout_session"]
            assert session_cookie["httponly"]
            assert session_cookie["samesite"] == "Strict"
            assert session_cookie["path"] == "/"
            assert not session_cookie["secure"]  # plain http

            async def call(method: str, target: str, **kwargs: Any) -> tuple[int, Any]:
                async with browser.request(method, target, **kwargs) as response:
                    return response.status, await response.json()

            assert (await call("GET", url))[0] == 200
            status, body = await call("POST", replay_url, json={"all": True})
            assert status == 403
            assert "X-CSRF-Token" in body["error"]
            status, body = await call(
                "POST", replay_url, json={"all": True}, headers={"X-CSRF-Token": csrf + "x"}
            )
            assert (status, "does not match" in body["error"]) == (403, True)
            status, body = await call(
                "POST",
                replay_url,
                json={"all": True},
                headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
            )
            assert (status, body["error"]) == (403, "cross-site request refused")
            status, body = await call(
                "POST", replay_url, json={"all": True}, headers={"X-CSRF-Token": csrf}
            )
            assert status == 404  # past authentication: there is just nothing to replay

            # logging out ends the session for good
            async with browser.post(
                f"{base}/logout",
                data={"csrf": csrf},
                headers={"Origin": base},
                allow_redirects=False,
            ) as response:
                assert response.status == 303
            async with (
                aiohttp.ClientSession(
                    cookies={"lookout_session": session_cookie.value}
                ) as replayed,
                replayed.get(url) as response,
            ):
                assert response.status == 401

        # the login form refuses another site, a missing form token and a wrong API token
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
            form = {"token": "tok", "csrf": await login_nonce(other, base), "next": "/"}
            for headers, data, expected in (
                ({"Origin": "http://evil.example"}, form, 403),
                ({"Sec-Fetch-Site": "cross-site"}, form, 403),
                ({}, form, 403),  # no Origin at all: not a browser form post
                ({"Origin": base}, {**form, "csrf": "forged"}, 403),
                ({"Origin": base}, {**form, "token": "nope"}, 401),
                ({"Origin": base}, {**form, "next": "//evil.example/"}, 303),
            ):
                async with other.post(
                    f"{base}/login", data=data, headers=headers, allow_redirects=False
                ) as response:
                    assert response.status == expected, (headers, data)
                    if expected == 303:  # an off-site "next" falls back to this site
                        assert response.headers["Location"] == "/"


async def test_open_api_refuses_cross_site_writes(nats_server: NatsServer, tmp_path: Path) -> None:
    """Without tokens (loopback only) the API is open to local programs, but a web page on
    another site cannot make a visitor's browser change anything."""
    settings = make_settings(tmp_path, nats_server.url, http_target("http://127.0.0.1:9/hook"))
    async with running_gateway(settings) as base:
        replay_url = f"{base}/api/v1/deadletters/ops-http/replay"
        body = {"all": True}
        assert (await api("POST", replay_url, json=body))[0] == 404  # a script: fine
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site", "Origin": base},
        ):
            status, answer = await api("POST", replay_url, json=body, headers=headers)
            assert (status, answer["error"]) == (403, "cross-site request refused"), headers
        same = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
        assert (await api("POST", replay_url, json=body, headers=same))[0] == 404
        assert (await api("GET", f"{base}/api/v1/deadletters", headers=same))[0] == 200
