"""The ``whois`` provider: who registered a name or holds an address — RDAP first, WHOIS
when RDAP cannot answer.

- **Names** (a domain, a URL's host, an email's domain) are looked up by their registered
  (organisational) domain: ``GET <base>/domain/<name>``. **Addresses**: ``GET
  <base>/ip/<address>``. ``<base>`` is ``LOOKOUT_RDAP_URL`` when set (for every query), else
  the IANA bootstrap registries shipped in ``data/`` (never downloaded at run time).
- **WHOIS fallback** (RFC 3912) when there is no RDAP service for the TLD or RDAP fails
  (connection error, timeout, 5xx, 429, an answer that is not RDAP). A 404 is not a
  failure: it means "not registered". WHOIS asks ``LOOKOUT_WHOIS_SERVER`` when set (and
  nothing else); otherwise IANA's ``refer:`` (or the RIR an address belongs to) gives the
  registry, and one further referral (``Registrar WHOIS Server:``, ``ReferralServer:``) is
  followed to complete the registry's answer. A server named by an answer (IANA's
  ``refer:`` included) is asked only on port 43 and only at an address the SSRF guard
  allows (:func:`shared.core.ssrf.refusal`, lifted by ``LOOKOUT_OUTBOUND_ALLOW``); the shipped
  IANA and RIR servers and ``LOOKOUT_WHOIS_SERVER`` are asked as they are.
- **Verdict** ``unknown`` (registration data does not judge), except ``suspicious`` for a
  domain registered less than 30 days ago (newly registered domains are a classic phishing
  signal). ``data`` holds the dates, ``age_days``, registrar, name servers, status…
- Every network step is bounded; together they stay within the provider timeout
  (``[providers.whois] timeout``), half of it at most for RDAP so that the WHOIS fallback
  has time too. When neither answers, :class:`ProviderError` says why, for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from datetime import UTC, datetime
from typing import Any

import aiohttp

import services.providers.whois.port43 as port43
import services.providers.whois.rdap as rdap
import services.providers.whois.whoistext as whoistext
from services.providers.whois.bootstrap import Bootstrap, bootstrap
from services.providers.whois.config import SPEC, whois_settings
from services.providers.whois.record import (
    DomainRecord,
    NetworkRecord,
    NotRegistered,
    Unavailable,
)
from shared.core import ssrf
from shared.core.settings import Settings
from shared.lookups.config import lookups
from shared.lookups.provider import Answer, Provider, ProviderError, is_ip, upstream
from shared.lookups.schemas import LookupRequest, Verdict

PARSER_VERSION = 2
"""Raised whenever the WHOIS/RDAP readers change what they read from the same answer."""
NEW_DOMAIN_DAYS = 30
NOT_REGISTERED_TTL = 3600.0
BUDGET_SHARE = 0.9
"""Share of the provider timeout this provider plans with: it answers with its own reason
before the runner's timeout cuts it off."""
USER_AGENT = "lookout/1 (whois provider)"


class _Failed(Unavailable):
    """One upstream that could not answer: the cause, and where it was asked."""

    def __init__(self, cause: str, protocol: str, where: str) -> None:
        super().__init__(cause)
        self.attempt = {"protocol": protocol, "upstream": where, "error": cause}


def _attempt(exc: Unavailable, protocol: str, where: str) -> dict[str, str]:
    if isinstance(exc, _Failed):
        return exc.attempt
    return {"protocol": protocol, "upstream": where, "error": str(exc)}


def _failure(attempts: list[dict[str, str]], rdap_error: str) -> ProviderError:
    """Neither RDAP nor WHOIS answered: the causes first (``HTTP 503 (RDAP); cannot
    connect: Connection refused (WHOIS)``, or one cause for both), where each was asked in
    ``data["attempts"]``."""
    by_cause: dict[str, list[str]] = {}
    for attempt in attempts:
        by_cause.setdefault(attempt["error"], []).append(attempt["protocol"].upper())
    reason = "; ".join(f"{cause} ({', '.join(labels)})" for cause, labels in by_cause.items())
    return ProviderError(reason, data={"attempts": attempts, "rdap_error": rdap_error})


class WhoisProvider(Provider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl
    referral_port = port43.PORT
    """The only port a referral is followed to (tests move it: their servers cannot bind
    43)."""

    def __init__(self, settings: Settings, *, bootstrap_data: Bootstrap | None = None) -> None:
        self.settings = whois_settings(settings)
        self.config = lookups(settings).provider(SPEC.name)
        self.timeout = self.config.timeout
        self.bootstrap = bootstrap_data or bootstrap()
        self.allow = settings.outbound_allow
        self._session: aiohttp.ClientSession | None = None

    def cache_salt(self) -> str:
        """The upstreams asked, and the version of the readers: answers cached by an older
        parser (which misread some registries) are not reused."""
        server = self.settings.whois_server
        whois = f"{server[0]}:{server[1]}" if server else "referrals"
        return f"parser={PARSER_VERSION}|rdap={self.settings.rdap_url or 'bootstrap'}|whois={whois}"

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ lookup

    async def lookup(self, request: LookupRequest) -> Answer:
        deadline = asyncio.get_running_loop().time() + self.timeout * BUDGET_SHARE
        host = request.host or request.indicator
        if request.kind in ("ipv4", "ipv6"):
            return await self._address(request.indicator, deadline)
        if is_ip(host):
            return await self._address(host, deadline)
        name = (request.registered_domain or host).lower().rstrip(".")
        return await self._domain(name, deadline)

    async def _rdap(self, url: str, deadline: float) -> dict[str, Any]:
        if self._session is None:
            raise ProviderError("whois provider used before open()")
        remaining = deadline - asyncio.get_running_loop().time()
        # At most half the time left: the WHOIS fallback gets the rest.
        return await rdap.fetch(self._session, url, max(0.1, remaining / 2), port43.CONNECT_TIMEOUT)

    def _rdap_bases(self, found: list[str]) -> list[str]:
        return [self.settings.rdap_url] if self.settings.rdap_url else found

    async def _domain(self, name: str, deadline: float) -> Answer:
        bases = self._rdap_bases(self.bootstrap.domain(name))
        attempts: list[dict[str, str]] = []
        if bases:
            url = f"{bases[0].rstrip('/')}/domain/{name}"
            try:
                document = await self._rdap(url, deadline)
            except NotRegistered:
                return _not_registered({"domain": name, "source": "rdap", "server": url})
            except Unavailable as exc:
                rdap_error = str(exc)
                attempts.append(_attempt(exc, "rdap", upstream(url)))
            else:
                return _domain_answer(rdap.parse_domain(name, document), "rdap", url, None)
        else:
            rdap_error = f"no RDAP service for .{name.rsplit('.', 1)[-1]}"
        try:
            record, server = await self._whois_domain(name, deadline)
        except NotRegistered as exc:
            data = {"domain": name, "source": "whois", "server": str(exc), "rdap_error": rdap_error}
            return _not_registered({**data, **({"attempts": attempts} if attempts else {})})
        except Unavailable as exc:
            attempts.append(_attempt(exc, "whois", ""))
            raise _failure(attempts, rdap_error) from None
        return _domain_answer(record, "whois", server, rdap_error, attempts)

    async def _address(self, address: str, deadline: float) -> Answer:
        address = str(ipaddress.ip_address(address))
        bases = self._rdap_bases(self.bootstrap.address(address))
        attempts: list[dict[str, str]] = []
        if bases:
            url = f"{bases[0].rstrip('/')}/ip/{address}"
            try:
                document = await self._rdap(url, deadline)
            except NotRegistered:
                return _not_registered({"address": address, "source": "rdap", "server": url})
            except Unavailable as exc:
                rdap_error = str(exc)
                attempts.append(_attempt(exc, "rdap", upstream(url)))
            else:
                return _network_answer(rdap.parse_network(address, document), "rdap", url, None)
        else:
            rdap_error = f"no RDAP service for {address}"
        try:
            record, server = await self._whois_address(address, deadline)
        except NotRegistered as exc:
            data = {"address": address, "source": "whois", "server": str(exc)}
            more = {"attempts": attempts} if attempts else {}
            return _not_registered({**data, "rdap_error": rdap_error, **more})
        except Unavailable as exc:
            attempts.append(_attempt(exc, "whois", ""))
            raise _failure(attempts, rdap_error) from None
        return _network_answer(record, "whois", server, rdap_error, attempts)

    # ------------------------------------------------------------------ WHOIS

    async def _ask(
        self, server: str, query: str, deadline: float, *, referred: bool = False
    ) -> tuple[str, str]:
        """(answer, "host:port"); a configured server gets the plain query. A ``referred``
        server (named by an answer, not by configuration or the shipped data) is asked
        only on :attr:`referral_port` at an address the SSRF guard allows."""
        if self.settings.whois_server is not None:
            host, port = self.settings.whois_server
        else:
            host, port = port43.split_server(server)
            query = port43.decorated(host, query)
        where = port43.join_server(host, port)
        try:
            connect_to = None
            if referred and self.settings.whois_server is None:
                connect_to = await self._referral_address(host, port, deadline)
            return await port43.ask(host, port, query, deadline, connect_to=connect_to), where
        except Unavailable as exc:
            raise _Failed(str(exc), "whois", where) from None

    async def _referral_address(self, host: str, port: int, deadline: float) -> str:
        """The address to ask a referred server at: ``host`` resolved once, every address
        checked by :func:`shared.core.ssrf.refusal` (``LOOKOUT_OUTBOUND_ALLOW`` lifts it), the
        first allowed one returned, so the connection goes where the check looked (a name
        that rebinds between check and connect cannot lead inwards). :class:`Unavailable`
        when the port is not :attr:`referral_port` or no address is allowed."""
        if port != self.referral_port:
            raise Unavailable(
                f"referral refused: followed to port {self.referral_port} only, not {port}"
            )
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise Unavailable("no time left to ask")
        try:
            async with asyncio.timeout(min(port43.CONNECT_TIMEOUT, remaining)):
                found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise Unavailable(f"cannot resolve {host}: timeout") from None
        except OSError as exc:
            raise Unavailable(f"cannot resolve {host}: {exc.strerror or exc}") from None
        reasons: list[str] = []
        for *_, sockaddr in found:
            address = str(sockaddr[0])
            reason = ssrf.refusal(address.partition("%")[0], self.allow, host=host)
            if reason is None:
                return address
            reasons.append(reason)
        if reasons:
            raise Unavailable(reasons[0])
        raise Unavailable(f"cannot resolve {host}")

    async def _registry(self, query: str, deadline: float, what: str) -> str:
        """The WHOIS server IANA refers ``query`` to."""
        text, where = await self._ask(port43.IANA, query, deadline)
        server = whoistext.referral(text)
        if server is None:
            raise _Failed(f"IANA names no WHOIS server for {what}", "whois", where)
        return server

    async def _whois_domain(self, name: str, deadline: float) -> tuple[DomainRecord, str]:
        """NotRegistered carries the server that said so."""
        if self.settings.whois_server is not None:
            text, server = await self._ask("", name, deadline)
            return _parse_domain(name, text, server), server
        registry = await self._registry(name, deadline, f".{name.rsplit('.', 1)[-1]}")
        text, server = await self._ask(registry, name, deadline, referred=True)
        record = _parse_domain(name, text, server)
        registrar = whoistext.referral(text)
        if registrar and port43.split_server(registrar) != port43.split_server(server):
            # The registrar's own answer completes a thin registry's (registrant country…);
            # the registry's answer stands on its own when the registrar cannot be asked.
            with contextlib.suppress(Unavailable, NotRegistered):
                more, _ = await self._ask(registrar, name, deadline, referred=True)
                record.fill_from(whoistext.parse_domain(name, more))
        return record, server

    async def _whois_address(self, address: str, deadline: float) -> tuple[NetworkRecord, str]:
        if self.settings.whois_server is not None:
            text, server = await self._ask("", address, deadline)
            return _parse_network(address, text, server), server
        rir = self.bootstrap.whois_server_for_address(address)  # shipped data: trusted
        referred = rir is None
        if rir is None:
            rir = await self._registry(address, deadline, address)
        text, server = await self._ask(rir, address, deadline, referred=referred)
        further = whoistext.referral(text)
        if further and port43.split_server(further) != port43.split_server(server):
            with contextlib.suppress(Unavailable, NotRegistered):
                more, more_server = await self._ask(further, address, deadline, referred=True)
                return whoistext.parse_network(address, more), more_server
        return _parse_network(address, text, server), server


def _parse_domain(name: str, text: str, server: str) -> DomainRecord:
    try:
        return whoistext.parse_domain(name, text)
    except NotRegistered:
        raise NotRegistered(server) from None
    except Unavailable as exc:
        raise _Failed(str(exc), "whois", server) from None


def _parse_network(address: str, text: str, server: str) -> NetworkRecord:
    try:
        return whoistext.parse_network(address, text)
    except NotRegistered:
        raise NotRegistered(server) from None
    except Unavailable as exc:
        raise _Failed(str(exc), "whois", server) from None


# --------------------------------------------------------------------------- answers


def _not_registered(data: dict[str, Any]) -> Answer:
    return Answer("unknown", "not registered", {"registered": False, **data}, NOT_REGISTERED_TTL)


def _provenance(
    source: str, server: str, rdap_error: str | None, attempts: list[dict[str, str]] | None
) -> dict[str, Any]:
    data: dict[str, Any] = {"registered": True, "source": source, "server": server}
    if rdap_error:
        data["rdap_error"] = rdap_error
    if attempts:
        data["attempts"] = attempts  # what failed before this answer, and where
    return data


def _domain_answer(
    record: DomainRecord,
    source: str,
    server: str,
    rdap_error: str | None,
    attempts: list[dict[str, str]] | None = None,
) -> Answer:
    now = datetime.now(UTC)
    age = record.age_days(now)
    young = age is not None and age < NEW_DOMAIN_DAYS
    verdict: Verdict = "suspicious" if young else "unknown"
    if record.created is None:
        summary = "registered (no creation date)"
    elif young:
        summary = f"newly registered {record.created:%Y-%m-%d} ({age} days ago)"
    else:
        summary = f"registered {record.created:%Y-%m-%d}"
    if record.registrar:
        summary += f", {record.registrar}"
    provenance = _provenance(source, server, rdap_error, attempts)
    return Answer(verdict, summary, {**provenance, **record.data(now)})


def _network_answer(
    record: NetworkRecord,
    source: str,
    server: str,
    rdap_error: str | None,
    attempts: list[dict[str, str]] | None = None,
) -> Answer:
    head = " ".join(
        part
        for part in (
            f"AS{record.asn}" if record.asn is not None else None,
            record.name or record.organization or record.handle,
        )
        if part
    )
    summary = ", ".join(part for part in (head, record.country) if part) or "registered network"
    provenance = _provenance(source, server, rdap_error, attempts)
    return Answer("unknown", summary, {**provenance, **record.data()})


def build(settings: Settings) -> WhoisProvider:
    return WhoisProvider(settings)
