"""The web UI in a real browser (Debian's chromium, driven by Playwright) against the real
gateway, the real provider services and sinks on a real nats-server, with loopback DNS,
RDAP, VirusTotal and AbuseIPDB servers and a loopback webhook receiver."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from dnsserver import ZoneServer
from fakes.rdap import domain_object
from helpers import (
    EMAIL,
    IP,
    LOGIN,
    LOOKUP_TEXT,
    SHOP_ZONE,
    Receiver,
    api,
    dead_letters,
    http_target,
    lookup_stack,
    make_settings,
    post_webhook,
    rdap_records,
    running_gateway,
    running_provider,
    running_sink,
    sqreen_fixture,
    wait_for,
)

from services import registry
from shared.bus.connect import connect
from shared.core.natsserver import NatsServer, free_port
from shared.lookups import catalog
from shared.lookups import config as lookups_config
from shared.lookups.catalog import ProviderSpec
from shared.lookups.display import Details, DetailSection, Field, Note
from shared.lookups.provider import Answer, Provider
from shared.lookups.runner import ProviderRunner
from shared.lookups.schemas import LookupRequest

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # the header checks below still run
    async_playwright = None  # type: ignore[assignment]

# Installing chromium on first use may take minutes; a hung browser still fails in time.
pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
UPDATE_SCREENSHOT = os.environ.get("LOOKOUT_UPDATE_SCREENSHOT") == "1"
"""The README's picture is rewritten only when asked (``LOOKOUT_UPDATE_SCREENSHOT=1``), so a
test run leaves the checkout as it found it."""
STATIC = ROOT / "services" / "gateway" / "static"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_LOCK = Path(tempfile.gettempdir()) / "lookout-chromium-install.lock"
XSS = "<img src=x onerror=\"window.__xss='{}'\">"

ZONE = (
    SHOP_ZONE
    + """
$ORIGIN probe-example.com.
@        IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@        IN A   192.0.2.77
@        IN TXT "<script>window.__xss='dns'</script><img src=x onerror='window.__xss=1'>"
"""
)


# --------------------------------------------------------------------------- the browser


def _find_chromium() -> str | None:
    given = os.environ.get("LOOKOUT_CHROMIUM")
    if given and os.access(given, os.X_OK):
        return given
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system chromium; installed with apt-get (once, under a lock) when missing and
    running as root, else the browser tests are skipped with the reason."""
    if async_playwright is None:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    found = _find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("no chromium: apt-get install chromium (or set LOOKOUT_CHROMIUM)")
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _find_chromium()
        if found:
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        found = _find_chromium()
    if found is None:
        pytest.skip(f"chromium could not be installed: {done.stderr.strip()[-400:]}")
    return found


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


class Console:
    """Console errors, page errors and CSP violations of a page: a clean page has none."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")


async def new_page(
    browser: Browser, color_scheme: str = "light", **options: Any
) -> tuple[Page, Console]:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, color_scheme=color_scheme, **options
    )
    page = await context.new_page()
    page.set_default_timeout(30_000)
    return page, Console(page)


def cell(page: Page, indicator: str, provider: str) -> Any:
    return page.locator(f'tbody[data-indicator="{indicator}"] td[data-provider="{provider}"]')


def overall(page: Page, indicator: str) -> Any:
    return page.locator(f'tbody[data-indicator="{indicator}"] td.overall')


async def only_providers(page: Page, *names: str) -> None:
    for box in await page.locator('input[name="provider"]').all():
        if await box.get_attribute("value") not in names:
            await box.uncheck()


async def complete(page: Page) -> None:
    await expect(page.locator("#progress-text")).to_contain_text("Complete", timeout=45_000)


# --------------------------------------------------------------------------- the stack


def ui_stack(
    nats: NatsServer, tmp_path: Path, providers: tuple[str, ...] = registry.PROVIDERS, **env: str
) -> AbstractAsyncContextManager[str]:
    """The lookup stack, with probe-example.com added: its DNS and RDAP answers carry markup."""
    rdap = {
        **rdap_records(),
        "probe-example.com": domain_object("probe-example.com", registrar=XSS.format("rdap")),
    }
    return lookup_stack(nats, tmp_path, providers, zone=ZONE, rdap=rdap, **env)


# --------------------------------------------------------------------------- lookups


async def test_pasted_text_fills_the_table_live_with_verdict_colours(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    async with ui_stack(nats_server, tmp_path) as base:
        page, console = await new_page(browser, permissions=["clipboard-read", "clipboard-write"])
        await page.goto(f"{base}/")
        await page.get_by_label("Indicators or free text").fill(LOOKUP_TEXT)
        await page.get_by_role("button", name="Look up", exact=True).click()
        await expect(page.locator("#results")).to_be_visible()
        await complete(page)
        job_id = page.url.split("#job=")[1]
        assert re.fullmatch(r"[0-9a-f]{24}", job_id)

        # the loopback upstreams decide the colours; the words say the same
        vt_login = cell(page, LOGIN, "virustotal")
        await expect(vt_login).to_have_class(re.compile(r"\bv-malicious\b"))
        await expect(vt_login).to_contain_text("malicious")
        await expect(vt_login).to_contain_text("9/74 engines")
        abuse = cell(page, IP, "abuseipdb")
        await expect(abuse).to_have_class(re.compile(r"\bv-malicious\b"))
        await expect(abuse).to_contain_text("score 100")
        posture = cell(page, EMAIL, "emailsec")
        await expect(posture).to_have_class(re.compile(r"\bv-harmless\b"))
        await expect(posture).to_contain_text("p=reject")
        await expect(cell(page, LOGIN, "whois")).to_have_class(re.compile(r"\bv-suspicious\b"))
        await expect(cell(page, LOGIN, "whois")).to_contain_text("newly registered")
        await expect(cell(page, EMAIL, "dns")).to_have_class(re.compile(r"\bv-unknown\b"))
        await expect(cell(page, EMAIL, "abuseipdb")).to_contain_text("n/a")
        await expect(overall(page, LOGIN)).to_contain_text("malicious")
        await expect(overall(page, EMAIL)).to_contain_text("harmless")
        red = await vt_login.locator("button").evaluate("b => getComputedStyle(b).backgroundColor")
        green = await posture.locator("button").evaluate("b => getComputedStyle(b).backgroundColor")
        assert red != green  # the stylesheet applies (CSP allows it), colours differ

        # the README's picture: the table and one opened detail, light theme, 1280x800
        await cell(page, IP, "virustotal").locator("button").click()
        await page.locator("#results").evaluate("e => e.scrollIntoView({block: 'start'})")
        shot = await page.screenshot(path=str(SCREENSHOT) if UPDATE_SCREENSHOT else None)
        assert shot.startswith(b"\x89PNG")
        await cell(page, IP, "virustotal").locator("button").click()  # closed again

        # details: a real button with aria-expanded, keyboard-operable
        button = posture.locator("button")
        await button.focus()
        await page.keyboard.press("Enter")
        await expect(button).to_have_attribute("aria-expanded", "true")
        panel = page.locator(f"#{await button.get_attribute('aria-controls')}")
        await expect(panel).to_contain_text("2 of 10")  # SPF DNS lookups
        await expect(panel).to_contain_text("_spf.mailer-example.net")  # the include tree
        await expect(panel).to_contain_text("_dmarc.shop-example.com")
        await page.keyboard.press("Escape")
        await expect(button).to_have_attribute("aria-expanded", "false")
        await expect(panel).to_be_hidden()
        await cell(page, IP, "abuseipdb").locator("button").click()
        abuse_detail = page.locator(f"tbody[data-indicator='{IP}'] .detail")
        await expect(abuse_detail).to_contain_text("100 / 100")

        # filter and sort
        await page.get_by_label("Overall verdict", exact=True).select_option("malicious")
        await expect(page.locator("tbody:visible")).to_have_count(2)
        await page.get_by_label("Overall verdict", exact=True).select_option("")
        await page.get_by_label("Filter", exact=True).fill("tor")
        await expect(page.locator("tbody:visible")).to_have_count(1)
        await expect(page.locator("tbody:visible")).to_have_attribute("data-indicator", IP)
        await page.get_by_label("Filter", exact=True).fill("")
        await page.get_by_role("button", name="Verdict", exact=True).click()
        await expect(page.locator("th[data-sort=overall]")).to_have_attribute(
            "aria-sort", "ascending"
        )
        await expect(page.locator("tbody").last).to_have_attribute("data-indicator", EMAIL)

        # copy the list defanged
        await page.get_by_role("button", name="Copy list defanged").click()
        await expect(page.locator("#table-status")).to_contain_text("Copied 3 indicators")
        copied = await page.evaluate("navigator.clipboard.readText()")
        assert set(copied.split()) == {
            "billing[at]shop-example[.]com",
            "hxxps://login-shop-example[.]com/verify",
            "185[.]220[.]101[.]50",
        }

        # exports: the CSV endpoint and the job's JSON, as downloads
        async with page.expect_download() as csv_download:
            await page.get_by_role("link", name="Export CSV").click()
        download = await csv_download.value
        assert download.suggested_filename == f"lookout-{job_id}.csv"
        rows = Path(await download.path()).read_text().splitlines()
        assert rows[0].startswith("indicator,kind,scope,verdict,")
        assert any(r.startswith(f"{LOGIN},url,public,malicious,") for r in rows)
        async with page.expect_download() as json_download:
            await page.get_by_role("link", name="Export JSON").click()
        exported = json.loads(Path(await (await json_download.value).path()).read_text())
        assert exported["id"] == job_id
        assert exported["complete"] is True

        # a reload shows the job again, from the id in the URL hash
        await page.reload()
        await complete(page)
        await expect(cell(page, LOGIN, "virustotal")).to_have_class(re.compile(r"\bv-malicious\b"))
        assert console.problems == []


async def test_file_upload_and_drag_and_drop(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    async with ui_stack(nats_server, tmp_path, ("dns",)) as base:
        page, console = await new_page(browser)
        await page.goto(f"{base}/")
        await only_providers(page, "dns")
        await page.get_by_label("Or a file (text or CSV)").set_input_files(
            files=[
                {
                    "name": "iocs.csv",
                    "mimeType": "text/csv",
                    "buffer": b"indicator,note\nshop-example[.]com,phish\nhxxp://login-shop-example[.]com/a,kit\n",
                }
            ]
        )
        await expect(page.locator("#file-name")).to_contain_text("iocs.csv")
        await page.get_by_role("button", name="Look up", exact=True).click()
        await complete(page)
        await expect(page.locator("table.results tbody")).to_have_count(2)
        await expect(cell(page, "shop-example.com", "dns")).to_contain_text("A 192.0.2.10")
        await expect(cell(page, "http://login-shop-example.com/a", "dns")).to_contain_text(
            "A 185.220.101.50"
        )
        assert await page.locator("th[data-sort=virustotal]").count() == 0  # only DNS asked
        first_job = page.url.split("#job=")[1]

        # a file dropped on the zone (its name is shown as text, never as markup)
        await page.get_by_role("button", name="Remove file").click()
        await page.evaluate(
            """([name, body]) => {
                const data = new DataTransfer();
                data.items.add(new File([body], name, {type: "text/plain"}));
                document.getElementById("drop").dispatchEvent(
                    new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
            }""",
            [XSS.format("filename") + ".txt", "mail.shop-example[.]com\n"],
        )
        await expect(page.locator("#file-name")).to_contain_text(XSS.format("filename"))
        await page.get_by_role("button", name="Look up", exact=True).click()
        await expect(page).not_to_have_url(re.compile(first_job))
        await complete(page)
        await expect(cell(page, "mail.shop-example.com", "dns")).to_contain_text("A 192.0.2.25")
        assert await page.evaluate("window.__xss") is None
        assert await page.locator("#file-chosen img").count() == 0
        assert console.problems == []


async def test_xss_probes_show_as_text_and_never_run(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    async with ui_stack(nats_server, tmp_path, ("dns", "whois")) as base:
        page, console = await new_page(browser)
        # the URL hash is the user's: a job "id" made of markup is refused as text
        await page.goto(f"{base}/#job={XSS.format('hash')}")
        await expect(page.locator("#table-status")).to_contain_text("is not a lookup job id")
        await expect(page.locator("#table-status")).to_contain_text(XSS.format("hash"))
        # pasted markup around an indicator, and upstream answers carrying markup
        await only_providers(page, "dns", "whois")
        await page.get_by_label("Indicators or free text").fill(
            f"{XSS.format('text')} probe-example[.]com <script>window.__xss='text'</script>"
        )
        await page.get_by_role("button", name="Look up", exact=True).click()
        await complete(page)
        whois = cell(page, "probe-example.com", "whois")
        await expect(whois).to_contain_text(XSS.format("rdap"))  # the registrar, as text
        await whois.locator("button").click()
        await cell(page, "probe-example.com", "dns").locator("button").click()
        detail = page.locator("tbody[data-indicator='probe-example.com'] .detail")
        await expect(detail).to_contain_text("<script>window.__xss='dns'</script>")
        assert await page.evaluate("window.__xss") is None
        assert await page.locator("main img, main script").count() == 0
        assert console.problems == []


async def test_a_provider_registered_in_the_catalog_gets_its_choice_and_column(
    nats_server: NatsServer, tmp_path: Path, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The form's choices, the table's columns and their heads come from the catalog (the
    page, and ``GET /api/v1/providers``): a provider registered there needs nothing in the
    page's code."""
    monkeypatch.setattr(catalog, "_specs", dict(catalog._specs))
    monkeypatch.setattr(lookups_config, "_tables", dict(lookups_config._tables))
    catalog.register(ProviderSpec(name="echo", label="Echo Intel", kinds=frozenset({"domain"})))
    async with ui_stack(nats_server, tmp_path, ("dns",)) as base:
        page, console = await new_page(browser)
        await page.goto(f"{base}/")
        await expect(page.get_by_label("Echo Intel")).to_be_checked()
        await only_providers(page, "dns", "echo")
        await page.get_by_label("Indicators or free text").fill("shop-example.com")
        await page.get_by_role("button", name="Look up", exact=True).click()
        heads = page.locator("#results-head th")
        await expect(heads.filter(has_text="Echo Intel")).to_have_count(1)
        await expect(heads.filter(has_text="DNS")).to_have_count(1)
        await expect(cell(page, "shop-example.com", "dns")).not_to_contain_text("pending")
        await expect(cell(page, "shop-example.com", "echo")).to_contain_text("pending")
        assert console.problems == []


ECHO = ProviderSpec(
    name="echo",
    label="Echo Intel",
    kinds=frozenset({"domain"}),
    details=Details(
        notes=(Note("listed", "Listed by {feeds_total} feeds.", equals=True),),
        sections=(
            DetailSection(
                "Sightings",
                (
                    Field("First seen", "first_seen", "date"),
                    Field("Last seen", "last_seen", "time"),
                    Field("Confidence", "score", "score"),
                    Field("Hits today", "hits", "count"),
                    Field("Dormant", "dormant", "flag"),
                    Field("Campaign", "campaign.name", "badge"),
                    Field("Report", "report", "link"),
                    Field("Mirror", "mirror", "link"),
                    Field("Tags", "tags"),
                    Field("Hosting", "hosting", missing="not known"),
                ),
            ),
            DetailSection("Feeds", (Field("", "feeds", "list", "{name} ({confidence} %)"),)),
            DetailSection("Votes", (Field("By verdict", "votes", "counts"),)),
            DetailSection("Seen records", (Field("", "records", "groups"),)),
            DetailSection("Takedown", (Field("Requested", "takedown"),)),
            DetailSection("Network", (Field("Owner", "owner"),), when="address"),
        ),
    ),
    links={"domain": "https://intel.echo.example/indicator/{value}"},
)
"""A provider that exists only in this test: its declaration is all the UI gets of it."""

ECHO_DATA = {
    "listed": True,
    "feeds_total": 2,
    "first_seen": "2024-05-01T12:00:00Z",
    "last_seen": 1714564800,
    "score": 62,
    "hits": 0,
    "dormant": False,
    "campaign": {"name": "suspicious"},
    "report": "https://intel.echo.example/report/41",
    "mirror": "javascript:window.__xss='link'",
    "tags": ["phishing", XSS.format("tag")],
    "feeds": [{"name": "feed-a", "confidence": 80}, {"name": "feed-b", "confidence": 35}],
    "votes": {"malicious": 4, "harmless": 0},
    "records": {"A": ["192.0.2.10", "192.0.2.11"]},
    "owner": "left out: the data has no address",
}


class EchoProvider(Provider):
    """The test's own worker: the real provider runner on the bus, answering from memory."""

    name = "echo"

    async def lookup(self, request: LookupRequest) -> Answer:
        return Answer("suspicious", "listed by 2 feeds", dict(ECHO_DATA))


async def test_a_provider_declared_only_in_the_test_gets_its_column_cell_and_details(
    nats_server: NatsServer, tmp_path: Path, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered in the catalog with its details declared and served by a worker of its
    own, a provider gets its column, its coloured cell and its details, laid out as it
    declares (formats, templates, notes, sections without values left out, its own link),
    with nothing of it in the page's code; upstream text stays text, never a live link."""
    monkeypatch.setattr(catalog, "_specs", dict(catalog._specs))
    monkeypatch.setattr(lookups_config, "_tables", dict(lookups_config._tables))
    catalog.register(ECHO)
    async with ui_stack(nats_server, tmp_path, ("dns",)) as base:
        settings = make_settings(tmp_path, nats_server.url)
        nc = await connect(nats_server.url, "echo-worker")
        stop = asyncio.Event()
        worker = asyncio.create_task(
            ProviderRunner(nc.jetstream(), EchoProvider(), settings).run(stop)
        )
        try:
            page, console = await new_page(browser)
            await page.goto(f"{base}/")
            await only_providers(page, "dns", "echo")
            await page.get_by_label("Indicators or free text").fill("shop-example.com")
            await page.get_by_role("button", name="Look up", exact=True).click()
            await complete(page)
            echo = cell(page, "shop-example.com", "echo")
            await expect(echo).to_have_class(re.compile(r"\bv-suspicious\b"))
            await expect(echo).to_contain_text("listed by 2 feeds")
            await expect(
                page.locator("#results-head th").filter(has_text="Echo Intel")
            ).to_have_count(1)

            await echo.locator("button").click()
            detail = page.locator("tbody[data-indicator='shop-example.com'] .detail")
            await expect(detail).to_contain_text("Listed by 2 feeds.")
            sightings = detail.locator("section").filter(has_text="Sightings")
            await expect(sightings).to_contain_text("First seen2024-05-01")
            await expect(sightings).to_contain_text("62 / 100")
            await expect(sightings.locator("meter")).to_have_attribute("value", "62")
            await expect(sightings).to_contain_text("Hits today0")
            await expect(sightings).not_to_contain_text("Dormant")
            await expect(sightings.locator(".chip.v-suspicious")).to_have_text("suspicious")
            await expect(
                sightings.get_by_role("link", name="https://intel.echo.example/report/41")
            ).to_have_attribute("rel", "noopener noreferrer")
            await expect(sightings).to_contain_text("javascript:window.__xss='link'")
            assert await sightings.locator("a[href^='javascript']").count() == 0
            await expect(sightings).to_contain_text("Tagsphishing, " + XSS.format("tag"))
            await expect(sightings).to_contain_text("Hostingnot known")
            await expect(detail.locator("section").filter(has_text="Feeds")).to_contain_text(
                "feed-a (80 %)"
            )
            votes = detail.locator("section").filter(has_text="Votes")
            await expect(votes.locator(".chip.v-malicious")).to_have_text("malicious 4")
            await expect(votes.locator(".chip.v-unknown")).to_have_text("harmless 0")
            await expect(detail.locator("section").filter(has_text="Seen records")).to_contain_text(
                "A (2)192.0.2.10192.0.2.11"
            )
            await expect(detail.locator("h4")).to_have_text(
                ["Sightings", "Feeds", "Votes", "Seen records"]
            )  # no Takedown (no value), no Network (no address)
            link = detail.get_by_role("link", name="Open in Echo Intel ↗")
            await expect(link).to_have_attribute(
                "href", "https://intel.echo.example/indicator/shop-example.com"
            )
            await expect(link).to_have_attribute("rel", "noopener noreferrer")

            # the DNS column beside it, drawn from the dns provider's own declaration
            await cell(page, "shop-example.com", "dns").locator("button").click()
            pivots = re.compile("^Look up next")  # the values its answer points to
            await expect(detail.locator("h4")).to_have_text(["Records", pivots])
            await expect(detail).to_contain_text("A (1)192.0.2.10")
            assert await detail.get_by_role("link").count() == 0  # DNS declares no link
            assert await page.evaluate("window.__xss") is None
            assert console.problems == []
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
            await nc.drain()


async def test_results_fit_a_phone_and_the_status_line_says_when_done(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    """At 390 px the page is no wider than the screen (the table scrolls inside its own
    region), and "Looking up N indicators." does not stay once the job is complete."""
    async with ui_stack(nats_server, tmp_path, ("dns",)) as base:
        page, console = await new_page(browser)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{base}/")
        await only_providers(page, "dns")
        await page.get_by_label("Indicators or free text").fill(LOOKUP_TEXT)
        await page.get_by_role("button", name="Look up", exact=True).click()
        await complete(page)
        await expect(page.locator("#form-status")).to_have_text(
            "Looked up 3 indicators: see the results below."
        )
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide at a 390 px viewport"
        region = page.get_by_role("region", name="Results table (scrolls sideways)")
        assert await region.evaluate("e => e.scrollWidth > e.clientWidth")  # it scrolls
        assert console.problems == []


async def test_errors_show_their_cause_and_make_the_overall_verdict_error(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    """WHOIS cannot reach RDAP nor WHOIS: its cell says the cause first, the indicator's
    overall verdict is error (badge, reasons, summary chip, filter), the details say where
    it asked; what the input held that is not an indicator is listed, also from a link."""
    with ZoneServer(ZONE) as dns:
        rdap = f"http://127.0.0.1:{free_port()}"
        settings = make_settings(
            tmp_path,
            nats_server.url,
            LOOKOUT_DNS_NAMESERVERS=dns.nameserver,
            LOOKOUT_RDAP_URL=rdap,
            LOOKOUT_WHOIS_SERVER=f"127.0.0.1:{free_port()}",
        )
        async with (
            running_gateway(settings) as base,
            running_provider(settings, "dns"),
            running_provider(settings, "whois"),
        ):
            page, console = await new_page(browser)
            await page.goto(f"{base}/")
            await only_providers(page, "dns", "whois")
            await page.get_by_label("Indicators or free text").fill(
                "mail from shop-example[.]com via 999.1.1.1"
            )
            await page.get_by_role("button", name="Look up", exact=True).click()
            skipped = page.locator("#rejected")
            await expect(skipped).to_contain_text("Skipped 1 item")
            await expect(skipped).to_contain_text("999.1.1.1 — malformed IPv4 address")
            await complete(page)

            whois = cell(page, "shop-example.com", "whois")
            await expect(whois).to_have_class(re.compile(r"\bv-error\b"))
            cause = "cannot connect: Connection refused (RDAP, WHOIS)"
            await expect(whois.locator(".summary")).to_have_text(cause)
            verdict = overall(page, "shop-example.com")
            await expect(verdict).to_have_class(re.compile(r"\bv-error\b"))
            await expect(verdict).to_contain_text("error")
            await expect(verdict).to_contain_text(f"WHOIS: {cause}")
            await expect(verdict.locator(".cell-static")).to_have_attribute(
                "title", f"WHOIS: {cause}"
            )
            await expect(page.locator("#counts")).to_have_text(re.compile(r"1 error"))
            filter_by = page.get_by_label("Overall verdict", exact=True)
            await filter_by.select_option("error")
            await expect(page.locator("tbody:visible")).to_have_count(1)
            await filter_by.select_option("unknown")
            await expect(page.locator("tbody:visible")).to_have_count(0)
            await filter_by.select_option("")

            await whois.locator("button").click()
            detail = page.locator("tbody[data-indicator='shop-example.com'] .detail")
            await expect(detail).to_contain_text(f"{rdap}/domain/shop-example.com")
            await expect(detail).to_contain_text("RDAP")

            # the same job opened from its link, in a new page: the skipped item is listed
            other, other_console = await new_page(browser)
            await other.goto(page.url)
            await complete(other)
            await expect(other.locator("#rejected")).to_contain_text("999.1.1.1")
            await expect(overall(other, "shop-example.com")).to_have_class(
                re.compile(r"\bv-error\b")
            )

            # every line nothing was read from is counted, past the 100 the API lists
            lines = [f"note {n} of the ticket" for n in range(1, 121)]
            await page.get_by_label("Indicators or free text").fill(
                "\n".join(["shop-example[.]com", *lines])
            )
            await page.get_by_role("button", name="Look up", exact=True).click()
            await expect(skipped).to_contain_text("Skipped 120 items")
            await expect(skipped).to_contain_text("note 1 of the ticket — line 2: no IP")
            await expect(skipped).to_contain_text("…and 70 more.")
            assert console.problems == []
            assert other_console.problems == []


async def test_a_provider_without_its_key_says_what_to_set_and_links_to_a_free_key(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
        page, console = await new_page(browser)
        await page.goto(f"{base}/")
        await only_providers(page, "virustotal")
        await page.get_by_label("Indicators or free text").fill("198.51.100.7")
        await page.get_by_role("button", name="Look up", exact=True).click()
        await complete(page)
        vt = cell(page, "198.51.100.7", "virustotal")
        await expect(vt).to_have_class(re.compile(r"\bv-not_configured\b"))
        await expect(vt.locator(".summary")).to_contain_text("VIRUSTOTAL_API_KEY is not set")
        await vt.locator("button").click()
        detail = page.locator("tbody[data-indicator='198.51.100.7'] .detail")
        await expect(detail.locator(".setup-hint code")).to_have_text("VIRUSTOTAL_API_KEY")
        link = detail.locator("a.signup-link")
        await expect(link).to_have_attribute("href", "https://www.virustotal.com/gui/join-us")
        await expect(link).to_have_text("get a free key ↗")
        assert console.problems == []


# --------------------------------------------------------------------------- login


async def test_login_session_cookie_and_csrf(
    nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    async with ui_stack(
        nats_server, tmp_path, ("dns",), LOOKOUT_API_TOKENS="tok-one,tok-two"
    ) as base:
        page, console = await new_page(browser)
        await page.goto(f"{base}/#job=0123456789abcdef")
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        assert await page.locator("#lookup-form").count() == 0
        assert (await page.request.get(f"{base}/api/v1/notifications")).status == 401

        await page.get_by_label("API token").fill("not-a-token")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#login-error")).to_contain_text("not valid")

        await page.get_by_label("API token").fill("tok-two")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_role("heading", name="Look up indicators")).to_be_visible()
        assert page.url == f"{base}/#job=0123456789abcdef"  # back where the user was
        [session] = [c for c in await page.context.cookies() if c["name"] == "lookout_session"]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Strict"
        assert session["path"] == "/"
        assert session["secure"] is False  # plain http here; Secure over https

        # the cookie authenticates reads; a write needs the page's CSRF token too
        assert (await page.request.get(f"{base}/api/v1/notifications")).status == 200
        body = {"indicators": ["shop-example.com"], "providers": ["dns"]}
        refused = await page.request.post(f"{base}/api/v1/lookups", data=body)
        assert refused.status == 403
        assert "X-CSRF-Token" in (await refused.json())["error"]
        wrong = await page.request.post(
            f"{base}/api/v1/lookups", data=body, headers={"X-CSRF-Token": "forged"}
        )
        assert wrong.status == 403
        token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
        assert token
        accepted = await page.request.post(
            f"{base}/api/v1/lookups", data=body, headers={"X-CSRF-Token": token}
        )
        assert accepted.status == 202
        # the page itself sends it: a lookup submitted from the form is accepted
        await only_providers(page, "dns")
        await page.get_by_label("Indicators or free text").fill("shop-example[.]com")
        await page.get_by_role("button", name="Look up", exact=True).click()
        await expect(page.locator("#form-status")).to_contain_text(
            re.compile(r"Look(ing|ed) up 1 indicator")
        )
        await complete(page)  # the results came through the cookie-authenticated stream
        await expect(cell(page, "shop-example.com", "dns")).to_contain_text("A 192.0.2.10")

        # bearer clients are unaffected; a cookie from another session is not enough
        status, _ = await api("GET", f"{base}/api/v1/notifications", "tok-one")
        assert status == 200
        async with (
            aiohttp.ClientSession(cookies={"lookout_session": "guessed"}) as other,
            other.get(f"{base}/api/v1/notifications") as response,
        ):
            assert response.status == 401

        # another site cannot log this browser in
        forged = await page.request.post(
            f"{base}/login",
            form={"token": "tok-one", "csrf": "x", "next": "/"},
            headers={"Origin": "http://evil.example"},
            max_redirects=0,
        )
        assert forged.status == 403

        await page.get_by_role("button", name="Log out").click()
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        assert (await page.request.get(f"{base}/api/v1/notifications")).status == 401
        # the refused login answered 401 and job 0123456789abcdef does not exist (404):
        # the only console complaints allowed
        assert [p for p in console.problems if "401" not in p and "404" not in p] == []


# --------------------------------------------------------------------------- notifications


async def test_notifications_page_shows_a_dead_letter_and_replays_it(
    nats_server: NatsServer, tmp_path: Path, browser: Browser, receiver: Receiver
) -> None:
    receiver.default = (400, {})  # the target refuses: the notification is dead-lettered
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
        [note_id] = answer["ids"]

        async def dead() -> bool:
            return len(await dead_letters(nats_server.url, "ops-http")) == 1

        await wait_for(dead)
        page, console = await new_page(browser)
        await page.goto(f"{base}/notifications")
        note = page.locator(f'#notes-body tr[data-id="{note_id}"]')
        await expect(note).to_contain_text("dead")
        # what it is, and when lookout received it (not the sender's date_created)
        await expect(note).to_contain_text("Test notification from Sqreen (shop-frontend)")
        await expect(note).to_contain_text("sqreen / test · shop-frontend (staging) · risk 42")
        received = note.locator("td").first
        stamp = await received.get_attribute("data-received")
        assert stamp is not None
        assert stamp[:4] == str(datetime.now(UTC).year), stamp
        await expect(received).to_contain_text("sent 2021-03-05")
        await expect(note.locator('li[data-target="ops-http"]')).to_have_attribute(
            "data-state", "dead"
        )
        await note.locator("summary").click()
        await expect(note).to_contain_text("HTTP 400")
        await expect(page.locator('#dead-targets button[data-target="ops-http"]')).to_contain_text(
            "1"
        )
        row = page.locator(f'#dead-table tr[data-id="{note_id}"]')
        await expect(row).to_contain_text("HTTP 400")

        receiver.default = (200, {})  # the target is fixed
        before = len(receiver.requests)
        await row.get_by_role("button", name="Replay").click()
        await expect(page.locator("#dead-status")).to_contain_text("Replayed 1 dead letter")
        await wait_for(lambda: note_id in [b["id"] for b in receiver.bodies()[before:]])
        await expect(page.locator("#dead-view")).to_contain_text("ops-http has no dead letters")

        async def delivered() -> bool:
            await page.get_by_role("button", name="Refresh", exact=True).click()
            state = note.locator('li[data-target="ops-http"]')
            return await state.get_attribute("data-state") == "delivered"

        await wait_for(delivered, within=20, every=0.5)
        assert await dead_letters(nats_server.url, "ops-http") == []

        # a message that is no notification, dead-lettered: nothing there to replay
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().publish("notification.audit.broken", b"not json")
        finally:
            await nc.close()

        async def broken() -> bool:
            return len(await dead_letters(nats_server.url, "ops-http")) == 1

        await wait_for(broken)
        await page.reload()
        await page.locator('#dead-targets button[data-target="ops-http"]').click()
        await expect(page.locator("#dead-table tbody tr")).to_have_count(1)
        await expect(page.get_by_role("button", name="Replay all 1")).to_be_disabled()
        assert console.problems == []


async def test_notifications_page_shows_a_paused_target_and_the_attempt_log(
    nats_server: NatsServer, tmp_path: Path, browser: Browser, receiver: Receiver
) -> None:
    receiver.default = (503, {})  # the target fails: paused at the first failure
    toml = http_target(receiver.url).replace(
        "jitter = 0 }", "jitter = 0, probe_backoff = 600 }\npause_after = 1"
    )
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
        [note_id] = answer["ids"]

        async def paused() -> bool:
            _, body = await api("GET", f"{base}/api/v1/notifications/{note_id}")
            return bool(body.get("state") == "paused")

        await wait_for(paused, within=20)
        page, console = await new_page(browser)
        await page.goto(f"{base}/notifications")
        health = page.locator('#target-health li[data-target="ops-http"]')
        await expect(health).to_have_attribute("data-state", "paused")
        await expect(health).to_contain_text("ops-http (http): paused")
        await expect(health).to_contain_text("HTTP 503")  # open while paused
        await expect(health).to_contain_text("Next probe")
        await expect(page.locator("#health-status")).to_contain_text("Paused: ops-http")
        note = page.locator(f'#notes-body tr[data-id="{note_id}"]')
        state = note.locator('li[data-target="ops-http"]')
        await expect(state).to_have_attribute("data-state", "paused")
        await note.locator("summary").click()
        attempt = state.locator('table.attempt-log tr[data-outcome="failed"]').first
        await expect(attempt).to_contain_text("503")
        await expect(attempt).to_contain_text("HTTP 503: nope")
        await page.locator("#state-filter").select_option("paused")
        await expect(note).to_be_visible()
        # the state one target has: paused for ops-http, not delivered
        await page.locator("#target-filter").select_option("ops-http")
        await expect(note).to_be_visible()
        await page.locator("#state-filter").select_option("delivered")
        await expect(note).to_have_count(0)
        await expect(page.locator("#notes-body")).to_contain_text("No notification in this state.")
        await expect(page.locator("#notes-status")).to_contain_text("0 shown of 0 in this state")
        await page.goto(f"{base}/api/docs")  # its icon too: no 404 in the console
        await expect(page.locator("#title")).to_be_visible()
        await page.wait_for_load_state("networkidle")
        assert console.problems == []


# --------------------------------------------------------------------------- headers


def _inline_code(html: str) -> list[str]:
    """Inline scripts, inline event handlers and style attributes/elements in a page."""
    found = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    found += re.findall(r"\s(?:on\w+|style)\s*=", html)
    found += re.findall(r"<style\b", html)
    return found


async def test_every_page_links_to_every_page(nats_server: NatsServer, tmp_path: Path) -> None:
    """One navigation on every page (the open UI: no login page in the way), marking its
    own link; an indicator's page marks none."""
    settings = make_settings(tmp_path, nats_server.url)
    pages = ["/", "/watches", "/notifications", "/silences"]
    async with running_gateway(settings) as base, aiohttp.ClientSession() as session:
        for path in (*pages, "/indicator/example.com"):
            async with session.get(f"{base}{path}", allow_redirects=False) as response:
                assert response.status == 200, path
                text = await response.text()
            nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', text, re.S)
            assert nav is not None, path
            assert re.findall(r'<a href="([^"]+)"', nav[1]) == pages, path
            current = re.findall(r'<a href="([^"]+)" aria-current="page"', nav[1])
            assert current == ([] if path.startswith("/indicator/") else [path]), path


async def test_pages_send_a_strict_csp_and_no_inline_code(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS="tok-one")
    async with running_gateway(settings) as base, aiohttp.ClientSession() as session:
        for path in (
            "/",
            "/notifications",
            "/silences",
            "/login",
            "/watches",
            "/indicator/example.com",
            "/static/app.css",
            "/static/lookup.js",
        ):
            async with session.get(f"{base}{path}", allow_redirects=False) as response:
                assert response.status == 200, path
                csp = response.headers["Content-Security-Policy"]
                for directive in (
                    "default-src 'self'",
                    "script-src 'self'",
                    "style-src 'self'",
                    "frame-ancestors 'none'",
                    "base-uri 'none'",
                    "form-action 'self'",
                ):
                    assert directive in csp, (path, directive)
                assert "unsafe-inline" not in csp
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["Referrer-Policy"] == "no-referrer"
                if path.startswith("/static/"):
                    continue
                assert response.headers["Cache-Control"] == "no-store"
                assert _inline_code(await response.text()) == [], path
        async with session.get(f"{base}/static/..%2Fapp.py") as response:
            assert response.status == 404
        async with session.get(f"{base}/static/index.html") as response:
            assert response.status == 404  # pages are templates, not static files
    for page in (
        "index.html",
        "notifications.html",
        "silences.html",
        "login.html",
        "indicator.html",
        "watches.html",
    ):
        assert _inline_code((STATIC / page).read_text()) == [], page
    for script in STATIC.glob("*.js"):
        if script.name.startswith("apidocs"):
            continue
        code = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, (script.name, sink)


LIGHT_BG, DARK_BG = "rgb(246, 247, 249)", "rgb(15, 18, 22)"


async def test_dark_mode_follows_the_system_and_the_theme_toggle(
    browser: Browser, nats_server: NatsServer, tmp_path: Path
) -> None:
    """With no choice saved the page follows the system's colour scheme; the toggle
    (auto → light → dark) overrides it either way."""
    settings = make_settings(tmp_path, nats_server.url)

    async def background(page: Page) -> str:
        value: str = await page.evaluate(
            "getComputedStyle(document.documentElement).backgroundColor"
        )
        return value

    async with running_gateway(settings) as base:
        for system, first in (("dark", DARK_BG), ("light", LIGHT_BG)):
            page, console = await new_page(browser, color_scheme=system)
            await page.goto(f"{base}/")
            assert await background(page) == first, system
            toggle = page.locator("#theme-toggle")
            await toggle.click()  # auto → light
            assert await background(page) == LIGHT_BG, system
            await toggle.click()  # light → dark
            assert await background(page) == DARK_BG, system
            await page.reload()  # the choice is kept
            assert await background(page) == DARK_BG, system
            assert console.problems == []
            await page.context.close()
