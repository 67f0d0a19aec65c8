"""A whole scenario on ``lookout run`` at debug level, and not one secret in any log line.

Every kind of secret lookout holds is configured (the Sqreen webhook secret, API tokens,
provider API keys, the HTTP target's signing secret, a Slack webhook URL, Twilio's auth
token, a PagerDuty routing key, an SMTP password), and each is used: webhooks good and
badly signed, the API with the right and a wrong token, a lookup that calls
VirusTotal and AbuseIPDB, deliveries that succeed, are retried after a 429 and fail for
good. Then the whole output of every process is searched for each secret and for the
parts of a secret URL that would give it away.
"""

from __future__ import annotations

import secrets
import signal
from pathlib import Path

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from e2e.test_run import env_for, start_run
from fakes.abuseipdb import FakeAbuseIpdb
from fakes.otx import FakeOtx
from fakes.pagerduty import FakePagerDuty
from fakes.slack import FakeSlack
from fakes.threatfox import FakeThreatFox
from fakes.twilio import FakeTwilio
from fakes.urlhaus import FakeUrlhaus
from fakes.virustotal import FakeVirusTotal
from helpers import SQREEN_SECRET, WHSEC, Receiver, post_webhook, sqreen_fixture, wait_for

from shared.core.natsserver import free_port
from shared.relay.outbound import secret_parts


@pytest.mark.slow
async def test_no_secret_reaches_any_log_line(tmp_path: Path, receiver: Receiver) -> None:
    token = "tok-" + secrets.token_urlsafe(24)
    vt_key, abuse_key = secrets.token_hex(32), secrets.token_hex(40)
    abusech_key, otx_key = secrets.token_hex(24), secrets.token_hex(32)
    twilio_token, smtp_password = secrets.token_hex(16), "pw-" + secrets.token_urlsafe(18)
    smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port())  # offers no AUTH
    smtp.start()
    slack = FakeSlack(fail_next=[(429, "rate_limited", {"Retry-After": "1"})])
    async with (
        slack,
        FakeTwilio(auth_token=twilio_token) as twilio,
        FakePagerDuty() as pagerduty,
        FakeVirusTotal(api_key=vt_key) as vt,
        FakeAbuseIpdb(api_key=abuse_key) as abuse,
        FakeUrlhaus(api_key=abusech_key) as urlhaus,
        FakeThreatFox(api_key=abusech_key) as threatfox,
        FakeOtx(api_key=otx_key) as otx,
    ):
        slack_url_parts = secret_parts(slack.webhook_url)
        env = env_for(tmp_path, receiver.url)
        config = Path(env["LOOKOUT_CONFIG"])
        config.write_text(
            config.read_text()
            + f"""
[[targets]]
name = "chat"
type = "slack"
webhook_url = "{slack.webhook_url}"
per_second = 0

[[targets]]
name = "phone"
type = "sms"
api_url = "{twilio.api_url}"
account_sid = "{twilio.account_sid}"
auth_token = "{twilio_token}"
sender = "+15005550006"
to = ["+14155550101"]
per_second = 0

[[targets]]
name = "pager"
type = "pagerduty"
api_url = "{pagerduty.api_url}"
routing_key = "{pagerduty.routing_key}"

[[targets]]
name = "mail"
type = "email"
host = "127.0.0.1"
port = {smtp.port}
tls = "none"
username = "soc"
password = "{smtp_password}"
sender = "lookout@example.com"
to = ["soc@example.com"]
retry = {{ max_attempts = 2, initial_backoff = 0.2 }}
"""
        )
        env.update(
            LOOKOUT_LOG_LEVEL="debug",
            LOOKOUT_API_TOKENS=token,
            VIRUSTOTAL_API_KEY=vt_key,
            VIRUSTOTAL_URL=vt.base_url,
            ABUSEIPDB_API_KEY=abuse_key,
            ABUSEIPDB_URL=abuse.base_url,
            ABUSECH_API_KEY=abusech_key,
            URLHAUS_URL=urlhaus.base_url,
            THREATFOX_URL=threatfox.base_url,
            OTX_API_KEY=otx_key,
            OTX_URL=otx.base_url,
            LOOKOUT_DNS_NAMESERVERS=f"127.0.0.1:{free_port()}",  # nobody answers: errors
        )
        base = f"http://127.0.0.1:{env['LOOKOUT_HTTP_PORT']}"
        proc, log_path = start_run(env, tmp_path)
        try:
            # every service its own process: a dozen and more on a busy machine
            await wait_for(lambda: "lookout is running" in log_path.read_text(), within=120)
            status, _ = await post_webhook(base, sqreen_fixture("v2_security_event.json"))
            assert status == 200
            bad = {"X-Sqreen-Integrity": "0" * 64, "Content-Type": "application/json"}
            bearer = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    f"{base}/webhooks/sqreen", data=b"[]", headers=bad
                ) as response:
                    assert response.status == 401
                async with session.get(
                    f"{base}/api/v1/notifications", headers={"Authorization": "Bearer nope"}
                ) as response:
                    assert response.status == 401
                async with session.post(
                    f"{base}/api/v1/lookups",
                    json={"indicators": ["8.8.8.8", "example.com"]},
                    headers=bearer,
                ) as response:
                    assert response.status == 202
                async with session.get(f"{base}/api/v1/notifications", headers=bearer) as response:
                    assert response.status == 200

            await wait_for(lambda: len(receiver.requests) >= 1, within=30)
            await wait_for(lambda: len(slack.messages) >= 1, within=30)  # after its 429
            await wait_for(lambda: len(twilio.messages) >= 1, within=30)
            await wait_for(lambda: len(pagerduty.events) >= 1, within=30)
            await wait_for(lambda: len(vt.requests) >= 1 and len(abuse.requests) >= 1, within=30)
            await wait_for(lambda: len(urlhaus.requests) >= 1 and len(otx.requests) >= 1, within=30)
            await wait_for(lambda: len(threatfox.requests) >= 1, within=30)
            await wait_for(lambda: "dead-lettered" in log_path.read_text(), within=30)  # mail
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            smtp.stop()

    text = log_path.read_text()
    assert "debug" in text  # the scenario really ran at debug level
    leaks = {
        "sqreen secret": [SQREEN_SECRET],
        "http target secret": [WHSEC, WHSEC.removeprefix("whsec_")],
        "api token": [token],
        "virustotal key": [vt_key],
        "abuseipdb key": [abuse_key],
        "abuse.ch key": [abusech_key],
        "otx key": [otx_key],
        "twilio auth token": [twilio_token],
        "smtp password": [smtp_password],
        "pagerduty routing key": [pagerduty.routing_key],
        "slack webhook url": slack_url_parts,
    }
    for what, values in leaks.items():
        for value in values:
            assert value not in text, f"the {what} appears in the logs"
