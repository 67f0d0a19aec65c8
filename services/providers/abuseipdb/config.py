"""What the ``abuseipdb`` provider declares, its ``[providers.abuseipdb]`` table and its
settings: ``ABUSEIPDB_API_KEY`` (or ``_FILE``) and ``ABUSEIPDB_URL``."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.core.settings import Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.config import ApiSettings, ProviderConfig, Quota, api_section
from shared.lookups.display import Details, DetailSection, Field, Note
from shared.lookups.pivots import PivotRule

DEFAULT_URL = "https://api.abuseipdb.com/api/v2"


class AbuseIpdbConfig(ProviderConfig, frozen=True):
    quota: Quota = Quota(per_day=1000)
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    max_age_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 90
    suspicious_score: Annotated[int, msgspec.Meta(ge=0, le=100)] = 25
    malicious_score: Annotated[int, msgspec.Meta(ge=0, le=100)] = 75


SECTION = api_section(
    "abuseipdb", AbuseIpdbConfig, "ABUSEIPDB_URL", DEFAULT_URL, key_var="ABUSEIPDB_API_KEY"
)


def abuseipdb_settings(settings: Settings) -> ApiSettings[AbuseIpdbConfig]:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="abuseipdb",
    label="AbuseIPDB",
    kinds=frozenset({"ipv4", "ipv6"}),
    config=AbuseIpdbConfig,
    env=(
        EnvVar(
            "ABUSEIPDB_API_KEY",
            "API key (the free plan allows 1,000 checks a day)",
            secret=True,
            link="https://www.abuseipdb.com/register",
        ),
        EnvVar("ABUSEIPDB_URL", f"API base URL (default {DEFAULT_URL})", default=DEFAULT_URL),
    ),
    settings=SECTION,
    details=Details(
        notes=(Note("skipped", "Not looked up: {}."),),
        sections=(
            DetailSection(
                "Report",
                (
                    Field("Confidence of abuse", "abuseConfidenceScore", "score"),
                    Field("Reports", "totalReports", "count"),
                    Field("Distinct reporters", "numDistinctUsers", "count"),
                    Field("Last reported", "lastReportedAt", "time"),
                    Field("Tor exit", "isTor"),
                    Field("Whitelisted", "isWhitelisted"),
                ),
            ),
            DetailSection(
                "Network",
                (
                    Field("ISP", "isp"),
                    Field("Usage", "usageType"),
                    Field("Country", "countryCode"),
                    Field("Domain", "domain"),
                    Field("Host names", "hostnames"),
                    Field("Public", "isPublic"),
                    Field("Quota left today", "quota_remaining", "count"),
                ),
            ),
        ),
    ),
    links={
        "ipv4": "https://www.abuseipdb.com/check/{value}",
        "ipv6": "https://www.abuseipdb.com/check/{value}",
    },
    pivots=(
        PivotRule("hostnames", "host name"),
        PivotRule("domain", "network's domain"),
    ),
)
