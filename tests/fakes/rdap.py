"""A real RDAP server on loopback for the test suite (aiohttp).

``GET /domain/<name>`` and ``GET /ip/<address>`` answer the RDAP JSON registered in
``records`` (``application/rdap+json``), else an RFC 9083 error object with 404::

    server = FakeRdapServer({"example.com": {...}, "192.0.2.0/24": {...}})
    await server.start()
    env["LOOKOUT_RDAP_URL"] = server.url
    ...
    assert server.requests == ["/domain/example.com"]
    await server.stop()

A key may be a domain name, an address or a CIDR block (the most specific block holding the
address answers). Knobs: ``fail_status`` (every query gets that HTTP status, e.g. 500) and
``delay`` (seconds before answering; ``stop()`` cuts it short).

:func:`domain_object` and :func:`network_object` build plausible RFC 9083 answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from typing import Any

from aiohttp import web

RDAP_JSON = "application/rdap+json"


class FakeRdapServer:
    def __init__(self, records: dict[str, dict[str, Any]] | None = None) -> None:
        self.records: dict[str, dict[str, Any]] = dict(records or {})
        self.requests: list[str] = []
        self.fail_status: int | None = None
        self.delay: float = 0.0
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._stopping = asyncio.Event()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/domain/{name}", self._domain)
        app.router.add_get("/ip/{address:.+}", self._ip)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeRdapServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _answer(self, request: web.Request, record: dict[str, Any] | None) -> web.Response:
        self.requests.append(request.path)
        if self.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
        if self.fail_status is not None:
            return _json(_error(self.fail_status, "test failure"), self.fail_status)
        if record is None:
            return _json(_error(404, "Not Found"), 404)
        return _json(record, 200)

    async def _domain(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].lower().rstrip(".")
        return await self._answer(request, self.records.get(name))

    async def _ip(self, request: web.Request) -> web.Response:
        return await self._answer(request, self._network(request.match_info["address"]))

    def _network(self, text: str) -> dict[str, Any] | None:
        if text in self.records:
            return self.records[text]
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return None
        best: tuple[int, dict[str, Any]] | None = None
        for key, record in self.records.items():
            try:
                network = ipaddress.ip_network(key, strict=False)
            except ValueError:
                continue
            holds = network.version == address.version and address in network
            if holds and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, record)
        return best[1] if best else None


def _vcard(*props: list[Any]) -> list[Any]:
    return ["vcard", [["version", {}, "text", "4.0"], *props]]


def domain_object(
    name: str,
    *,
    registered: str = "2019-03-02T10:00:00Z",
    updated: str = "2024-05-06T07:08:09Z",
    expires: str = "2030-03-02T10:00:00Z",
    registrar: str = "Example Registrar, Inc.",
    nameservers: tuple[str, ...] = ("NS1.EXAMPLE.NET", "ns2.example.net."),
    country: str | None = "US",
    abuse: str = "abuse@registrar.example",
    status: tuple[str, ...] = ("client transfer prohibited",),
) -> dict[str, Any]:
    """A domain object the way gTLD registries answer: registrar with a nested abuse
    contact, a registrant whose address gives only the country (the rest redacted)."""
    entities: list[dict[str, Any]] = [
        {
            "objectClassName": "entity",
            "handle": "9999",
            "roles": ["registrar"],
            "publicIds": [{"type": "IANA Registrar ID", "identifier": "9999"}],
            "vcardArray": _vcard(["fn", {}, "text", registrar]),
            "entities": [
                {
                    "objectClassName": "entity",
                    "roles": ["abuse"],
                    "vcardArray": _vcard(
                        ["fn", {}, "text", "Abuse desk"],
                        ["email", {}, "text", abuse],
                    ),
                }
            ],
        }
    ]
    if country is not None:
        entities.append(
            {
                "objectClassName": "entity",
                "roles": ["registrant"],
                "vcardArray": _vcard(
                    ["fn", {}, "text", ""],
                    ["adr", {"cc": country}, "text", ["", "", "", "", "", "", ""]],
                ),
            }
        )
    return {
        "objectClassName": "domain",
        "rdapConformance": ["rdap_level_0", "icann_rdap_response_profile_1"],
        "handle": f"{name.upper()}-EXAMPLE",
        "ldhName": name.upper(),
        "status": list(status),
        "events": [
            {"eventAction": "registration", "eventDate": registered},
            {"eventAction": "expiration", "eventDate": expires},
            {"eventAction": "last changed", "eventDate": updated},
            {"eventAction": "last update of RDAP database", "eventDate": updated},
        ],
        "entities": entities,
        "nameservers": [{"objectClassName": "nameserver", "ldhName": n} for n in nameservers],
        "secureDNS": {"delegationSigned": False},
    }


def network_object(
    start: str,
    end: str,
    *,
    name: str = "EXAMPLE-NET",
    handle: str = "NET-192-0-2-0-1",
    country: str = "US",
    cidr: tuple[str, int] | None = None,
    origin_as: int | None = 64500,
    organization: str = "Example Networks LLC",
    abuse: str = "noc@example.net",
) -> dict[str, Any]:
    """An ip network object the way ARIN answers (cidr0 and originas0 extensions)."""
    body: dict[str, Any] = {
        "objectClassName": "ip network",
        "rdapConformance": ["rdap_level_0", "cidr0", "arin_originas0"],
        "handle": handle,
        "name": name,
        "startAddress": start,
        "endAddress": end,
        "ipVersion": "v6" if ":" in start else "v4",
        "type": "DIRECT ALLOCATION",
        "country": country,
        "status": ["active"],
        "events": [
            {"eventAction": "registration", "eventDate": "2010-01-02T03:04:05-05:00"},
            {"eventAction": "last changed", "eventDate": "2022-06-07T08:09:10-04:00"},
        ],
        "entities": [
            {
                "objectClassName": "entity",
                "handle": "EXAMPLE-ORG",
                "roles": ["registrant"],
                "vcardArray": _vcard(["fn", {}, "text", organization]),
                "entities": [
                    {
                        "objectClassName": "entity",
                        "roles": ["abuse"],
                        "vcardArray": _vcard(["email", {}, "text", abuse]),
                    }
                ],
            }
        ],
    }
    if cidr is not None:
        key = "v6prefix" if ":" in cidr[0] else "v4prefix"
        body["cidr0_cidrs"] = [{key: cidr[0], "length": cidr[1]}]
    if origin_as is not None:
        body["arin_originas0_originautnums"] = [origin_as]
    return body


def _error(code: int, title: str) -> dict[str, Any]:
    return {"errorCode": code, "title": title, "rdapConformance": ["rdap_level_0"]}


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type=RDAP_JSON)
