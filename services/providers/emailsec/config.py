"""What the ``emailsec`` provider declares: its kinds and how it is named. It reads the
lookups' ``LOOKOUT_DNS_NAMESERVERS`` and ``LOOKOUT_DNS_TIMEOUT`` (:mod:`shared.lookups.config`)."""

from __future__ import annotations

from shared.lookups.catalog import ProviderSpec

SPEC = ProviderSpec(name="emailsec", label="SPF/DMARC", kinds=frozenset({"domain", "email"}))
