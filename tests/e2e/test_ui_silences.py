"""The silences page in a real browser (Debian's chromium, driven by Playwright) against the
real gateway and real sinks on a real nats-server: the "Silence similar" link of a Slack
message (the loopback fake's record of it) opens the form prefilled, through the login;
the silence made there holds the next similar notification back (``silenced`` on the
notifications page), and its Expire button lets the one after through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import test_ui
from fakes.slack import FakeSlack
from helpers import (
    Receiver,
    api,
    http_target,
    make_settings,
    running_gateway,
    running_sink,
    wait_for,
)
from test_ui import new_page

from shared.core.natsserver import NatsServer

try:
    from playwright.async_api import Browser, expect
except ImportError:  # the browser fixture skips
    Browser = Any  # type: ignore[assignment,misc]

chromium = test_ui.chromium  # the browser fixtures of the UI tests
browser = test_ui.browser
TOKENS = "tok-one,tok-two"


async def notify(base: str, note_id: str, application: str = "shop") -> None:
    status, _ = await api(
        "POST",
        f"{base}/api/v1/notifications",
        "tok-one",
        json={
            "type": "port_scan",
            "source": "ids",
            "id": note_id,
            "data": {"risk": 80, "application": application, "environment": "prod"},
        },
    )
    assert status == 202


def state_of(base: str, note_id: str, target: str) -> Any:
    async def check() -> str | None:
        status, answer = await api("GET", f"{base}/api/v1/notifications/{note_id}", "tok-one")
        return answer["targets"][target]["state"] if status == 200 else None

    return check


async def test_silence_similar_from_a_message_then_expire_it(
    nats_server: NatsServer,
    tmp_path: Path,
    browser: Browser,
    receiver: Receiver,
) -> None:
    async with FakeSlack() as slack:
        toml = http_target(receiver.url) + (
            f'[[targets]]\nname = "chat"\ntype = "slack"\n'
            f'webhook_url = "{slack.webhook_url}"\nper_second = 0\n'
        )
        settings = make_settings(tmp_path, nats_server.url, toml, LOOKOUT_API_TOKENS=TOKENS)
        async with (
            running_gateway(settings) as base,
            running_sink(settings, "ops-http"),
            running_sink(settings, "chat"),
        ):
            await notify(base, "scan-1")
            await wait_for(lambda: bool(slack.requests))
            blocks = json.loads(slack.requests[0].body)["attachments"][0]["blocks"]
            [link] = [
                e["url"]
                for b in blocks
                if b["type"] == "actions"
                for e in b["elements"]
                if e["action_id"] == "silence_similar"
            ]
            assert link.startswith(f"{base}/silences?")  # LOOKOUT_PUBLIC_URL's default

            page, console = await new_page(browser)
            await page.goto(link)
            await page.get_by_label("API token").fill("tok-two")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("heading", name="New silence")).to_be_visible()
            assert page.url == link  # back at the link, its query kept
            await expect(page.get_by_label("Source")).to_have_value("ids")
            await expect(page.get_by_label("Type")).to_have_value("port_scan")
            await expect(page.get_by_label("Application")).to_have_value("shop")
            await expect(page.get_by_label("Environment")).to_have_value("prod")
            await expect(page.get_by_label("IP address")).to_have_value("")
            await page.get_by_label("Duration").fill("1h")
            await page.get_by_label("Comment").fill("shop scan <b>noise</b>")
            await page.get_by_role("button", name="Create silence").click()
            await expect(page.locator("#form-status")).to_contain_text("Created")
            row = page.locator("#silences-body tr[data-state]")
            await expect(row).to_have_count(1)
            await expect(row).to_have_attribute("data-state", "active")
            await expect(row).to_contain_text("token-2")  # the session's token
            await expect(row).to_contain_text("application=shop")
            await expect(row).to_contain_text("shop scan <b>noise</b>")  # text, not markup

            await notify(base, "scan-2")
            await wait_for(lambda: _is(state_of(base, "scan-2", "ops-http"), "silenced"))
            await wait_for(lambda: _is(state_of(base, "scan-2", "chat"), "silenced"))
            assert [b["id"] for b in receiver.bodies()] == ["scan-1"]
            notes = await page.context.new_page()
            await notes.goto(f"{base}/notifications")
            item = notes.locator('#notes-body tr[data-id="scan-2"] li[data-target="ops-http"]')
            await expect(item).to_have_attribute("data-state", "silenced")

            await row.get_by_role("button", name="Expire").click()
            await expect(row).to_have_attribute("data-state", "expired")
            await expect(row).to_contain_text("expired by token-2")
            await expect(row.get_by_role("button", name="Expire")).to_have_count(0)
            await notify(base, "scan-3")
            await wait_for(lambda: "scan-3" in [b["id"] for b in receiver.bodies()])

            # A silence without a matcher is refused with the reason, on the page.
            for name in ("Source", "Type", "Application", "Environment"):
                await page.get_by_label(name).fill("")
            await page.get_by_role("button", name="Create silence").click()
            await expect(page.locator("#form-status")).to_contain_text("at least one matcher")
            assert [p for p in console.problems if "400" not in p] == []


async def _is(check: Any, wanted: str) -> bool:
    return bool(await check() == wanted)


async def test_a_healthy_target_is_green_and_a_silence_in_force_amber(
    nats_server: NatsServer, tmp_path: Path, browser: Browser, receiver: Receiver
) -> None:
    """Targets and silences both have a state ``active``: a healthy target's chip is
    green (as a delivery), a silence in force amber (it holds notifications back)."""
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        status, _ = await api(
            "POST",
            f"{base}/api/v1/silences",
            json={"matchers": {"source": "ids"}, "duration": "1h"},
        )
        assert status == 201
        page, console = await new_page(browser)
        colour = "e => getComputedStyle(e).backgroundColor"
        await page.goto(f"{base}/notifications")
        target = page.locator('#target-health li[data-target="ops-http"] .chip')
        await expect(target).to_have_attribute("data-state", "active")
        healthy = await target.evaluate(colour)
        await page.goto(f"{base}/silences")
        silence = page.locator(".chip.silence-active")
        await expect(silence).to_have_text("active")
        in_force = await silence.evaluate(colour)
        green, amber = await page.evaluate(
            """() => ["s-delivered", "s-paused"].map((c) => {
                const e = document.createElement("span");
                e.className = `chip ${c}`;
                document.body.append(e);
                return getComputedStyle(e).backgroundColor;
            })"""
        )
        assert (healthy, in_force) == (green, amber)
        assert green != amber
        assert console.problems == []
