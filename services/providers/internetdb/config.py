"""What the ``internetdb`` provider declares, its ``[providers.internetdb]`` table and its
setting ``INTERNETDB_URL`` (Shodan InternetDB needs no key)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.core.settings import Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.config import ApiSettings, ProviderConfig, api_section
from shared.lookups.display import Details, DetailSection, Field, Note
from shared.lookups.pivots import PivotRule

DEFAULT_URL = "https://internetdb.shodan.io"
MALICIOUS_TAGS = ("c2", "compromised", "doublepulsar", "malware")
"""Shodan's tags (https://datapedia.shodan.io/) that are a finding about the address itself:
a command-and-control server, a compromised or backdoored (DoublePulsar) host, malware."""


class InternetDbConfig(ProviderConfig, frozen=True):
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    malicious_tags: tuple[str, ...] = MALICIOUS_TAGS
    """Tags that make an address ``malicious``; every other tag, port, CPE and CVE is
    information, not a finding."""


SECTION = api_section("internetdb", InternetDbConfig, "INTERNETDB_URL", DEFAULT_URL)


def internetdb_settings(settings: Settings) -> ApiSettings[InternetDbConfig]:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="internetdb",
    label="InternetDB",
    kinds=frozenset({"ipv4", "ipv6"}),
    config=InternetDbConfig,
    env=(
        EnvVar(
            "INTERNETDB_URL",
            f"Shodan InternetDB base URL (default {DEFAULT_URL}; no key, free for "
            "non-commercial use)",
            default=DEFAULT_URL,
        ),
    ),
    settings=SECTION,
    default_ttl=24 * 3600.0,  # InternetDB is refreshed weekly
    details=Details(
        notes=(
            Note("found", "Shodan has no data about this address.", equals=False),
            Note("malicious_tags", "Tagged by Shodan as: {}."),
        ),
        sections=(
            DetailSection(
                "Exposure",
                (
                    Field("Open ports", "ports", "list"),
                    Field("Tags", "tags", "list"),
                    Field("Vulnerabilities (by version)", "vulns", "list"),
                    Field("Software (CPE)", "cpes", "list"),
                    Field("Host names", "hostnames", "list"),
                ),
            ),
        ),
    ),
    pivots=(PivotRule("hostnames", "host name (Shodan)"),),
    links={
        "ipv4": "https://www.shodan.io/host/{value}",
        "ipv6": "https://www.shodan.io/host/{value}",
    },
)
