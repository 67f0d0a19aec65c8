"""Turn analyst input into a clean, deduplicated list of indicators to look up.

Three ways in:

* :func:`parse_items` — a list where every item is meant to be ONE indicator (the JSON
  ``"indicators"`` list of ``POST /api/v1/lookups``). Anything that is not a valid indicator
  comes back as :class:`Rejected` with a short reason.
* :func:`extract` — free text (an e-mail, a ticket, a log, a CSV file). Every indicator inside
  is found; the text around it is ignored. Only things that clearly look like indicators but
  are invalid are rejected (``999.1.1.1``, ``http://``, ``co.uk``); dotted words whose last
  label is not a public suffix (``file.txt``, ``v1.2.3``) are simply ignored.
* :func:`extract_stream` — :func:`extract` over an iterable of lines, deduplicated across
  lines; :func:`extract_lines` also names each non-empty line nothing was read from, with
  why, and :func:`extract_text` (the API's ``"text"`` and file upload, read line by line)
  gives those lines back as :class:`Rejected` too (``line 3: not a public domain: …``).

Kinds are ``ipv4``, ``ipv6``, ``domain``, ``url`` (only with an ``http``, ``https`` or ``ftp``
scheme), ``email`` and ``hash`` (an MD5, SHA-1 or SHA-256 in hex, any case; in free text only
as a whole token, never inside longer hex, a path or a URL: see :func:`hash_algorithm`).
Values are normalised (see :class:`Indicator`) and deduplicated by
``(kind, value)`` in first-seen order. A URL's host and an e-mail's domain are not added as
separate ``domain`` indicators: providers derive them from :attr:`Indicator.host`.

Domains must end in a suffix of the ICANN section of the public suffix list bundled with the
``publicsuffixlist`` package (never downloaded) and must not be a public suffix themselves.
The ICANN section is used, not the private one, so that ``registered_domain`` is what a
registry knows: ``evil.github.io`` has ``registered_domain`` ``github.io``, and
``github.io`` or ``blogspot.com`` can themselves be looked up.

Every regular expression here runs in linear time: candidates may only start at a token
boundary, and the repetitions that could backtrack are possessive.
"""

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Final, Literal, NamedTuple

import msgspec
from publicsuffixlist import PublicSuffixList

__all__ = [
    "FILE_LIKE_SUFFIXES",
    "REFANG_TABLE",
    "Indicator",
    "Kind",
    "Parsed",
    "RefangRule",
    "Rejected",
    "Scope",
    "SkippedLine",
    "extract",
    "extract_lines",
    "extract_stream",
    "extract_text",
    "hash_algorithm",
    "parse_items",
    "refang",
]

Kind = Literal["ipv4", "ipv6", "domain", "url", "email", "hash"]
Scope = Literal["public", "private", "loopback", "link_local", "reserved", "multicast"]


class Indicator(msgspec.Struct, frozen=True, kw_only=True):
    """One indicator, normalised.

    ``value`` forms: ``ipv4`` dotted quad; ``ipv6`` compressed lower case (an IPv4-mapped
    address as ``::ffff:1.2.3.4``, a zone id dropped); ``domain`` lower-case A-labels
    (punycode), no trailing dot; ``url`` ``scheme://[userinfo@]host[:port]/path[?query]`` with
    scheme and host lower-cased, the default port and the fragment dropped, an empty path as
    ``/``; ``email`` ``local@domain`` with the domain normalised like a domain, the local part
    as given, an IP host as an address literal (``user@[192.0.2.1]``, ``user@[IPv6:::1]``);
    ``hash`` lower-case hex (its algorithm: :func:`hash_algorithm`).
    """

    value: str
    kind: Kind
    #: The host to query DNS and registries for: the domain itself, a URL's host, an e-mail's
    #: domain; the IP string for a URL or e-mail on an IP host; None for ipv4/ipv6/hash.
    host: str | None
    #: Organisational domain per the public suffix list (``example.co.uk``); None for IPs
    #: and hashes.
    registered_domain: str | None
    #: Address scope for IPs and for URLs/e-mails on IP hosts; ``public`` for names.
    scope: Scope = "public"


class Rejected(msgspec.Struct, frozen=True):
    """Something that was meant as (or looks like) an indicator but is not a valid one."""

    item: str  # the original text, truncated to 200 characters
    reason: str


class Parsed(msgspec.Struct, frozen=True):
    indicators: list[Indicator]
    rejected: list[Rejected]


# --------------------------------------------------------------------------------------------
# Refanging
# --------------------------------------------------------------------------------------------


class RefangRule(NamedTuple):
    """One defanged form :func:`refang` undoes."""

    example: str  # what it looks like
    first: str  # the characters it can start with (literal characters, not a regex)
    rest: str  # regex for what follows the first character, matched case-insensitively
    replacement: str
    swallows_blanks: bool = False  # also drop the blanks around it: "bad [at] evil [dot] com"


_IN = r"[ \t]*+"  # blanks inside and after a bracketed form
_SCHEME_START = r"(?<!\w.)"  # the first character (h, f) does not continue a word
_COLON_NEXT = r"(?=\[?:)"  # a scheme is refanged only before ":" or "[:": hxxp:, hxxps[://]

#: Every defanged form :func:`refang` undoes, in one left-to-right pass; at one position the
#: first rule that matches wins. Case does not matter (``hXXps``, ``[DOT]``). The words ``dot``
#: and ``at`` are refanged only inside brackets, never bare ("a dot b" stays as it is); the
#: bracketed dot and at forms may have blanks inside and swallow the blanks around them.
REFANG_TABLE: Final[tuple[RefangRule, ...]] = (
    RefangRule("hxxps://evil.com, hXXps[:]//", "hH", rf"{_SCHEME_START}xxps{_COLON_NEXT}", "https"),
    RefangRule("hxxp://evil.com, HXXP[://]", "hH", rf"{_SCHEME_START}xxp{_COLON_NEXT}", "http"),
    RefangRule("fxp://evil.com", "fF", rf"{_SCHEME_START}xp{_COLON_NEXT}", "ftp"),
    RefangRule("http[://]evil.com", "[", r"://\]", "://"),
    RefangRule("http[:]//evil.com", "[", r":\]", ":"),
    RefangRule("evil.com[/]path", "[", r"/\]", "/"),
    RefangRule(r"evil\.com", "\\", r"\.", "."),
    RefangRule("evil[.]com, evil [ . ] com", "[", rf"{_IN}\.{_IN}\]{_IN}", ".", True),
    RefangRule("evil(.)com", "(", rf"{_IN}\.{_IN}\){_IN}", ".", True),
    RefangRule("evil{.}com", "{", rf"{_IN}\.{_IN}\}}{_IN}", ".", True),
    RefangRule("evil[dot]com, evil [ DOT ] com", "[", rf"{_IN}dot{_IN}\]{_IN}", ".", True),
    RefangRule("evil(dot)com", "(", rf"{_IN}dot{_IN}\){_IN}", ".", True),
    RefangRule("evil{dot}com", "{", rf"{_IN}dot{_IN}\}}{_IN}", ".", True),
    RefangRule("bad[at]evil.com, bad [ AT ] evil.com", "[", rf"{_IN}at{_IN}\]{_IN}", "@", True),
    RefangRule("bad(at)evil.com", "(", rf"{_IN}at{_IN}\){_IN}", "@", True),
    RefangRule("bad{at}evil.com", "{", rf"{_IN}at{_IN}\}}{_IN}", "@", True),
    RefangRule("bad[@]evil.com", "[", rf"{_IN}@{_IN}\]{_IN}", "@", True),
    RefangRule("bad(@)evil.com", "(", rf"{_IN}@{_IN}\){_IN}", "@", True),
    RefangRule("bad{@}evil.com", "{", rf"{_IN}@{_IN}\}}{_IN}", "@", True),
)


def _refang_regex(rules: tuple[RefangRule, ...]) -> re.Pattern[str]:
    # The pattern starts with a plain character class so that the regex engine skips, in C,
    # every character no rule can start with; the rule is then told apart by a look-behind
    # on that first character. (No re.IGNORECASE: it would disable that fast skip.)
    def chars(first: str) -> str:
        return "[" + "".join(re.escape(c) for c in first) + "]"

    starts = "".join(dict.fromkeys("".join(rule.first for rule in rules)))
    branches = "|".join(
        f"(?<={chars(rule.first)})(?P<r{i}>(?i:{rule.rest}))" for i, rule in enumerate(rules)
    )
    return re.compile(f"{chars(starts)}(?:{branches})")


_REFANG_RE: Final = _refang_regex(REFANG_TABLE)
_REFANG_RULE: Final[dict[str, RefangRule]] = {f"r{i}": r for i, r in enumerate(REFANG_TABLE)}


def _refang_marked(text: str) -> tuple[str, list[int]]:
    """Refang ``text``; also return the output offsets where a replacement was put."""
    pieces: list[str] = []
    marks: list[int] = []
    pos = 0
    out_len = 0
    for match in _REFANG_RE.finditer(text):
        rule = _REFANG_RULE[match.lastgroup or ""]
        kept = text[pos : match.start()]
        if rule.swallows_blanks:
            kept = kept.rstrip(" \t")
        pieces.append(kept)
        out_len += len(kept)
        marks.append(out_len)
        pieces.append(rule.replacement)
        out_len += len(rule.replacement)
        pos = match.end()
    if not marks:
        return text, marks
    pieces.append(text[pos:])
    return "".join(pieces), marks


def refang(text: str) -> str:
    """Undo the usual defanging (see :data:`REFANG_TABLE`): ``hxxps://evil[.]com`` →
    ``https://evil.com``, ``bad[at]evil(dot)com`` → ``bad@evil.com``."""
    return _refang_marked(text)[0]


# --------------------------------------------------------------------------------------------
# Building blocks: IPs, domains, URLs, e-mails
# --------------------------------------------------------------------------------------------

_PSL: Final = PublicSuffixList(only_icann=True, accept_unknown=False)

#: Public suffixes that are also common file extensions. In free text a bare name ending in
#: one of them (``invoice.zip``, ``main.py``, ``README.md``) is taken for a file name and
#: ignored, unless it was defanged (``evil[.]zip``), which shows it was meant as a domain.
#: URL hosts, e-mail domains and :func:`parse_items` are not affected.
FILE_LIKE_SUFFIXES: Final = frozenset(
    {"py", "sh", "md", "zip", "mov", "one", "tf", "java", "map", "cab"}
)

_MAX_ITEM = 200
_MAX_URL = 8192
_SCHEMES: Final = {"http": 80, "https": 443, "ftp": 21}  # scheme -> default port

_IPV4_SHAPE: Final = re.compile(r"[0-9]+(?:\.[0-9]+){3}")
_NUMERIC_DOTTED: Final = re.compile(r"[0-9]+(?:\.[0-9]*)*")
_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_LDH_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LDH_NAME: Final = re.compile(rf"(?:{_LDH_LABEL.pattern}\.)+{_LDH_LABEL.pattern}")  # fast path
_SCHEME_PREFIX: Final = re.compile(r"([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_LOCAL_PART: Final = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*")
# Characters a host may contain before validation: ASCII letters, digits, ``.:[]%_-`` and any
# non-ASCII character (IDNA decides on those, e.g. emoji domains).
_HOST_CHARS: Final = re.compile(r"[A-Za-z0-9.:\[\]%_\x80-\U0010ffff-]+")
_PORT: Final = re.compile(r"[0-9]{1,5}")
# Ideographic and full-width full stops separate labels like "." (IDNA / UTS #46).
_FULL_STOPS: Final = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


class _Invalid(ValueError):
    """Not a valid indicator; the message is the reason given to the analyst."""


class _UnknownSuffix(_Invalid):
    """A name whose last label is not a known public suffix (ignored in free text)."""


def _to_ascii_label_stdlib(label: str) -> str:
    return label.encode("idna").decode("ascii")


try:
    import idna as _idna

    def _to_ascii_label(label: str) -> str:
        try:
            return _idna.encode(label, uts46=True).decode("ascii")
        except _idna.IDNAError:
            # IDNA 2008 refuses some names that are registered all the same (emoji
            # domains): fall back to the IDNA 2003 codec of the standard library.
            return _to_ascii_label_stdlib(label)

except ImportError:  # pragma: no cover - idna is normally installed (aiohttp/yarl need it)
    _to_ascii_label = _to_ascii_label_stdlib


def _ip_scope(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Scope:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    # Checked before is_private: Python counts 0.0.0.0/8, 240.0.0.0/4 and :: as private too.
    if address.is_unspecified or address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:  # e.g. 100.64.0.0/10 (shared address space)
        return "reserved"
    return "public"


def _parse_ipv4(text: str) -> ipaddress.IPv4Address:
    octets = text.split(".")
    if len(octets) != 4 or not all(o.isascii() and o.isdigit() for o in octets):
        raise _Invalid("malformed IPv4 address")
    if any(len(o) > 3 or int(o) > 255 for o in octets):
        raise _Invalid("malformed IPv4 address")
    if any(len(o) > 1 and o.startswith("0") for o in octets):
        raise _Invalid("ambiguous IPv4 with leading zeros")
    return ipaddress.IPv4Address(text)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address:
    address, _, _zone = text.partition("%")
    if not address or len(address) > 45 or not address.isascii():
        raise _Invalid("malformed IPv6 address")
    try:
        return ipaddress.IPv6Address(address)
    except ValueError:
        raise _Invalid("malformed IPv6 address") from None


def _ipv6_text(address: ipaddress.IPv6Address) -> str:
    # Python < 3.13 writes ::ffff:10.0.0.1 as ::ffff:a00:1; keep one form on every version.
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return address.compressed


class _Host(msgspec.Struct, frozen=True):
    kind: Literal["ipv4", "ipv6", "domain"]
    value: str  # normalised host: dotted quad, compressed IPv6 or A-label domain
    registered_domain: str | None
    scope: Scope


def _normalise_domain(name: str) -> _Host:
    """Validate a domain name; returns it as lower-case A-labels, no trailing dot."""
    if not name.isascii():
        name = name.translate(_FULL_STOPS)
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise _Invalid("empty domain name")
    if name.startswith(".") or ".." in name:
        raise _Invalid(f"empty label in domain name '{name[:_MAX_ITEM]}'")
    if name.isascii():
        ascii_name = name.lower()
    else:
        try:
            ascii_name = ".".join(
                label.lower() if label.isascii() else _to_ascii_label(label)
                for label in name.split(".")
            )
        except UnicodeError:
            raise _Invalid(f"invalid internationalised domain name '{name[:70]}'") from None
    registered = _PSL.privatesuffix(ascii_name)
    if registered is None:
        if _PSL.publicsuffix(ascii_name) is None:
            raise _UnknownSuffix(
                f"not a public domain: '{ascii_name[:70]}' has no known public suffix"
            )
        raise _Invalid(f"'{ascii_name}' is a public suffix, not a domain")
    if len(ascii_name) > 253:
        raise _Invalid("domain name longer than 253 characters")
    if "xn--" in ascii_name or not _LDH_NAME.fullmatch(ascii_name):
        _check_labels(ascii_name.split("."), registered.count(".") + 1)
    return _Host("domain", ascii_name, registered, "public")


def _check_labels(labels: list[str], registrable: int) -> None:
    """Label syntax; ``registrable`` is the number of labels of the registered domain."""
    for position, label in enumerate(reversed(labels)):
        # Underscores only in labels left of the registered domain (_dmarc.example.com).
        pattern = _LDH_LABEL if position < registrable else _LABEL
        if not pattern.fullmatch(label):
            raise _Invalid(f"invalid domain label '{label[:70]}'")
        if label.startswith("xn--"):
            try:
                label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                raise _Invalid(f"invalid punycode label '{label}'") from None


def _classify_host(host: str) -> _Host:
    """An IP address or a domain name, without brackets or port."""
    if ":" in host:
        v6 = _parse_ipv6(host)
        return _Host("ipv6", _ipv6_text(v6), None, _ip_scope(v6))
    if _IPV4_SHAPE.fullmatch(host):
        v4 = _parse_ipv4(host)
        return _Host("ipv4", str(v4), None, _ip_scope(v4))
    if _NUMERIC_DOTTED.fullmatch(host) and "." in host.rstrip("."):
        raise _Invalid("malformed IPv4 address")
    return _normalise_domain(host)


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port or None)."""
    if hostport.startswith("["):
        inner, sep, after = hostport[1:].partition("]")
        if not sep or ":" not in inner:
            raise _Invalid("malformed IPv6 address")
        if not after:
            return inner, None
        if not after.startswith(":"):
            raise _Invalid("malformed host")
        return inner, after[1:]
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport, None


def _check_port(port: str | None) -> int | None:
    if port is None or port == "":
        return None
    if not (port.isascii() and _PORT.fullmatch(port)) or int(port) > 65535:
        raise _Invalid(f"invalid port '{port[:20]}'")
    return int(port)


def _host_indicator(host: _Host) -> Indicator:
    if host.kind == "domain":
        return Indicator(
            value=host.value,
            kind="domain",
            host=host.value,
            registered_domain=host.registered_domain,
        )
    return Indicator(
        value=host.value, kind=host.kind, host=None, registered_domain=None, scope=host.scope
    )


def _parse_url(text: str) -> Indicator:
    if len(text) > _MAX_URL:
        raise _Invalid(f"URL longer than {_MAX_URL} characters")
    match = _SCHEME_PREFIX.match(text)
    if match is None:  # pragma: no cover - callers check the scheme
        raise _Invalid("URL without a scheme")
    scheme = match.group(1).lower()
    if scheme not in _SCHEMES:
        raise _Invalid(f"unsupported URL scheme '{scheme[:20]}'")
    rest = text[match.end() :].partition("#")[0]
    cut = len(rest)
    for stop in "/?\\":
        index = rest.find(stop)
        if index != -1:
            cut = min(cut, index)
    authority, tail = rest[:cut], rest[cut:]
    if tail.startswith("\\"):
        raise _Invalid("malformed URL: backslash after the host")
    userinfo, _, hostport = authority.rpartition("@")
    if not hostport:
        raise _Invalid("URL without a host")
    host_text, port_text = _split_host_port(hostport)
    if not host_text:
        raise _Invalid("URL without a host")
    if not _HOST_CHARS.fullmatch(host_text):
        raise _Invalid("malformed URL host")
    port = _check_port(port_text)
    host = _classify_host(host_text)
    path, question, query = tail.partition("?")
    netloc = f"[{host.value}]" if host.kind == "ipv6" else host.value
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    if port is not None and port != _SCHEMES[scheme]:
        netloc = f"{netloc}:{port}"
    value = f"{scheme}://{netloc}{path or '/'}{question if query else ''}{query}"
    return Indicator(
        value=value,
        kind="url",
        host=host.value,
        registered_domain=host.registered_domain,
        scope=host.scope,
    )


def _email_host(domain: str) -> tuple[_Host, str]:
    """The host of an e-mail domain part and how it is written in the normalised address."""
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal[:5].lower() == "ipv6:":
            v6 = _parse_ipv6(literal[5:])
            text = _ipv6_text(v6)
            return _Host("ipv6", text, None, _ip_scope(v6)), f"[IPv6:{text}]"
        v4 = _parse_ipv4(literal)
        return _Host("ipv4", str(v4), None, _ip_scope(v4)), f"[{v4}]"
    if _IPV4_SHAPE.fullmatch(domain):  # user@192.0.2.1: accepted, written as a literal
        v4 = _parse_ipv4(domain)
        return _Host("ipv4", str(v4), None, _ip_scope(v4)), f"[{v4}]"
    host = _normalise_domain(domain)
    return host, host.value


def _parse_email(text: str) -> Indicator:
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise _Invalid("malformed email address")
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise _Invalid("malformed email local part")
    host, written = _email_host(domain)
    return Indicator(
        value=f"{local}@{written}",
        kind="email",
        host=host.value,
        registered_domain=host.registered_domain,
        scope=host.scope,
    )


_HASH_ALGORITHMS: Final = {32: "md5", 40: "sha1", 64: "sha256"}
_HEX: Final = re.compile(r"[0-9a-fA-F]+")


def hash_algorithm(value: str) -> str | None:
    """``md5``, ``sha1`` or ``sha256`` for a hex digest of that length, else None."""
    if not _HEX.fullmatch(value):
        return None
    return _HASH_ALGORITHMS.get(len(value))


def _hash_indicator(text: str) -> Indicator:
    return Indicator(value=text.lower(), kind="hash", host=None, registered_domain=None)


# --------------------------------------------------------------------------------------------
# One indicator per item
# --------------------------------------------------------------------------------------------

_WRAPPERS: Final = {"<": ">", '"': '"', "'": "'", "`": "`", "(": ")"}


def _parse_item(text: str) -> Indicator:
    text = refang(text).strip()
    while len(text) >= 2 and _WRAPPERS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    if text[:7].lower() == "mailto:":
        text = text[7:].partition("?")[0]
        if "@" not in text:
            raise _Invalid("malformed email address")
    if not text:
        raise _Invalid("empty item")
    if any(ch.isspace() for ch in text):
        raise _Invalid("contains whitespace: give one indicator per item")
    if _SCHEME_PREFIX.match(text):
        return _parse_url(text)
    if _HEX.fullmatch(text) and len(text) >= 24:  # too long for a name label of hex digits
        if hash_algorithm(text) is None:
            raise _Invalid(f"{len(text)} hex digits: not an MD5 (32), SHA-1 (40) or SHA-256 (64)")
        return _hash_indicator(text)
    if "@" in text:
        return _parse_email(text)
    if "/" in text or "?" in text or "#" in text:
        head = re.split(r"[/?#]", text, maxsplit=1)[0]
        if _IPV4_SHAPE.fullmatch(head) or ":" in head:
            raise _Invalid("not a single address: network ranges and paths are not indicators")
        if head and _HOST_CHARS.fullmatch(head):  # a host, then a path: a URL, less its scheme
            raise _Invalid("URL without a scheme: add http:// or https://")
    if not _HOST_CHARS.fullmatch(text):
        raise _Invalid(
            "not an indicator: expected an IP address, domain, URL, email address or file hash"
        )
    if text.startswith("[") or (text.count(":") == 1 and "]" not in text):
        # [2001:db8::1], [2001:db8::1]:443, 192.0.2.1:8080, evil.com:443 -> the bare host;
        # lookups are per host, never per port.
        host_text, port = _split_host_port(text)
        _check_port(port)
        return _host_indicator(_classify_host(host_text))
    return _host_indicator(_classify_host(text))


class _Collector:
    """Accumulates indicators and rejections, deduplicated, in first-seen order."""

    def __init__(self) -> None:
        self.indicators: list[Indicator] = []
        self.rejected: list[Rejected] = []
        self._seen: set[tuple[str, str]] = set()
        self._seen_rejected: set[tuple[str, str]] = set()
        #: Free-text candidates already handled: (regex group, text, defanged).
        self.seen_candidates: set[tuple[str, str, bool]] = set()

    def add(self, indicator: Indicator) -> None:
        key = (indicator.kind, indicator.value)
        if key not in self._seen:
            self._seen.add(key)
            self.indicators.append(indicator)

    def reject(self, item: str, reason: str) -> None:
        entry = Rejected(item[:_MAX_ITEM], reason)
        key = (entry.item, entry.reason)
        if key not in self._seen_rejected:
            self._seen_rejected.add(key)
            self.rejected.append(entry)

    def result(self) -> Parsed:
        return Parsed(indicators=self.indicators, rejected=self.rejected)


def parse_items(items: Iterable[object]) -> Parsed:
    """Each item is ONE indicator; an item that is not a valid indicator is rejected (one
    that is no string too, shown as its JSON)."""
    collector = _Collector()
    for raw in items:
        if not isinstance(raw, str):
            try:
                shown = msgspec.json.encode(raw).decode()
            except (TypeError, ValueError):
                shown = repr(raw)
            collector.reject(shown, "not a string")
            continue
        try:
            collector.add(_parse_item(raw))
        except _Invalid as exc:
            collector.reject(raw.strip(), str(exc))
    return collector.result()


# --------------------------------------------------------------------------------------------
# Free text
# --------------------------------------------------------------------------------------------

# Characters that end a URL in free text: blanks, quotes, angle brackets, and the usual
# field separators of CSV and logs (so "http://a.com/x,b.com" is a URL and a domain).
_URL_STOP = r"""\s<>"'`,;|{}\\^"""
# A URL right after a double quote (a quoted CSV field, a JSON string) ends only at the
# closing quote or a blank: a CSV writer quotes the fields that hold a comma.
_QUOTED_URL_STOP = r"""\s<>"'`{}\\^"""

# One pass, leftmost match first; at one position the first alternative that matches wins,
# so a URL swallows its host and an e-mail its domain. Linear time: each alternative's
# look-behind excludes every character its repetition can consume, so it only starts at the
# beginning of a run of those characters and scans that run once; possessive repetitions
# never backtrack. (That is why "x-evil.com" is one name and "1.2.3.4-evil.com" yields the
# IP only.)
_CANDIDATE: Final = re.compile(
    # Quick test first: every candidate but a hash has one of ".@:+%-" after its first run
    # of word characters, so ordinary words are skipped after one scan.
    r"(?<!\w)(?:(?=\w*+[.@:+%-])(?:"
    rf"(?P<quoted_url>(?<=\")(?:https?|ftp)://[^{_QUOTED_URL_STOP}]*+)"
    rf"|(?P<url>(?<![+.-])(?:https?|ftp)://[^{_URL_STOP}]*+)"
    r"|(?P<email>(?<![.+%-])[\w.+%-]++@(?:\[(?:ipv6:)?[0-9a-f:.]++\]|[\w-]++(?:\.[\w-]++)++))"
    r"|(?P<ipv6>(?<![:.])(?=[0-9a-f]{0,4}:)[0-9a-f:.]++(?!\w))"
    r"|(?P<ipv4>(?<![./])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?!\.?\w))"
    r"|(?P<domain>(?<![.@%+-])[\w-]++(?:\.[\w-]++)++)"
    # A hash is a whole token: 32, 40 or 64 hex digits, not part of a path, a query, a
    # file name or longer hex (``key=`` and ``key:`` before it are fine: SHA256=…).
    r")|(?P<hash>(?<![/?&#.%\\-])[0-9a-f]{32}(?:[0-9a-f]{8}(?:[0-9a-f]{24})?)?(?![\w/?&#-]|\.\w)))",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION: Final = ".,:;!?*"
_CLOSERS: Final = {")": "(", "]": "["}


def _trim_url(url: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets from a URL's end."""
    while url:
        last = url[-1]
        unbalanced = last in _CLOSERS and url.count(last) > url.count(_CLOSERS[last])
        if last not in _TRAILING_PUNCTUATION and not unbalanced:
            break
        url = url[:-1]
    return url


def _from_url(text: str, defanged: bool) -> Indicator | None:
    return _parse_url(_trim_url(text))


def _from_email(text: str, defanged: bool) -> Indicator | None:
    try:
        return _parse_email(text.lstrip("."))
    except _UnknownSuffix:
        return None  # icon@2x.png, user@host.corp


def _from_ipv6(text: str, defanged: bool) -> Indicator | None:
    text = text.rstrip(".")
    # Valid IPv6 text has "::" or 6-7 colons; this drops times (10:23:45) and MACs early.
    if len(text) > 45 or not ("::" in text or 6 <= text.count(":") <= 7):
        return None
    if not any(ch not in ":." for ch in text):
        return None  # a bare "::" in prose
    try:
        v6 = _parse_ipv6(text)
    except _Invalid:
        return None
    return Indicator(
        value=_ipv6_text(v6), kind="ipv6", host=None, registered_domain=None, scope=_ip_scope(v6)
    )


def _from_ipv4(text: str, defanged: bool) -> Indicator | None:
    v4 = _parse_ipv4(text)
    return Indicator(
        value=str(v4), kind="ipv4", host=None, registered_domain=None, scope=_ip_scope(v4)
    )


def _from_domain(text: str, defanged: bool) -> Indicator | None:
    text = text.strip("-")
    if not text or text.startswith(".") or text.endswith(".") or ".." in text:
        return None  # dashes and dots only ("-.-.-"), not a name
    last = text.rpartition(".")[2].lower()
    if last in FILE_LIKE_SUFFIXES and not defanged:
        return None  # main.py, invoice.zip: a file name, not a host
    try:
        return _host_indicator(_normalise_domain(text))
    except _UnknownSuffix:
        return None  # file.txt, v1.2.3, e.g.


def _from_hash(text: str, defanged: bool) -> Indicator | None:
    return _hash_indicator(text)


_HANDLERS: Final[dict[str, Callable[[str, bool], Indicator | None]]] = {
    "hash": _from_hash,
    "url": _from_url,
    "quoted_url": _from_url,
    "email": _from_email,
    "ipv6": _from_ipv6,
    "ipv4": _from_ipv4,
    "domain": _from_domain,
}


def _scan(text: str, collector: _Collector) -> None:
    text, marks = _refang_marked(text)
    seen = collector.seen_candidates
    for match in _CANDIDATE.finditer(text):
        candidate = match.group()
        start, end = match.span()
        # Was a defanged form undone inside this candidate? Then it was meant as one.
        defanged = bool(marks) and bisect.bisect_left(marks, start) < bisect.bisect_left(marks, end)
        group = match.lastgroup or ""
        key = (group, candidate, defanged)
        if key in seen:  # same outcome as last time, already recorded (logs repeat a lot)
            continue
        seen.add(key)
        try:
            indicator = _HANDLERS[group](candidate, defanged)
        except _Invalid as exc:
            collector.reject(candidate, str(exc))
            continue
        if indicator is not None:
            collector.add(indicator)


def extract(text: str) -> Parsed:
    """Find every indicator in free text; text around them is ignored.

    Rejected are only things that look like indicators but are invalid: an IPv4-shaped
    ``999.1.1.1``, a URL with a bad host, a public suffix such as ``co.uk`` on its own.
    Dotted words without a known public suffix (``file.txt``, ``1.2.3``) are ignored.
    """
    collector = _Collector()
    _scan(text, collector)
    return collector.result()


def extract_stream(lines: Iterable[str]) -> Parsed:
    """:func:`extract` over lines (a file read line by line), deduplicated across lines."""
    collector = _Collector()
    for line in lines:
        _scan(line, collector)
    return collector.result()


class SkippedLine(msgspec.Struct, frozen=True):
    """A non-empty line of a file from which nothing could be read: no indicator, and
    nothing that looked like one but was invalid (that would be :class:`Rejected`)."""

    line: int  # 1-based
    text: str  # the line, stripped, truncated to 200 characters
    reason: str


def extract_lines(lines: Iterable[str], first: int = 1) -> tuple[Parsed, list[SkippedLine]]:
    """:func:`extract_stream`, and the non-empty lines it read nothing from, with why.

    Free-text semantics stay: the text around indicators is ignored, so a line counts as
    skipped only when it gave neither an indicator (a repeat of an earlier one counts)
    nor a rejection. A line that is one token says why that token is not an indicator
    (``intranet``: no public suffix; ``main.py``: read as a file name). ``first``: the
    number of the first line (a file read in parts)."""
    collector = _Collector()
    skipped: list[SkippedLine] = []
    for number, line in enumerate(lines, first):
        before = (len(collector.indicators), len(collector.rejected))
        _scan(line, collector)
        text = line.strip()
        if not text or (len(collector.indicators), len(collector.rejected)) != before:
            continue
        again = extract(line)  # nothing new: repeats only, or really nothing?
        if again.indicators or again.rejected:
            continue
        skipped.append(SkippedLine(number, text[:_MAX_ITEM], _why_nothing(text)))
    return collector.result(), skipped


def extract_text(lines: Iterable[str], first: int = 1) -> Parsed:
    """:func:`extract_lines` as the API answers it: each skipped line is one more
    :class:`Rejected` (the line, and ``line N: why``), after what was rejected as an
    invalid indicator, so that no non-empty line of a paste or an upload goes unmentioned."""
    parsed, skipped = extract_lines(lines, first)
    if not skipped:
        return parsed
    said = [Rejected(s.text, f"line {s.line}: {s.reason}") for s in skipped]
    return Parsed(indicators=parsed.indicators, rejected=[*parsed.rejected, *said])


def _why_nothing(text: str) -> str:
    """Why free-text extraction found nothing in ``text`` (one stripped line)."""
    if not any(ch.isspace() or ch in ",;|" for ch in text):
        alone = parse_items([text])
        if alone.rejected:
            return alone.rejected[0].reason
        for item in alone.indicators:
            suffix = (item.host or item.value).rpartition(".")[2]
            if suffix in FILE_LIKE_SUFFIXES:
                return (
                    f"read as a file name (.{suffix}), not a host: "
                    f"write it defanged ({item.value.replace('.', '[.]')}) to look it up"
                )
    return "no IP address, domain, URL, e-mail address or file hash found"
