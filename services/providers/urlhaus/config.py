"""What the ``urlhaus`` provider declares, its ``[providers.urlhaus]`` table and its
settings: ``ABUSECH_API_KEY`` (or ``_FILE``; one key for URLhaus, ThreatFox and
MalwareBazaar) and ``URLHAUS_URL``."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.core.settings import Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.config import ApiSettings, ProviderConfig, api_section
from shared.lookups.display import Details, DetailSection, Field, Note

DEFAULT_URL = "https://urlhaus-api.abuse.ch/v1"
SIGNUP_URL = "https://auth.abuse.ch/"


class UrlhausConfig(ProviderConfig, frozen=True):
    # abuse.ch publishes no request limit for lookups; be gentle all the same.
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8


SECTION = api_section(
    "urlhaus", UrlhausConfig, "URLHAUS_URL", DEFAULT_URL, key_var="ABUSECH_API_KEY"
)


def urlhaus_settings(settings: Settings) -> ApiSettings[UrlhausConfig]:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="urlhaus",
    label="URLhaus",
    kinds=frozenset({"domain", "url", "ipv4"}),
    config=UrlhausConfig,
    env=(
        EnvVar(
            "ABUSECH_API_KEY",
            "abuse.ch Auth-Key (free; one key for URLhaus, ThreatFox and MalwareBazaar)",
            secret=True,
            link=SIGNUP_URL,
        ),
        EnvVar("URLHAUS_URL", f"API base URL (default {DEFAULT_URL})", default=DEFAULT_URL),
    ),
    settings=SECTION,
    default_ttl=3600.0,
    details=Details(
        notes=(Note("found", "Not known to URLhaus.", equals=False),),
        sections=(
            DetailSection(
                "URL",
                (
                    Field("Status", "url_status", "badge"),
                    Field("Threat", "threat"),
                    Field("Added", "date_added", "time"),
                    Field("Last online", "last_online", "time"),
                    Field("Payloads", "payload_signatures", "list"),
                ),
            ),
            DetailSection(
                "Host",
                (
                    Field("Malware URLs", "url_count", "count"),
                    Field("Online now", "urls_online", "count"),
                    Field("First seen", "firstseen", "time"),
                    Field("Recent URLs", "urls", "list", template="{url_status} {threat}: {url}"),
                ),
            ),
            DetailSection(
                "Listed",
                (
                    Field("Tags", "tags", "list"),
                    Field("Blocklists", "blacklists", "list"),
                    Field("Reference", "urlhaus_reference", "link"),
                ),
            ),
        ),
    ),
    links={
        "domain": "https://urlhaus.abuse.ch/host/{value}/",
        "ipv4": "https://urlhaus.abuse.ch/host/{value}/",
    },
)
