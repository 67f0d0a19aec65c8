"""SPF + DMARC evaluation throughput and agreement: lookout's ``emailsec`` vs checkdmarc.

    .venv/bin/python tests/bench/emailsec_bench.py [--domains 10000] [--rounds 3]
        [--baseline-sample K] [--profile]

Generates N synthetic domains (``emailsec_zones.py``: shared include chains of depth 2,
DMARC, MX, A, plus a few percent of edge cases), serves them with NSD on 127.0.0.1:53
(rate limiting off; needs root and a free port 53), then alternates rounds:

* A, baseline: checkdmarc ``check_spf`` + ``check_dmarc`` run sequentially, as checkdmarc's
  own CLI does, its module-level DNS cache cleared before each round;
* B, lookout: ``evaluate(domain, client)`` for every domain, 256 at a time, with ONE fresh
  ``DnsClient`` per round (its in-flight dedup and per-run cache of shared includes are part
  of the design being measured) and the evaluator's process-wide caches emptied
  (``clear_caches()``): nothing is carried between rounds.

For every domain both sides give three facts: the SPF DNS-lookup count, whether the SPF
record is valid, and the DMARC policy (``p``) when a valid record applies. The report gives
medians of domains/s, the ratio (goal: >= 20x), the agreement on those facts and the
disagreement categories with examples, memory and the machine; it is printed as a markdown
section for BENCHMARKS.md and written to tests/bench/results/emailsec.md (+ .json).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import emailsec_zones  # noqa: E402
from nsd import Nsd  # noqa: E402

from services.providers.emailsec import clear_caches, evaluate  # noqa: E402
from shared.lookups.dns import DnsClient  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NS_HOST = "127.0.0.1"
NS_PORT = 53

# ------------------------------------------------------------------------------------------
# Known disagreement categories: who is right per RFC 7208 / RFC 7489.
# kind: "lookout_wrong" | "checkdmarc_wrong" | "convention" (both defensible)
# ------------------------------------------------------------------------------------------
VERDICTS: dict[tuple[str, str], tuple[str, str]] = {
    ("too_many_lookups", "lookups"): (
        "convention",
        "both permerror. Once its running total passes 10, checkdmarc adds only 1 for each "
        "further include, without the included record's own terms; lookout counts every "
        "lookup term of the tree. RFC 7208 §4.6.4 only requires permerror past 10 terms; "
        "the number reported past the limit is a convention (lookout's is the full cost).",
    ),
    ("too_many_nested", "lookups"): (
        "checkdmarc_wrong",
        "both permerror, but checkdmarc drops the whole count of an included record that is "
        "itself over the limit (the nested parser raises before returning its total), so it "
        "reports 2 for mx + include of an 11-lookup record; RFC 7208 §4.6.4 counts the terms "
        "of included records too: lookout's 13 is the real count.",
    ),
    ("terms_after_all", "lookups"): (
        "lookout_wrong",
        "lookout counts (and resolves) mechanisms written after 'all'. RFC 7208 §5.1: "
        "'Mechanisms after \"all\" will never be tested', and §4.6.4 limits the terms used "
        "'during SPF evaluation': checkdmarc's count is right.",
    ),
    ("terms_after_all_big", "lookups"): (
        "lookout_wrong",
        "same cause: lookout adds the includes after '-all' to the count.",
    ),
    ("terms_after_all_big", "valid"): (
        "lookout_wrong",
        "lookout bug: never-evaluated includes after '-all' push its count past 10, so it "
        "reports permerror for a record whose evaluation needs only a few lookups "
        "(RFC 7208 §5.1, §4.6.4): checkdmarc's 'valid' is right.",
    ),
    ("dmarc_unrelated_txt", "policy"): (
        "checkdmarc_wrong",
        "checkdmarc (default ignore_unrelated_records=False) fails the whole DMARC check "
        "when another TXT record sits at _dmarc. RFC 7489 §6.6.3 step 3: records that do "
        "not start with v=DMARC1 are discarded, so the DMARC record applies: lookout right.",
    ),
    ("dmarc_invalid_p", "policy"): (
        "checkdmarc_wrong",
        "record with an invalid p= value (p=block) and a valid rua=. RFC 7489 §6.6.3 step 6: "
        "without a valid p tag, a receiver SHOULD act as if p=none was published when rua= "
        "has a valid URI (RFC 9989 makes it MUST): lookout's p=none is right; checkdmarc "
        "rejects the whole record and gives no policy.",
    ),
    ("dmarc_no_p_rua", "policy"): (
        "lookout_wrong",
        "record without p= but with a valid rua=. RFC 7489 §6.6.3 step 6: the receiver "
        "SHOULD act as if p=none was published (RFC 9989 makes it MUST): checkdmarc's "
        "p=none is right; lookout reports permerror and no policy.",
    ),
}

KIND_TEXT = {
    "lookout_wrong": "checkdmarc (lookout wrong)",
    "checkdmarc_wrong": "lookout (checkdmarc wrong)",
    "convention": "both (convention)",
    "unexplained": "**unexplained**",
}


@dataclass(slots=True)
class Facts:
    lookups: int | None
    valid: bool
    policy: str | None
    spf_detail: str
    dmarc_detail: str

    def key(self) -> tuple[Any, ...]:
        return (self.lookups, self.valid, self.policy)


# ------------------------------------------------------------------------------------------
# NSD
# ------------------------------------------------------------------------------------------


def port_53_free() -> str | None:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind((NS_HOST, NS_PORT))
        except OSError as exc:
            return f"{NS_HOST}:{NS_PORT}/{'udp' if kind == socket.SOCK_DGRAM else 'tcp'}: {exc}"
        finally:
            sock.close()
    return None


def _status_kb(pid: int | str, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Peak VmRSS of this process per phase, and its peak growth over the RSS at the start of
    each round of that phase (sampled every 50 ms)."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.start = 0
        self.peaks: dict[str, int] = collections.defaultdict(int)
        self.growth: dict[str, int] = collections.defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, phase: str) -> None:
        rss = _status_kb("self", "VmRSS")
        self.peaks[phase] = max(self.peaks[phase], rss)
        self.growth[phase] = max(self.growth[phase], rss - self.start)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            phase = self.phase
            if phase is not None:
                self._sample(phase)

    def set(self, phase: str | None) -> None:
        if self.phase is not None:
            self._sample(self.phase)
        self.start = _status_kb("self", "VmRSS")
        self.phase = phase

    def stop(self) -> None:
        self.set(None)
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------------------
# The two evaluators
# ------------------------------------------------------------------------------------------


def baseline_one(domain: str, timeout: float) -> Facts:
    from checkdmarc.dmarc import check_dmarc
    from checkdmarc.spf import check_spf

    try:
        spf = check_spf(domain, nameservers=[NS_HOST], timeout=timeout)
    except Exception as exc:
        spf = {"valid": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        dmarc: Any = check_dmarc(domain, nameservers=[NS_HOST], timeout=timeout)
    except Exception as exc:
        dmarc = {"valid": False, "error": f"{type(exc).__name__}: {exc}"}
    policy = dmarc["tags"]["p"]["value"] if dmarc.get("valid") else None
    lookups = spf.get("dns_lookups")
    spf_detail = "ok" if spf.get("valid") else f"error: {str(spf.get('error'))[:140]}"
    if dmarc.get("valid"):
        dmarc_detail = f"ok p={policy} at {dmarc.get('location')}"
    else:
        error = str(dmarc.get("error"))
        kind = "absent" if "does not exist" in error else "invalid"
        dmarc_detail = f"{kind}: {error.splitlines()[0][:140]}"
    return Facts(lookups, bool(spf.get("valid")), policy, spf_detail, dmarc_detail)


def baseline_round(domains: list[str], timeout: float) -> tuple[float, dict[str, Facts]]:
    import checkdmarc.utils

    checkdmarc.utils.DNS_CACHE.clear()
    out: dict[str, Facts] = {}
    start = time.perf_counter()
    for domain in domains:
        out[domain] = baseline_one(domain, timeout)
    return time.perf_counter() - start, out


def lookout_facts(data: dict[str, Any]) -> Facts:
    spf, dmarc = data["spf"], data["dmarc"]
    policy = dmarc["policy"] if dmarc["status"] == "ok" else None
    spf_detail = (
        spf["status"]
        if spf["valid"]
        else f"{spf['status']}: "
        + "; ".join((spf["errors"] or spf["temperrors"] or ["-"])[:2])[:140]
    )
    dmarc_detail = (
        f"ok p={dmarc['policy']} at {dmarc['found_at']}"
        if dmarc["status"] == "ok"
        else f"{dmarc['status']}: {'; '.join(dmarc['errors'][:1])[:140]}"
    )
    return Facts(spf["dns_lookups"], bool(spf["valid"]), policy, spf_detail, dmarc_detail)


def settle() -> None:
    """Before a timed round: collect, then freeze what exists (the harness' own data, earlier
    rounds' results) so neither side's garbage collections traverse it."""
    gc.collect()
    gc.freeze()


def lookout_round(
    domains: list[str], timeout: float, concurrency: int, use_uvloop: bool
) -> tuple[float, dict[str, Facts], dict[str, int]]:
    """One timed round: a fresh DnsClient, ``concurrency`` evaluations at a time."""
    elapsed, facts, client = run_with(
        lambda: DnsClient([(NS_HOST, NS_PORT)], timeout=timeout), domains, concurrency, use_uvloop
    )
    stats = {
        name: getattr(client.stats, name)
        for name in ("queries", "cache_hits", "shared", "sent", "retransmits", "tcp", "timeouts")
    }
    return elapsed, facts, stats


# ------------------------------------------------------------------------------------------
# Comparison and report
# ------------------------------------------------------------------------------------------


def compare(
    base: dict[str, Facts], look: dict[str, Facts], category: dict[str, str]
) -> dict[str, Any]:
    n = len(base)
    same = {"lookups": 0, "valid": 0, "policy": 0}
    lookups_compared = 0
    all_same = 0
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = collections.defaultdict(list)
    wrong_side: dict[str, int] = collections.Counter()
    for domain, b in base.items():
        lk = look[domain]
        diff: list[str] = []
        if b.lookups is not None:
            lookups_compared += 1
            if b.lookups == lk.lookups:
                same["lookups"] += 1
            else:
                diff.append("lookups")
        if b.valid == lk.valid:
            same["valid"] += 1
        else:
            diff.append("valid")
        if b.policy == lk.policy:
            same["policy"] += 1
        else:
            diff.append("policy")
        if not diff:
            all_same += 1
            continue
        cat = category[domain]
        groups[(cat, tuple(diff))].append(domain)
        kinds = {VERDICTS.get((cat, f), ("unexplained", ""))[0] for f in diff}
        if "unexplained" in kinds:
            wrong_side["unexplained"] += 1
        elif kinds & {"lookout_wrong", "checkdmarc_wrong"}:
            wrong_side["one_side_wrong"] += 1
        else:
            wrong_side["convention"] += 1
    both_right = n - wrong_side["one_side_wrong"]
    return {
        "domains": n,
        "all_same": all_same,
        "same": same,
        "lookups_compared": lookups_compared,
        "groups": groups,
        "wrong_side": dict(wrong_side),
        "both_right_domains": both_right,
        "agree_where_both_right": all_same / both_right if both_right else 1.0,
        "agree_where_both_right_lenient": (all_same + wrong_side["convention"]) / both_right
        if both_right
        else 1.0,
    }


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def fmt_facts(f: Facts) -> str:
    lookups = "-" if f.lookups is None else str(f.lookups)
    return f"lookups {lookups}, valid {f.valid}, p {f.policy}"


def machine_info(use_uvloop: bool) -> dict[str, str]:
    import checkdmarc
    import dns.version

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "nsd": Nsd.version(),
        "checkdmarc": getattr(checkdmarc, "__version__", "?"),
        "dnspython": dns.version.version,
        "loop": "asyncio",
    }
    if use_uvloop:
        import uvloop

        info["loop"] = f"uvloop {uvloop.__version__}"
    return info


def render(report: dict[str, Any]) -> str:
    a = report["args"]
    m = report["machine"]
    cmp_ = report["comparison"]
    base_rates = report["baseline_rates"]
    look_rates = report["lookout_rates"]
    base_med = statistics.median(base_rates)
    look_med = statistics.median(look_rates)
    ratio = look_med / base_med
    cats = report["categories"]
    n_edge = sum(v for k, v in cats.items() if k != "typical")
    lines: list[str] = []
    add = lines.append
    add("## SPF and DMARC evaluation (issue 3)")
    add("")
    add(
        "`tests/bench/emailsec_bench.py` generates "
        f"{a['domains']:,} synthetic domains (seed {a['seed']}; `emailsec_zones.py`) in three "
        "NSD zones `com`, `org`, `net` (real public suffixes, so both tools find the "
        "organisational domain the same way), served by NSD on 127.0.0.1:53 with rate "
        "limiting off and "
        + (
            "`minimal-responses: no` (NS + glue in every answer). "
            if a["full_responses"]
            else "`minimal-responses: yes` (no NS/glue added to answers, as from the recursive "
            "resolvers lookout asks in production). "
        )
        + f"{cats.get('typical', 0):,} are typical: SPF with `a`, `mx`, `ip4`/`ip6` and one or "
        f"two includes of {emailsec_zones.PROVIDERS} shared providers (`_spf.providerK.com` "
        "→ `_spf2.providerK.com`, depth 2), DMARC (p=reject/quarantine/none, some pct, sp, "
        "same-domain or external rua), A/AAAA and MX, some MTA-STS/BIMI. "
        f"{n_edge:,} ({pct(n_edge / a['domains'])}) are edge cases in "
        f"{len(cats) - 1} categories (too many lookups, void lookups, multiple SPF records, "
        "syntax errors, missing includes, loops, +all, redirect=, terms after all, missing "
        "or invalid DMARC, subdomains relying on the organisational DMARC record, …)."
    )
    add("")
    sample = (
        f"a fixed random sample of {report['baseline_domains']:,} domains (same in every round)"
        if report["baseline_domains"] < a["domains"]
        else "every domain"
    )
    add(
        f"Rounds alternate A B, {a['rounds']} of each: **A** checkdmarc {m['checkdmarc']} "
        '`check_spf` + `check_dmarc` (`nameservers=["127.0.0.1"]`), sequential like its '
        f"CLI, over {sample}, its module DNS cache cleared before each round; **B** lookout "
        f"`evaluate(domain, client)` for all {a['domains']:,} domains, {a['concurrency']} "
        f"at a time, with one fresh `DnsClient` per round ({m['loop']}; its in-flight "
        "dedup and per-run cache of the shared includes are part of the design) and the "
        "evaluator's process-wide caches (SPF records analysed by text, organisational "
        "domains) emptied before it, so nothing is carried over between rounds. Timeout "
        f"{a['timeout']:g} s on both sides. Before every timed round: `gc.collect()` + "
        "`gc.freeze()`, so neither side's collections walk the harness' retained results."
    )
    add("")
    add(
        f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, {m['nsd']}, "
        f"checkdmarc {m['checkdmarc']}, dnspython {m['dnspython']}; NSD and the benchmark "
        "share the cores."
    )
    add("")
    add("| evaluator | domains/s (median) | per round | RSS growth in a round, MB |")
    add("|---|---|---|---|")
    rss = report["rss_mb"]
    add(
        f"| checkdmarc, sequential | {base_med:,.0f} | "
        + " / ".join(f"{r:,.0f}" for r in base_rates)
        + f" | {rss.get('baseline_growth', 0):.0f} |"
    )
    add(
        f"| lookout `evaluate`, {a['concurrency']} concurrent | {look_med:,.0f} | "
        + " / ".join(f"{r:,.0f}" for r in look_rates)
        + f" | {rss.get('lookout_growth', 0):.0f} |"
    )
    add("")
    goal = "met" if ratio >= 20 else "**not met**"
    add(f"**Ratio lookout / checkdmarc: {ratio:.1f}x** (goal ≥ 20x: {goal}).")
    add(
        "Memory: the last column is the largest growth of the benchmark process' RSS over its "
        "value at the start of a round (checkdmarc's module DNS cache; lookout's DnsClient "
        "cache, 256 evaluations in flight and the results). Peak RSS of the whole process "
        f"{rss['process_peak']:.0f} MB (it keeps every round's results; "
        f"{rss.get('baseline', 0):.0f} MB at most during checkdmarc rounds, "
        f"{rss.get('lookout', 0):.0f} MB during lookout rounds); NSD {rss['nsd']:.0f} MB."
    )
    stats = report["lookout_stats"][-1]
    per_domain = stats["queries"] / a["domains"]
    sent = stats["sent"] / a["domains"]
    add(
        f"lookout's client per round: {stats['queries']:,} queries asked "
        f"({per_domain:.1f}/domain), {stats['cache_hits']:,} cache hits, "
        f"{stats['shared']:,} shared in flight, {stats['sent']:,} datagrams sent "
        f"({sent:.1f}/domain), {stats['retransmits']} retransmits, {stats['timeouts']} "
        "timeouts."
    )
    if report.get("unstable"):
        add(f"Facts that changed between rounds: {report['unstable']}.")
    else:
        add("Every domain's facts were identical in every round, on both sides.")
    add("")
    add("### Agreement")
    add("")
    n = cmp_["domains"]
    add(
        f"Over the {n:,} domains checkdmarc ran on. The facts: SPF lookup count "
        "(`spf.dns_lookups` / checkdmarc `dns_lookups`), SPF valid (`spf.valid` / no "
        "error), DMARC policy (`dmarc.policy` when lookout's DMARC status is ok / checkdmarc "
        "`tags.p` when valid, else none). checkdmarc gives no lookup count when it stops on "
        "an error other than too many (void) lookups (syntax, multiple records, missing "
        f"include…): the count is compared on the {cmp_['lookups_compared']:,} domains where "
        "it gives one."
    )
    add("")
    add("| fact | identical |")
    add("|---|---|")
    add(f"| all three | {pct(cmp_['all_same'] / n)} ({cmp_['all_same']:,}/{n:,}) |")
    add(
        f"| SPF lookup count | {pct(cmp_['same']['lookups'] / max(1, cmp_['lookups_compared']))} "
        f"({cmp_['same']['lookups']:,}/{cmp_['lookups_compared']:,}) |"
    )
    add(f"| SPF valid | {pct(cmp_['same']['valid'] / n)} |")
    add(f"| DMARC policy | {pct(cmp_['same']['policy'] / n)} |")
    add(
        "| all three, where neither side is wrong per the RFCs (convention differences "
        f"counted as disagreements / as agreements) | {pct(cmp_['agree_where_both_right'])}"
        f" / {pct(cmp_['agree_where_both_right_lenient'])} |"
    )
    add("")
    if cmp_["groups"]:
        add("Disagreements, by edge-case category of the generator and the facts that differ:")
        add("")
        add("| category | differs | domains | checkdmarc | lookout | right per RFC | note |")
        add("|---|---|---|---|---|---|---|")
        base, look = report["base_facts"], report["look_facts"]
        records = report.get("example_records", {})
        notes: list[str] = []
        for (cat, fields), domains in sorted(cmp_["groups"].items(), key=lambda kv: -len(kv[1])):
            ex = domains[0]
            kinds = [VERDICTS.get((cat, f), ("unexplained", "")) for f in fields]
            right = " / ".join(dict.fromkeys(KIND_TEXT[k] for k, _ in kinds))
            text = " ".join(dict.fromkeys(t for _, t in kinds if t)) or "not analysed"
            examples = ", ".join(f"`{d}`" for d in domains[:2])
            shown = "; ".join(f"`{r}`" for r in records.get(ex, []))
            notes.append(f"{cat}: {text} Examples {examples}; {ex}: {shown}.")
            add(
                f"| {cat} | {', '.join(fields)} | {len(domains)} | {fmt_facts(base[ex])} | "
                f"{fmt_facts(look[ex])} | {right} | {len(notes)} |"
            )
        add("")
        for number, note in enumerate(notes, 1):
            add(f"{number}. {note}")
        add("")
    add("### Findings")
    add("")
    for finding in report.get("findings", []):
        add(f"- {finding}")
    wi = report.get("whatif")
    if wi:
        replay = statistics.median(wi["replay_rates"])
        add("")
        add(
            "What-if probe (`--whatif`, `tests/bench/emailsec_whatif.py`; lookout's code "
            "unchanged, same domains, same evaluator, same rounds count):"
        )
        add("")
        add("| variant | domains/s (median) | x checkdmarc | facts ≠ lookout |")
        add("|---|---|---|---|")
        add(f"| lookout as is | {look_med:,.0f} | {look_med / base_med:.1f} | - |")
        add(
            f"| no DNS at all (answers replayed from memory by `submit()`, at once): "
            f"`evaluate()` alone | {replay:,.0f} | {replay / base_med:.1f} | "
            f"{wi['replay_mismatch']} |"
        )
        codec = wi.get("codec") or {}
        if codec:
            add("")
            add(
                f"Build + parse of one query/answer, mean over {wi['codec_samples']} real NSD "
                f"answers: dnspython (`make_query().to_wire()` + `from_wire()`, as DnsClient "
                f"did) {codec['dnspython_us']:.0f} µs, lookout's codec (`wire.py`) "
                f"{codec['small_us']:.1f} µs."
            )
    if report.get("profile_summary"):
        add("")
        add(report["profile_summary"])
    return "\n".join(lines) + "\n"


def profile_lookout(
    label: str,
    make_client: Any,
    domains: list[str],
    concurrency: int,
    use_uvloop: bool,
    path: Path,
) -> tuple[dict[str, float], str]:
    profiler = cProfile.Profile()
    profiler.enable()
    elapsed, _, _ = run_with(make_client, domains, concurrency, use_uvloop)
    profiler.disable()
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(45)
    path.write_text(buf.getvalue())
    # Own time grouped by file and by component, for the report.
    metrics: dict[str, float] = {}
    by_file: dict[str, float] = collections.defaultdict(float)
    by_part: dict[str, float] = collections.defaultdict(float)
    total = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tt
        key = filename
        for marker in ("site-packages/", "lib/python3.11/", f"{ROOT}/"):
            if marker in filename:
                key = filename.split(marker, 1)[1]
                break
        if key == "~":
            key = "built-ins: " + func.split(" of ")[0][:40]
        by_file[key] += tt
        if key.startswith(("dns/", "enum.py", "contextlib.py")):
            part = "dnspython (message build/parse, names, rdata; + stdlib enum/contextlib)"
        elif key.startswith("shared/lookups/dns/"):
            part = "lookout DnsClient (own code)"
        elif key.startswith(("services/providers/emailsec/", "ipaddress.py", "re/")) or (
            key.startswith("built-ins: <method") and "re.Pattern" in func
        ):
            part = "lookout SPF/DMARC evaluation (own code + the re/ipaddress it calls)"
        elif key.startswith(("asyncio/", "uvloop/", "_weakrefset.py")) or "uvloop" in key:
            part = "asyncio / uvloop (tasks, futures, locks, the task registry)"
        elif key.startswith("publicsuffixlist"):
            part = "publicsuffixlist"
        elif key.startswith("tests/bench/"):
            part = "benchmark harness + what-if code (tests/bench)"
        else:
            part = "other (built-ins, dataclasses…)"
        by_part[part] += tt
        if func == "_ensure_future" and key.startswith("asyncio/tasks"):
            metrics["tasks_per_domain"] = _nc / len(domains)
        if func == "parse_record" and key.endswith("emailsec/spfrecord.py"):
            metrics["spf_parses_per_domain"] = _nc / len(domains)
    top = sorted(by_file.items(), key=lambda kv: -kv[1])[:12]
    rows = "\n".join(f"| `{name}` | {tt:.2f} | {100 * tt / total:.1f} % |" for name, tt in top)
    parts = "\n".join(
        f"| {name} | {tt:.2f} | {100 * tt / total:.1f} % |"
        for name, tt in sorted(by_part.items(), key=lambda kv: -kv[1])
    )
    for name, tt in by_part.items():
        metrics["share:" + name.split(" (")[0]] = tt / total
    metrics["elapsed"] = elapsed
    return metrics, (
        f"Profile of one round of {label} under cProfile ({len(domains):,} domains, "
        f"{elapsed:.1f} s with the profiler's overhead; full listing in "
        f"`tests/bench/results/{path.name}`), own time by component:\n\n"
        "| component | own s | share |\n|---|---|---|\n" + parts + "\n\nand by file:\n\n"
        "| file | own s | share |\n|---|---|---|\n" + rows
    )


def run_with(
    make_client: Any, domains: list[str], concurrency: int, use_uvloop: bool
) -> tuple[float, dict[str, Facts], Any]:
    """One round of ``evaluate()`` over ``domains`` with a client from ``make_client()``.
    Nothing is carried over from an earlier round: a fresh client, and the evaluator's
    process-wide caches (analysed SPF records, organisational domains) emptied."""

    async def go() -> tuple[float, dict[str, Facts], Any]:
        clear_caches()
        client = make_client()
        results: list[Facts | None] = [None] * len(domains)
        work = iter(enumerate(domains))

        async def worker() -> None:
            for index, domain in work:
                results[index] = lookout_facts(await evaluate(domain, client))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        if hasattr(client, "close"):
            await client.close()
        return elapsed, dict(zip(domains, results, strict=True)), client  # type: ignore[arg-type]

    if use_uvloop:
        import uvloop

        return uvloop.run(go())
    return asyncio.run(go())


def whatif_rounds(
    domains: list[str], args: argparse.Namespace, use_uvloop: bool, reference: dict[str, Facts]
) -> dict[str, Any]:
    import emailsec_whatif as wi

    def run(make_client: Any) -> tuple[float, dict[str, Facts], Any]:
        return run_with(make_client, domains, args.concurrency, use_uvloop)

    _, _, recorder = run(lambda: wi.RecordingClient([(NS_HOST, NS_PORT)], timeout=args.timeout))
    recorded = dict(recorder.recorded)
    replay_rates = []
    mismatch_replay = 0
    for _ in range(args.rounds):
        settle()
        elapsed, facts, _ = run(lambda: wi.ReplayResolver(recorded))
        replay_rates.append(len(domains) / elapsed)
        mismatch_replay = sum(1 for d in domains if facts[d].key() != reference[d].key())
        print(f"what-if: no DNS {replay_rates[-1]:,.0f}/s", flush=True)
    # Codec cost per message on real answers (a spread of names and types).
    samples = []
    keys = sorted(recorded)[:: max(1, len(recorded) // 300)]
    for name, rdtype in keys:
        if rdtype not in ("TXT", "MX", "A", "AAAA") or wi.wire.encode_name(name) is None:
            continue
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        with contextlib.suppress(Exception):
            answer = dns.query.udp(query, NS_HOST, timeout=2, port=NS_PORT)
            samples.append((name, rdtype, answer.to_wire()))
    costs = wi.codec_costs(samples)
    return {
        "recorded": recorded,
        "replay_rates": replay_rates,
        "replay_mismatch": mismatch_replay,
        "recorded_answers": len(recorded),
        "codec": costs,
        "codec_samples": len(samples),
    }


def findings(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    base_med = statistics.median(report["baseline_rates"])
    look_med = statistics.median(report["lookout_rates"])
    ratio = look_med / base_med
    out.append(
        f"Throughput: lookout {look_med:,.0f} domains/s vs checkdmarc {base_med:,.0f} "
        f"domains/s, {ratio:.1f}x ({'meets' if ratio >= 20 else 'below'} the 20x goal)."
    )
    cmp_ = report["comparison"]
    ws = cmp_["wrong_side"]
    out.append(
        f"Disagreements: {cmp_['domains'] - cmp_['all_same']:,} domains; "
        f"{ws.get('one_side_wrong', 0):,} where one side is wrong per the RFCs, "
        f"{ws.get('convention', 0):,} reporting-convention differences on records both call "
        f"invalid, {ws.get('unexplained', 0):,} unexplained."
    )
    lookout_bugs = sorted(
        {
            cat
            for (cat, fields) in cmp_["groups"]
            for f in fields
            if VERDICTS.get((cat, f), ("",))[0] == "lookout_wrong"
        }
    )
    if lookout_bugs:
        out.append("lookout deviations found (see the table): " + ", ".join(lookout_bugs) + ".")
    out += speed_findings(report, base_med, look_med)
    return out


def speed_findings(report: dict[str, Any], base_med: float, look_med: float) -> list[str]:
    """Where lookout's time goes (from the what-if rounds and the profiles, when they ran)."""
    out: list[str] = []
    wi = report.get("whatif")
    stats = report["lookout_stats"][-1]
    domains = report["args"]["domains"]
    sent = stats["sent"] / domains
    if wi and wi.get("replay_rates"):
        replay = statistics.median(wi["replay_rates"])
        evaluator = 1e6 / replay
        total = 1e6 / look_med
        transport = total - evaluator
        out.append(
            f"Where lookout's time goes: {total:.0f} µs per domain in all; `evaluate()` with "
            f"no DNS at all (answers replayed from memory) runs at {replay:,.0f} domains/s "
            f"({replay / base_med:.1f}x checkdmarc), {evaluator:.0f} µs per domain, so the "
            f"DNS path (sending, receiving and reading {sent:.1f} datagrams per domain, "
            f"waking the evaluations that wait for them) costs about {transport:.0f} µs per "
            f"domain, {transport / sent:.0f} µs per datagram."
        )
        codec = wi.get("codec") or {}
        if codec:
            out.append(
                f"Codec: building a query and reading its answer takes {codec['small_us']:.1f} "
                f"µs with lookout's codec against {codec['dnspython_us']:.0f} µs with "
                "dnspython (mean over real NSD answers)."
            )
    metrics = report.get("profile_metrics") or {}
    as_is = metrics.get("lookout as is")
    if as_is:
        out.append(
            f"Profile of lookout as is: {100 * as_is.get('share:asyncio / uvloop', 0):.0f} % "
            "of its CPU time in asyncio/uvloop, "
            f"{100 * as_is.get('share:dnspython', 0):.0f} % in dnspython; the evaluator "
            f"starts {as_is.get('tasks_per_domain', 0):.1f} asyncio tasks per domain and "
            f"parses {as_is.get('spf_parses_per_domain', 0):.1f} SPF records per domain."
        )
    return out


# ------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=0,
        help="run checkdmarc on a fixed random sample of K domains (0: all)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--profile", action="store_true", help="add a cProfiled lookout round")
    parser.add_argument(
        "--whatif",
        action="store_true",
        help="also time lookout's evaluator with a small wire codec and with no DNS at all",
    )
    parser.add_argument(
        "--full-responses",
        action="store_true",
        help="NSD minimal-responses: no (NS/glue in every answer); default: yes, like the "
        "recursive resolvers lookout talks to in production",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (zones, nsd.conf)")
    parser.add_argument("--out", type=Path, default=RESULTS / "emailsec.md")
    args = parser.parse_args()
    use_uvloop = not args.no_uvloop

    if os.geteuid() != 0:
        print("needs root (NSD on port 53)", file=sys.stderr)
        return 2
    if shutil.which("nsd") is None:
        print("needs nsd: apt-get install -y nsd", file=sys.stderr)
        return 2
    busy = port_53_free()
    if busy is not None:
        print(f"port 53 is taken ({busy}): stop whatever listens there first", file=sys.stderr)
        return 2

    args.out.parent.mkdir(parents=True, exist_ok=True)
    ds = emailsec_zones.generate(args.domains, args.seed)
    domains = [d.name for d in ds.domains]
    category = {d.name: d.category for d in ds.domains}
    counts = collections.Counter(category.values())
    tmp = Path(tempfile.mkdtemp(prefix="emailsec-bench-"))
    zones = emailsec_zones.write_zones(ds, tmp / "zones")
    records = sum(len(r) for r in ds.records.values())
    print(f"{len(domains):,} domains, {records:,} records in {tmp}", flush=True)

    if args.baseline_sample and args.baseline_sample < len(domains):
        position = {name: i for i, name in enumerate(domains)}
        base_domains = sorted(
            random.Random(args.seed + 1).sample(domains, args.baseline_sample),
            key=position.__getitem__,
        )
    else:
        base_domains = list(domains)

    nsd = Nsd(
        tmp,
        dict(zones),
        probe=f"_spf.{emailsec_zones._provider(1)}",
        probe_type="TXT",
        port=NS_PORT,  # checkdmarc asks port 53 only
        minimal=not args.full_responses,
    )
    sampler = RssSampler()
    report: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "categories": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "baseline_domains": len(base_domains),
    }
    try:
        nsd.start()
        print(f"nsd pid {nsd.proc.pid if nsd.proc else '?'} answering", flush=True)
        # Warm-up (imports, public suffix lists, code paths); caches are dropped after.
        warm = domains[:50]
        baseline_round(warm, args.timeout)
        lookout_round(warm, args.timeout, args.concurrency, use_uvloop)

        base_rates: list[float] = []
        look_rates: list[float] = []
        base_runs: list[dict[str, Facts]] = []
        look_runs: list[dict[str, Facts]] = []
        look_stats: list[dict[str, int]] = []
        for r in range(1, args.rounds + 1):
            settle()
            sampler.set("baseline")
            elapsed, facts = baseline_round(base_domains, args.timeout)
            sampler.set(None)
            base_rates.append(len(base_domains) / elapsed)
            base_runs.append(facts)
            print(
                f"round {r} A checkdmarc: {len(base_domains):,} in {elapsed:.1f} s = "
                f"{base_rates[-1]:,.0f}/s",
                flush=True,
            )
            settle()
            sampler.set("lookout")
            elapsed, facts, stats = lookout_round(
                domains, args.timeout, args.concurrency, use_uvloop
            )
            sampler.set(None)
            look_rates.append(len(domains) / elapsed)
            look_runs.append(facts)
            look_stats.append(stats)
            print(
                f"round {r} B lookout:    {len(domains):,} in {elapsed:.2f} s = "
                f"{look_rates[-1]:,.0f}/s  {stats}",
                flush=True,
            )
        if args.whatif:
            report["whatif"] = whatif_rounds(domains, args, use_uvloop, look_runs[0])
        if args.profile:
            variants: list[tuple[str, str, Any]] = [
                (
                    "lookout as is",
                    "emailsec_profile.txt",
                    lambda: DnsClient([(NS_HOST, NS_PORT)], timeout=args.timeout),
                ),
            ]
            if args.whatif:
                import emailsec_whatif as wi

                recorded = report["whatif"]["recorded"]
                variants += [
                    (
                        "evaluate() on replayed answers (what-if)",
                        "emailsec_profile_replay.txt",
                        lambda: wi.ReplayResolver(recorded),
                    ),
                ]
            texts = []
            report["profile_metrics"] = {}
            for label, name, make in variants:
                metrics, text = profile_lookout(
                    label, make, domains, args.concurrency, use_uvloop, args.out.with_name(name)
                )
                report["profile_metrics"][label] = metrics
                texts.append(text)
            report["profile_summary"] = "\n\n".join(texts)
        report["nsd_rss"] = nsd.peak_rss_mb()
    finally:
        sampler.stop()
        nsd.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    unstable = []
    for name, runs in (("checkdmarc", base_runs), ("lookout", look_runs)):
        changed = [d for d in runs[0] if any(run[d].key() != runs[0][d].key() for run in runs[1:])]
        if changed:
            unstable.append(f"{name}: {len(changed)} (e.g. {', '.join(changed[:3])})")
    base_facts = base_runs[0]
    look_facts = {d: look_runs[0][d] for d in base_domains}
    comparison = compare(base_facts, look_facts, category)
    txt: dict[str, list[str]] = collections.defaultdict(list)
    for zone_records in ds.records.values():
        for owner, rtype, rdata in zone_records:
            if rtype == "TXT":
                txt[owner].append(rdata.replace('" "', "").strip('"'))
    example_records = {}
    for domains_ in comparison["groups"].values():
        for d in domains_[:1]:
            spf_or_other = [t for t in txt.get(d, []) if t.lower().startswith("v=spf1")]
            example_records[d] = [
                *spf_or_other,
                *[f"_dmarc: {t}" for t in txt.get(f"_dmarc.{d}", [])],
            ]
    report["example_records"] = example_records
    report.update(
        {
            "machine": machine_info(use_uvloop),
            "baseline_rates": base_rates,
            "lookout_rates": look_rates,
            "lookout_stats": look_stats,
            "rss_mb": {
                "baseline": sampler.peaks.get("baseline", 0) / 1024,
                "lookout": sampler.peaks.get("lookout", 0) / 1024,
                "baseline_growth": sampler.growth.get("baseline", 0) / 1024,
                "lookout_growth": sampler.growth.get("lookout", 0) / 1024,
                "process_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "nsd": report.pop("nsd_rss", 0.0),
            },
            "comparison": comparison,
            "unstable": "; ".join(unstable),
            "base_facts": base_facts,
            "look_facts": look_facts,
        }
    )
    report["findings"] = findings(report)
    text = render(report)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    raw = {k: v for k, v in report.items() if k not in ("base_facts", "look_facts", "comparison")}
    if "whatif" in raw:
        raw["whatif"] = {k: v for k, v in raw["whatif"].items() if k != "recorded"}
    raw["comparison"] = {
        **{k: v for k, v in comparison.items() if k != "groups"},
        "groups": [
            {
                "category": cat,
                "fields": list(fields),
                "count": len(ds_),
                "examples": [
                    {
                        "domain": d,
                        "checkdmarc": vars_facts(base_facts[d]),
                        "lookout": vars_facts(look_facts[d]),
                    }
                    for d in ds_[:5]
                ],
            }
            for (cat, fields), ds_ in comparison["groups"].items()
        ],
    }
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=2, default=str))
    print(f"written to {args.out} and {args.out.with_suffix('.json')}")
    return 0


def vars_facts(f: Facts) -> dict[str, Any]:
    return {
        "lookups": f.lookups,
        "valid": f.valid,
        "policy": f.policy,
        "spf": f.spf_detail,
        "dmarc": f.dmarc_detail,
    }


if __name__ == "__main__":
    sys.exit(main())
