"""Synthetic SPF/DMARC data for ``emailsec_bench.py``: N domains with realistic records and
a few percent of edge cases, deterministic from a seed, written as NSD zone files.

Names live directly in three big zones, ``com``, ``org`` and ``net`` (real public suffixes,
so the public-suffix logic of both evaluators finds the organisational domain as it would on
the Internet; ``_dmarc.com`` and friends answer NXDOMAIN like the real TLDs do). Every
evaluated name gets a category; ``typical`` ones (most of them) have an SPF record with
``a``, ``mx``, ``ip4`` terms and includes of shared providers (``_spf.providerK.com`` ->
``_spf2.providerK.com``: an include chain of depth 2), a DMARC record, A/AAAA and MX
records. The other categories are the edge cases listed in ``EDGE_CASES``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

TLDS = ("com", "org", "net")
TLD_WEIGHTS = (70, 20, 10)
PROVIDERS = 24
TTL = 3600
NEGATIVE_TTL = 300

# category -> share of the evaluated domains (the rest are "typical").
EDGE_CASES: dict[str, float] = {
    "too_many_lookups": 0.008,  # 11+ lookups in the record itself
    "too_many_nested": 0.004,  # an include whose own record needs 11+ lookups
    "void_two": 0.004,  # two void lookups: still valid
    "void_too_many": 0.004,  # three void lookups: permerror
    "multiple_spf": 0.005,
    "spf_syntax": 0.008,
    "include_missing": 0.004,  # include target without SPF (NXDOMAIN)
    "include_loop": 0.002,
    "duplicate_include": 0.004,
    "mx_too_many": 0.002,  # 11 MX hosts behind an mx term
    "terms_after_all": 0.004,  # junk after "-all" (never evaluated per RFC 7208 §5.1)
    "terms_after_all_big": 0.002,  # the same, pushing the naive count over 10
    "plus_all": 0.004,
    "redirect": 0.010,
    "redirect_with_all": 0.003,  # redirect= ignored (RFC 7208 §6.1)
    "redirect_missing": 0.003,
    "spf_long": 0.004,  # > 255 characters: several TXT strings
    "macro_ptr": 0.004,  # exists:%{i}… and ptr
    "no_spf": 0.008,
    "nxdomain": 0.003,  # the domain does not exist at all
    "missing_dmarc": 0.015,
    "subdomain_org_dmarc": 0.015,  # mail.X.com: DMARC from the organisational domain
    "dmarc_no_p_rua": 0.004,  # no p= but a valid rua= (RFC 7489 §6.6.3 step 6)
    "dmarc_invalid_p": 0.003,
    "dmarc_unrelated_txt": 0.008,  # another TXT next to the DMARC record at _dmarc
    "dmarc_multiple": 0.003,
    "dmarc_version_typo": 0.003,  # "v=DMARC1 p=reject" (no ';'): not a DMARC record
}

SPF_SYNTAX_ERRORS = (
    "ip4:300.1.2.3",
    "ip4:192.0.2.0/33",
    "include",
    "~al",
    "ip6:2001:db8::/129",
    "foo:bar",
    "a:/24x",
)


@dataclass
class Domain:
    name: str
    category: str
    tld: str


@dataclass
class Dataset:
    domains: list[Domain]
    # zone (tld) -> list of (owner, type, rdata text) ; owner absolute without final dot
    records: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def add(self, owner: str, rtype: str, rdata: str) -> None:
        tld = owner.rsplit(".", 1)[-1]
        self.records.setdefault(tld, []).append((owner, rtype, rdata))


def _txt(*strings: str) -> str:
    for s in strings:
        if len(s.encode()) > 255:
            raise ValueError(f"TXT string too long: {s!r}")
        if '"' in s or "\\" in s:
            raise ValueError(f"unexpected quote in {s!r}")
    return " ".join(f'"{s}"' for s in strings)


def _split255(text: str) -> list[str]:
    return [text[i : i + 255] for i in range(0, len(text), 255)]


def _provider(k: int) -> str:
    return f"provider{k}.com"


def _ip4(rng: random.Random) -> str:
    first = rng.choice((192, 198, 203))
    second = rng.randrange(256)
    third = rng.randrange(256)
    return f"{first}.{second}.{third}.{rng.randrange(1, 255)}"


def _ip6(rng: random.Random) -> str:
    return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"


def _shared_records(ds: Dataset, rng: random.Random) -> None:
    for tld in TLDS:
        ds.records.setdefault(tld, [])
    # Shared SPF providers: _spf.providerK.com -> _spf2.providerK.com (depth 2).
    for k in range(1, PROVIDERS + 1):
        p = _provider(k)
        first = [f"include:_spf2.{p}", f"ip4:{_ip4(rng)}/24"]
        if k % 3 == 0:
            first.append(f"a:smtp.{p}")
        ds.add(f"_spf.{p}", "TXT", _txt("v=spf1 " + " ".join(first) + " ~all"))
        second = [f"ip4:{_ip4(rng)}/22", f"ip4:{_ip4(rng)}/24", f"ip6:2001:db8:{k:x}::/48"]
        ds.add(f"_spf2.{p}", "TXT", _txt("v=spf1 " + " ".join(second) + " -all"))
        ds.add(f"smtp.{p}", "A", _ip4(rng))
        for host in ("mx1", "mx2"):
            ds.add(f"{host}.{p}", "A", _ip4(rng))
            ds.add(f"{host}.{p}", "AAAA", _ip6(rng))
        ds.add(p, "A", _ip4(rng))
    # A provider whose own record needs 11 lookups (for "too_many_nested").
    big = "bigmailer.net"
    terms = [f"a:o{i}.{big}" for i in range(1, 12)]
    ds.add(f"_spf.{big}", "TXT", _txt("v=spf1 " + " ".join(terms) + " -all"))
    for i in range(1, 12):
        ds.add(f"o{i}.{big}", "A", _ip4(rng))
    # DMARC report providers: one authorises every domain (wildcard), one none.
    ds.add("rua.reportco.net", "MX", "10 mx1.provider1.com.")
    ds.add("*._report._dmarc.rua.reportco.net", "TXT", _txt("v=DMARC1"))
    ds.add("dmarc.unauthreports.org", "MX", "10 mx2.provider2.com.")
    ds.add("dmarc.unauthreports.org", "A", _ip4(rng))


def _spf_typical(rng: random.Random, name: str) -> str:
    terms: list[str] = []
    shape = rng.random()
    if shape < 0.55:
        terms += ["a", "mx", f"ip4:{_ip4(rng)}/32"]
        providers = rng.sample(range(1, PROVIDERS + 1), rng.choice((1, 1, 1, 2)))
    elif shape < 0.80:
        terms += ["mx", f"ip4:{_ip4(rng)}", f"ip6:{_ip6(rng)}"]
        providers = rng.sample(range(1, PROVIDERS + 1), rng.choice((1, 2)))
    elif shape < 0.92:
        terms += [f"ip4:{_ip4(rng)}/28"]
        providers = rng.sample(range(1, PROVIDERS + 1), 1)
    else:
        terms += ["a", "mx"]
        providers = []
    terms += [f"include:_spf.{_provider(k)}" for k in providers]
    if rng.random() < 0.03:  # upper-case spelling: case-insensitive per RFC 7208 §4.6.1
        terms = [t.upper() if t in ("a", "mx") else t for t in terms]
    qualifier = rng.choices(("-all", "~all", "?all"), (55, 40, 5))[0]
    return "v=spf1 " + " ".join(terms) + " " + qualifier


def _dmarc_typical(rng: random.Random, name: str, *, subdomain_policy: bool = False) -> str:
    policy = rng.choices(("reject", "quarantine", "none"), (40, 30, 30))[0]
    tags = ["v=DMARC1", f"p={policy}"]
    if subdomain_policy or rng.random() < 0.1:
        tags.append(f"sp={rng.choice(('reject', 'quarantine', 'none'))}")
    if rng.random() < 0.15:
        tags.append(f"pct={rng.choice((10, 25, 50, 100))}")
    where = rng.random()
    if where < 0.55:
        tags.append(f"rua=mailto:dmarc@{name}")
    elif where < 0.80:
        tags.append("rua=mailto:agg@rua.reportco.net")
    elif where < 0.88:
        tags.append(f"rua=mailto:dmarc@{name},mailto:agg@rua.reportco.net")
    elif where < 0.93:
        tags.append("rua=mailto:d@dmarc.unauthreports.org")
    if rng.random() < 0.1:
        tags.append(f"ruf=mailto:forensic@{name}")
        tags.append("fo=1")
    if rng.random() < 0.1:
        tags.append("adkim=s")
        tags.append("aspf=s")
    return "; ".join(tags)


def _host_records(ds: Dataset, rng: random.Random, name: str) -> None:
    ds.add(name, "A", _ip4(rng))
    if rng.random() < 0.5:
        ds.add(name, "AAAA", _ip6(rng))
    if rng.random() < 0.5:  # own MX hosts
        ds.add(name, "MX", f"10 mx1.{name}.")
        ds.add(f"mx1.{name}", "A", _ip4(rng))
        if rng.random() < 0.6:
            ds.add(name, "MX", f"20 mx2.{name}.")
            ds.add(f"mx2.{name}", "A", _ip4(rng))
    else:  # hosted mail
        k = rng.randrange(1, PROVIDERS + 1)
        ds.add(name, "MX", f"10 mx1.{_provider(k)}.")
        ds.add(name, "MX", f"20 mx2.{_provider(k)}.")
    if rng.random() < 0.3:
        ds.add(name, "TXT", _txt(f"site-verification={rng.getrandbits(64):016x}"))
    if rng.random() < 0.2:
        ds.add(f"_mta-sts.{name}", "TXT", _txt(f"v=STSv1; id={rng.getrandbits(32)}"))
    if rng.random() < 0.05:
        ds.add(f"default._bimi.{name}", "TXT", _txt(f"v=BIMI1; l=https://{name}/logo.svg"))


def _spf_edge(ds: Dataset, rng: random.Random, category: str, name: str) -> str | None:
    """The SPF record of an SPF edge case (extra records added to ``ds``), or None."""
    p = [_provider(k) for k in rng.sample(range(1, PROVIDERS + 1), 6)]
    if category == "too_many_lookups":
        return "v=spf1 a mx " + " ".join(f"include:_spf.{x}" for x in p[:5]) + " -all"
    if category == "too_many_nested":
        return "v=spf1 mx include:_spf.bigmailer.net -all"
    if category == "void_two":
        return f"v=spf1 a:gone1.{name} mx:gone2.{name} include:_spf.{p[0]} -all"
    if category == "void_too_many":
        return f"v=spf1 a:gone1.{name} a:gone2.{name} mx:gone3.{name} -all"
    if category == "multiple_spf":
        ds.add(name, "TXT", _txt(f"v=spf1 include:_spf.{p[1]} -all"))
        return f"v=spf1 mx include:_spf.{p[0]} ~all"
    if category == "spf_syntax":
        bad = rng.choice(SPF_SYNTAX_ERRORS)
        return f"v=spf1 mx {bad} include:_spf.{p[0]} -all"
    if category == "include_missing":
        return f"v=spf1 mx include:_spf.{name.split('.')[0]}-gone.net -all"
    if category == "include_loop":
        return f"v=spf1 mx include:{name} -all"
    if category == "duplicate_include":
        return f"v=spf1 include:_spf.{p[0]} mx include:_spf.{p[0]} -all"
    if category == "mx_too_many":
        ds.add(f"mail.{name}", "A", _ip4(rng))
        for i in range(1, 12):
            ds.add(f"relay.{name}", "MX", f"{i * 10} mx{i}.{name}.")
            ds.add(f"mx{i}.{name}", "A", _ip4(rng))
        return f"v=spf1 mx:relay.{name} -all"
    if category == "terms_after_all":
        return f"v=spf1 a include:_spf.{p[0]} -all mx"
    if category == "terms_after_all_big":
        return f"v=spf1 mx include:_spf.{p[0]} -all " + " ".join(
            f"include:_spf.{x}" for x in p[1:5]
        )
    if category == "plus_all":
        return rng.choice(("v=spf1 +all", f"v=spf1 a mx include:_spf.{p[0]} +all"))
    if category == "redirect":
        if rng.random() < 0.5:
            return f"v=spf1 redirect=_spf.{p[0]}"
        ds.add(f"_spf.{name}", "TXT", _txt(f"v=spf1 ip4:{_ip4(rng)} include:_spf.{p[1]} -all"))
        return f"v=spf1 mx redirect=_spf.{name}"
    if category == "redirect_with_all":
        return f"v=spf1 mx redirect=_spf.{p[0]} ~all"
    if category == "redirect_missing":
        return f"v=spf1 redirect=_spf.{name}"
    if category == "spf_long":
        ips = " ".join(f"ip4:{_ip4(rng)}" for _ in range(22))
        return f"v=spf1 mx {ips} include:_spf.{p[0]} -all"
    if category == "macro_ptr":
        return f"v=spf1 exists:%{{i}}._spf.{name} ptr include:_spf.{p[0]} -all"
    if category in ("no_spf", "nxdomain"):
        return None
    return _spf_typical(rng, name)


def _dmarc_edge(rng: random.Random, category: str, name: str) -> list[str]:
    """The TXT records at ``_dmarc.<name>``."""
    if category in ("missing_dmarc", "nxdomain"):
        return []
    if category == "dmarc_no_p_rua":
        return [f"v=DMARC1; rua=mailto:dmarc@{name}"]
    if category == "dmarc_invalid_p":
        return [f"v=DMARC1; p=block; rua=mailto:dmarc@{name}"]
    if category == "dmarc_unrelated_txt":
        return [_dmarc_typical(rng, name), f"verification-token={rng.getrandbits(48):012x}"]
    if category == "dmarc_multiple":
        return [_dmarc_typical(rng, name), "v=DMARC1; p=none"]
    if category == "dmarc_version_typo":
        return [f"v=DMARC1 p=reject; rua=mailto:dmarc@{name}"]
    return [_dmarc_typical(rng, name)]


def generate(count: int, seed: int = 7) -> Dataset:
    rng = random.Random(seed)
    ds = Dataset(domains=[])
    _shared_records(ds, rng)
    categories = list(EDGE_CASES)
    thresholds: list[float] = []
    total = 0.0
    for c in categories:
        total += EDGE_CASES[c]
        thresholds.append(total)
    for i in range(1, count + 1):
        tld = rng.choices(TLDS, TLD_WEIGHTS)[0]
        org = f"bench{i:05d}.{tld}"
        roll = rng.random()
        category = "typical"
        for c, t in zip(categories, thresholds, strict=True):
            if roll < t:
                category = c
                break
        if category == "nxdomain":
            ds.domains.append(Domain(org, category, tld))  # nothing published at all
            continue
        if category == "subdomain_org_dmarc":
            # The organisational domain publishes DMARC (with sp=); the evaluated name is a
            # sending subdomain with its own SPF, A and MX but no _dmarc record.
            name = f"mail.{org}"
            _host_records(ds, rng, org)
            ds.add(org, "TXT", _txt(_spf_typical(rng, org)))
            ds.add(f"_dmarc.{org}", "TXT", _txt(_dmarc_typical(rng, org, subdomain_policy=True)))
            _host_records(ds, rng, name)
            ds.add(name, "TXT", _txt(_spf_typical(rng, name)))
            ds.domains.append(Domain(name, category, tld))
            continue
        name = org
        _host_records(ds, rng, name)
        spf = _spf_edge(ds, rng, category, name)
        if spf is not None:
            ds.add(name, "TXT", _txt(*_split255(spf)))
        for record in _dmarc_edge(rng, category, name):
            ds.add(f"_dmarc.{name}", "TXT", _txt(record))
        ds.domains.append(Domain(name, category, tld))
    return ds


def write_zones(ds: Dataset, directory: Path) -> list[tuple[str, Path]]:
    """One zone file per TLD; returns [(zone, path)]."""
    out: list[tuple[str, Path]] = []
    directory.mkdir(parents=True, exist_ok=True)
    for tld, records in sorted(ds.records.items()):
        path = directory / f"{tld}.zone"
        lines = [
            f"$ORIGIN {tld}.",
            f"$TTL {TTL}",
            f"@ IN SOA ns1.nic.{tld}. hostmaster.nic.{tld}. 1 3600 900 604800 {NEGATIVE_TTL}",
            f"@ IN NS ns1.nic.{tld}.",
            f"ns1.nic.{tld}. IN A 127.0.0.1",
        ]
        lines += [f"{owner}. IN {rtype} {rdata}" for owner, rtype, rdata in records]
        path.write_text("\n".join(lines) + "\n")
        out.append((tld, path))
    return out
