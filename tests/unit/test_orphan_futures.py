"""No "Future exception was never retrieved" from WHOIS connections cut short, and
asyncio's own log lines name their service (issue 12, item 19: ``lookout run`` logged 156
of them, from the WHOIS provider, with no service name)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, sys
    import uvloop
    from services.providers.whois import port43
    from shared.core import logging as log

    log.setup("provider-whois", "info")
    uvloop.install()  # as every service runs (shared.core.service)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # Cut short while the name is being resolved: a timeout or a shutdown does this.
        asks = [
            asyncio.ensure_future(port43.ask("whois.invalid", 43, "example.com", loop.time() + 5))
            for _ in range(int(sys.argv[1]))
        ]
        await asyncio.sleep(0)
        for ask in asks:
            ask.cancel()
        await asyncio.gather(*asks, return_exceptions=True)
        # and some that fail on their own (no such name)
        ends = await asyncio.gather(
            *(port43.ask("whois.invalid", 43, "x", loop.time() + 5) for _ in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(e, port43.Unavailable) for e in ends), ends
        await asyncio.sleep(1.0)  # the resolver threads finish
        gc.collect()
        # one future left unretrieved on purpose: its line must name the service
        orphan = loop.create_future()
        orphan.set_exception(RuntimeError("left on purpose"))
        del orphan
        gc.collect()
        await asyncio.sleep(0.1)

    asyncio.run(main())
    """
)


def test_cancelled_whois_connections_leave_no_unretrieved_future() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, "30"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    never = [e for e in lines if "never retrieved" in e["event"]]
    assert [e["exception"] for e in never] == ["RuntimeError: left on purpose"], never
    assert never[0]["service"] == "provider-whois"
    assert never[0]["logger"] == "asyncio"
