"""What Spamhaus' zones answer, from its documentation: the return codes of
https://docs.spamhaus.com/datasets/docs/source/10-data-type-documentation/datasets/040-zones.html
and the error codes of https://www.spamhaus.org/faq/section/DNSBL%20Usage ("What do the
127.*.*.* Return Codes mean?"); see tests/fixtures/dnsbl/SOURCES.md.

The verdicts are lookout's reading of them: a listing for sending spam, hosting malware or
phishing, or controlling botnets is ``malicious``; an infected host (XBL) or a compromised
("abused-legit") domain is ``suspicious``; a policy listing (PBL: end-user address space
that should not send mail directly) is no finding at all.
"""

from __future__ import annotations

from services.providers.dnsbl.config import Code

ZEN = {
    "127.0.0.2": Code("SBL: Spamhaus Block List (spam source or operation)", "malicious"),
    "127.0.0.3": Code("CSS: spam source, automated detection (SBL)", "malicious"),
    "127.0.0.4": Code("XBL: exploited or infected host (botnet, proxy)", "suspicious"),
    "127.0.0.5": Code("XBL (currently unused code)", "suspicious"),
    "127.0.0.6": Code("XBL (currently unused code)", "suspicious"),
    "127.0.0.7": Code("XBL (currently unused code)", "suspicious"),
    "127.0.0.9": Code("DROP: hijacked or criminal network (Don't Route Or Peer)", "malicious"),
    "127.0.0.10": Code("PBL: end-user address space, listed by its ISP (policy)", "undetected"),
    "127.0.0.11": Code("PBL: end-user address space, listed by Spamhaus (policy)", "undetected"),
    "127.0.0.20": Code("AuthBL: compromised credentials used to send mail", "suspicious"),
    "127.0.0.30": Code("BCL: botnet controller", "malicious"),
}
"""ZEN (SBL + XBL + PBL); also the answers of its parts sbl, xbl, sbl-xbl, pbl, authbl."""

DBL = {
    "127.0.1.2": Code("DBL: low-reputation (spam) domain", "malicious"),
    "127.0.1.4": Code("DBL: phishing domain", "malicious"),
    "127.0.1.5": Code("DBL: malware domain", "malicious"),
    "127.0.1.6": Code("DBL: botnet C&C domain", "malicious"),
    "127.0.1.102": Code("DBL: abused legitimate domain", "suspicious"),
    "127.0.1.103": Code("DBL: abused legitimate redirector", "suspicious"),
    "127.0.1.104": Code("DBL: abused legitimate domain used in phishing", "suspicious"),
    "127.0.1.105": Code("DBL: abused legitimate domain used by malware", "suspicious"),
    "127.0.1.106": Code("DBL: abused legitimate domain hosting C&C", "suspicious"),
}

ERRORS = {
    "127.255.255.252": "typing error in the DNSBL name",
    "127.255.255.254": "query via a public/open resolver (use your own resolver or a DQS key)",
    "127.255.255.255": "excessive number of queries",
    "127.0.1.255": "IP address queried against a domain list",
}
"""Answers that are Spamhaus refusing the query, never a listing."""

SPAMHAUS_TABLES = {
    "zen": ZEN,
    "sbl": ZEN,
    "xbl": ZEN,
    "sbl-xbl": ZEN,
    "pbl": ZEN,
    "authbl": ZEN,
    "dbl": DBL,
}
"""The table of a Spamhaus zone, by its first label (``zen`` of ``zen.spamhaus.org`` and of
``<key>.zen.dq.spamhaus.net``)."""
