"""``JobView``: a job's results as they arrive; ``complete`` once every provider asked has a
final result for every indicator, counted as results come (an event stream asks it after
each result, so it must not walk the whole job each time)."""

from __future__ import annotations

import msgspec

from shared.lookups.jobs import JobView
from shared.lookups.schemas import Job, JobIndicator, LookupResult, Pivot, Status


def job(domains: int) -> Job:
    return Job(
        id="j1",
        created_at="2026-12-07T00:00:00Z",
        indicators=[
            *(JobIndicator(f"d{i}.example.com", "domain") for i in range(domains)),
            JobIndicator("192.0.2.1", "ipv4"),
        ],
        providers={"domain": ["dns", "whois"], "ipv4": ["dns"]},
    )


def result(value: str, kind: str, provider: str, status: Status) -> LookupResult:
    return LookupResult(job_id="j1", indicator=value, kind=kind, provider=provider, status=status)


def test_complete_once_every_cell_asked_is_final() -> None:
    view = JobView(job(2))
    cells = [(f"d{i}.example.com", "domain", p) for i in range(2) for p in ("dns", "whois")]
    cells.append(("192.0.2.1", "ipv4", "dns"))
    assert not view.complete
    # a provider not asked for the kind, an indicator not in the job: they do not count
    assert view.add(result("192.0.2.1", "ipv4", "whois", "done"))
    assert not view.add(result("other.example.com", "domain", "dns", "done"))
    for value, kind, provider in cells[:-1]:
        assert view.add(result(value, kind, provider, "queued"))
        assert view.add(result(value, kind, provider, "done"))
        assert not view.complete
    value, kind, provider = cells[-1]
    view.add(result(value, kind, provider, "error"))
    assert view.complete
    # the same final cell again: still complete; a cell back to pending: not any more
    view.add(result(value, kind, provider, "done"))
    assert view.complete
    view.add(result(value, kind, provider, "pending"))
    assert not view.complete
    view.add(result(value, kind, provider, "quota_exhausted"))
    assert view.complete
    assert view.as_json()["complete"] is True


def test_a_job_without_cells_is_complete() -> None:
    assert JobView(Job(id="j", created_at="t", indicators=[], providers={})).complete


def test_the_answer_encodes_as_the_json_view() -> None:
    """``answer()`` keeps the results as structs for the gateway's msgspec encoder: the
    bytes it gives decode to exactly ``as_json()`` (pending cells, data, pivots and all)."""
    view = JobView(job(2))
    view.add(result("d0.example.com", "domain", "dns", "done"))
    view.add(
        LookupResult(
            job_id="j1",
            indicator="d1.example.com",
            kind="domain",
            provider="whois",
            status="done",
            verdict="harmless",
            summary="registered 1997",
            data={"registrar": "Example Registrar", "dates": [1, 2.5, None], "ok": True},
            pivots=[Pivot(value="ns1.example.net", kind="domain", why="name server")],
            updated_at="2026-12-07T00:00:01.000Z",
        )
    )
    shown = view.as_json()
    assert [r["status"] for r in shown["results"]] == [
        "done",
        "pending",
        "pending",
        "done",
        "pending",
    ]
    assert msgspec.json.decode(msgspec.json.encode(view.answer())) == shown
