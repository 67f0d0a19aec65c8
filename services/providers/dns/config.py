"""What the ``dns`` provider declares: its kinds and how it is named. It reads the lookups'
``LOOKOUT_DNS_NAMESERVERS`` and ``LOOKOUT_DNS_TIMEOUT`` (:mod:`shared.lookups.config`)."""

from __future__ import annotations

from shared.lookups.catalog import ProviderSpec
from shared.lookups.display import Details, DetailSection, Field, Note
from shared.lookups.pivots import PivotRule

SPEC = ProviderSpec(
    name="dns",
    label="DNS",
    kinds=frozenset({"domain", "url", "email", "ipv4", "ipv6"}),
    looks_up_private=True,  # PTR of internal addresses is useful
    details=Details(
        notes=(Note("nxdomain", "The name does not exist (NXDOMAIN).", equals=True),),
        sections=(
            DetailSection(
                "Reverse DNS",
                (Field("Address", "address", "mono"), Field("PTR", "ptr", missing="none")),
                when="address",
            ),
            DetailSection(
                "Records",
                (
                    Field("Host", "host", "mono"),
                    Field("", "records", "groups", missing="No records."),
                ),
                when="host",
            ),
            DetailSection("Failed queries", (Field("", "failed", "list"),)),
        ),
    ),
    pivots=(
        PivotRule("records.A", "A record"),
        PivotRule("records.AAAA", "AAAA record"),
        PivotRule("records.CNAME", "CNAME"),
        PivotRule("records.MX", "MX record", take="last"),
        PivotRule("records.NS", "name server"),
        PivotRule("ptr", "PTR record"),
        PivotRule("host", "host looked up"),  # a URL's host, an e-mail's domain
    ),
)
