"""The answer to one DNS query, as :class:`~shared.lookups.dns.client.DnsClient` gives it
(and its wire codec :mod:`shared.lookups.dns.wire` builds it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["BADNAME", "ERROR", "NOERROR", "NXDOMAIN", "REFUSED", "SERVFAIL", "TIMEOUT", "DnsAnswer"]

NOERROR: Final = "NOERROR"
NXDOMAIN: Final = "NXDOMAIN"
SERVFAIL: Final = "SERVFAIL"
REFUSED: Final = "REFUSED"
TIMEOUT: Final = "TIMEOUT"
"""No server answered within the client's timeout (not a DNS rcode)."""
ERROR: Final = "ERROR"
"""A network error, or the client closed while the query was in flight (not a DNS rcode)."""
BADNAME: Final = "BADNAME"
"""The name or the type cannot be asked at all (a label over 63 bytes, an unknown type…)."""


@dataclass(slots=True)  # not frozen: a frozen dataclass takes three times as long to build
class DnsAnswer:
    """One answer. ``rcode`` is the DNS response code as text (``NOERROR``, ``NXDOMAIN``,
    ``SERVFAIL``, ``REFUSED``…) or what happened instead (``TIMEOUT``, ``ERROR``,
    ``BADNAME``). ``records`` are text, one string per record, of the requested type only:
    TXT strings of a record joined into one, MX ``"pref host"``, names without the final
    dot, SOA as its zone-file text. ``ttl`` is the smallest TTL along the answer (the
    negative-caching TTL for a negative answer with an SOA), None when unknown. Shared
    between callers (and cached): never modify one.

    What a caller usually needs to tell apart: records (``records``), :attr:`nodata`,
    :attr:`nxdomain`, :attr:`failed` (the servers said SERVFAIL, REFUSED…, or could not be
    reached) and :attr:`timed_out`."""

    rcode: str
    records: list[str] = field(default_factory=list)
    ttl: float | None = None

    @property
    def answered(self) -> bool:
        """The server gave a definite answer (records, NODATA or NXDOMAIN)."""
        return self.rcode in ("NOERROR", "NXDOMAIN")

    @property
    def void(self) -> bool:
        """NXDOMAIN, or NOERROR without records (an empty answer)."""
        return self.rcode == "NXDOMAIN" or (self.rcode == "NOERROR" and not self.records)

    @property
    def nxdomain(self) -> bool:
        """The name does not exist."""
        return self.rcode == "NXDOMAIN"

    @property
    def nodata(self) -> bool:
        """The name exists, without records of the asked type."""
        return self.rcode == "NOERROR" and not self.records

    @property
    def timed_out(self) -> bool:
        """No server answered in time."""
        return self.rcode == "TIMEOUT"

    @property
    def failed(self) -> bool:
        """No usable answer and not a timeout: SERVFAIL, REFUSED or another error rcode
        from every server asked, a network error, or a name that cannot be asked."""
        return not self.answered and self.rcode != "TIMEOUT"
