"""The indicator history's rules (shared/lookups/history.py) without a bus: what a result
changes, when a job is judged, what goes out as an alert, and that every list is bounded."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from shared.lookups import history, watches
from shared.lookups.history import Closing, Entry
from shared.lookups.schemas import Job, JobIndicator, LookupResult
from shared.relay import templates
from shared.relay.schemas import Notification

NOW = 1_700_000_000.0


def job(job_id: str, providers: list[str], *, watch: str | None = None) -> Job:
    return Job(
        id=job_id,
        created_at=f"2026-01-01T00:00:{job_id[-2:]}.000Z",
        indicators=[JobIndicator("example.com", "domain")],
        providers={"domain": providers},
        scheduled=watch is not None,
        watch=watch,
        count=1,
        sample=["example.com"],
    )


def result(
    job_id: str, provider: str, verdict: str, summary: str = "", **more: Any
) -> LookupResult:
    fields: dict[str, Any] = {
        "job_id": job_id,
        "indicator": "example.com",
        "kind": "domain",
        "provider": provider,
        "status": "done",
        "verdict": verdict,
        "summary": summary,
        "updated_at": f"2026-01-01T00:01:{job_id[-2:]}.{len(provider):03d}Z",
        **more,
    }
    return LookupResult(**fields)


class Rule:
    """Tells every change to the watch ``w``, and remembers what it was asked."""

    def __init__(self, notify_on: str = "any_change") -> None:
        self.asked: list[Closing] = []
        self.notify_on = notify_on

    def __call__(self, entry: Entry, closing: Closing) -> list[str]:
        self.asked.append(closing)
        return ["w"] if self.notify_on == "any_change" or closing.worse else []


def run(
    entry: Entry | None, job_: Job, results: list[LookupResult], rule: Rule, now: float = NOW
) -> Entry:
    for each in results:
        changed = history.apply(entry, each, job_, now, rule)
        entry = changed if changed is not None else entry
    assert entry is not None
    return entry


def test_a_job_is_judged_once_every_provider_answered_and_a_change_goes_out() -> None:
    rule = Rule()
    first = job("j01", ["dns", "virustotal"])
    entry = run(None, first, [result("j01", "dns", "unknown")], rule)
    assert [o.job_id for o in entry.open] == ["j01"]  # virustotal has not answered
    assert entry.verdicts == []
    entry = run(entry, first, [result("j01", "virustotal", "harmless", "0/85 engines")], rule)
    assert entry.open == []
    assert [v.verdict for v in entry.verdicts] == ["harmless"]
    assert entry.outbox == []  # the first verdict is no change
    assert rule.asked == []
    second = job("j02", ["dns", "virustotal"], watch="w")
    entry = run(
        entry,
        second,
        [result("j02", "virustotal", "malicious", "7/85 engines"), result("j02", "dns", "unknown")],
        rule,
    )
    assert [v.verdict for v in entry.verdicts] == ["harmless", "malicious"]
    [alert] = entry.outbox
    assert alert.id == f"verdict-{history.key_of('domain', 'example.com')}-j02"
    assert (alert.old_verdict, alert.new_verdict) == ("harmless", "malicious")
    assert [(c.provider, c.old_summary, c.new_summary) for c in alert.changes] == [
        ("virustotal", "0/85 engines", "7/85 engines")
    ]
    assert alert.watches == ["w"]
    assert alert.scheduled is True
    assert [j.id for j in entry.jobs] == ["j02", "j01"]
    # sent: out of the outbox
    cleared = history.sent(entry, {alert.id})
    assert cleared is not None
    assert cleared.outbox == []
    assert history.sent(cleared, {alert.id}) is None


def test_a_redelivered_result_changes_nothing_and_an_older_one_never_wins() -> None:
    rule = Rule()
    first = job("j01", ["virustotal"])
    done = result("j01", "virustotal", "harmless")
    entry = run(None, first, [done], rule)
    assert history.apply(entry, done, first, NOW, rule) is None
    assert (
        history.apply(entry, result("j01", "virustotal", "x", status="queued"), first, NOW, rule)
        is None
    )
    newer = job("j03", ["virustotal"])
    entry = run(entry, newer, [result("j03", "virustotal", "suspicious")], rule)
    late = run(entry, job("j02", ["virustotal"]), [result("j02", "virustotal", "malicious")], rule)
    assert late.providers["virustotal"].latest.job_id == "j03"
    assert history.overall(late)[0] == "suspicious"
    assert {j.id for j in late.jobs} == {"j01", "j02", "j03"}


def test_an_error_does_not_erase_a_finding() -> None:
    rule = Rule()
    entry = run(
        None, job("j01", ["virustotal"]), [result("j01", "virustotal", "malicious", "9/80")], rule
    )
    failed = result("j02", "virustotal", "error", status="error", error="HTTP 503")
    entry = run(entry, job("j02", ["virustotal"]), [failed], rule)
    state = entry.providers["virustotal"]
    assert state.latest.status == "error"
    assert state.finding is not None
    assert state.finding.verdict == "malicious"
    assert history.overall(entry) == ("malicious", ["VirusTotal: 9/80"])
    assert entry.outbox == []
    assert rule.asked == []


def test_the_first_finding_after_lookups_that_only_failed_is_the_first_verdict() -> None:
    """Watched while its provider failed: ``error``, then, the upstream back, a real
    verdict. Nothing was known before it, so it is no change (the first verdict of an
    indicator is none); a change after it is told as usual."""
    rule = Rule()
    failed = result("j01", "virustotal", "error", status="error", error="HTTP 503")
    entry = run(None, job("j01", ["virustotal"], watch="w"), [failed], rule)
    assert [v.verdict for v in entry.verdicts] == ["error"]
    entry = run(
        entry,
        job("j02", ["virustotal"], watch="w"),
        [result("j02", "virustotal", "harmless")],
        rule,
    )
    assert [v.verdict for v in entry.verdicts] == ["error", "harmless"]
    assert entry.outbox == []
    entry = run(
        entry,
        job("j03", ["virustotal"], watch="w"),
        [result("j03", "virustotal", "malicious")],
        rule,
    )
    [alert] = entry.outbox
    assert (alert.old_verdict, alert.new_verdict) == ("harmless", "malicious")


def test_worse_and_any_change() -> None:
    for old, new, worse in [
        ("harmless", "malicious", True),
        ("harmless", "suspicious", True),
        ("suspicious", "malicious", True),
        ("malicious", "harmless", False),
        ("malicious", "suspicious", False),
        ("undetected", "harmless", False),
    ]:
        rule = Rule("worse")
        entry = run(None, job("j01", ["virustotal"]), [result("j01", "virustotal", old)], rule)
        entry = run(entry, job("j02", ["virustotal"]), [result("j02", "virustotal", new)], rule)
        [closing] = rule.asked
        assert closing.overall_changed
        assert closing.worse is worse, (old, new)
        assert bool(entry.outbox) is worse, (old, new)


def test_a_provider_change_without_an_overall_one_is_told_to_any_change_only() -> None:
    for notify_on, told in (("any_change", True), ("worse", False)):
        rule = Rule(notify_on)
        both = ["virustotal", "abuseipdb"]
        entry = run(
            None,
            job("j01", both),
            [result("j01", "virustotal", "malicious"), result("j01", "abuseipdb", "harmless")],
            rule,
        )
        entry = run(
            entry,
            job("j02", both),
            [result("j02", "virustotal", "malicious"), result("j02", "abuseipdb", "malicious")],
            rule,
        )
        assert bool(entry.outbox) is told
        if told:
            [alert] = entry.outbox
            assert alert.old_verdict == alert.new_verdict == "malicious"
            assert [c.provider for c in alert.changes] == ["abuseipdb"]


def test_a_flip_and_back_within_a_job_is_no_change() -> None:
    rule = Rule()
    entry = run(None, job("j01", ["virustotal"]), [result("j01", "virustotal", "harmless")], rule)
    second = job("j02", ["virustotal", "dns"])
    entry = run(entry, second, [result("j02", "virustotal", "malicious")], rule)
    # the provider answered twice in the job (a redelivered request asked again)
    again = msgspec.structs.replace(
        result("j02", "virustotal", "harmless"), updated_at="2026-01-01T00:01:02.999Z"
    )
    entry = run(entry, second, [again, result("j02", "dns", "unknown")], rule)
    assert entry.outbox == []
    assert [v.verdict for v in entry.verdicts] == ["harmless"]


def test_a_job_waiting_for_a_provider_that_never_answers_is_judged_later() -> None:
    rule = Rule()
    entry = run(None, job("j01", ["virustotal"]), [result("j01", "virustotal", "harmless")], rule)
    stuck = job("j02", ["virustotal", "ghost"])
    entry = run(entry, stuck, [result("j02", "virustotal", "malicious")], rule)
    assert [o.job_id for o in entry.open] == ["j02"]
    assert entry.outbox == []
    # a day later, the next result of the indicator judges it without the missing one
    later = run(
        entry,
        job("j03", ["dns"]),
        [result("j03", "dns", "unknown")],
        rule,
        now=NOW + history.OPEN_MAX_AGE + 1,
    )
    assert [a.job_id for a in later.outbox] == ["j02"]
    # newer jobs crowding it out judge it too
    crowded = entry
    for n in range(history.KEPT_OPEN + 1):
        crowded = run(
            crowded,
            job(f"j{10 + n}", ["dns", "ghost"]),
            [result(f"j{10 + n}", "dns", "unknown")],
            rule,
        )
    assert "j02" not in {o.job_id for o in crowded.open}
    assert len(crowded.open) <= history.KEPT_OPEN
    assert [a.job_id for a in crowded.outbox] == ["j02"]


def test_every_list_is_bounded_and_large_data_left_out() -> None:
    rule = Rule()
    entry: Entry | None = None
    for n in range(history.KEPT_JOBS + 30):
        job_id = f"j{n:04d}"
        verdict = "malicious" if n % 2 else "harmless"
        entry = run(
            entry, job(job_id, ["virustotal"]), [result(job_id, "virustotal", verdict)], rule
        )
    assert entry is not None
    assert len(entry.jobs) == history.KEPT_JOBS
    assert entry.jobs[0].id == f"j{history.KEPT_JOBS + 29:04d}"  # newest first
    assert len(entry.verdicts) == history.KEPT_VERDICTS
    assert len(entry.outbox) == history.KEPT_OUTBOX
    big = result("j9999", "virustotal", "harmless", data={"blob": "x" * (history.DATA_BYTES + 1)})
    entry = run(entry, job("j9999", ["virustotal"]), [big], rule)
    assert entry.providers["virustotal"].latest.data == {}
    assert entry.providers["virustotal"].latest.data_left_out
    assert len(msgspec.json.encode(entry)) < 200_000


def test_the_history_as_the_api_shows_it() -> None:
    rule = Rule()
    entry = run(
        None,
        job("j01", ["dns", "virustotal"]),
        [result("j01", "dns", "unknown", "A"), result("j01", "virustotal", "harmless", "0/85")],
        rule,
    )
    shown = history.as_json(entry)
    assert [p["provider"] for p in shown["providers"]] == ["dns", "virustotal"]
    assert shown["verdict"] == "harmless"
    assert shown["verdict_reasons"] == ["VirusTotal: 0/85"]
    assert shown["jobs"][0]["links"] == {"self": "/api/v1/lookups/j01"}
    assert shown["verdict_history"][0]["verdict"] == "harmless"


def test_since_and_durations() -> None:
    assert history.parse_since("2026-01-02T03:04:05Z", NOW) == "2026-01-02T03:04:05.000Z"
    assert history.parse_since("2026-01-02T05:04:05+02:00", NOW) == "2026-01-02T03:04:05.000Z"
    assert history.parse_since("1h", NOW) == "2023-11-14T21:13:20.000Z"
    # an age from before year 1: every job is younger (not Python's "year out of range")
    assert history.parse_since("99999999d", NOW) == "0001-01-01T00:00:00.000Z"
    for bad in ("yesterday", "2026-01-02T03:04:05", ""):
        with pytest.raises(ValueError, match="since"):
            history.parse_since(bad, NOW)
    assert watches.parse_duration("6h") == 21600
    assert watches.parse_duration(" 90 ") == 90
    assert watches.parse_duration("1.5d") == 129600
    assert watches.format_duration(21600) == "6h"
    assert watches.format_duration(90) == "90s"
    assert watches.format_duration(7 * 86400) == "1w"
    for bad in ("6 hours", "-1h", "h", "1e3"):
        with pytest.raises(ValueError, match="not a duration"):
            watches.parse_duration(bad)


def test_the_default_verdict_changed_texts() -> None:
    data = {
        "indicator": "example.com",
        "kind": "domain",
        "old_verdict": "malicious",
        "new_verdict": "malicious",
        "verdict_reasons": ["VirusTotal: 9/85 engines", "AbuseIPDB: score 100"],
        "changes": [
            {
                "provider": "abuseipdb",
                "label": "AbuseIPDB",
                "old_verdict": "harmless",
                "new_verdict": "malicious",
                "old_summary": "",
                "new_summary": "score 100",
            }
        ],
        "job_id": "j",
        "watches": ["w"],
        "checked_at": "2026-01-01T00:00:00Z",
        "url": "https://lookout.example/indicator/example.com",
    }
    note = Notification(
        id="verdict-x-j",
        type="verdict_changed",
        source="lookout",
        timestamp="2026-01-01T00:00:00Z",
        data=msgspec.Raw(msgspec.json.encode(data)),
    )
    rendered = templates.render(note)
    assert rendered.title == "example.com is still malicious: AbuseIPDB harmless → score 100"
    assert "- AbuseIPDB: harmless → malicious (score 100)" in rendered.body
    assert "Why: VirusTotal: 9/85 engines; AbuseIPDB: score 100" in rendered.body
    assert "Details: https://lookout.example/indicator/example.com" in rendered.body
