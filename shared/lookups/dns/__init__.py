"""The one DNS client of the lookups, for every provider that asks DNS.

``await client.query(name, "TXT")`` gives a :class:`DnsAnswer`: its ``rcode``, ``records``
(text) and ``ttl``, and whether it is NXDOMAIN, NODATA, a failure (SERVFAIL, REFUSED…) or a
timeout. One :class:`Upstream` per provider process holds the servers
(``LOOKOUT_DNS_NAMESERVERS``, else the system's) and the client, whose failover, timeout
(``LOOKOUT_DNS_TIMEOUT``, per query) and cache are described in
:mod:`shared.lookups.dns.client`.

Modules: ``client`` (the transport: UDP sockets, failover, cache), ``wire`` (its codec),
``fallback`` (dnspython: what the codec does not read, TCP), ``answer`` (:class:`DnsAnswer`),
``pending`` (queries started now, read later), ``servers`` (which servers, :class:`Upstream`).
"""

from __future__ import annotations

from shared.lookups.dns.answer import DnsAnswer
from shared.lookups.dns.client import MAX_TRIES, ClientStats, DnsClient
from shared.lookups.dns.pending import (
    Pending,
    Resolver,
    Submitter,
    answer,
    answers,
    cancel,
    start_query,
)
from shared.lookups.dns.servers import (
    NO_SERVER,
    Upstream,
    nameservers,
    reverse_name,
    system_nameservers,
)

__all__ = [
    "MAX_TRIES",
    "NO_SERVER",
    "ClientStats",
    "DnsAnswer",
    "DnsClient",
    "Pending",
    "Resolver",
    "Submitter",
    "Upstream",
    "answer",
    "answers",
    "cancel",
    "nameservers",
    "reverse_name",
    "start_query",
    "system_nameservers",
]
