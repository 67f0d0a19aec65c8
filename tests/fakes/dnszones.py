"""Zone text for the loopback DNS server (tests/dnsserver.py) from published DNS answers:
Team Cymru's IP-to-ASN examples and Spamhaus' return codes (tests/fixtures/asn and
tests/fixtures/dnsbl, sources in their SOURCES.md).

Only the names are ours where the documentation has none (the documentation addresses that
stand for each Spamhaus return code); every answer is a documented one.
"""

from __future__ import annotations

import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

SOA = "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300"


def cymru_examples() -> list[tuple[str, str]]:
    """(name, TXT string) of every ``dig +short NAME TXT`` example of the fixture."""
    lines = (FIXTURES / "asn" / "cymru_dns_examples.txt").read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        asked = re.fullmatch(r"\$ dig \+short (\S+?)\.? TXT", line.strip())
        if asked and i + 1 < len(lines):
            out.append((asked[1], lines[i + 1].strip().strip('"')))
    return out


def ipwhois_strings() -> list[str]:
    """The two parser fixtures of secynic/ipwhois quoted at the end of the fixture."""
    text = (FIXTURES / "asn" / "cymru_dns_examples.txt").read_text()
    tail = text.split("secynic/ipwhois", 1)[1]
    return re.findall(r'^"([^"]+)"$', tail, re.MULTILINE)


def cymru_zone() -> str:
    """Team Cymru's zones with the documented answers."""
    google_origin, google_name = ipwhois_strings()
    records = [*cymru_examples()]
    records.append(("1.225.125.74.origin.asn.cymru.com", google_origin))
    records.append(("AS15169.asn.cymru.com", google_name))
    lines = ["$ORIGIN asn.cymru.com.", SOA]
    lines += [f'{name}. 3600 IN TXT "{txt}"' for name, txt in records]
    return "\n".join(lines) + "\n"


def spamhaus_codes() -> dict[str, dict[str, str]]:
    """``{"zen": {code: meaning}, "dbl": {code: meaning}}`` from the documentation excerpt."""
    text = (FIXTURES / "dnsbl" / "spamhaus_zones_return_codes_EXCERPT.txt").read_text()
    tables: dict[str, dict[str, str]] = {}
    for zone in ("zen", "dbl"):
        row = re.search(rf"^{zone} \|.*?(?=^\w+ \||^---|\Z)", text, re.MULTILINE | re.DOTALL)
        assert row is not None, zone
        tables[zone] = {
            code: meaning.strip()
            for code, meaning in re.findall(r"\* (127\.\d+\.\d+\.\d+) \(\d+\) - ([^*|]+)", row[0])
        }
    return tables


def spamhaus_errors() -> dict[str, str]:
    """``{code: meaning}`` of the error answers (never listings)."""
    out = {}
    for line in (FIXTURES / "dnsbl" / "spamhaus_error_codes.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            code, meaning = line.split("\t", 1)
            out[code] = meaning
    return out


def zen_address(code: str) -> str:
    """The test address answering ``code`` in ZEN."""
    return f"192.0.2.{code.rsplit('.', 1)[1]}"


def dbl_name(code: str) -> str:
    """The test name answering ``code`` in DBL."""
    return f"code-{code.rsplit('.', 1)[1]}.test"


def error_address(code: str) -> str:
    """A test address (198.51.100.<n>) answering the error ``code`` in ZEN."""
    return f"198.51.100.{list(spamhaus_errors()).index(code) + 1}"


def error_name(code: str) -> str:
    """A test name answering the error ``code`` in DBL."""
    return f"error-{list(spamhaus_errors()).index(code) + 1}.test"


def spamhaus_zone(
    zones: tuple[str, ...] = ("zen.spamhaus.org", "dbl.spamhaus.org"),
    listed: dict[str, str] | None = None,
) -> str:
    """ZEN and DBL (or the same answers under other zone names, e.g. a DQS key's):
    the documented test points, one test address or name per return code, the error
    answers, and ``listed`` (address or name → return code) besides."""
    codes = spamhaus_codes()
    lines: list[str] = []
    for zone in zones:
        lines += [f"$ORIGIN {zone}.", SOA]
        if zone.split(".")[0] == "dbl" or ".dbl." in zone:
            lines.append("dbltest.com 300 IN A 127.0.1.2")
            for code in codes["dbl"]:
                lines.append(f"{dbl_name(code)} 300 IN A {code}")
            for code in spamhaus_errors():
                lines.append(f"{error_name(code)} 300 IN A {code}")
            for name, code in (listed or {}).items():
                if not name.replace(".", "").isdigit():
                    lines.append(f"{name}.{zone}. 300 IN A {code}")
        else:
            for code in ("127.0.0.2", "127.0.0.4", "127.0.0.10"):  # RFC 5782 test point
                lines.append(f"2.0.0.127 300 IN A {code}")
            for code in codes["zen"]:
                octets = ".".join(reversed(zen_address(code).split(".")))
                lines.append(f"{octets} 300 IN A {code}")
            for code in spamhaus_errors():
                octets = ".".join(reversed(error_address(code).split(".")))
                lines.append(f"{octets} 300 IN A {code}")
            for name, code in (listed or {}).items():
                if name.replace(".", "").isdigit():
                    lines.append(f"{'.'.join(reversed(name.split('.')))} 300 IN A {code}")
    return "\n".join(lines) + "\n"
