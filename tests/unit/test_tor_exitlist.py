"""The Tor exit lists read (services/providers/tor/exitlist.py), on the published files of
tests/fixtures/tor."""

from __future__ import annotations

import pytest
from fakes.torlist import BULK, COLLECTOR, INTELOWL

from services.providers.tor.exitlist import NotAnExitList, parse


def test_the_collector_list() -> None:
    text = COLLECTOR.read_text()
    listed = parse(text)
    assert listed.format == "exit-addresses"
    assert listed.published == "2018-11-02T01:02:01Z"  # its Downloaded line
    addresses = {line.split()[1] for line in text.splitlines() if line.startswith("ExitAddress")}
    assert set(listed.exits) == addresses
    assert listed.exits["162.247.74.201"] == "2018-11-01T18:08:13Z"


def test_the_check_torproject_record() -> None:
    listed = parse(INTELOWL.read_text())
    assert listed.exits == {"93.95.230.253": "2022-08-18T14:44:33Z"}
    assert listed.published == "2022-08-18T14:44:33Z"  # no Downloaded line: the latest time


def test_several_exit_addresses_keep_the_latest_time() -> None:
    text = (
        "ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E\n"
        "Published 2018-11-01 17:08:26\nLastStatus 2018-11-02 00:03:25\n"
        "ExitAddress 162.247.74.201 2018-11-01 18:08:13\n"
        "ExitAddress 162.247.74.202 2018-11-01 19:08:13\n"
        "ExitAddress 2001:0db8::0001 2018-11-01 19:08:13\n"
        "ExitNode 0077BCBA7244DB3E6A5ED2746E86170066684887\n"
        "ExitAddress 162.247.74.201 2018-11-01 20:00:00\n"
    )
    listed = parse(text)
    assert listed.exits["162.247.74.201"] == "2018-11-01T20:00:00Z"
    assert "2001:db8::1" in listed.exits  # as Python writes it, as lookups ask
    assert listed.published == "2018-11-02T00:03:25Z"


def test_the_bulk_list() -> None:
    listed = parse(BULK.read_text())
    assert listed.format == "bulk"
    assert len(listed.exits) == len(set(BULK.read_text().split()))
    assert listed.exits["93.95.230.253"] is None  # membership only
    assert listed.published is None


@pytest.mark.parametrize("body", ["", "<html><body>502 Bad Gateway</body></html>", "\n\n"])
def test_what_is_not_a_list(body: str) -> None:
    with pytest.raises(NotAnExitList):
        parse(body)
