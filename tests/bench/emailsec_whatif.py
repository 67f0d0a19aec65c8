"""What-if probes for ``emailsec_bench.py --whatif``: how much of lookout's time is DNS?
Nothing here is used by lookout; it only measures.

* :class:`RecordingClient` — lookout's own :class:`DnsClient`, keeping every answer it gives.
* :class:`ReplayResolver` — those answers returned from a dict by ``submit()`` at once,
  without any I/O or waiting: the cost of ``evaluate()`` itself (SPF/DMARC logic, result
  building), i.e. the ceiling for any transport.
* :func:`codec_costs` — per-message micro-benchmark, on real NSD answers, of building the
  query and reading the answer with dnspython (``make_query().to_wire()`` +
  ``from_wire()``, as DnsClient did before it had its own codec) and with lookout's codec
  (:mod:`shared.lookups.dns.wire`).
"""

from __future__ import annotations

import timeit
from typing import Any

import dns.message
import dns.name
import dns.rdatatype

import shared.lookups.dns.wire as wire
from shared.lookups.dns import DnsAnswer, DnsClient, Pending
from shared.lookups.dns.fallback import to_answer as _to_answer


class RecordingClient(DnsClient):
    """lookout's DnsClient that keeps every answer it gives, for :class:`ReplayResolver`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: dict[tuple[str, str], DnsAnswer] = {}

    def submit(self, name: str, rdtype: str, fresh: bool = False) -> Pending:
        key = (name.rstrip(".").lower(), rdtype.upper())
        pending = super().submit(name, rdtype, fresh)
        if isinstance(pending, DnsAnswer):
            self.recorded[key] = pending
        else:
            pending.add_done_callback(
                lambda future: (
                    self.recorded.__setitem__(key, future.result())
                    if not future.cancelled()
                    else None
                )
            )
        return pending


class ReplayResolver(DnsClient):
    """Answers from memory, at once, no I/O: what ``evaluate()`` costs on its own."""

    def __init__(self, recorded: dict[tuple[str, str], DnsAnswer]) -> None:
        super().__init__([("127.0.0.1", 53)])
        self.recorded = recorded

    def submit(self, name: str, rdtype: str, fresh: bool = False) -> Pending:
        return self.recorded[(name.rstrip(".").lower(), rdtype.upper())]


def codec_costs(samples: list[tuple[str, str, bytes]], number: int = 300) -> dict[str, float]:
    """Mean µs per message over ``samples`` [(name, type, answer wire)]: build + parse, with
    dnspython (as DnsClient did) and with lookout's codec."""
    if not samples:
        return {}

    def dnspython() -> None:
        for name, rdtype, data in samples:
            qname = dns.name.from_text(name)
            rtype = dns.rdatatype.from_text(rdtype)
            dns.message.make_query(qname, rtype, use_edns=0, payload=1232, id=0).to_wire()
            _to_answer(dns.message.from_wire(data), qname, rtype)

    def small() -> None:
        for name, rdtype, data in samples:
            qtype = wire.FAST_TYPES[rdtype]
            qname_wire = wire.encode_name(name)
            assert qname_wire is not None
            wire.query_template(qname_wire, qtype, 1232)
            wire.decode(data, qname_wire + qtype.to_bytes(2, "big"))

    n = len(samples)
    slow = max(1, number // 10)
    return {
        "dnspython_us": timeit.timeit(dnspython, number=slow) / slow / n * 1e6,
        "small_us": timeit.timeit(small, number=number) / number / n * 1e6,
    }


__all__ = ["RecordingClient", "ReplayResolver", "codec_costs"]
