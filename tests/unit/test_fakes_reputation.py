"""The VirusTotal and AbuseIPDB fakes speak their documented contracts to plain clients."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from fakes.abuseipdb import AUTH_FAILED, INVALID_IP, INVALID_MAX_AGE, FakeAbuseIpdb
from fakes.virustotal import FakeVirusTotal, url_id, url_sha256

JSON = {"Accept": "application/json"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], **params: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.get(url, headers=headers, params=params) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body, resp


# ------------------------------------------------------------------ VirusTotal


async def test_vt_domain_report_has_documented_shape(session: aiohttp.ClientSession) -> None:
    objects = {"evil.example": FakeVirusTotal.stats(malicious=5, harmless=60, suspicious=1)}
    async with FakeVirusTotal(objects) as vt:
        base = vt.base_url
        status, body, _ = await get(
            session, f"{base}/domains/Evil.Example", {"x-apikey": vt.api_key}
        )
    assert status == 200
    data = body["data"]
    assert data["id"] == "evil.example"
    assert data["type"] == "domain"
    assert data["links"]["self"] == f"{base}/domains/evil.example"
    attrs = data["attributes"]
    assert attrs["last_analysis_stats"] == {
        "harmless": 60,
        "malicious": 5,
        "suspicious": 1,
        "undetected": 25,
        "timeout": 0,
    }
    categories = [r["category"] for r in attrs["last_analysis_results"].values()]
    assert categories.count("malicious") == 5
    assert len(categories) == 91
    engine = next(iter(attrs["last_analysis_results"].values()))
    assert set(engine) == {"category", "result", "engine_name", "method"}
    assert {"registrar", "creation_date", "categories"} <= set(attrs)
    assert set(attrs["total_votes"]) == {"harmless", "malicious"}
    assert isinstance(attrs["last_analysis_date"], int)
    assert attrs["reputation"] == -50


async def test_vt_ip_report_and_overrides(session: aiohttp.ClientSession) -> None:
    objects: dict[str, dict[str, Any]] = {
        "2001:db8::1": {"as_owner": "ACME", "last_analysis_stats": {"suspicious": 2}}
    }
    async with FakeVirusTotal(objects) as vt:
        status, body, _ = await get(
            session, f"{vt.base_url}/ip_addresses/2001:0db8::0001", {"x-apikey": vt.api_key}
        )
    assert status == 200
    data = body["data"]
    assert (data["id"], data["type"]) == ("2001:db8::1", "ip_address")
    attrs = data["attributes"]
    assert attrs["as_owner"] == "ACME"
    assert attrs["network"] == "2001:db8::/48"
    assert {"asn", "country"} <= set(attrs)
    assert attrs["last_analysis_stats"]["suspicious"] == 2
    assert attrs["last_analysis_stats"]["harmless"] == 0
    assert len(attrs["last_analysis_results"]) == 2


async def test_vt_url_ids_follow_the_documented_rule(session: aiohttp.ClientSession) -> None:
    url = "http://phish.example/login?next=/a"
    assert url_id(url) == base64.urlsafe_b64encode(url.encode()).decode().strip("=")
    assert FakeVirusTotal.url_id(url) == url_id(url)
    async with FakeVirusTotal({url: FakeVirusTotal.stats(malicious=3)}) as vt:
        headers = {"x-apikey": vt.api_key}
        by_b64 = await get(session, f"{vt.base_url}/urls/{url_id(url)}", headers)
        sha = hashlib.sha256(url.encode()).hexdigest()
        by_sha = await get(session, f"{vt.base_url}/urls/{sha}", headers)
        canonical = await get(
            session, f"{vt.base_url}/urls/{url_id('HTTP://Phish.Example/login?next=/a')}", headers
        )
        no_scheme = await get(
            session, f"{vt.base_url}/urls/{url_id('phish.example/login?next=/a')}", headers
        )
    for status, body, _ in (by_b64, by_sha, canonical, no_scheme):
        assert status == 200
        data = body["data"]
        assert (data["type"], data["id"]) == ("url", url_sha256(url))
        assert data["links"]["self"].endswith(f"/urls/{url_sha256(url)}")
        assert data["attributes"]["url"] == url
        assert {"last_final_url", "title"} <= set(data["attributes"])
        assert data["attributes"]["last_analysis_stats"]["malicious"] == 3


async def test_vt_auth_and_not_found(session: aiohttp.ClientSession) -> None:
    async with FakeVirusTotal({"known.example": {}}) as vt:
        missing = await get(session, f"{vt.base_url}/domains/known.example", {})
        wrong = await get(session, f"{vt.base_url}/domains/known.example", {"x-apikey": "nope"})
        ok = {"x-apikey": vt.api_key}
        unknown_domain = await get(session, f"{vt.base_url}/domains/other.example", ok)
        unknown_ip = await get(session, f"{vt.base_url}/ip_addresses/192.0.2.1", ok)
        unknown_url = await get(session, f"{vt.base_url}/urls/{url_id('http://x.example/')}", ok)
    assert missing[0] == 401
    assert missing[1]["error"]["code"] == "AuthenticationRequiredError"
    assert wrong[0] == 401
    assert wrong[1]["error"]["code"] == "WrongCredentialsError"
    for status, body, _ in (unknown_domain, unknown_ip, unknown_url):
        assert status == 404
        assert body["error"]["code"] == "NotFoundError"
        assert body["error"]["message"]
    assert [r.path for r in vt.requests][:2] == ["/api/v3/domains/known.example"] * 2
    assert vt.requests[2].headers["x-apikey"] == vt.api_key


async def test_vt_per_minute_quota_slides(session: aiohttp.ClientSession) -> None:
    now = [1_000_000.0]
    vt = FakeVirusTotal({"a.example": {}}, quota_per_minute=2, clock=lambda: now[0])
    async with vt:
        url, headers = f"{vt.base_url}/domains/a.example", {"x-apikey": vt.api_key}
        statuses = [(await get(session, url, headers))[0] for _ in range(3)]
        status, body, resp = await get(session, url, headers)
        assert "Retry-After" not in resp.headers
        now[0] += 61
        assert (await get(session, url, headers))[0] == 200
        vt.retry_after = "60"
        await get(session, url, headers)
        status_ra, _, resp_ra = await get(session, url, headers)
    assert statuses == [200, 200, 429]
    assert (status, body["error"]["code"]) == (429, "QuotaExceededError")
    assert status_ra == 429
    assert resp_ra.headers["Retry-After"] == "60"


async def test_vt_daily_quota_and_fail_next(session: aiohttp.ClientSession) -> None:
    async with FakeVirusTotal(
        {"a.example": {}}, quota_per_day=1, fail_next=[500, 503], delay=0.01
    ) as vt:
        url, headers = f"{vt.base_url}/domains/a.example", {"x-apikey": vt.api_key}
        results = [await get(session, url, headers) for _ in range(4)]
    assert [r[0] for r in results] == [500, 503, 200, 429]
    assert results[1][1]["error"]["code"] == "TransientError"
    assert results[3][1]["error"]["code"] == "QuotaExceededError"


# ------------------------------------------------------------------- AbuseIPDB


async def test_abuseipdb_check_shape_and_overrides(session: aiohttp.ClientSession) -> None:
    reports = {"203.0.113.9": {"abuseConfidenceScore": 97, "totalReports": 12, "countryCode": "NL"}}
    async with FakeAbuseIpdb(reports) as abuse:
        headers = {"Key": abuse.api_key, **JSON}
        status, body, _ = await get(
            session, f"{abuse.base_url}/check", headers, ipAddress="203.0.113.9", maxAgeInDays="90"
        )
        _, verbose, _ = await get(
            session, f"{abuse.base_url}/check", headers, ipAddress="203.0.113.9", verbose=""
        )
        _, unknown, _ = await get(session, f"{abuse.base_url}/check", headers, ipAddress="8.8.8.8")
    assert status == 200
    data = body["data"]
    assert set(data) == {
        "ipAddress", "isPublic", "ipVersion", "isWhitelisted", "abuseConfidenceScore",
        "countryCode", "usageType", "isp", "domain", "hostnames", "isTor", "totalReports",
        "numDistinctUsers", "lastReportedAt",
    }  # fmt: skip
    assert (data["abuseConfidenceScore"], data["totalReports"]) == (97, 12)
    assert (data["ipVersion"], data["ipAddress"]) == (4, "203.0.113.9")
    assert verbose["data"]["countryName"] == "Netherlands"
    assert verbose["data"]["reports"] == []
    assert (unknown["data"]["abuseConfidenceScore"], unknown["data"]["totalReports"]) == (0, 0)
    assert unknown["data"]["isPublic"] is True


async def test_abuseipdb_auth_and_validation(session: aiohttp.ClientSession) -> None:
    async with FakeAbuseIpdb() as abuse:
        url = f"{abuse.base_url}/check"
        ok = {"Key": abuse.api_key, **JSON}
        missing = await get(session, url, JSON, ipAddress="8.8.8.8")
        wrong = await get(session, url, {"Key": "nope", **JSON}, ipAddress="8.8.8.8")
        bad_ip = await get(session, url, ok, ipAddress="not-an-ip")
        bad_age = await get(session, url, ok, ipAddress="8.8.8.8", maxAgeInDays="366")
        html_error = await get(session, url, {"Key": abuse.api_key}, ipAddress="x")
    for status, body, _ in (missing, wrong):
        assert status == 401
        assert body == {"errors": [{"detail": AUTH_FAILED, "status": 401}]}
    assert bad_ip[0] == 422
    assert bad_ip[1] == {
        "errors": [{"detail": INVALID_IP, "source": {"parameter": "ipAddress"}, "status": 422}]
    }
    assert bad_age[0] == 422
    assert bad_age[1]["errors"][0]["detail"] == INVALID_MAX_AGE
    assert bad_age[1]["errors"][0]["source"] == {"parameter": "maxAgeInDays"}
    assert html_error[0] == 422
    assert html_error[2].content_type == "text/html"


async def test_abuseipdb_rate_limit_headers_and_daily_429(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeAbuseIpdb(daily_limit=3) as abuse:
        url, headers = f"{abuse.base_url}/check", {"Key": abuse.api_key, **JSON}
        remaining = []
        for _ in range(3):
            status, _, resp = await get(session, url, headers, ipAddress="8.8.8.8")
            assert status == 200
            assert resp.headers["X-RateLimit-Limit"] == "3"
            remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
        status, body, resp = await get(session, url, headers, ipAddress="8.8.8.8")
    assert remaining == [2, 1, 0]
    assert status == 429
    assert body["errors"][0]["status"] == 429
    assert body["errors"][0]["detail"].startswith("Daily rate limit of 3 requests exceeded")
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    retry_after = int(resp.headers["Retry-After"])
    reset = int(resp.headers["X-RateLimit-Reset"])
    assert 0 < retry_after <= 86_400
    assert reset % 86_400 == 0
    assert abs(reset - time.time() - retry_after) <= 2


async def test_abuseipdb_fail_next_and_recording(session: aiohttp.ClientSession) -> None:
    async with FakeAbuseIpdb(fail_next=[503]) as abuse:
        url, headers = f"{abuse.base_url}/check", {"Key": abuse.api_key, **JSON}
        first = await get(session, url, headers, ipAddress="2001:4860:4860::8888")
        second = await get(session, url, headers, ipAddress="2001:4860:4860::8888")
    assert first[0] == 503
    assert "X-RateLimit-Remaining" in first[2].headers
    assert second[0] == 200
    assert second[1]["data"]["ipVersion"] == 6
    assert second[2].headers["X-RateLimit-Remaining"] == "999"
    method, path, recorded, *_ = abuse.requests[1]
    assert method == "GET"
    assert path.startswith("/api/v2/check?ipAddress=2001")
    assert recorded["Key"] == abuse.api_key
    assert recorded["Accept"] == "application/json"
