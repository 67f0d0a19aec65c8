"""WHOIS referrals and the SSRF guard: a server named by an answer (IANA's ``refer:``,
``Registrar WHOIS Server:``, ``ReferralServer:``) is asked only on port 43 and only at an
address :func:`shared.core.ssrf.refusal` allows; the shipped IANA/RIR servers and
``LOOKOUT_WHOIS_SERVER`` are asked as configured. Real WHOIS servers on loopback: the
"inside" ones, which a hostile answer must not reach, record every query."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes.rdap import FakeRdapServer
from fakes.whois_server import FakeWhoisServer
from test_whois_provider import WHOIS_EXAMPLE_ORG, WHOIS_NETWORK, make_provider, request

from services.providers.whois.record import Unavailable
from shared.core.natsserver import free_port
from shared.lookups.provider import ProviderError


@pytest.fixture
async def rdap_down() -> AsyncIterator[FakeRdapServer]:
    """An RDAP server that answers 502, so every lookup falls back to WHOIS."""
    server = FakeRdapServer({})
    server.fail_status = 502
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_referral_to_a_forbidden_address_is_not_followed(
    tmp_path: Path, rdap_down: FakeRdapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RIR (shipped bootstrap data) is asked wherever it is; its ``ReferralServer:``
    naming a loopback address on the referral port is not, without LOOKOUT_OUTBOUND_ALLOW."""
    port = free_port()
    async with (
        FakeWhoisServer() as rir,
        FakeWhoisServer({"203.0.113.5": WHOIS_NETWORK}, host="127.0.0.2", port=port) as inside,
    ):
        rir.responses["203.0.113.5"] = (
            WHOIS_NETWORK + f"\nReferralServer:  whois://{inside.address}\n"
        )
        provider = await make_provider(
            tmp_path,
            rdap=rdap_down.url,
            whois=None,
            referral_port=port,
        )
        monkeypatch.setattr(provider.bootstrap, "whois_server_for_address", lambda _: rir.address)
        try:
            answer = await provider.lookup(request("203.0.113.5", "ipv4"))
        finally:
            await provider.close()
    assert rir.queries == ["203.0.113.5"]
    assert inside.queries == []  # never connected to
    assert answer.data["server"] == rir.address  # the RIR's own answer stands
    assert answer.summary == "AS64502 DOC-NET-3, AU"


async def test_a_referral_to_another_port_is_not_followed(
    tmp_path: Path, rdap_down: FakeRdapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even at an allowed address, a referral naming a port other than 43 (here: other
    than the port standing for it) is not followed: no WHOIS query to someone's SMTP or
    Redis port."""
    port = free_port()
    async with (
        FakeWhoisServer() as iana,
        FakeWhoisServer(host="127.0.0.2", port=port) as registry,
        FakeWhoisServer(host="127.0.0.3") as elsewhere,  # a port of its own
    ):
        assert elsewhere.port != port
        iana.responses["example.org"] = f"refer: {registry.address}\n"
        registry.responses["example.org"] = WHOIS_EXAMPLE_ORG.replace(
            "whois.registrar.example", elsewhere.address
        )
        monkeypatch.setattr("services.providers.whois.port43.IANA", iana.address)
        provider = await make_provider(
            tmp_path,
            rdap=rdap_down.url,
            whois=None,
            allow="127.0.0.0/8",
            referral_port=port,
        )
        try:
            answer = await provider.lookup(request("example.org", registered_domain="example.org"))
        finally:
            await provider.close()
    assert registry.queries == ["example.org"]
    assert elsewhere.queries == []
    assert answer.data["server"] == registry.address
    assert answer.data["registrar"] == "Whois Registrar Ltd"


async def test_a_refused_registry_says_why(
    tmp_path: Path, rdap_down: FakeRdapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IANA's ``refer:`` is a referral too: naming a loopback registry, the lookup fails
    with the guard's reason, and the registry hears nothing."""
    port = free_port()
    async with (
        FakeWhoisServer() as iana,
        FakeWhoisServer({"example.org": WHOIS_EXAMPLE_ORG}, host="127.0.0.2", port=port) as inside,
    ):
        iana.responses["example.org"] = f"refer: {inside.address}\n"
        monkeypatch.setattr("services.providers.whois.port43.IANA", iana.address)
        provider = await make_provider(
            tmp_path,
            rdap=rdap_down.url,
            whois=None,
            referral_port=port,
        )
        try:
            with pytest.raises(ProviderError) as caught:
                await provider.lookup(request("example.org", registered_domain="example.org"))
        finally:
            await provider.close()
    assert inside.queries == []
    assert "refused to connect to 127.0.0.2: loopback" in str(caught.value)
    assert "LOOKOUT_OUTBOUND_ALLOW" in str(caught.value)


async def test_a_referral_by_name_is_resolved_checked_and_asked_at_the_checked_address(
    tmp_path: Path,
) -> None:
    """A name is resolved once and every address checked; the connection goes to the
    allowed address that was checked (not to a second resolution)."""
    port = free_port()
    refused = await make_provider(
        tmp_path,
        rdap=None,
        whois=None,
        referral_port=port,
    )
    deadline = asyncio.get_running_loop().time() + 5
    with pytest.raises(Unavailable) as caught:
        await refused._referral_address("localhost", port, deadline)
    assert "refused to connect to localhost (" in str(caught.value)
    assert "loopback address" in str(caught.value)
    await refused.close()
    allowed = await make_provider(
        tmp_path,
        rdap=None,
        whois=None,
        allow="127.0.0.1",
        referral_port=port,
    )
    assert await allowed._referral_address("localhost", port, deadline) == "127.0.0.1"
    with pytest.raises(Unavailable, match="followed to port"):
        await allowed._referral_address("localhost", port + 1, deadline)
    await allowed.close()
