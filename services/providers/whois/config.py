"""What the ``whois`` provider declares, and its settings: ``LOOKOUT_RDAP_URL`` (one RDAP base
URL for every query instead of the IANA bootstrap) and ``LOOKOUT_WHOIS_SERVER``
(``host:port`` asked for every WHOIS query instead of following referrals)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.core import env
from shared.core.settings import Section, Settings
from shared.lookups.catalog import EnvVar, ProviderSpec


@dataclass(frozen=True)
class WhoisSettings:
    rdap_url: str | None = None
    whois_server: tuple[str, int] | None = None


def _load(settings: Settings) -> WhoisSettings:
    return WhoisSettings(
        rdap_url=env.base_url(settings.env, "LOOKOUT_RDAP_URL", None),
        whois_server=env.host_port(settings.env, "LOOKOUT_WHOIS_SERVER", 43),
    )


SECTION = Section("providers.whois", _load)


def whois_settings(settings: Settings) -> WhoisSettings:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="whois",
    label="WHOIS",
    kinds=frozenset({"domain", "url", "email", "ipv4", "ipv6"}),
    env=(
        EnvVar("LOOKOUT_RDAP_URL", "one RDAP base URL for every query (default: IANA bootstrap)"),
        EnvVar(
            "LOOKOUT_WHOIS_SERVER", "host:port asked for every WHOIS query (default: referrals)"
        ),
    ),
    default_ttl=86400.0,
    settings=SECTION,
)
