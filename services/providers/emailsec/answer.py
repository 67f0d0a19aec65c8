"""The answer type shared by :mod:`.dnsclient` and its wire codec :mod:`.wire`."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DnsAnswer"]


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One answer. ``records`` are text, one string per record, of the requested type only:
    TXT strings of a record joined into one, MX ``"pref host"``, names without the final dot.
    ``ttl`` is the smallest TTL along the answer (the negative-caching TTL for a negative
    answer with an SOA), None when unknown. Shared between callers: do not modify."""

    rcode: str
    records: list[str] = field(default_factory=list)
    ttl: float | None = None

    @property
    def answered(self) -> bool:
        """The server gave a definite answer (records, NODATA or NXDOMAIN)."""
        return self.rcode in ("NOERROR", "NXDOMAIN")

    @property
    def void(self) -> bool:
        """NXDOMAIN, or NOERROR without records (an SPF "void lookup")."""
        return self.rcode == "NXDOMAIN" or (self.rcode == "NOERROR" and not self.records)
