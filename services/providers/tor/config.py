"""What the ``tor`` provider declares, its ``[providers.tor]`` table (how often the exit list
is refreshed, when it is stale) and its setting ``TOR_EXIT_LIST_URL``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from shared.core import env
from shared.core.settings import Section, Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.config import ProviderConfig, provider_config
from shared.lookups.display import Details, DetailSection, Field, Note

DEFAULT_URL = "https://check.torproject.org/exit-addresses"
Seconds = Annotated[float, msgspec.Meta(ge=0.5, le=30 * 86400)]


class TorConfig(ProviderConfig, frozen=True):
    refresh_interval: Seconds = 1800.0
    """Seconds between downloads of the exit list (by one replica, into the bus)."""
    stale_after: Seconds = 6 * 3600.0
    """Seconds after the last successful download when lookups answer ``error`` (stale)
    rather than trust the list."""
    retry_after_failure: Seconds = 300.0
    """Seconds before a failed download is tried again (by any replica)."""
    max_bytes: Annotated[int, msgspec.Meta(ge=1024, le=256 * 1024 * 1024)] = 32 * 1024 * 1024
    """Largest exit list read."""


@dataclass(frozen=True)
class TorSettings:
    url: str
    config: TorConfig


def _load(settings: Settings) -> TorSettings:
    return TorSettings(
        url=env.base_url(settings.env, "TOR_EXIT_LIST_URL", DEFAULT_URL) or DEFAULT_URL,
        config=provider_config(settings, "tor", TorConfig),
    )


SECTION = Section("providers.tor", _load)


def tor_settings(settings: Settings) -> TorSettings:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="tor",
    label="Tor exit",
    kinds=frozenset({"ipv4", "ipv6"}),
    config=TorConfig,
    env=(
        EnvVar(
            "TOR_EXIT_LIST_URL",
            f"the Tor Project's exit list (default {DEFAULT_URL}; the TorDNSEL format, or "
            "one address per line as https://check.torproject.org/torbulkexitlist)",
            default=DEFAULT_URL,
        ),
    ),
    settings=SECTION,
    default_ttl=0.0,  # lookups read the list in the bus: nothing to cache
    details=Details(
        notes=(
            Note("exit", "A current Tor exit: traffic from it is anonymous.", equals=True),
            Note("was_exit", "Was a Tor exit; not in the current list.", equals=True),
        ),
        sections=(
            DetailSection(
                "Exit list",
                (
                    Field("Last seen exiting", "last_seen", "time"),
                    Field("List published", "list_published", "time"),
                    Field("Downloaded", "list_fetched", "time"),
                    Field("Exits listed", "list_count", "count"),
                    Field("Source", "source", "mono"),
                ),
            ),
        ),
    ),
    links={
        "ipv4": "https://metrics.torproject.org/rs.html#search/{value}",
        "ipv6": "https://metrics.torproject.org/rs.html#search/{value}",
    },
)
