"""An indicator's overall verdict and its reasons (shared/lookups/runner.py ``judge``): the one
rule the API, the CSV and ``lookout lookup`` use, and the web UI mirrors."""

from __future__ import annotations

from typing import Any

from shared.lookups.schemas import LookupResult
from shared.lookups.verdicts import NONE_APPLIES, VERDICT_ORDER, counts_as, judge, overall_verdict


def result(provider: str, status: str, verdict: str = "unknown", **more: Any) -> LookupResult:
    return LookupResult(
        job_id="j",
        indicator="example.com",
        kind="domain",
        provider=provider,
        status=status,  # type: ignore[arg-type]
        verdict=verdict,  # type: ignore[arg-type]
        **more,
    )


DNS_UNKNOWN = result("dns", "done", "unknown", summary="A 192.0.2.1")
WHOIS_FAILED = result(
    "whois",
    "error",
    "error",
    error="cannot connect: Connection refused (RDAP, WHOIS)",
)
VT_KEYLESS = result("virustotal", "not_configured", summary="VIRUSTOTAL_API_KEY is not set")


def test_the_order() -> None:
    assert VERDICT_ORDER == (
        "malicious",
        "suspicious",
        "harmless",
        "undetected",
        "error",
        "pending",
        "unknown",
    )


def test_a_failed_provider_is_never_a_quiet_unknown() -> None:
    """DNS "unknown" with WHOIS failed: nothing judged it, something could not be checked."""
    assert judge([DNS_UNKNOWN, WHOIS_FAILED]) == (
        "error",
        ["WHOIS: cannot connect: Connection refused (RDAP, WHOIS)"],
    )


def test_every_provider_failed_is_error_with_each_cause() -> None:
    dns = result("dns", "error", "error", error="timeout after 5 s: no DNS answer for x")
    verdict, reasons = judge([dns, WHOIS_FAILED, VT_KEYLESS])
    assert verdict == "error"
    assert reasons == [
        "DNS: timeout after 5 s: no DNS answer for x",
        "WHOIS: cannot connect: Connection refused (RDAP, WHOIS)",
    ]


def test_quota_exhausted_could_not_be_checked() -> None:
    used = result("virustotal", "quota_exhausted", summary="quota used until 00:00:00 UTC")
    assert counts_as(used) == "error"
    assert judge([DNS_UNKNOWN, used]) == (
        "error",
        ["VirusTotal: quota used until 00:00:00 UTC"],
    )


def test_a_finding_outranks_errors_and_names_every_provider_that_gave_it() -> None:
    vt = result("virustotal", "done", "malicious", summary="9/74 engines")
    abuse = result("abuseipdb", "done", "malicious", summary="score 100")
    harmless = result("emailsec", "done", "harmless", summary="p=reject")
    assert judge([DNS_UNKNOWN, WHOIS_FAILED, vt, harmless, abuse]) == (
        "malicious",
        ["VirusTotal: 9/74 engines", "AbuseIPDB: score 100"],
    )


def test_waiting_outranks_unknown_not_error() -> None:
    waiting = result("whois", "pending")
    queued = result("virustotal", "queued", summary="queued until 10:00:01 UTC")
    assert judge([DNS_UNKNOWN, waiting, queued]) == (
        "pending",
        ["WHOIS: pending", "VirusTotal: queued until 10:00:01 UTC"],
    )
    assert judge([waiting, WHOIS_FAILED])[0] == "error"


def test_not_configured_never_counts() -> None:
    assert counts_as(VT_KEYLESS) is None
    assert judge([DNS_UNKNOWN, VT_KEYLESS]) == ("unknown", ["DNS: A 192.0.2.1"])
    # nothing counts at all: unknown, and the reasons say why nothing was asked
    assert judge([VT_KEYLESS]) == ("unknown", ["VirusTotal: VIRUSTOTAL_API_KEY is not set"])
    # no provider of the job applies to the kind: unknown, and said so
    assert judge([]) == ("unknown", [NONE_APPLIES])


def test_overall_verdict_of_counted_verdicts() -> None:
    assert overall_verdict(["unknown", "pending"]) == "pending"
    assert overall_verdict(["pending", "error"]) == "error"
    assert overall_verdict(["unknown", "error", "harmless"]) == "harmless"
