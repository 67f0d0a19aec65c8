"""DNS rebinding in a real browser: Chromium is told that ``rebind.attacker.example``
resolves to 127.0.0.1 (``--host-resolver-rules``), which is where a rebinding attack
leaves the victim's browser. The open loopback gateway must not serve that origin."""

from __future__ import annotations

from pathlib import Path

from helpers import make_settings, running_gateway
from test_ui import async_playwright, chromium  # noqa: F401 - the session fixture

from shared.core.natsserver import NatsServer

REBOUND = "rebind.attacker.example"


async def test_a_rebound_name_gets_no_page_and_no_api(
    nats_server: NatsServer,
    tmp_path: Path,
    chromium: str,  # noqa: F811
) -> None:
    settings = make_settings(tmp_path, nats_server.url)  # no tokens: the open loopback mode
    async with running_gateway(settings), async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"],
        )
        try:
            page = await browser.new_page()
            port = settings.http_port
            rebound = await page.goto(f"http://{REBOUND}:{port}/")
            assert rebound is not None
            assert rebound.status == 421
            assert "DNS rebinding" in await page.content()
            # what the attacker's script would do from that origin: read the API
            status = await page.evaluate("fetch('/api/v1/notifications').then(r => r.status)")
            assert status == 421
            own = await page.goto(f"http://localhost:{port}/")
            assert own is not None
            assert own.status == 200
        finally:
            await browser.close()
