"""What the ``otx`` provider declares, its ``[providers.otx]`` table and its settings:
``OTX_API_KEY`` (or ``_FILE``) and ``OTX_URL``."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.core.settings import Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.config import ApiSettings, ProviderConfig, api_section
from shared.lookups.display import Details, DetailSection, Field, Note

DEFAULT_URL = "https://otx.alienvault.com/api/v1"
SIGNUP_URL = "https://otx.alienvault.com/accounts/signup"


class OtxConfig(ProviderConfig, frozen=True):
    # OTX publishes no request limit; its SDK retries 429s. Be gentle all the same.
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    malicious_pulses: Annotated[int, msgspec.Meta(ge=1)] = 3
    """At least this many pulses naming the indicator make the verdict malicious (fewer,
    but some: suspicious)."""


SECTION = api_section("otx", OtxConfig, "OTX_URL", DEFAULT_URL, key_var="OTX_API_KEY")


def otx_settings(settings: Settings) -> ApiSettings[OtxConfig]:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="otx",
    label="AlienVault OTX",
    kinds=frozenset({"ipv4", "ipv6", "domain", "url", "hash"}),
    config=OtxConfig,
    env=(
        EnvVar("OTX_API_KEY", "OTX API key (free with an account)", secret=True, link=SIGNUP_URL),
        EnvVar("OTX_URL", f"API base URL (default {DEFAULT_URL})", default=DEFAULT_URL),
    ),
    settings=SECTION,
    details=Details(
        notes=(
            Note("found", "Not known to OTX.", equals=False),
            Note(
                "whitelisted", "OTX lists it as a known false positive or whitelisted.", equals=True
            ),
        ),
        sections=(
            DetailSection(
                "Pulses",
                (
                    Field("Pulses", "pulse_count", "count"),
                    Field(
                        "Latest",
                        "pulses",
                        "list",
                        template="{name} ({created}, TLP {tlp})",
                    ),
                    Field("Malware families", "malware_families", "list"),
                    Field("Adversaries", "adversaries", "list"),
                    Field("Tags", "tags", "list"),
                ),
            ),
            DetailSection(
                "About",
                (
                    Field("Type", "type_title"),
                    Field("Reputation", "reputation", "count"),
                    Field("Validation", "validation", "list"),
                    Field("ASN", "asn"),
                    Field("Country", "country_name"),
                    Field("Algorithm", "algorithm"),
                ),
            ),
        ),
    ),
    links={
        "ipv4": "https://otx.alienvault.com/indicator/ip/{value}",
        "ipv6": "https://otx.alienvault.com/indicator/ip/{value}",
        "domain": "https://otx.alienvault.com/indicator/domain/{value}",
        "url": "https://otx.alienvault.com/indicator/url/{value}",
        "hash": "https://otx.alienvault.com/indicator/file/{value}",
    },
)
