"""What the ``threatfox`` provider declares, its ``[providers.threatfox]`` table and its
settings: ``ABUSECH_API_KEY`` (or ``_FILE``; one key for URLhaus, ThreatFox and
MalwareBazaar) and ``THREATFOX_URL``."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.core.settings import Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.config import ApiSettings, ProviderConfig, api_section
from shared.lookups.display import Details, DetailSection, Field, Note

DEFAULT_URL = "https://threatfox-api.abuse.ch/api/v1"
SIGNUP_URL = "https://auth.abuse.ch/"


class ThreatFoxConfig(ProviderConfig, frozen=True):
    # abuse.ch publishes no request limit for lookups; be gentle all the same.
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    malicious_confidence: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50
    """An IOC with at least this ``confidence_level`` makes the verdict malicious (below:
    suspicious)."""


SECTION = api_section(
    "threatfox", ThreatFoxConfig, "THREATFOX_URL", DEFAULT_URL, key_var="ABUSECH_API_KEY"
)


def threatfox_settings(settings: Settings) -> ApiSettings[ThreatFoxConfig]:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="threatfox",
    label="ThreatFox",
    kinds=frozenset({"domain", "url", "ipv4", "hash"}),
    config=ThreatFoxConfig,
    env=(
        EnvVar(
            "ABUSECH_API_KEY",
            "abuse.ch Auth-Key (free; one key for URLhaus, ThreatFox and MalwareBazaar)",
            secret=True,
            link=SIGNUP_URL,
        ),
        EnvVar("THREATFOX_URL", f"API base URL (default {DEFAULT_URL})", default=DEFAULT_URL),
    ),
    settings=SECTION,
    details=Details(
        notes=(Note("found", "Not known to ThreatFox.", equals=False),),
        sections=(
            DetailSection(
                "Indicators of compromise",
                (
                    Field("Highest confidence", "confidence", "score"),
                    Field("Malware", "malware", "list"),
                    Field("Threat types", "threat_types", "list"),
                    Field(
                        "IOCs",
                        "iocs",
                        "list",
                        template="{ioc}: {malware_printable}, {threat_type}, {confidence_level} %",
                    ),
                    Field("First seen", "first_seen", "time"),
                    Field("Last seen", "last_seen", "time"),
                    Field("Algorithm", "algorithm"),
                ),
            ),
        ),
    ),
    links={
        "domain": "https://threatfox.abuse.ch/browse.php?search=ioc%3A{value}",
        "url": "https://threatfox.abuse.ch/browse.php?search=ioc%3A{value}",
        "ipv4": "https://threatfox.abuse.ch/browse.php?search=ioc%3A{value}",
        "hash": "https://threatfox.abuse.ch/browse.php?search=hash%3A{value}",
    },
)
