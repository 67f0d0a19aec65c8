"""One contract for every target that posts to a chat or paging service: the same answers
of the service lead to the same outcome, whichever target meets them.

Each row runs the real sinks (``SinkRunner`` through ``lookout service sink-<name>``'s
entry point) of ``slack``, ``teams``, ``discord``, ``pagerduty`` and ``sms`` together on
a real nats-server, each against its loopback fake (tests/fakes/, one shared base), and
checks what the row says:

- **2xx**: delivered once, at the first attempt;
- **429 with Retry-After**: paused and retried after it (where backoff alone says 0.2 s),
  never dead-lettered, and a notification arriving meanwhile waits out the same pause;
- **429 with a Retry-After of a week**: the pause is capped by ``retry.max_retry_after``;
- **5xx**: retried, then delivered;
- **4xx**: dead-lettered at once, after one attempt;
- **timeout**: retried, then delivered;
- and in every row, the target's secret (the webhook URL and its token, the routing key,
  the auth token) appears in no error, log line, status record or dead letter, even when
  the service quotes it back in its error.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import nats
import pytest
from fakes.base import RecordingFake
from fakes.discord import FakeDiscord
from fakes.pagerduty import FakePagerDuty
from fakes.slack import FakeSlack
from fakes.teams import FakeTeams
from fakes.twilio import FakeTwilio
from helpers import (
    dead_letters,
    jetstream,
    make_settings,
    publish_alerts,
    running_sink,
    settled,
    wait_for,
)
from nats.aio.msg import Msg

from shared.core.natsserver import NatsServer
from shared.relay import status, streams

TIMEOUT = 1.0


@dataclass
class Chat:
    """One target type and the fake of its service."""

    kind: str
    fake: RecordingFake
    ok: int
    """The status the service answers an accepted message with."""
    keys: str
    """The target's own TOML keys (its address and secret)."""
    secrets: list[str]
    """What must never be shown: the secret and the parts that would give it away."""
    records: list[status.DeliveryStatus] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"contract-{self.kind}"

    def toml(self, max_retry_after: float = 3600.0, extra: str = "") -> str:
        """The target, without a send rate (the rows are about answers, not pace)."""
        retry = (
            "max_attempts = 3, initial_backoff = 0.2, max_backoff = 1, jitter = 0, "
            f"max_retry_after = {max_retry_after}"
        )
        return (
            f'[[targets]]\nname = "{self.target}"\ntype = "{self.kind}"\n{self.keys}\n'
            f"timeout = {TIMEOUT}\nper_second = 0\nretry = {{ {retry} }}\n{extra}\n"
        )

    def arrivals(self) -> list[float]:
        return [request.at for request in self.fake.requests]

    def accepted(self) -> int:
        return self.fake.answers.count(self.ok)


def url_secrets(url: str) -> list[str]:
    """A webhook URL, its path and every long segment or query value (tokens, ``sig``)."""
    parts = urlsplit(url)
    found = [url, parts.path]
    found += [segment for segment in parts.path.split("/") if len(segment) >= 16]
    found += [v for values in parse_qs(parts.query).values() for v in values if len(v) >= 16]
    return found


def slack(fake: FakeSlack) -> Chat:
    url = fake.webhook_url
    return Chat("slack", fake, 200, f'webhook_url = "{url}"', url_secrets(url))


def teams(fake: FakeTeams) -> Chat:
    url = fake.webhook_url
    return Chat("teams", fake, 202, f'webhook_url = "{url}"', url_secrets(url))


def discord(fake: FakeDiscord) -> Chat:
    url = fake.webhook_url
    return Chat("discord", fake, 200, f'webhook_url = "{url}"', url_secrets(url))


def pagerduty(fake: FakePagerDuty) -> Chat:
    keys = f'routing_key = "{fake.routing_key}"\napi_url = "{fake.api_url}"'
    return Chat("pagerduty", fake, 202, keys, [fake.routing_key])


def sms(fake: FakeTwilio) -> Chat:
    keys = (
        f'account_sid = "{fake.account_sid}"\nauth_token = "{fake.auth_token}"\n'
        f'sender = "+15005550006"\nto = ["+14155550101"]\napi_url = "{fake.api_url}"'
    )
    return Chat("sms", fake, 201, keys, [fake.auth_token])


@pytest.fixture
async def chats() -> AsyncIterator[list[Chat]]:
    async with AsyncExitStack() as stack:
        made = [
            slack(await stack.enter_async_context(FakeSlack())),
            teams(await stack.enter_async_context(FakeTeams())),
            discord(await stack.enter_async_context(FakeDiscord())),
            pagerduty(await stack.enter_async_context(FakePagerDuty())),
            sms(await stack.enter_async_context(FakeTwilio())),
        ]
        yield made


def quoting(chat: Chat) -> str:
    """An error message that quotes the target's secret, as a careless service might."""
    return f"cannot post with {chat.secrets[0]}"


@dataclass(frozen=True)
class Row:
    name: str
    arrange: Callable[[Chat], None]
    delivered: bool
    answers: Callable[[Chat], list[int]]
    attempts: int
    max_retry_after: float = 3600.0


def _429(chat: Chat) -> None:
    chat.fake.fail(429, retry_after="1", detail=quoting(chat))


def _429_for_a_week(chat: Chat) -> None:
    chat.fake.fail(429, retry_after=str(7 * 86400), detail=quoting(chat))


def _5xx(chat: Chat) -> None:
    chat.fake.fail(503, detail=quoting(chat))


def _4xx(chat: Chat) -> None:
    chat.fake.fail(400, detail=quoting(chat))


def _stall(chat: Chat) -> None:
    chat.fake.delay_next.append(TIMEOUT + 1.0)


ROWS = [
    Row("2xx", lambda chat: None, True, lambda chat: [chat.ok], 1),
    Row("429 with Retry-After", _429, True, lambda chat: [429, chat.ok], 2),
    Row(
        "429 with a week's Retry-After",
        _429_for_a_week,
        True,
        lambda chat: [429, chat.ok],
        2,
        max_retry_after=1.0,
    ),
    Row("5xx", _5xx, True, lambda chat: [503, chat.ok], 2),
    Row("4xx", _4xx, False, lambda chat: [400], 1),
    Row("timeout", _stall, True, lambda chat: [chat.ok, chat.ok], 2),
]


async def recording_status(url: str, chats: list[Chat]) -> Any:
    """Every status record the sinks write, as they write them (not only the last one)."""
    nc = await nats.connect(url)
    by_target = {chat.target: chat for chat in chats}

    async def record(msg: Msg) -> None:
        entry = status.decode(msg.data)
        by_target[entry.target].records.append(entry)

    await nc.subscribe(f"$KV.{streams.STATUS_BUCKET}.>", cb=record)
    return nc


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
async def test_every_chat_target_meets_the_contract(
    row: Row,
    chats: list[Chat],
    nats_server: NatsServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    toml = "\n".join(chat.toml(row.max_retry_after) for chat in chats)
    settings = make_settings(tmp_path, nats_server.url, toml)
    names = [chat.target for chat in chats]
    paused = row.name.startswith("429")
    for chat in chats:
        row.arrange(chat)
    watcher = await recording_status(nats_server.url, chats)
    try:
        async with jetstream(nats_server.url, settings) as js, AsyncExitStack() as sinks:
            for chat in chats:
                await sinks.enter_async_context(running_sink(settings, chat.target))
            [first] = await publish_alerts(js, 1, "contract")
            if paused:
                # The 429 is answered: a notification arriving now must wait the pause out.
                await wait_for(lambda: all(chat.fake.answers for chat in chats))
                await asyncio.sleep(0.2)  # the runners have read the answers
                await publish_alerts(js, 1, "meanwhile")
            expected = {
                chat.kind: [429, chat.ok, chat.ok] if paused else row.answers(chat)
                for chat in chats
            }

            async def done() -> bool:
                if not all(len(chat.fake.answers) == len(expected[chat.kind]) for chat in chats):
                    return False
                if row.delivered:
                    return True
                return all([len(await dead_letters(nats_server.url, n)) == 1 for n in names])

            await wait_for(done, within=20)
            await wait_for(lambda: settled(nats_server.url, *names))
        await watcher.flush()
    finally:
        await watcher.close()

    out = capsys.readouterr().out
    for chat in chats:
        where = f"{chat.kind} ({row.name})"
        assert chat.fake.answers == expected[chat.kind], where
        if paused:
            throttled, *later = chat.arrivals()
            # Retry-After: 1 (a week's capped at 1) where backoff alone says 0.2 s: the
            # retry and the notification that came meanwhile both wait for the pause.
            assert all(0.9 <= at - throttled < 5 for at in later), (where, later, throttled)
        dead = await dead_letters(nats_server.url, chat.target)
        final = {r.notification_id: r for r in chat.records if r.state in ("delivered", "dead")}
        assert final[first].attempts == row.attempts, where
        if row.delivered:
            assert dead == [], where
            assert final[first].state == "delivered", where
        else:
            [letter] = dead
            assert letter.attempts == 1, where
            assert "HTTP 400" in letter.error, (where, letter.error)
            assert final[first].state == "dead", where
        if row.name != "2xx":
            assert any(r.state in ("retrying", "dead") for r in chat.records), where
        shown = [
            out,
            caplog.text,
            *(msgspec.json.encode(record).decode() for record in chat.records),
            *(msgspec.json.encode(letter).decode() for letter in dead),
        ]
        for secret in chat.secrets:
            assert not any(secret in text for text in shown), f"{where}: a secret was shown"


async def test_a_success_that_empties_discords_bucket_pauses_the_next_send(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Discord answers ``X-RateLimit-Remaining: 0`` on the message that used its bucket's
    last request: the target returns a pause and the runner holds the next sends until the
    bucket refills (``X-RateLimit-Reset-After``), so none earns a 429. One send at a
    time and no send rate: only the pause spaces them."""
    async with FakeDiscord(rate_limit=(1, 1.0)) as fake:
        chat = discord(fake)
        settings = make_settings(tmp_path, nats_server.url, chat.toml(extra="concurrency = 1"))
        async with (
            jetstream(nats_server.url, settings) as js,
            running_sink(settings, chat.target),
        ):
            await publish_alerts(js, 3, "bucket")
            await wait_for(lambda: chat.accepted() == 3, within=15)
    assert fake.answers == [200, 200, 200]  # never a 429
    gaps = [b - a for a, b in itertools.pairwise(chat.arrivals())]
    assert min(gaps) >= 0.9, gaps
