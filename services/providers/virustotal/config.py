"""What the ``virustotal`` provider declares, its ``[providers.virustotal]`` table and its
settings: ``VIRUSTOTAL_API_KEY`` (or ``_FILE``) and ``VIRUSTOTAL_URL``."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.core.settings import Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.config import ApiSettings, ProviderConfig, Quota, api_section
from shared.lookups.display import Details, DetailSection, Field, Note
from shared.lookups.pivots import PivotRule

DEFAULT_URL = "https://www.virustotal.com/api/v3"


class VirusTotalConfig(ProviderConfig, frozen=True):
    # The public API's limits; a premium key raises them in [providers.virustotal.quota].
    quota: Quota = Quota(per_minute=4, per_day=500)
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4
    malicious_engines: Annotated[int, msgspec.Meta(ge=1)] = 3
    """At least this many engines saying malicious makes the verdict malicious (fewer:
    suspicious)."""


SECTION = api_section(
    "virustotal", VirusTotalConfig, "VIRUSTOTAL_URL", DEFAULT_URL, key_var="VIRUSTOTAL_API_KEY"
)


def virustotal_settings(settings: Settings) -> ApiSettings[VirusTotalConfig]:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="virustotal",
    label="VirusTotal",
    kinds=frozenset({"domain", "url", "email", "ipv4", "ipv6", "hash"}),
    config=VirusTotalConfig,
    env=(
        EnvVar(
            "VIRUSTOTAL_API_KEY",
            "API key (the free public API allows 4 lookups a minute, 500 a day)",
            secret=True,
            link="https://www.virustotal.com/gui/join-us",
        ),
        EnvVar("VIRUSTOTAL_URL", f"API base URL (default {DEFAULT_URL})", default=DEFAULT_URL),
    ),
    settings=SECTION,
    details=Details(
        notes=(Note("found", "Not known to VirusTotal.", equals=False),),
        sections=(
            DetailSection(
                "Last analysis",
                (
                    Field("", "stats", "counts"),
                    Field("Analysed", "last_analysis_date", "time"),
                    Field("Reputation", "reputation", "count"),
                    Field("Community votes", "total_votes"),
                ),
            ),
            DetailSection("Flagged by", (Field("", "flagged_by", "list"),)),
            DetailSection(
                "File",
                (
                    Field("Threat label", "threat_label"),
                    Field("Type", "type_description"),
                    Field("Name", "meaningful_name", "mono"),
                    Field("Names", "names", "list"),
                    Field("Size", "size", template="{} bytes"),
                    Field("First seen", "first_submission_date", "time"),
                    Field("Last seen", "last_submission_date", "time"),
                    Field("SHA-256", "sha256", "mono"),
                    Field("Algorithm", "algorithm"),
                ),
            ),
            DetailSection(
                "About",
                (
                    Field("AS owner", "as_owner"),
                    Field("ASN", "asn", template="AS{}"),
                    Field("Network", "network", "mono"),
                    Field("Country", "country"),
                    Field("Registrar", "registrar"),
                    Field("Created", "creation_date", "time"),
                    Field("Final URL", "last_final_url", "mono"),  # never a live link
                    Field("Title", "title"),
                    Field("Categories", "categories"),
                    Field("Tags", "tags"),
                ),
            ),
        ),
    ),
    links={
        "domain": "https://www.virustotal.com/gui/domain/{value}",
        "email": "https://www.virustotal.com/gui/domain/{host}",
        "ipv4": "https://www.virustotal.com/gui/ip-address/{value}",
        "ipv6": "https://www.virustotal.com/gui/ip-address/{value}",
        "hash": "https://www.virustotal.com/gui/file/{value}",
    },
    pivots=(PivotRule("last_final_url", "final URL's host", take="host"),),
)
