"""The results table with every registered provider (thirteen columns and more) in a real
browser, at a desk (1400 px) and on a phone (390 px): the page never scrolls sideways, the
table does inside its own region with the indicator column kept in view, every provider's
cell can be reached and opened, and columns can be hidden (kept in the browser) without
changing any verdict."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import EMAIL, IP, LOGIN, LOOKUP_TEXT, SAMPLE_SHA256
from playwright.async_api import Browser, Page, expect
from test_ui import browser, cell, chromium, complete, new_page, overall, ui_stack

from services import registry
from shared.core.natsserver import NatsServer
from shared.lookups import catalog

__all__ = ["browser", "chromium"]  # the fixtures, from test_ui

INDICATORS = {EMAIL: "email", LOGIN: "url", IP: "ipv4", SAMPLE_SHA256: "hash"}
TEXT = f"{LOOKUP_TEXT}\nsample: {SAMPLE_SHA256}\n"  # a hash: every provider has a column


async def page_width(page: Page) -> int:
    return int(await page.evaluate("document.documentElement.scrollWidth"))


async def check_every_cell_reachable(page: Page, width: int) -> None:
    region = page.get_by_role("region", name="Results table (scrolls sideways)")
    for provider in registry.PROVIDERS:
        label = catalog.label(provider)
        for indicator, kind in INDICATORS.items():
            target = cell(page, indicator, provider)
            await target.scroll_into_view_if_needed()
            box = await target.bounding_box()
            assert box is not None, (provider, indicator)
            assert box["x"] >= 0, (provider, indicator, box)
            assert box["x"] + box["width"] <= width + 1, (provider, indicator, box, width)
            # the indicator it belongs to stays in view (a sticky column)
            head = await page.locator(f'tbody[data-indicator="{indicator}"] th').bounding_box()
            assert head is not None
            assert 0 <= head["x"] < width, (provider, indicator, head)
            if kind not in catalog.kinds(provider):
                await expect(target).to_contain_text("n/a")
                continue
            button = target.locator("button")
            await button.click()
            panel = page.locator(f'tbody[data-indicator="{indicator}"] .detail')
            await expect(panel).to_contain_text(label)
            # its details in view, wherever the table is scrolled to: within the table's region
            panel_box = await panel.locator("h3").bounding_box()
            region_box = await region.bounding_box()
            assert panel_box is not None
            assert region_box is not None
            assert panel_box["x"] >= region_box["x"], (provider, indicator, panel_box)
            assert panel_box["x"] < width / 2, (provider, indicator, panel_box)
            await button.click()
            await expect(panel).to_be_hidden()
    assert await region.evaluate("e => e.scrollWidth > e.clientWidth")  # the table scrolls


async def test_every_provider_column_at_a_desk_and_on_a_phone(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    async with ui_stack(nats_server, tmp_path) as base:
        page, console = await new_page(browser)
        await page.set_viewport_size({"width": 1400, "height": 900})
        await page.goto(f"{base}/")
        await page.get_by_label("Indicators or free text").fill(TEXT)
        await page.get_by_role("button", name="Look up", exact=True).click()
        await complete(page)

        heads = page.locator("#results-head th[data-sort]")
        names = [await h.get_attribute("data-sort") for h in await heads.all()]
        assert names == ["indicator", "overall", *registry.PROVIDERS]
        await expect(page.locator("#results-table")).to_have_class(re.compile(r"\bmany\b"))

        for width in (1400, 390):
            await page.set_viewport_size({"width": width, "height": 900})
            assert await page_width(page) <= width, f"the page scrolls sideways at {width} px"
            await check_every_cell_reachable(page, width)
            assert await page_width(page) <= width

        # hide a column: gone from the table, kept across a reload, the verdicts unchanged
        await page.set_viewport_size({"width": 390, "height": 844})
        before = {i: await overall(page, i).get_attribute("data-verdict") for i in INDICATORS}
        hidden = registry.PROVIDERS[-1]
        await page.locator("#columns-button").click()
        choices = page.get_by_role("group", name="Provider columns shown")
        await choices.get_by_role("checkbox", name=catalog.label(hidden), exact=True).uncheck()
        await expect(page.locator(f'th[data-sort="{hidden}"]')).to_be_hidden()
        await expect(cell(page, IP, hidden)).to_be_hidden()
        await expect(page.locator("#columns-button")).to_have_text("Columns (1 hidden)")
        assert await page_width(page) <= 390
        await page.reload()
        await complete(page)
        await expect(page.locator(f'th[data-sort="{hidden}"]')).to_be_hidden()
        after = {i: await overall(page, i).get_attribute("data-verdict") for i in INDICATORS}
        assert after == before
        await page.locator("#columns-button").click()
        await page.get_by_role("button", name="Show all", exact=True).click()
        await expect(cell(page, IP, hidden)).to_be_visible()
        await expect(page.locator("#columns-button")).to_have_text("Columns")
        assert console.problems == []
