"""Watch lists and the scheduler service on a real nats-server: the API and ``lookout
watch``, replicas that run each watch once per period (one of them at a time holding the
lease), and a verdict change that reaches an http target as ``verdict_changed``.

Periods are seconds here (``LOOKOUT_WATCH_MIN_EVERY=1``, ``LOOKOUT_SCHEDULER_TICK=0.1``);
in production the shortest is 5 minutes and the tick 5 s, with the same code."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from fakes.virustotal import FakeVirusTotal
from helpers import (
    WHSEC,
    Receiver,
    api,
    http_target,
    make_settings,
    run_lookout,
    running_gateway,
    running_provider,
    running_service,
    running_sink,
    wait_for,
)
from standardwebhooks import Webhook

from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.service import Service
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.lookups import watches
from shared.relay import schemas, templates

FAST = {"LOOKOUT_WATCH_MIN_EVERY": "1", "LOOKOUT_SCHEDULER_TICK": "0.1", "LOOKOUT_API_RATE": "0"}


class Replica:
    """One scheduler replica with its own NATS connection, as its own process would be."""

    def __init__(self, service: Service, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.service = service
        self.stop = stop
        self.task = task

    async def end(self) -> None:
        """Stop it as SIGTERM does (it gives the lease up on the way)."""
        self.stop.set()
        await asyncio.wait_for(self.task, 30)

    @property
    def active(self) -> bool:
        scheduler = self.service.scheduler
        return scheduler is not None and scheduler.lease is not None and scheduler.lease.active


@contextlib.asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[Replica]:
    nc = await nats.connect(settings.effective_nats_url)
    stop = asyncio.Event()
    service = Service(nc, settings, SchedulerMetrics())
    one = Replica(service, stop, asyncio.create_task(service.run(stop)))
    try:
        yield one
    finally:
        await one.end()
        await nc.close()


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def runs_of(base: str, watch_id: str) -> list[dict[str, Any]]:
    """The watch's jobs, oldest first."""
    status, listed = await api("GET", f"{base}/api/v1/lookups?limit=500")
    assert status == 200
    return [j for j in reversed(listed["jobs"]) if j["watch"] == watch_id]


def check_spacing(jobs: list[dict[str, Any]], every: float, tick: float) -> None:
    """Each period ran once: never two runs closer than a period (less the tick by which
    a run may be late)."""
    times = [when(j["created_at"]) for j in jobs]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap > every - tick - 0.05 for gap in gaps), gaps
    assert all(j["scheduled"] for j in jobs)


async def test_two_replicas_run_each_watch_once_per_period(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url, **FAST)
    async with (
        running_gateway(settings) as base,
        running_provider(settings, "virustotal"),  # no key: each job done at once
        replica(settings) as one,
        replica(settings) as two,
    ):
        status, watch = await api(
            "POST",
            f"{base}/api/v1/watches",
            json={
                "indicators": ["192.0.2.1", "example[.]com"],
                "every": "1s",
                "providers": ["virustotal"],
            },
        )
        assert status == 201, watch
        await wait_for(lambda: one.active or two.active)
        first, second = (one, two) if one.active else (two, one)
        await wait_for(lambda: _count(base, watch["id"], 4), within=20)
        assert not second.active  # one replica at a time
        # the active replica stops: the other takes the lease over and runs on
        await first.end()
        stopped = len(await runs_of(base, watch["id"]))
        await wait_for(lambda: second.active, within=10)
        await wait_for(lambda: _count(base, watch["id"], stopped + 3), within=20)
        jobs = await runs_of(base, watch["id"])
        check_spacing(jobs, 1.0, 0.1)
        assert all(j["indicators"] == 2 for j in jobs)
        status, listed = await api("GET", f"{base}/api/v1/watches")
        assert status == 200
        [shown] = listed["watches"]
        assert shown["runs"] >= len(jobs)
        assert shown["last_job"] in {j["id"] for j in jobs} | {None}
        assert shown["every"] == "1s"


async def _count(base: str, watch_id: str, at_least: int) -> bool:
    return len(await runs_of(base, watch_id)) >= at_least


async def test_two_replicas_that_both_think_they_lead_still_run_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The lease is not what makes a run happen once: each run is claimed by
    compare-and-set first. Two replicas told to run the due watches at the same moment
    (as two leaders would after a lapsed lease) submit each watch once."""
    settings = make_settings(
        tmp_path, nats_server.url, LOOKOUT_SCHEDULER_TICK="60", LOOKOUT_API_RATE="0"
    )
    async with running_gateway(settings) as base:
        ids = []
        for n in range(5):
            status, watch = await api(
                "POST",
                f"{base}/api/v1/watches",
                json={"indicators": [f"host{n}.example.com"], "every": "1h"},
            )
            assert status == 201
            ids.append(watch["id"])
        async with replica(settings) as one, replica(settings) as two:
            await wait_for(lambda: all(_knows(r, ids) for r in (one, two)))
            first, second = one.service.scheduler, two.service.scheduler
            assert first is not None
            assert second is not None
            # the lease holder runs them on its first tick; meanwhile both run what is due,
            # three times each, as two leaders would
            await asyncio.gather(*(s.run_due() for s in (first, second) * 3))
            await wait_for(lambda: _all_ran(base, ids))
            for watch_id in ids:
                assert len(await runs_of(base, watch_id)) == 1


def _knows(one: Replica, ids: list[str]) -> bool:
    scheduler = one.service.scheduler
    return scheduler is not None and set(scheduler.watchlist.watches) == set(ids)


async def _all_ran(base: str, ids: list[str]) -> bool:
    return all(await asyncio.gather(*(_count(base, i, 1) for i in ids)))


async def test_a_verdict_change_reaches_an_http_target(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    """A watched domain whose reputation answer turns from harmless to malicious between two
    scheduled runs: one ``verdict_changed`` at the http target, signed, in the documented
    envelope, with the default title."""
    async with FakeVirusTotal(
        {"example.com": FakeVirusTotal.stats(harmless=85, undetected=0)}
    ) as vt:
        settings = make_settings(
            tmp_path,
            nats_server.url,
            http_target(receiver.url) + "[providers.virustotal.quota]\nper_minute = 100\n",
            VIRUSTOTAL_API_KEY=vt.api_key,
            VIRUSTOTAL_URL=vt.base_url,
            LOOKOUT_PUBLIC_URL="https://lookout.example",
            **FAST,
        )
        async with (
            running_gateway(settings) as base,
            running_provider(settings, "virustotal"),
            running_sink(settings, "ops-http"),
            running_service(settings, "scheduler"),
        ):
            status, watch = await api(
                "POST",
                f"{base}/api/v1/watches",
                json={
                    "indicators": ["example[.]com"],
                    "every": 2,
                    "providers": ["virustotal"],
                    "comment": "phishing kit host?",
                },
            )
            assert status == 201, watch

            async def baseline() -> bool:
                status, found = await api("GET", f"{base}/api/v1/indicators/example.com")
                return status == 200 and [v["verdict"] for v in found["verdict_history"]] == [
                    "harmless"
                ]

            await wait_for(baseline)
            vt.objects["example.com"] = FakeVirusTotal.stats(malicious=7, harmless=78, undetected=0)
            await wait_for(lambda: len(receiver.requests) >= 1, within=20)
            # later runs find it malicious still: nothing more to tell
            runs = len(await runs_of(base, watch["id"]))
            await wait_for(lambda: _count(base, watch["id"], runs + 2), within=20)
            _, found = await api("GET", f"{base}/api/v1/indicators/example.com")
    assert len(receiver.requests) == 1
    headers, raw = receiver.requests[0]
    envelope = Webhook(WHSEC).verify(raw, {k.lower(): v for k, v in headers.items()})
    assert set(envelope) == {"id", "type", "source", "timestamp", "data"}
    assert envelope["type"] == "verdict_changed"
    assert envelope["source"] == "lookout"
    data = envelope["data"]
    assert data["indicator"] == "example.com"
    assert data["kind"] == "domain"
    assert (data["old_verdict"], data["new_verdict"]) == ("harmless", "malicious")
    assert data["changes"] == [
        {
            "provider": "virustotal",
            "label": "VirusTotal",
            "old_verdict": "harmless",
            "new_verdict": "malicious",
            "old_summary": "0/85 engines",
            "new_summary": "7/85 engines",
        }
    ]
    assert data["verdict_reasons"] == ["VirusTotal: 7/85 engines"]
    assert data["url"] == "https://lookout.example/indicator/example.com"
    assert data["watches"] == [watch["id"]]
    assert data["scheduled"] is True
    assert data["job_id"] in {j["id"] for j in found["jobs"]}
    assert [v["verdict"] for v in found["verdict_history"]] == ["malicious", "harmless"]
    note = schemas.Notification(
        id=envelope["id"],
        type=envelope["type"],
        source=envelope["source"],
        timestamp=envelope["timestamp"],
        data=msgspec.Raw(json.dumps(data).encode()),
    )
    rendered = templates.render(note)
    assert rendered.title == (
        "example.com is now malicious (was harmless): VirusTotal 0/85 engines → 7/85 engines"
    )
    assert "Details: https://lookout.example/indicator/example.com" in rendered.body
    assert data["description"] == rendered.title


async def test_notify_on_worse_tells_only_a_worse_verdict(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    async with FakeVirusTotal({"example.com": FakeVirusTotal.stats(malicious=9)}) as vt:
        settings = make_settings(
            tmp_path,
            nats_server.url,
            http_target(receiver.url) + "[providers.virustotal.quota]\nper_minute = 100\n",
            VIRUSTOTAL_API_KEY=vt.api_key,
            VIRUSTOTAL_URL=vt.base_url,
            **FAST,
        )
        async with (
            running_gateway(settings) as base,
            running_provider(settings, "virustotal"),
            running_sink(settings, "ops-http"),
            running_service(settings, "scheduler"),
        ):
            status, watch = await api(
                "POST",
                f"{base}/api/v1/watches",
                json={
                    "indicators": ["example.com"],
                    "every": "1s",
                    "providers": ["virustotal"],
                    "notify_on": "worse",
                },
            )
            assert status == 201
            await wait_for(lambda: _verdicts(base, ["malicious"]))
            vt.objects["example.com"] = FakeVirusTotal.stats(harmless=80)  # better: not told
            await wait_for(lambda: _verdicts(base, ["harmless", "malicious"]))
            vt.objects["example.com"] = FakeVirusTotal.stats(suspicious=1, harmless=79)  # worse
            await wait_for(lambda: _verdicts(base, ["suspicious", "harmless", "malicious"]))
            await wait_for(lambda: len(receiver.requests) >= 1)
            status, _ = await api("DELETE", f"{base}/api/v1/watches/{watch['id']}")
            assert status == 204
    [(_, raw)] = receiver.requests
    data = json.loads(raw)["data"]
    assert (data["old_verdict"], data["new_verdict"]) == ("harmless", "suspicious")


async def _verdicts(base: str, expected: list[str]) -> bool:
    status, found = await api("GET", f"{base}/api/v1/indicators/example.com")
    return status == 200 and [v["verdict"] for v in found["verdict_history"]] == expected


async def test_the_watch_api_and_cli(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/watches"
        for body, reason in [
            ({"indicators": ["example.com"]}, "expected"),
            ({"indicators": [], "every": "6h"}, "at least one"),
            ({"indicators": ["not a host", "example.com"], "every": "6h"}, "not indicators"),
            ({"indicators": ["example.com"], "every": "1m"}, "every must be from 5m to 30d"),
            ({"indicators": ["example.com"], "every": "31d"}, "every must be from"),
            ({"indicators": ["example.com"], "every": "soon"}, "not a duration"),
            ({"indicators": ["example.com"], "every": -5}, "every must be from"),
            ({"indicators": ["example.com"], "every": "6h", "providers": ["x"]}, "unknown"),
            ({"indicators": ["example.com"], "every": "6h", "notify_on": "x"}, "notify_on"),
            ({"indicators": ["example.com"], "every": "6h", "extra": 1}, "expected"),
        ]:
            status, answer = await api("POST", url, json=body)
            assert status == 400, (body, answer)
            assert reason in answer["error"], (body, answer)
        status, answer = await api(
            "POST", url, json={"indicators": ["not a host", "example.com"], "every": "6h"}
        )
        assert answer["rejected"] == [
            {"item": "not a host", "reason": answer["rejected"][0]["reason"]}
        ]
        status, created = await api(
            "POST",
            url,
            json={"indicators": ["hxxps://evil[.]example[.]com/x"], "every": "6h"},
        )
        assert status == 201
        assert created["indicators"] == [
            {"value": "https://evil.example.com/x", "kind": "url", "scope": "public"}
        ]
        assert (created["every"], created["every_seconds"]) == ("6h", 21600.0)
        assert created["notify_on"] == "any_change"
        assert (created["runs"], created["next_run_at"]) == (0, None)
        assert (await api("DELETE", f"{url}/0123456789abcdef01234567"))[0] == 404
        assert (await api("DELETE", f"{url}/../x"))[0] == 404

        env = {**os.environ, "NATS_URL": nats_server.url}
        code, out, _ = await run_lookout(env, "watch", "add", "198.51.100.7", "--every", "1d")
        assert code == 0
        cli_id = out.strip()
        code, out, _ = await run_lookout(env, "watch", "list", "--json")
        assert code == 0
        listed = {w["id"]: w for w in map(json.loads, out.splitlines())}
        assert set(listed) == {created["id"], cli_id}
        assert listed[cli_id]["every"] == "1d"
        status, over_http = await api("GET", url)
        assert {w["id"] for w in over_http["watches"]} == set(listed)
        code, out, _ = await run_lookout(env, "watch", "list")
        assert "198.51.100.7" in out
        assert out.splitlines()[0].split()[:3] == ["ID", "EVERY", "NOTIFY"]
        code, _, err = await run_lookout(env, "watch", "add", "nope", "--every", "1d")
        assert code == 2
        assert "not indicators" in err
        code, _, err = await run_lookout(env, "watch", "remove", cli_id)
        assert code == 0
        code, _, err = await run_lookout(env, "watch", "remove", cli_id)
        assert code == 1
        assert "no watch" in err
        assert (await api("DELETE", f"{url}/{created['id']}"))[0] == 204
        status, over_http = await api("GET", url)
        assert over_http == {"watches": []}


async def test_a_provider_turned_off_is_refused_then_left_out_of_the_runs(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A watch asks only providers that run (as a lookup does: 400 naming the one turned
    off); one made before its provider was turned off is run without it, and skipped
    while none of its providers runs: a job waiting for a provider that never answers
    would never complete, and no change of verdict would ever be told."""
    on = make_settings(tmp_path, nats_server.url, LOOKOUT_PROVIDERS="dns,virustotal", **FAST)
    off = make_settings(tmp_path, nats_server.url, LOOKOUT_PROVIDERS="dns", **FAST)
    async with running_gateway(on) as base:
        status, made = await api(
            "POST",
            f"{base}/api/v1/watches",
            json={"indicators": ["example.com"], "every": "1h", "providers": ["virustotal"]},
        )
        assert status == 201, made
        status, both = await api(
            "POST",
            f"{base}/api/v1/watches",
            json={"indicators": ["example.org"], "every": "1h", "providers": ["dns", "virustotal"]},
        )
        assert status == 201, both
    async with running_gateway(off) as base:
        status, refused = await api(
            "POST",
            f"{base}/api/v1/watches",
            json={"indicators": ["example.net"], "every": "1h", "providers": ["virustotal"]},
        )
        assert status == 400
        assert "virustotal: turned off by the configuration" in refused["error"]
        async with running_service(off, "scheduler"):
            await wait_for(lambda: _ran(base, both["id"]), within=20)
            await asyncio.sleep(1.0)  # a few ticks more: the other watch is due too
            assert await runs_of(base, made["id"]) == []
        [run] = await runs_of(base, both["id"])
        status, job = await api("GET", f"{base}/api/v1/lookups/{run['id']}")
    assert status == 200
    assert job["providers"] == {"domain": ["dns"]}


async def _ran(base: str, watch_id: str) -> bool:
    return bool(await runs_of(base, watch_id))


async def test_concurrent_creates_stop_at_the_limit(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit holds under concurrent creates (each counted the others' absence and all
    were stored): 5 here instead of 1,000, twenty at once, five made."""
    monkeypatch.setattr(watches, "MAX_WATCHES", 5)
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_RATE="0")
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/watches"
        answers = await asyncio.gather(
            *(
                api("POST", url, json={"indicators": [f"w{i}.example.com"], "every": "6h"})
                for i in range(20)
            )
        )
        status, listed = await api("GET", url)
    assert sorted(code for code, _ in answers) == [201] * 5 + [400] * 15
    assert status == 200
    assert len(listed["watches"]) == 5


async def test_runs_do_not_pile_up_behind_an_unfinished_job(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A watch's run is skipped while its previous job has not finished (its requests
    wait for a quota, here for a provider not running yet): no pile of jobs spending the
    quota later. Once it finishes, the runs go on."""
    settings = make_settings(tmp_path, nats_server.url, **FAST)
    async with running_gateway(settings) as base:
        status, made = await api(
            "POST",
            f"{base}/api/v1/watches",
            json={"indicators": ["example.com"], "every": "1s", "providers": ["virustotal"]},
        )
        assert status == 201, made
        async with running_service(settings, "scheduler"):
            await wait_for(lambda: _ran(base, made["id"]), within=20)
            await asyncio.sleep(3.5)  # three more periods: each skipped
            assert len(await runs_of(base, made["id"])) == 1
            async with running_provider(settings, "virustotal"):  # no key: answers at once

                async def more() -> bool:
                    return len(await runs_of(base, made["id"])) >= 3

                await wait_for(more, within=20)
