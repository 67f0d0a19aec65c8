"""What the ``dns`` provider declares: its kinds and how it is named. It reads the lookups'
``LOOKOUT_DNS_NAMESERVERS`` and ``LOOKOUT_DNS_TIMEOUT`` (:mod:`shared.lookups.config`)."""

from __future__ import annotations

from shared.lookups.catalog import ProviderSpec

SPEC = ProviderSpec(
    name="dns",
    label="DNS",
    kinds=frozenset({"domain", "url", "email", "ipv4", "ipv6"}),
    looks_up_private=True,  # PTR of internal addresses is useful
)
