"""The memory in a real browser (Debian's chromium, driven by Playwright): pivots in a
cell's details (add to this job, open a new job), the "expand" option, "Recent lookups",
the "seen before" mark, an indicator's page and the watches page; against the real
gateway, the dns provider and the scheduler service (the history's indexer) on a real
nats-server with a loopback DNS server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dnsserver import ZoneServer
from helpers import (
    SHOP_ZONE,
    api,
    make_settings,
    running_gateway,
    running_provider,
    running_service,
    wait_for,
)
from test_ui import browser, cell, chromium, complete, new_page, only_providers

from shared.core.natsserver import NatsServer

try:
    from playwright.async_api import Browser, Page, Route, expect
except ImportError:
    Browser = Page = Route = None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.timeout(900)
__all__ = ["browser", "chromium"]  # the fixtures, used by name

DOMAIN = "shop-example.com"


@asynccontextmanager
async def memory_stack(nats: NatsServer, tmp_path: Path) -> AsyncIterator[str]:
    with ZoneServer(SHOP_ZONE) as dns:
        settings = make_settings(
            tmp_path, nats.url, LOOKOUT_DNS_NAMESERVERS=dns.nameserver, LOOKOUT_SCHEDULER_TICK="0.2"
        )
        async with (
            running_gateway(settings) as base,
            running_provider(settings, "dns"),
            running_service(settings, "scheduler"),
        ):
            yield base


async def look_up(page: Page, text: str, *, expand: bool = False) -> str:
    await page.get_by_label("Indicators or free text").fill(text)
    if expand:
        await page.get_by_label("Expand pivots").check()
    await page.get_by_role("button", name="Look up", exact=True).click()
    await complete(page)
    return page.url.split("#job=")[1]


async def indexed(base: str, value: str, jobs: int) -> bool:
    status, found = await api("GET", f"{base}/api/v1/indicators/{value}")
    return status == 200 and len(found["jobs"]) >= jobs


async def test_pivots_history_and_watches_pages(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    async with memory_stack(nats_server, tmp_path) as base:
        page, console = await new_page(browser)
        await page.goto(f"{base}/")
        await expect(page.locator("#recent-status")).to_contain_text("No lookups yet")
        await only_providers(page, "dns")
        first = await look_up(page, DOMAIN)
        recent = page.locator("#recent-list li").first
        await expect(recent).to_have_attribute("data-job", first)
        await expect(recent).to_contain_text(DOMAIN)

        # pivots in the DNS cell's details: what the answer names, each with what it is
        await cell(page, DOMAIN, "dns").locator("button").click()
        pivots = page.locator(f"tbody[data-indicator='{DOMAIN}'] .pivot-list li")
        await expect(pivots).to_have_count(3)
        mail = page.locator("li[data-pivot='mail.shop-example.com']")
        await expect(mail).to_contain_text("MX record")
        await expect(page.locator("li[data-pivot='192.0.2.10']")).to_contain_text("A record")
        await expect(page.locator("li[data-pivot='ns1.shop-example.com']")).to_contain_text(
            "name server"
        )
        # add to this job: a new row, looked up, the job complete again
        await mail.get_by_role("button", name="Add mail.shop-example.com to this job").click()
        await expect(page.locator("table.results tbody")).to_have_count(2)
        await complete(page)
        await expect(cell(page, "mail.shop-example.com", "dns")).to_contain_text("A 192.0.2.25")
        assert page.url.endswith(f"#job={first}")

        # open a new job with one pivot
        await cell(page, DOMAIN, "dns").locator("button").click()
        address = page.locator("li[data-pivot='192.0.2.10']")
        await address.get_by_role("button", name="Open a new job with 192.0.2.10").click()
        await expect(page).not_to_have_url(re.compile(f"#job={first}$"))
        await complete(page)
        await expect(page.locator("table.results tbody")).to_have_count(1)
        await expect(page.locator("tbody[data-indicator='192.0.2.10']")).to_be_visible()

        # again, expanded: the first-level pivots join the job; the row is "seen before"
        await wait_for(lambda: indexed(base, DOMAIN, 1), within=20)
        asked: list[str] = []
        page.on("request", lambda r: asked.append(f"{r.method} {r.url}"))
        await page.goto(f"{base}/")
        await only_providers(page, "dns")
        third = await look_up(page, DOMAIN, expand=True)
        rows = page.locator("table.results tbody")
        await expect(rows).to_have_count(4)  # the domain and its 3 pivots
        await complete(page)
        seen = page.locator(f"tbody[data-indicator='{DOMAIN}'] .seen")
        await expect(seen).to_be_visible()
        await expect(seen).to_contain_text("seen before")
        await expect(seen).to_have_attribute("data-verdict", "unknown")
        # one request per table shown for every row's mark, not one or two per row
        marks = [a for a in asked if "/api/v1/indicators" in a or "?indicator=" in a]
        assert marks, asked
        assert set(marks) == {f"POST {base}/api/v1/indicators/seen"}, marks
        await expect(page.locator("#recent-list li").first).to_have_attribute("data-job", third)
        await expect(page.locator("#recent-list li")).to_have_count(3)

        # the first job again: nothing was seen before it. Later jobs and verdicts do not
        # count: the history read is given one more of each, dated after every job here.
        async def later_too(route: Route) -> None:
            answer = await route.fetch()
            body = await answer.json()
            for item in body["seen"]:
                item["jobs"].insert(0, {"id": "f" * 24, "created_at": "2099-01-01T00:00:00Z"})
                item["verdict_history"].insert(
                    0, {"verdict": "malicious", "at": "2099-01-01T00:00:01Z", "job_id": "f" * 24}
                )
            await route.fulfill(response=answer, json=body)

        await page.route("**/api/v1/indicators/seen", later_too)
        async with page.expect_response("**/api/v1/indicators/seen") as answered:
            await page.goto(f"{base}/#job={first}")
        assert (await answered.value).ok
        await expect(page.locator(f"tbody[data-indicator='{DOMAIN}']")).to_be_visible()
        await page.wait_for_timeout(300)  # the answer applied
        await expect(seen).to_be_hidden()
        await page.goto(f"{base}/#job={third}")  # the third: the first was before it
        await expect(seen).to_contain_text("seen before")
        await expect(seen).to_have_attribute("data-verdict", "unknown")
        await page.unroute("**/api/v1/indicators/seen")

        # the indicator's page: its verdict, per provider, its jobs
        await wait_for(lambda: indexed(base, DOMAIN, 2), within=20)
        await page.get_by_role("link", name=f"History of {DOMAIN}").click()
        await expect(page).to_have_url(f"{base}/indicator/{DOMAIN}")
        await expect(page.locator("#indicator-value")).to_have_text(DOMAIN)
        await expect(page.locator("#indicator-verdict")).to_have_attribute(
            "data-verdict", "unknown"
        )
        await expect(page.locator("#providers-body tr[data-provider='dns']")).to_contain_text(
            "A 192.0.2.10"
        )
        await expect(page.locator(f"#jobs-list li[data-job='{first}']")).to_be_visible()
        await expect(page.locator(f"#jobs-list li[data-job='{third}']")).to_be_visible()
        await expect(page.locator("#verdicts-body tr")).to_have_count(1)
        await page.goto(f"{base}/indicator/never-seen-example.com")
        await expect(page.locator("#indicator-status")).to_contain_text("never looked up")

        # the watches page: watch, see it listed, stop watching
        await page.goto(f"{base}/watches")
        await expect(page.locator("#watches-status")).to_contain_text("Nothing watched yet")
        await page.get_by_label("Indicators, one a line").fill(f"{DOMAIN}\nnot an indicator")
        await page.get_by_label("Every").fill("1h")
        await page.get_by_role("button", name="Watch", exact=True).click()
        await expect(page.locator("#watch-status")).to_contain_text("Not watched")
        await expect(page.locator("#watch-status")).to_contain_text("not an indicator")
        await page.get_by_label("Indicators, one a line").fill(DOMAIN)
        await page.get_by_label("Tell when").select_option("worse")
        await page.get_by_role("button", name="Watch", exact=True).click()
        await expect(page.locator("#watch-status")).to_contain_text("Watching 1 indicator")
        watch = page.locator("#watches-body tr")
        await expect(watch).to_have_count(1)
        await expect(watch).to_contain_text(DOMAIN)
        await expect(watch).to_contain_text("1h")
        await expect(watch).to_contain_text("worse")

        async def ran() -> bool:
            status, listed = await api("GET", f"{base}/api/v1/watches")
            assert status == 200
            assert [w["notify_on"] for w in listed["watches"]] == ["worse"]
            return bool(listed["watches"][0]["runs"])

        await wait_for(ran, within=20)  # the scheduler runs a new watch at once
        await page.get_by_role("button", name="Refresh").click()
        await expect(watch.get_by_role("link", name="job")).to_be_visible()
        await watch.get_by_role("button", name=f"Stop watching {DOMAIN}").click()
        await expect(page.locator("#watches-status")).to_contain_text("Stopped watching")
        await expect(watch).to_have_count(0)

        # watched from its page: once, however often the page is opened
        await page.goto(f"{base}/indicator/{DOMAIN}")
        button = page.locator("#watch-it")
        await expect(button).to_have_text("Watch every day")
        await button.click()
        await expect(button).to_have_text("Watched every 1d")
        await expect(button).to_be_disabled()
        await page.reload()
        await expect(button).to_have_text("Watched every 1d")
        await expect(button).to_be_disabled()
        status, listed = await api("GET", f"{base}/api/v1/watches")
        assert status == 200
        assert [w["every"] for w in listed["watches"]] == ["1d"]
        # What the browser logs of the two refusals the test asked for, and nothing else.
        expected = [
            "console error: Failed to load resource: the server responded with a status of "
            f"{status}"
            for status in ("404 (Not Found)", "400 (Bad Request)")  # never-seen, not a watch
        ]
        assert console.problems == expected
