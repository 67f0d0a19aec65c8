"""What the ``asn`` provider declares: Team Cymru's IP-to-ASN mapping, asked over DNS
through the lookups' one DNS client (``LOOKOUT_DNS_NAMESERVERS``, ``LOOKOUT_DNS_TIMEOUT``).
Its ``[providers.asn]`` table may name other zones (a mirror, a test zone)."""

from __future__ import annotations

from shared.lookups.catalog import ProviderSpec
from shared.lookups.config import ProviderConfig
from shared.lookups.display import Details, DetailSection, Field, Note

ORIGIN_ZONE = "origin.asn.cymru.com"
ORIGIN6_ZONE = "origin6.asn.cymru.com"
NAMES_ZONE = "asn.cymru.com"


class AsnConfig(ProviderConfig, frozen=True):
    origin_zone: str = ORIGIN_ZONE
    """IPv4 origins: ``<reversed octets>.<origin_zone>`` TXT."""
    origin6_zone: str = ORIGIN6_ZONE
    """IPv6 origins: ``<reversed nibbles>.<origin6_zone>`` TXT."""
    names_zone: str = NAMES_ZONE
    """AS names: ``AS<n>.<names_zone>`` TXT."""


SPEC = ProviderSpec(
    name="asn",
    label="ASN",
    kinds=frozenset({"ipv4", "ipv6"}),
    config=AsnConfig,
    default_ttl=4 * 3600.0,  # Team Cymru refreshes its table every 4 hours
    details=Details(
        notes=(Note("announced", "No route announces this address.", equals=False),),
        sections=(
            DetailSection(
                "Origin",
                (
                    Field("AS", "asn", template="AS{}"),
                    Field("AS name", "as_name"),
                    Field("Other origin ASes", "other_asns", "list"),
                    Field("Prefix", "prefix", "mono"),
                    Field("Country", "country"),
                    Field("Registry", "registry"),
                    Field("Allocated", "allocated", "date"),
                ),
            ),
            DetailSection("Answers", (Field("", "records", "list"),)),
        ),
    ),
    links={
        "ipv4": "https://bgp.he.net/ip/{value}",
        "ipv6": "https://bgp.he.net/ip/{value}",
    },
)
