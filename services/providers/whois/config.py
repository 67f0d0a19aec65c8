"""What the ``whois`` provider declares, and its settings: ``LOOKOUT_RDAP_URL`` (one RDAP base
URL for every query instead of the IANA bootstrap) and ``LOOKOUT_WHOIS_SERVER``
(``host:port`` asked for every WHOIS query instead of following referrals)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.core import env
from shared.core.settings import Section, Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.display import Details, DetailSection, Field, Note
from shared.lookups.pivots import PivotRule


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
    details=Details(
        notes=(Note("registered", "Not registered.", equals=False),),
        sections=(
            DetailSection(
                "Registration",
                (
                    Field("Domain", "domain"),
                    Field("Registrar", "registrar"),
                    Field("Registered", "created", "date"),
                    Field("Age", "age_days", template="{} days"),
                    Field("Updated", "updated", "date"),
                    Field("Expires", "expires", "date"),
                    Field("Registrant country", "registrant_country"),
                    Field("Abuse contact", "abuse_email"),
                ),
                when="domain",
            ),
            DetailSection(
                "Network",
                (
                    Field("Address", "address", "mono"),
                    Field("Name", "network"),
                    Field("Handle", "handle", "mono"),
                    Field("First address", "start_address", "mono"),
                    Field("Last address", "end_address", "mono"),
                    Field("CIDR", "cidrs", "mono"),
                    Field("ASN", "asn", template="AS{}"),
                    Field("Organisation", "organization"),
                    Field("Country", "country"),
                    Field("Abuse contact", "abuse_email"),
                    Field("Registered", "created", "date"),
                    Field("Updated", "updated", "date"),
                ),
                when="address",
            ),
            DetailSection("Name servers", (Field("", "nameservers", "list"),)),
            DetailSection("Status", (Field("", "status", "list"),)),
            DetailSection(
                "Asked",
                (
                    Field("Source", "source", "badge"),
                    Field("Server", "server", "mono"),
                    Field("RDAP problem", "rdap_error"),
                    Field("Failed first", "attempts", "list", "{protocol} {upstream}: {error}"),
                ),
            ),
        ),
    ),
    links={
        "domain": "https://lookup.icann.org/en/lookup?name={value}",
        "ipv4": "https://search.arin.net/rdap/?query={value}",
        "ipv6": "https://search.arin.net/rdap/?query={value}",
    },
    pivots=(
        PivotRule("domain", "registered domain"),
        PivotRule("nameservers", "name server"),
        PivotRule("abuse_email", "abuse contact's domain", take="host"),
    ),
)
