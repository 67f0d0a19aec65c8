"""The whois provider's readers: bootstrap data, RDAP objects, WHOIS text, dates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes.rdap import domain_object, network_object

from services.providers.whois import port43, rdap, whoistext
from services.providers.whois.bootstrap import bootstrap
from services.providers.whois.record import NotRegistered, Unavailable, parse_date

# ------------------------------------------------------------------------- bootstrap


def test_bootstrap_data_is_shipped_and_matches_longest_entry() -> None:
    data = bootstrap()
    assert data.domain("example.com") == ["https://rdap.verisign.com/com/v1/"]
    assert data.domain("WWW.Example.NET.") == ["https://rdap.verisign.com/net/v1/"]
    assert data.domain("example.co.uk") == ["https://rdap.nominet.uk/uk/"]
    assert data.domain("example.invalid") == []
    assert data.address("8.8.8.8") == ["https://rdap.arin.net/registry/"]
    assert data.address("193.0.6.139") == ["https://rdap.db.ripe.net/"]
    assert data.address("2001:67c:2e8::1") == ["https://rdap.db.ripe.net/"]
    assert data.address("2001:200::1") == ["https://rdap.apnic.net/"]
    assert data.whois_server_for_address("193.0.6.139") == "whois.ripe.net"
    assert data.whois_server_for_address("200.160.2.3") == "whois.lacnic.net"


# ------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1997-09-15T04:00:00Z", datetime(1997, 9, 15, 4, tzinfo=UTC)),
        ("1997-09-15T07:00:00+0300", datetime(1997, 9, 15, 4, tzinfo=UTC)),
        ("2018-12-01T16:17:30.568Z", datetime(2018, 12, 1, 16, 17, 30, 568000, tzinfo=UTC)),
        ("2003-03-17 12:20:05", datetime(2003, 3, 17, 12, 20, 5, tzinfo=UTC)),
        ("15-Sep-1997", datetime(1997, 9, 15, tzinfo=UTC)),
        ("26-august-1996", datetime(1996, 8, 26, tzinfo=UTC)),
        ("1997/09/15", datetime(1997, 9, 15, tzinfo=UTC)),
        ("2001/01/01 09:05:08 (JST)", datetime(2001, 1, 1, 0, 5, 8, tzinfo=UTC)),
        ("2004.12.23", datetime(2004, 12, 23, tzinfo=UTC)),
        ("02.03.2019", datetime(2019, 3, 2, tzinfo=UTC)),
        ("20000101", datetime(2000, 1, 1, tzinfo=UTC)),
        ("2020-01-02 03:04:05 UTC", datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2007-01-26T19:10:31Z[UTC]", datetime(2007, 1, 26, 19, 10, 31, tzinfo=UTC)),
        # Nominet's domains older than its records: at least that old (python-whois and
        # weppos/whois-parser both read it as the first of the month)
        ("before Aug-1996", datetime(1996, 8, 1, tzinfo=UTC)),
        # spellings seen in real registry answers (tests/fixtures/whois)
        ("2019-11-09 (YYYY-MM-DD)", datetime(2019, 11, 9, tzinfo=UTC)),
        ("2002-10-22 17:48:23 CLST", datetime(2002, 10, 22, 20, 48, 23, tzinfo=UTC)),
        ("Tue Feb 10 09:42:42 2004", datetime(2004, 2, 10, 9, 42, 42, tzinfo=UTC)),
        ("Mar 25 01:57:22 PDT 2009", datetime(2009, 3, 25, 8, 57, 22, tzinfo=UTC)),
        ("Fri Mar 29 22:03:53 GMT 2002", datetime(2002, 3, 29, 22, 3, 53, tzinfo=UTC)),
        ("30th April 2003 at 00:00:00.000", datetime(2003, 4, 30, tzinfo=UTC)),
        ("Monday 16th Jun 2014", datetime(2014, 6, 16, tzinfo=UTC)),
        ("2nd April, 2001", datetime(2001, 4, 2, tzinfo=UTC)),
        ("October  9 2012", datetime(2012, 10, 9, tzinfo=UTC)),
        ("10/11/2009 14:06:58 EAT", datetime(2009, 11, 10, 11, 6, 58, tzinfo=UTC)),
        ("03/27/2013", datetime(2013, 3, 27, tzinfo=UTC)),  # month first: 27 is no month
        ("2010-08-13 23:16:40 (UTC+8)", datetime(2010, 8, 13, 15, 16, 40, tzinfo=UTC)),
        ('"2011-01-13T15:45:18+01:00"', datetime(2011, 1, 13, 14, 45, 18, tzinfo=UTC)),
        ("1999.10.27 13:00:00", datetime(1999, 10, 27, 13, tzinfo=UTC)),
        ("Thu Aug 03 2006", datetime(2006, 8, 3, tzinfo=UTC)),
        ("May 2002", None),  # no day
        ("31.02.2019", None),
        ("", None),
        ("n/a", None),
    ],
)
def test_parse_date(text: str, expected: datetime | None) -> None:
    assert parse_date(text) == expected


# ------------------------------------------------------------------------- RDAP


def test_rdap_domain() -> None:
    record = rdap.parse_domain("example.com", domain_object("example.com"))
    assert record.domain == "example.com"
    assert record.registrar == "Example Registrar, Inc."
    assert record.created == datetime(2019, 3, 2, 10, tzinfo=UTC)
    assert record.updated == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert record.expires == datetime(2030, 3, 2, 10, tzinfo=UTC)
    assert record.registrant_country == "US"
    assert record.nameservers == ["ns1.example.net", "ns2.example.net"]
    assert record.status == ["client transfer prohibited"]
    assert record.abuse_email == "abuse@registrar.example"


def test_rdap_domain_country_from_address_value_and_missing_parts() -> None:
    document = domain_object("example.org", country=None)
    document["entities"].append(
        {
            "roles": ["administrative", "registrant"],
            "vcardArray": [
                "vcard",
                [["adr", {}, "text", ["", "", "1 Main St", "Town", "", "12345", "de"]]],
            ],
        }
    )
    del document["nameservers"]
    document["events"] = [{"eventAction": "registration"}]  # no date
    record = rdap.parse_domain("example.org", document)
    assert record.registrant_country == "DE"
    assert record.nameservers == []
    assert record.created is None


def test_rdap_network_with_cidr_and_origin_as() -> None:
    document = network_object("192.0.2.0", "192.0.2.255", cidr=("192.0.2.0", 24))
    record = rdap.parse_network("192.0.2.10", document)
    assert record.name == "EXAMPLE-NET"
    assert record.handle == "NET-192-0-2-0-1"
    assert (record.start_address, record.end_address) == ("192.0.2.0", "192.0.2.255")
    assert record.cidrs == ["192.0.2.0/24"]
    assert record.country == "US"
    assert record.asn == 64500
    assert record.organization == "Example Networks LLC"
    assert record.abuse_email == "noc@example.net"
    assert record.created == datetime(2010, 1, 2, 8, 4, 5, tzinfo=UTC)


def test_rdap_network_range_only_and_asn_in_remarks() -> None:
    document = network_object("198.51.100.0", "198.51.101.255", origin_as=None)
    document["remarks"] = [{"title": "Origin", "description": ["Originated by AS64511"]}]
    record = rdap.parse_network("198.51.100.7", document)
    assert record.cidrs == ["198.51.100.0/23"]
    assert record.asn == 64511


def test_rdap_network_ipv6() -> None:
    document = network_object(
        "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", cidr=("2001:db8::", 32)
    )
    record = rdap.parse_network("2001:db8::1", document)
    assert record.cidrs == ["2001:db8::/32"]


# ------------------------------------------------------------------------- WHOIS text

GTLD_REGISTRY = """\
   Domain Name: EXAMPLE.COM
   Registry Domain ID: 123456_DOMAIN_COM-VRSN
   Registrar WHOIS Server: whois.registrar.example
   Registrar URL: http://www.registrar.example
   Updated Date: 2024-08-14T07:01:34Z
   Creation Date: 1995-08-14T04:00:00Z
   Registry Expiry Date: 2030-08-13T04:00:00Z
   Registrar: Example Registrar, Inc.
   Registrar IANA ID: 9999
   Registrar Abuse Contact Email: abuse@registrar.example
   Registrar Abuse Contact Phone: +1.5555550100
   Domain Status: clientDeleteProhibited https://icann.org/epp#clientDeleteProhibited
   Domain Status: clientTransferProhibited https://icann.org/epp#clientTransferProhibited
   Name Server: A.NS.EXAMPLE.NET
   Name Server: B.NS.EXAMPLE.NET
   DNSSEC: unsigned
   URL of the ICANN Whois Inaccuracy Complaint Form: https://www.icann.org/wicf/
>>> Last update of whois database: 2026-11-21T08:00:00Z <<<

NOTICE: The expiration date displayed in this record is the date the registrar's
sponsorship of the domain name registration in the registry is currently set to expire.
"""

REGISTRAR = """\
Domain Name: example.com
Registrar WHOIS Server: whois.registrar.example
Creation Date: 1995-08-14T04:00:00Z
Registrar: Example Registrar, Inc.
Registrant Organization: REDACTED FOR PRIVACY
Registrant State/Province: CA
Registrant Country: us
"""


def test_whois_gtld_registry_answer() -> None:
    record = whoistext.parse_domain("example.com", GTLD_REGISTRY)
    assert record.registrar == "Example Registrar, Inc."
    assert record.created == datetime(1995, 8, 14, 4, tzinfo=UTC)
    assert record.updated == datetime(2024, 8, 14, 7, 1, 34, tzinfo=UTC)
    assert record.expires == datetime(2030, 8, 13, 4, tzinfo=UTC)
    assert record.nameservers == ["a.ns.example.net", "b.ns.example.net"]
    assert record.status == ["clientDeleteProhibited", "clientTransferProhibited"]
    assert record.abuse_email == "abuse@registrar.example"
    assert record.registrant_country is None
    assert whoistext.referral(GTLD_REGISTRY) == "whois.registrar.example"
    more = whoistext.parse_domain("example.com", REGISTRAR)
    record.fill_from(more)
    assert record.registrant_country == "US"


NOMINET = """\

    Domain name:
        example.co.uk

    Registrar:
        Example Registrar Ltd [Tag = EXAMPLE]
        URL: https://www.registrar.example

    Relevant dates:
        Registered on: 26-Aug-1996
        Expiry date:  26-Aug-2030
        Last updated:  25-Jul-2024

    Registration status:
        Registered until expiry date.

    Name servers:
        ns1.example.net           192.0.2.53
        ns2.example.net

    WHOIS lookup made at 08:00:00 21-Nov-2026
"""


def test_whois_indented_multiline_answer() -> None:
    record = whoistext.parse_domain("example.co.uk", NOMINET)
    assert record.registrar == "Example Registrar Ltd"  # without Nominet's "[Tag = …]"
    assert record.created == datetime(1996, 8, 26, tzinfo=UTC)
    assert record.expires == datetime(2030, 8, 26, tzinfo=UTC)
    assert record.updated == datetime(2024, 7, 25, tzinfo=UTC)
    assert record.nameservers == ["ns1.example.net", "ns2.example.net"]
    assert record.status == ["Registered until expiry date."]


JPRS = """\
[ JPRS database provides information on network administration. ]

Domain Information:
a. [Domain Name]                EXAMPLE.JP
g. [Organization]               Example K.K.
p. [Name Server]                ns1.example.jp
p. [Name Server]                ns2.example.jp
[State]                         Connected (2030/03/31)
[Registered Date]               2001/02/03
[Last Update]                   2024/04/01 09:05:08 (JST)
"""


def test_whois_bracketed_answer() -> None:
    record = whoistext.parse_domain("example.jp", JPRS)
    assert record.created == datetime(2001, 2, 3, tzinfo=UTC)
    assert record.updated == datetime(2024, 4, 1, 0, 5, 8, tzinfo=UTC)
    assert record.nameservers == ["ns1.example.jp", "ns2.example.jp"]
    assert record.status == ["Connected (2030/03/31)"]


def test_whois_sparse_answer_is_registered() -> None:
    record = whoistext.parse_domain(
        "example.de", "Domain: example.de\nStatus: connect\nChanged: 2018-03-12T21:44:25+01:00\n"
    )
    assert record.status == ["connect"]
    assert record.updated == datetime(2018, 3, 12, 20, 44, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        'No match for "NOSUCH.COM".\r\n>>> Last update of whois database: 2026-11-21 <<<',
        "Domain: nosuch.de\nStatus: free\n",
        "%ERROR:101: no entries found\n%\n% No entries found in source RIPE.\n",
        "NOT FOUND\n",
    ],
)
def test_whois_not_registered(text: str) -> None:
    with pytest.raises(NotRegistered):
        whoistext.parse_domain("nosuch.example", text)


def test_whois_answer_without_data_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="rate limit"):
        whoistext.parse_domain("example.com", "Query rate limit exceeded, try later.\n")


ARIN = """\

#
# ARIN WHOIS data and services are subject to the Terms of Use
#

NetRange:       192.0.0.0 - 192.0.127.255
CIDR:           192.0.0.0/17
NetName:        BIG-BLOCK
NetHandle:      NET-192-0-0-0-0
Parent:         NET192 (NET-192-0-0-0-0)
NetType:        Direct Allocation
Organization:   Big Upstream (BIG)
RegDate:        1990-01-01

NetRange:       192.0.2.0 - 192.0.2.255
CIDR:           192.0.2.0/24
NetName:        EXAMPLE-NET
NetHandle:      NET-192-0-2-0-1
Parent:         BIG-BLOCK (NET-192-0-0-0-0)
NetType:        Reassigned
OriginAS:       AS64500
Organization:   Example Networks LLC (EXN-1)
RegDate:        2010-01-02
Updated:        2022-06-07
Ref:            https://rdap.arin.net/registry/ip/192.0.2.0

OrgName:        Example Networks LLC
OrgId:          EXN-1
Country:        US

OrgAbuseHandle: ABUSE-EXN
OrgAbuseEmail:  noc@example.net
"""

RIPE = """\
% This is the RIPE Database query service.
% Abuse contact for '198.51.100.0 - 198.51.100.255' is 'abuse@example.eu'

inetnum:        198.51.100.0 - 198.51.100.255
netname:        EXAMPLE-EU-NET
descr:          Example Hosting
country:        NL
org:            ORG-EX1-RIPE
status:         ASSIGNED PA
created:        2015-04-01T10:00:00Z
last-modified:  2023-02-03T04:05:06Z
source:         RIPE

organisation:   ORG-EX1-RIPE
org-name:       Example Hosting B.V.
country:        DE

% Information related to '198.51.100.0/24AS64501'

route:          198.51.100.0/24
origin:         AS64501
source:         RIPE
"""


def test_whois_arin_network_takes_most_specific() -> None:
    record = whoistext.parse_network("192.0.2.10", ARIN)
    assert record.name == "EXAMPLE-NET"
    assert record.handle == "NET-192-0-2-0-1"
    assert record.cidrs == ["192.0.2.0/24"]
    assert (record.start_address, record.end_address) == ("192.0.2.0", "192.0.2.255")
    assert record.asn == 64500
    assert record.country == "US"
    assert record.organization == "Example Networks LLC"
    assert record.abuse_email == "noc@example.net"
    assert record.created == datetime(2010, 1, 2, tzinfo=UTC)
    assert record.status == ["Reassigned"]


def test_whois_ripe_network() -> None:
    record = whoistext.parse_network("198.51.100.7", RIPE)
    assert record.name == "EXAMPLE-EU-NET"
    assert record.cidrs == ["198.51.100.0/24"]
    assert record.country == "NL"
    assert record.asn == 64501
    assert record.organization == "Example Hosting B.V."
    assert record.abuse_email == "abuse@example.eu"
    assert record.updated == datetime(2023, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_whois_lacnic_style_cidr_inetnum() -> None:
    text = "inetnum:     203.0.113.0/24\nowner:       Example SA\ncountry:     BR\n"
    record = whoistext.parse_network("203.0.113.9", text)
    assert record.cidrs == ["203.0.113.0/24"]
    assert (record.start_address, record.end_address) == ("203.0.113.0", "203.0.113.255")
    assert record.organization == "Example SA"


def test_whois_network_not_found() -> None:
    with pytest.raises(NotRegistered):
        whoistext.parse_network("192.0.2.1", "%ERROR:101: no entries found\n")
    with pytest.raises(Unavailable):
        whoistext.parse_network("192.0.2.1", "Too many queries\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "% IANA WHOIS server\nrefer:        whois.nic.example\n\ndomain: EXAMPLE\n",
            "whois.nic.example",
        ),
        ("domain:       TEST\nwhois:        whois.nic.test\n", "whois.nic.test"),
        ("ReferralServer:  whois://whois.ripe.net\n", "whois.ripe.net"),
        ("ReferralServer:  whois://whois.example.net:4343/\n", "whois.example.net:4343"),
        ("ReferralServer:  rwhois://rwhois.example.net:4321\n", None),
        ("Registrar WHOIS Server: \n", None),
        ("Registrar WHOIS Server: https://whois.registrar.example/\n", None),
    ],
)
def test_referral(text: str, expected: str | None) -> None:
    assert whoistext.referral(text) == expected


def test_split_server_and_decorated_queries() -> None:
    assert port43.split_server("whois.example.net") == ("whois.example.net", 43)
    assert port43.split_server("whois.example.net:4343") == ("whois.example.net", 4343)
    assert port43.split_server("[2001:db8::43]:4343") == ("2001:db8::43", 4343)
    assert port43.decorated("whois.verisign-grs.com", "example.com") == "domain example.com"
    assert port43.decorated("whois.jprs.jp", "example.jp") == "example.jp/e"
    assert port43.decorated("whois.example.net", "example.net") == "example.net"


# ------------------------------------------------------------------------- asyncwhois, offline

OFFLINE_CHECK = """
import sys
calls = []
# (urllib3, imported by asyncwhois' client, binds a socket to ::1 to see whether IPv6 works:
# local, and no traffic)
NETWORK = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
           "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg", "subprocess.Popen"}
def hook(event, args):
    if event in NETWORK or event.startswith(("urllib.", "http.client.")):
        calls.append(event)
sys.addaudithook(hook)
from pathlib import Path
from services.providers.whois import whoistext
for path in sorted(Path(sys.argv[1]).glob("*/texts/*.txt"))[::7]:
    try:
        whoistext.parse_domain(path.stem, path.read_text(encoding="utf-8"))
    except Exception:
        pass
print(sorted(set(calls)))
"""


def test_asyncwhois_parsing_touches_no_network() -> None:
    """Importing and parsing with asyncwhois (through whoistext) opens no socket, resolves no
    name and fetches nothing (no public suffix list, no RDAP bootstrap file)."""
    import subprocess
    import sys
    from pathlib import Path

    fixtures = Path(__file__).parent.parent / "fixtures" / "whois"
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_CHECK, str(fixtures)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_registrar_names_without_registry_decorations() -> None:
    from services.providers.whois.record import registrar_name

    assert registrar_name("MarkMonitor, Inc. (R22-LRMS)") == "MarkMonitor, Inc."
    assert registrar_name("Tuonome IT (380)") == "Tuonome IT"
    assert registrar_name("MarkMonitor Inc. (http://www.markmonitor.com)") == "MarkMonitor Inc."
    assert registrar_name("MarkMonitor Inc. ( https://nic.at/registrar/434 )") == "MarkMonitor Inc."
    assert registrar_name("Key-Systems GmbH [Tag = KEY-SYSTEMS-DE]") == "Key-Systems GmbH"
    assert registrar_name("Markmonitor Inc. t/a Markmonitor [Tag = MARKMONITOR]") == (
        "Markmonitor Inc."
    )
    # what is not an id stays
    assert registrar_name("MarkMonitor, Inc (TLDs)") == "MarkMonitor, Inc (TLDs)"
    assert registrar_name("Registrar NIC .DO (midominio.do)") == "Registrar NIC .DO (midominio.do)"
    assert registrar_name("No registrar listed.  This domain is registered with Nominet.") is None
    assert registrar_name("https://www.registrar.example") is None


FRED = """\
domain:       example.cz
registrant:   CONTACT-1
nsset:        NSSET-1
registrar:    REG-EXAMPLE
registered:   21.07.2000 15:21:00
changed:      18.05.2011 23:28:45
expire:       22.07.2030
contact:      CONTACT-1
org:          Example s.r.o.
registrar:    REG-EXAMPLE
created:      18.05.2024 23:28:26
nsset:        NSSET-1
nserver:      ns1.example.net
registrar:    REG-EXAMPLE
created:      18.05.2025 23:27:16
"""


@pytest.mark.parametrize("blank", ["", "\n"])
def test_contact_and_nsset_dates_are_not_the_domains(blank: str) -> None:
    """FRED registries (.cz, .cr, .tz…) list the contact and NSSET objects after the domain's,
    with or without blank lines between them (python-whois' samples have none)."""
    text = FRED.replace("contact:", f"{blank}contact:").replace(
        "nsset:        NSSET-1\nn", f"{blank}nsset:        NSSET-1\nn"
    )
    record = whoistext.parse_domain("example.cz", text)
    assert record.created == datetime(2000, 7, 21, 15, 21, tzinfo=UTC)
    assert record.expires == datetime(2030, 7, 22, tzinfo=UTC)
    assert record.updated == datetime(2011, 5, 18, 23, 28, 45, tzinfo=UTC)
    assert record.registrar == "REG-EXAMPLE"
    assert record.nameservers == ["ns1.example.net"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("074.125.000.000", "74.125.0.0"),  # ARIN RDAP
        ("074.125.255.255", "74.125.255.255"),
        ("2001:4860:0000:0000:0000:0000:0000:0000", "2001:4860::"),  # ARIN RDAP, IPv6
        ("2001:4860:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF", "2001:4860:ffff:ffff:ffff:ffff:ffff:ffff"),
        ("62.239.237.0/32", "62.239.237.0"),  # RIPE RDAP
        ("2a00:2381:ffff::/128", "2a00:2381:ffff::"),
        ("2801:10:c000:0:0:0:0:0", "2801:10:c000::"),  # LACNIC RDAP
        ("192.0.2.1", "192.0.2.1"),
        ("not an address", "not an address"),
        ("0999.1.1.1", "0999.1.1.1"),
    ],
)
def test_normal_address(text: str, expected: str) -> None:
    from services.providers.whois.record import normal_address

    assert normal_address(text) == expected


def test_rdap_network_zero_padded_arin_addresses() -> None:
    document = {
        "objectClassName": "ip network",
        "handle": "NET-74-125-0-0-1",
        "startAddress": "074.125.000.000",
        "endAddress": "074.125.255.255",
        "cidr0_cidrs": [{"v4prefix": "074.125.000.000", "length": 16}],
        "name": "GOOGLE",
    }
    record = rdap.parse_network("74.125.225.229", document)
    assert (record.start_address, record.end_address) == ("74.125.0.0", "74.125.255.255")
    assert record.cidrs == ["74.125.0.0/16"]
