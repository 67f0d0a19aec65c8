"""shared.lookups.indicators: refanging, classification, normalisation, free-text extraction."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from shared.lookups.indicators import (
    REFANG_TABLE,
    Indicator,
    Parsed,
    Rejected,
    SkippedLine,
    extract,
    extract_lines,
    extract_stream,
    extract_text,
    parse_items,
    refang,
)


def one(item: str) -> Indicator:
    parsed = parse_items([item])
    assert parsed.rejected == [], parsed.rejected
    assert len(parsed.indicators) == 1, parsed.indicators
    return parsed.indicators[0]


def reason(item: str) -> str:
    parsed = parse_items([item])
    assert parsed.indicators == [], parsed.indicators
    assert len(parsed.rejected) == 1
    return parsed.rejected[0].reason


def values(parsed: Parsed) -> list[tuple[str, str]]:
    return [(i.kind, i.value) for i in parsed.indicators]


# ------------------------------------------------------------------------------------------
# refang
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("defanged", "expected"),
    [
        ("hxxp://evil.com", "http://evil.com"),
        ("hxxps://evil.com", "https://evil.com"),
        ("hXXp://evil.com", "http://evil.com"),
        ("HXXPS://evil.com", "https://evil.com"),
        ("fxp://files.evil.com", "ftp://files.evil.com"),
        ("FXP[://]files.evil.com", "ftp://files.evil.com"),
        ("http[://]evil.com", "http://evil.com"),
        ("hxxps[:]//evil.com", "https://evil.com"),
        ("http://evil.com[/]path", "http://evil.com/path"),
        (r"evil\.com", "evil.com"),
        ("evil[.]com", "evil.com"),
        ("evil[ . ]com", "evil.com"),
        ("evil [.] com", "evil.com"),
        ("evil(.)com", "evil.com"),
        ("evil{.}com", "evil.com"),
        ("evil[dot]com", "evil.com"),
        ("evil[DOT]com", "evil.com"),
        ("evil [ dot ] com", "evil.com"),
        ("evil(dot)com", "evil.com"),
        ("evil{dot}com", "evil.com"),
        ("bad[at]evil.com", "bad@evil.com"),
        ("bad[AT]evil.com", "bad@evil.com"),
        ("bad(at)evil.com", "bad@evil.com"),
        ("bad{at}evil.com", "bad@evil.com"),
        ("bad[@]evil.com", "bad@evil.com"),
        ("bad(@)evil.com", "bad@evil.com"),
        ("bad{@}evil.com", "bad@evil.com"),
        ("john [at] example [dot] com", "john@example.com"),
        ("1[.]2[.]3[.]4", "1.2.3.4"),
        ("hxxps://login-microsoft[.]com/path?q=1", "https://login-microsoft.com/path?q=1"),
    ],
)
def test_refang_forms(defanged: str, expected: str) -> None:
    assert refang(defanged) == expected


def test_every_rule_of_the_table_refangs_its_examples() -> None:
    for rule in REFANG_TABLE:
        for example in rule.example.split(", "):
            result = refang(example)
            assert result != example, rule
            assert rule.replacement in result, rule


@pytest.mark.parametrize(
    "text",
    [
        "https://evil.com/a?b=c",
        "hxxp is not a scheme without a colon",
        "ahxxp://x stays: hxxp must start a word",
        "a dot b and me at home: bare words are not refanged",
        "unbalanced [dot and (at",
        "list[0] and f(x) and {a}",
        "",
    ],
)
def test_refang_leaves_other_text_alone(text: str) -> None:
    assert refang(text) == text


def test_refang_is_idempotent() -> None:
    once = refang("hxxps://evil[.]com and bad[at]evil(dot)com")
    assert refang(once) == once == "https://evil.com and bad@evil.com"


# ------------------------------------------------------------------------------------------
# parse_items: kinds and normalisation
# ------------------------------------------------------------------------------------------


def test_each_kind() -> None:
    assert one("8.8.8.8") == Indicator(
        value="8.8.8.8", kind="ipv4", host=None, registered_domain=None, scope="public"
    )
    assert one("2606:4700:4700::1111") == Indicator(
        value="2606:4700:4700::1111", kind="ipv6", host=None, registered_domain=None
    )
    assert one("www.example.co.uk") == Indicator(
        value="www.example.co.uk",
        kind="domain",
        host="www.example.co.uk",
        registered_domain="example.co.uk",
    )
    assert one("https://login.evil.com/a") == Indicator(
        value="https://login.evil.com/a",
        kind="url",
        host="login.evil.com",
        registered_domain="evil.com",
    )
    assert one("bad@mail.evil.com") == Indicator(
        value="bad@mail.evil.com", kind="email", host="mail.evil.com", registered_domain="evil.com"
    )


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("EVIL.Com", "evil.com"),
        ("evil.com.", "evil.com"),
        ("  evil.com  ", "evil.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.DE", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("www.bücher.de.", "www.xn--bcher-kva.de"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("evil.com:8443", "evil.com"),
        ("'evil.com'", "evil.com"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ("HTTPS://Evil.COM:443/Login?User=A#top", "https://evil.com/Login?User=A"),
        ("http://evil.com:80", "http://evil.com/"),
        ("http://evil.com", "http://evil.com/"),
        ("http://evil.com:8080/x", "http://evil.com:8080/x"),
        ("https://evil.com:80/", "https://evil.com:80/"),
        ("http://evil.com:443/", "http://evil.com:443/"),
        ("ftp://files.evil.com:21/a.zip", "ftp://files.evil.com/a.zip"),
        ("http://evil.com./x", "http://evil.com/x"),
        ("http://EVIL.com?Q=A", "http://evil.com/?Q=A"),
        ("http://bücher.de/Straße", "http://xn--bcher-kva.de/Straße"),
        ("http://user:Pass@Evil.com/", "http://user:Pass@evil.com/"),
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("http://[2001:db8::1]:80/", "http://[2001:db8::1]/"),
        ("hxxps://evil[.]com/path?q=1", "https://evil.com/path?q=1"),
        ("John.Doe@EVIL.COM", "John.Doe@evil.com"),
        ("<bad@evil.com>", "bad@evil.com"),
        ("mailto:Bad@Evil.com", "Bad@evil.com"),
        ("MAILTO:bad@evil.com?subject=hi", "bad@evil.com"),
        ("bad[at]evil[.]com", "bad@evil.com"),
        ("bad@bücher.de", "bad@xn--bcher-kva.de"),
        ("root@[192.0.2.1]", "root@[192.0.2.1]"),
        ("root@192.0.2.1", "root@[192.0.2.1]"),
        ("root@[IPv6:2001:DB8::1]", "root@[IPv6:2001:db8::1]"),
    ],
)
def test_normalisation(item: str, value: str) -> None:
    assert one(item).value == value


def test_url_fields_on_an_ip_host() -> None:
    url = one("http://10.0.0.1:8080/admin")
    assert (url.kind, url.host, url.registered_domain, url.scope) == (
        "url",
        "10.0.0.1",
        None,
        "private",
    )
    v6 = one("https://[::1]/")
    assert (v6.value, v6.host, v6.scope) == ("https://[::1]/", "::1", "loopback")


def test_email_fields() -> None:
    email = one("Alice+tag@Sub.Example.co.uk")
    assert email.value == "Alice+tag@sub.example.co.uk"
    assert email.host == "sub.example.co.uk"
    assert email.registered_domain == "example.co.uk"
    literal = one("root@[127.0.0.1]")
    assert (literal.host, literal.registered_domain, literal.scope) == (
        "127.0.0.1",
        None,
        "loopback",
    )


def test_registered_domain_uses_the_icann_public_suffixes() -> None:
    assert one("a.b.example.co.uk").registered_domain == "example.co.uk"
    assert one("x.y.example.com").registered_domain == "example.com"
    assert one("4.3.2.1.in-addr.arpa").registered_domain == "1.in-addr.arpa"
    # Private-section suffixes (github.io, blogspot.com) are ordinary domains here.
    assert one("evil.github.io").registered_domain == "github.io"
    assert one("github.io").registered_domain == "github.io"
    # Wildcard and exception rules of the list: *.ck and !www.ck.
    assert one("www.ck").registered_domain == "www.ck"
    assert one("evil.foo.ck").registered_domain == "evil.foo.ck"


# ------------------------------------------------------------------------------------------
# parse_items: rejections
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("co.uk", "'co.uk' is a public suffix, not a domain"),
        ("com", "'com' is a public suffix, not a domain"),
        ("foo.ck", "'foo.ck' is a public suffix, not a domain"),
        ("foo.invalid", "not a public domain: 'foo.invalid' has no known public suffix"),
        ("server.local", "not a public domain: 'server.local' has no known public suffix"),
        ("localhost", "not a public domain: 'localhost' has no known public suffix"),
        ("999.1.1.1", "malformed IPv4 address"),
        ("1.2.3.256", "malformed IPv4 address"),
        ("1.2.3", "malformed IPv4 address"),
        ("1.2.3.4.5", "malformed IPv4 address"),
        ("010.1.1.1", "ambiguous IPv4 with leading zeros"),
        ("1.2.3.04", "ambiguous IPv4 with leading zeros"),
        ("2001:db8:::1", "malformed IPv6 address"),
        ("1:2:3:4:5:6:7:8:9", "malformed IPv6 address"),
        ("[1.2.3.4]", "malformed IPv6 address"),
        ("http://", "URL without a host"),
        ("https:///path", "URL without a host"),
        ("http://user@/x", "URL without a host"),
        ("gopher://evil.com/", "unsupported URL scheme 'gopher'"),
        ("http://evil.com:99999/", "invalid port '99999'"),
        ("evil.com:http", "invalid port 'http'"),
        ("http://localhost:8080/", "not a public domain: 'localhost' has no known public suffix"),
        ("http://999.1.1.1/", "malformed IPv4 address"),
        ("evil.com/login.php", "URL without a scheme: add http:// or https://"),
        ("10.0.0.0/8", "not a single address: network ranges and paths are not indicators"),
        ("", "empty item"),
        ("   ", "empty item"),
        ("<>", "empty item"),
        ("evil.com bad.com", "contains whitespace: give one indicator per item"),
        (
            "a!b.com",
            "not an indicator: expected an IP address, domain, URL, email address or file hash",
        ),
        ("-evil.com", "invalid domain label '-evil'"),
        ("evil-.com", "invalid domain label 'evil-'"),
        ("foo_bar.com", "invalid domain label 'foo_bar'"),
        ("a" * 64 + ".com", "invalid domain label '" + "a" * 64 + "'"),
        ("a..b.com", "empty label in domain name 'a..b.com'"),
        ("xn--zz.com", "invalid punycode label 'xn--zz'"),
        ("bad@@evil.com", "malformed email local part"),
        (".bad@evil.com", "malformed email local part"),
        ("@evil.com", "malformed email address"),
        ("mailto:", "malformed email address"),
        (
            "bad@localhost.localdomain",
            "not a public domain: 'localhost.localdomain' has no known public suffix",
        ),
        ("bad@[999.1.1.1]", "malformed IPv4 address"),
    ],
)
def test_rejection_reasons(item: str, expected: str) -> None:
    assert reason(item) == expected


def test_long_names_are_rejected() -> None:
    long_name = ".".join(["a" * 60] * 5) + ".com"
    assert reason(long_name) == "domain name longer than 253 characters"
    assert reason("http://evil.com/" + "a" * 9000) == "URL longer than 8192 characters"


def test_rejected_item_is_the_original_text_truncated() -> None:
    item = "x" * 300 + ".invalid"
    parsed = parse_items([item, "  999.1.1.1\n"])
    assert [r.item for r in parsed.rejected] == ["x" * 200, "999.1.1.1"]


def test_parse_items_keeps_valid_items_next_to_rejected_ones() -> None:
    parsed = parse_items(["evil.com", "foo.invalid", "8.8.8.8", "co.uk"])
    assert values(parsed) == [("domain", "evil.com"), ("ipv4", "8.8.8.8")]
    assert [r.item for r in parsed.rejected] == ["foo.invalid", "co.uk"]


def test_non_strings_are_rejected() -> None:
    parsed = parse_items([42, None])
    assert parsed.rejected == [Rejected("42", "not a string"), Rejected("null", "not a string")]


def test_emoji_domain_falls_back_to_idna2003() -> None:
    assert one("i❤.ws").value == "xn--i-7iq.ws"


# ------------------------------------------------------------------------------------------
# Deduplication
# ------------------------------------------------------------------------------------------


def test_dedup_across_forms_keeps_first_seen_order() -> None:
    parsed = parse_items(
        [
            "EVIL.com",
            "8.8.8.8",
            "evil[.]com",
            "evil.com.",
            "evil(dot)com",
            "hxxp://evil[.]com",
            "http://EVIL.com:80/",
            "http://evil.com/#fragment",
            "2001:DB8::1",
            "2001:db8:0::1",
            "bad@EVIL.com",
            "<bad@evil.com>",
        ]
    )
    assert values(parsed) == [
        ("domain", "evil.com"),
        ("ipv4", "8.8.8.8"),
        ("url", "http://evil.com/"),
        ("ipv6", "2001:db8::1"),
        ("email", "bad@evil.com"),
    ]
    assert parsed.rejected == []


def test_url_host_and_email_domain_are_not_separate_domains() -> None:
    parsed = parse_items(["https://evil.com/x", "bad@phish.net"])
    assert values(parsed) == [("url", "https://evil.com/x"), ("email", "bad@phish.net")]
    parsed = extract("see https://evil.com/x or write to bad@phish.net")
    assert values(parsed) == [("url", "https://evil.com/x"), ("email", "bad@phish.net")]


def test_rejections_are_deduplicated() -> None:
    parsed = parse_items(["999.1.1.1", "999.1.1.1", "co.uk"])
    assert len(parsed.rejected) == 2


# ------------------------------------------------------------------------------------------
# Scopes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "scope"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link_local"),
        ("8.8.8.8", "public"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "reserved"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "reserved"),
        ("::1", "loopback"),
        ("2001:db8::1", "private"),
        ("fe80::1", "link_local"),
        ("fd00::1", "private"),
        ("ff02::1", "multicast"),
        ("::", "reserved"),
        ("2606:4700:4700::1111", "public"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:8.8.8.8", "public"),
    ],
)
def test_ip_scopes(address: str, scope: str) -> None:
    indicator = one(address)
    assert indicator.scope == scope
    assert indicator.host is None
    assert indicator.registered_domain is None


def test_names_are_public() -> None:
    assert one("evil.com").scope == "public"
    assert one("http://evil.com/").scope == "public"


# ------------------------------------------------------------------------------------------
# Free text
# ------------------------------------------------------------------------------------------

PHISHING_REPORT = """\
Hi SOC team,

this morning I received the mail below from "IT Support" <helpdesk@micros0ft-support.com>
(reply-to: Support.Desk@Evil-Mailer.co.uk). It asked me to "verify my mailbox" at
hxxps://login.micros0ft-support[.]com/owa/auth?user=jdoe&token=AbC123#section, and a
colleague said the same campaign also used hxxp://198.51.100.23:8080/payload.exe and
fxp://files[.]evil-cdn[.]net/drop/. The sender IP in the headers was (203.0.113.45), the
Return-Path was bounce[at]evil-mailer(dot)co(dot)uk. I didn't open invoice.zip or
run setup.sh, and I did not visit evil-landing.com. Our own server 10.0.0.12 answered.
Version 1.2.3.4.5 of the client, build 2.0.1, nothing else. Thanks!
"""


def test_extract_phishing_report() -> None:
    parsed = extract(PHISHING_REPORT)
    assert values(parsed) == [
        ("email", "helpdesk@micros0ft-support.com"),
        ("email", "Support.Desk@evil-mailer.co.uk"),
        ("url", "https://login.micros0ft-support.com/owa/auth?user=jdoe&token=AbC123"),
        ("url", "http://198.51.100.23:8080/payload.exe"),
        ("url", "ftp://files.evil-cdn.net/drop/"),
        ("ipv4", "203.0.113.45"),
        ("email", "bounce@evil-mailer.co.uk"),
        ("domain", "evil-landing.com"),
        ("ipv4", "10.0.0.12"),
    ]
    assert parsed.rejected == []
    by_value = {i.value: i for i in parsed.indicators}
    url = by_value["http://198.51.100.23:8080/payload.exe"]
    assert (url.host, url.registered_domain) == ("198.51.100.23", None)
    assert by_value["10.0.0.12"].scope == "private"
    assert by_value["Support.Desk@evil-mailer.co.uk"].registered_domain == "evil-mailer.co.uk"


def test_extract_csv_snippet() -> None:
    csv = (
        "indicator,type,note\n"
        "1.2.3.4,ip,seen in proxy logs\n"
        "evil.com,domain,C2\n"
        '"http://evil.com/a?b=1",url,"landing, page"\n'
        "bad@evil.com,email,sender\n"
        "2001:db8::1,ip,v6\n"
        "5.6.7.8;evil2.com;semicolon separated\n"
    )
    parsed = extract(csv)
    assert values(parsed) == [
        ("ipv4", "1.2.3.4"),
        ("domain", "evil.com"),
        ("url", "http://evil.com/a?b=1"),
        ("email", "bad@evil.com"),
        ("ipv6", "2001:db8::1"),
        ("ipv4", "5.6.7.8"),
        ("domain", "evil2.com"),
    ]
    assert parsed.rejected == []


def test_a_quoted_url_keeps_its_commas() -> None:
    """A CSV writer quotes a field that holds a comma, JSON quotes every string: a URL
    right after a double quote ends at the closing quote (or a blank), not at a separator.
    Unquoted, a comma, a semicolon or a pipe still ends it (fields of CSV and logs)."""
    text = (
        '"https://bad.example.com/x?q=a,b;c|d",note\n'
        '{"url": "hxxp://evil[.]com/p?ids=1,2,3"}\n'
        'said "http://shop.example.com/a, then left"\n'
        "http://plain.example.com/a,b.example.org\n"
    )
    assert values(extract(text)) == [
        ("url", "https://bad.example.com/x?q=a,b;c|d"),
        ("url", "http://evil.com/p?ids=1,2,3"),
        ("url", "http://shop.example.com/a"),
        ("url", "http://plain.example.com/a"),
        ("domain", "b.example.org"),
    ]
    extract('"http://x' * 50_000)  # every quote starts a new run: still one pass


def test_a_urlhaus_feed_dump_as_uploaded() -> None:
    """A real feed file, read line by line as an upload is: each row's URL whole (its
    address not a second indicator), the tags' quoted commas no matter; a comment line
    nothing is read from says it is no indicator, not "URL without a scheme"."""
    dump = Path(__file__).parents[1] / "fixtures" / "urlhaus" / "csv_recent_excerpt.txt"
    parsed = extract_text(dump.read_text().splitlines())
    urls = [i.value for i in parsed.indicators if i.kind == "url" and "urlhaus" not in i.value]
    assert urls == [
        "http://fs3n2.sendspace.com/dlpro/6fcd-ra.exe",
        "http://192.119.106.235/officeupd.tmp",
        "http://45.137.22.59/bbggmm/vbc.exe",
        "http://45.137.22.59/bbggmm/win.exe",
    ]
    assert not [i for i in parsed.indicators if i.kind == "ipv4"]
    banner = [r for r in parsed.rejected if r.item.startswith("####")]
    assert len(banner) == 2
    assert all("not an indicator" in r.reason for r in banner)


def test_extract_mail_log_line() -> None:
    line = (
        "Jan 12 10:23:45 mx1 postfix/smtpd[1234]: NOQUEUE: reject: RCPT from "
        "unknown[203.0.113.7]: 554 5.7.1 <bad@evil.com>: Relay access denied; "
        "from=<phish@evil-sender.co.uk> to=<victim@corp.example.com> proto=ESMTP "
        "helo=<mail.evil-sender.co.uk>"
    )
    assert values(extract(line)) == [
        ("ipv4", "203.0.113.7"),
        ("email", "bad@evil.com"),
        ("email", "phish@evil-sender.co.uk"),
        ("email", "victim@corp.example.com"),
        ("domain", "mail.evil-sender.co.uk"),
    ]


def test_extract_web_log_line() -> None:
    line = (
        '198.51.100.9 - - [10/Oct/2024:13:55:36 +0000] "GET /login.php?u=1 HTTP/1.1" 200 2326 '
        '"http://evil.example.com/start" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) '
        'AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36" '
        "upstream=[2001:db8::7]:8080 mac=00:1a:2b:3c:4d:5e"
    )
    parsed = extract(line)
    assert values(parsed) == [
        ("ipv4", "198.51.100.9"),
        ("url", "http://evil.example.com/start"),
        ("ipv6", "2001:db8::7"),
    ]
    assert parsed.rejected == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(see 1.2.3.4)", [("ipv4", "1.2.3.4")]),
        ("visit evil.com.", [("domain", "evil.com")]),
        (
            "visit evil.com, then bad.net; then worse.org!",
            [("domain", "evil.com"), ("domain", "bad.net"), ("domain", "worse.org")],
        ),
        ("'evil.com' and \"bad.net\"", [("domain", "evil.com"), ("domain", "bad.net")]),
        ("<bad@evil.com>", [("email", "bad@evil.com")]),
        ("mailto:bad@evil.com", [("email", "bad@evil.com")]),
        ("(http://evil.com/x).", [("url", "http://evil.com/x")]),
        ("[https://evil.com/a]", [("url", "https://evil.com/a")]),
        ("**http://evil.com/a**", [("url", "http://evil.com/a")]),
        (
            "http://en.wikipedia.org/wiki/Foo_(bar)",
            [("url", "http://en.wikipedia.org/wiki/Foo_(bar)")],
        ),
        ("go to http://1.2.3.4:8080/x?y=1 now", [("url", "http://1.2.3.4:8080/x?y=1")]),
        ("https://evil.com:443/", [("url", "https://evil.com/")]),
        ("host 1.2.3.4:443 connected", [("ipv4", "1.2.3.4")]),
        ("IPv6 2001:db8::1.", [("ipv6", "2001:db8::1")]),
        ("loopback ::1 and fe80::1%eth0", [("ipv6", "::1"), ("ipv6", "fe80::1")]),
        ("mapped ::ffff:192.0.2.1", [("ipv6", "::ffff:192.0.2.1")]),
        ("range 10.0.0.1-10.0.0.5", [("ipv4", "10.0.0.1"), ("ipv4", "10.0.0.5")]),
        ("net 192.0.2.0/24", [("ipv4", "192.0.2.0")]),
        ("bücher.de", [("domain", "xn--bcher-kva.de")]),
        ("--evil.com--", [("domain", "evil.com")]),
        ("_dmarc.example.com TXT", [("domain", "_dmarc.example.com")]),
        ("1.2.3.4.nip.io", [("domain", "1.2.3.4.nip.io")]),
        ("hxxps://evil[.]com/path?q=1", [("url", "https://evil.com/path?q=1")]),
        ("evil[.]zip and evil(dot)py", [("domain", "evil.zip"), ("domain", "evil.py")]),
        ("root@192.0.2.7 logged in", [("email", "root@[192.0.2.7]")]),
        ("EVIL.com evil[.]com evil.com. Evil.Com", [("domain", "evil.com")]),
    ],
)
def test_extract_finds_indicators_in_punctuation(
    text: str, expected: list[tuple[str, str]]
) -> None:
    parsed = extract(text)
    assert values(parsed) == expected
    assert parsed.rejected == []


@pytest.mark.parametrize(
    "text",
    [
        "open file.txt and report.pdf",
        "python main.py && ./install.sh; see README.md",
        "attachments: invoice.zip, clip.mov, notes.one, Main.java, app.js.map",
        "version 1.2.3 and 1.2.3.4.5 and build 10.0.19041.1",
        "Chrome/120.0.0.0 Safari/537.36",
        "at 10:23:45.123 on 2024-01-12",
        "mac 00:1a:2b:3c:4d:5e and std::string and a :: b",
        "e.g. i.e. etc. U.S.A.",
        "icon@2x.png and root@localhost and user@host.corp",
        "http is a protocol, www is a prefix, foo.invalid is not public",
        "",
    ],
)
def test_extract_ignores_non_indicators(text: str) -> None:
    assert extract(text) == Parsed(indicators=[], rejected=[])


@pytest.mark.parametrize(
    ("text", "item", "expected"),
    [
        ("from 999.1.1.1 again", "999.1.1.1", "malformed IPv4 address"),
        ("from 010.1.1.1 again", "010.1.1.1", "ambiguous IPv4 with leading zeros"),
        ("see http:// for details", "http://", "URL without a host"),
        (
            "see http://intranet/x now",
            "http://intranet/x",
            "not a public domain: 'intranet' has no known public suffix",
        ),
        ("the co.uk registry", "co.uk", "'co.uk' is a public suffix, not a domain"),
        ("mail bad@[999.1.1.1]", "bad@[999.1.1.1]", "malformed IPv4 address"),
    ],
)
def test_extract_rejects_what_looks_like_an_indicator(text: str, item: str, expected: str) -> None:
    parsed = extract(text)
    assert parsed.indicators == []
    assert parsed.rejected == [Rejected(item, expected)]


def test_extract_keeps_going_after_a_rejection() -> None:
    parsed = extract("999.1.1.1, 8.8.8.8, co.uk, evil.com")
    assert values(parsed) == [("ipv4", "8.8.8.8"), ("domain", "evil.com")]
    assert [r.item for r in parsed.rejected] == ["999.1.1.1", "co.uk"]


def test_extract_stream_dedups_across_lines_and_matches_extract() -> None:
    lines = PHISHING_REPORT.splitlines(keepends=True)
    streamed = extract_stream(lines + lines)
    assert streamed == extract(PHISHING_REPORT)
    parsed = extract_stream(
        ["evil.com 1.2.3.4\n", "EVIL.COM\n", "evil[.]com 999.1.1.1\n", "999.1.1.1"]
    )
    assert values(parsed) == [("domain", "evil.com"), ("ipv4", "1.2.3.4")]
    assert parsed.rejected == [Rejected("999.1.1.1", "malformed IPv4 address")]


def test_extract_stream_accepts_a_generator() -> None:
    parsed = extract_stream(f"host{i}.evil.com\n" for i in range(3))
    assert [i.value for i in parsed.indicators] == [
        "host0.evil.com",
        "host1.evil.com",
        "host2.evil.com",
    ]


def test_large_log() -> None:
    noise = (
        '198.51.100.9 - - [10/Oct/2024:13:55:36 +0000] "GET /static/app.js?v=1.2.3 HTTP/1.1" '
        '200 5120 "-" "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36" '
        "rt=0.012 id=ab12cd34 file.txt main.py [ok]\n"
    )
    repeats = 2_000_000 // len(noise)
    lines = [noise] * repeats
    lines[repeats // 3] = "ALERT beacon to hxxps://c2.evil[.]com/gate.php from 10.1.2.3\n"
    lines[repeats // 2] = "ALERT dns query for bad-domain.net from 2001:db8::42\n"
    lines[-1] = "ALERT phish from <ceo@spoofed-corp.co.uk>, odd IP 300.1.1.1\n"
    text = "".join(lines)
    assert len(text) > 1_900_000
    expected = [
        ("ipv4", "198.51.100.9"),
        ("url", "https://c2.evil.com/gate.php"),
        ("ipv4", "10.1.2.3"),
        ("domain", "bad-domain.net"),
        ("ipv6", "2001:db8::42"),
        ("email", "ceo@spoofed-corp.co.uk"),
    ]
    parsed = extract(text)
    assert values(parsed) == expected
    assert parsed.rejected == [Rejected("300.1.1.1", "malformed IPv4 address")]
    assert extract_stream(lines) == parsed


def test_pathological_inputs_do_not_explode() -> None:
    # Long runs that would make a backtracking regex quadratic: each must come back quickly
    # (pytest-timeout guards the suite) and find nothing.
    for text in (
        "a" * 200_000,
        "a." * 100_000,
        "1." * 100_000,
        "a:" * 100_000,
        " " * 200_000 + "x",
        "[ " * 100_000,
        "-" * 200_000,
        "@" * 200_000,
        "a-" * 100_000,
        "-." * 100_000,
        "a+" * 100_000,
        "%" * 200_000,
        "h:" * 100_000,
        "a@" * 100_000,
        "(." * 100_000,
    ):
        parsed = extract(text)
        assert parsed.indicators == []
    long_url = extract("http://evil.com/" + "a" * 100_000)
    assert long_url.rejected == [
        Rejected("http://evil.com/" + "a" * 184, "URL longer than 8192 characters")
    ]


def test_results_serialise_with_msgspec() -> None:
    parsed = parse_items(["evil.com", "co.uk"])
    decoded = msgspec.json.decode(msgspec.json.encode(parsed), type=Parsed)
    assert decoded == parsed
    assert msgspec.to_builtins(parsed.indicators[0]) == {
        "value": "evil.com",
        "kind": "domain",
        "host": "evil.com",
        "registered_domain": "evil.com",
        "scope": "public",
    }


def test_extract_lines_tells_the_lines_it_read_nothing_from() -> None:
    """A file's non-empty lines that gave nothing are told with their number and why;
    free-text semantics stay (words around indicators, repeats, rejections are no skip)."""
    lines = [
        "indicator,note\n",  # a CSV header
        "evil[.]com,phish\n",
        "\n",
        "   \n",
        "seen again: evil.com\n",  # a repeat is something read
        "intranet\n",
        "main.py\n",  # a file name in free text, unless defanged
        "999.1.1.1\n",  # looks like an indicator: rejected, not skipped
        "call me at the desk\n",
        "word " * 60 + "\n",
    ]
    parsed, skipped = extract_lines(lines)
    assert parsed == extract_stream(lines)  # the same indicators and rejections
    assert [i.value for i in parsed.indicators] == ["evil.com"]
    assert parsed.rejected == [Rejected("999.1.1.1", "malformed IPv4 address")]
    nothing = "no IP address, domain, URL, e-mail address or file hash found"
    assert skipped == [
        SkippedLine(1, "indicator,note", nothing),
        SkippedLine(6, "intranet", "not a public domain: 'intranet' has no known public suffix"),
        SkippedLine(
            7,
            "main.py",
            "read as a file name (.py), not a host: write it defanged (main[.]py) to look it up",
        ),
        SkippedLine(9, "call me at the desk", nothing),
        SkippedLine(10, ("word " * 60)[:200], nothing),
    ]
    assert extract_lines([]) == (Parsed([], []), [])


def test_extract_text_gives_every_skipped_line_back_as_rejected() -> None:
    """What the API answers for ``"text"`` and an upload: the invalid indicators, then each
    line nothing was read from, numbered from ``first`` (an upload read in parts)."""
    lines = ["8.8.4.4", "intranet", "999.1.1.1", "", "bogus!!"]
    parsed = extract_text(lines, first=4097)
    assert [i.value for i in parsed.indicators] == ["8.8.4.4"]
    assert parsed.rejected == [
        Rejected("999.1.1.1", "malformed IPv4 address"),
        Rejected(
            "intranet", "line 4098: not a public domain: 'intranet' has no known public suffix"
        ),
        Rejected(
            "bogus!!",
            "line 4101: not an indicator: expected an IP address, domain, URL, email address "
            "or file hash",
        ),
    ]
    assert extract_text(["evil[.]com", "evil.com"]) == extract_stream(["evil[.]com"])


# --------------------------------------------------------------------------------------------
# File hashes
# --------------------------------------------------------------------------------------------

MD5_EMPTY = "d41d8cd98f00b204e9800998ecf8427e"
SHA1_EMPTY = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_hashes_are_items_of_their_own_kind_in_lower_case() -> None:
    from shared.lookups.indicators import hash_algorithm

    parsed = parse_items([MD5_EMPTY.upper(), SHA1_EMPTY, f" {SHA256_EMPTY} ", f"<{MD5_EMPTY}>"])
    assert [(i.kind, i.value) for i in parsed.indicators] == [
        ("hash", MD5_EMPTY),
        ("hash", SHA1_EMPTY),
        ("hash", SHA256_EMPTY),
    ]
    assert [hash_algorithm(i.value) for i in parsed.indicators] == ["md5", "sha1", "sha256"]
    assert all(i.host is None and i.registered_domain is None for i in parsed.indicators)
    wrong = parse_items([MD5_EMPTY + "ab", SHA256_EMPTY + "0"])
    assert [r.reason for r in wrong.rejected] == [
        "34 hex digits: not an MD5 (32), SHA-1 (40) or SHA-256 (64)",
        "65 hex digits: not an MD5 (32), SHA-1 (40) or SHA-256 (64)",
    ]
    assert hash_algorithm("deadbeef") is None
    assert hash_algorithm("z" * 32) is None


@pytest.mark.parametrize(
    "text",
    [
        f"md5 {MD5_EMPTY}.",
        f"SHA256={SHA256_EMPTY.upper()},IMPHASH=0",
        f"sha1: {SHA1_EMPTY}",
        f"({MD5_EMPTY})",
        f'"{MD5_EMPTY}"',
        f"{MD5_EMPTY}\t{MD5_EMPTY}",
    ],
)
def test_free_text_finds_whole_token_hashes(text: str) -> None:
    found = [(i.kind, i.value) for i in extract(text).indicators]
    assert len(found) == 1, found
    assert found[0][0] == "hash"
    assert found[0][1] in (MD5_EMPTY, SHA1_EMPTY, SHA256_EMPTY)


@pytest.mark.parametrize(
    "text",
    [
        MD5_EMPTY + "ab",  # 34 hex digits
        "a" + SHA1_EMPTY,  # 41
        SHA256_EMPTY + MD5_EMPTY,  # 96
        f"x{MD5_EMPTY}",  # inside a word
        f"{MD5_EMPTY}_old",
        f"{MD5_EMPTY}.exe",  # a file name
        f"/files/{MD5_EMPTY}",  # a path
        f"?id={MD5_EMPTY}&x=1",
        f"{MD5_EMPTY}-{MD5_EMPTY}",
        "deadbeef cafe bad",
    ],
)
def test_free_text_finds_no_hash_inside_longer_tokens(text: str) -> None:
    assert [i for i in extract(text).indicators if i.kind == "hash"] == []


def test_a_hash_in_a_url_stays_part_of_the_url() -> None:
    found = extract(f"get https://files.example.com/{SHA256_EMPTY}?v={MD5_EMPTY} now")
    assert [(i.kind, i.value) for i in found.indicators] == [
        ("url", f"https://files.example.com/{SHA256_EMPTY}?v={MD5_EMPTY}")
    ]
