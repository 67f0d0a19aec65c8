"""Send pacing without a bus: the "next free slot" arithmetic the replicas share through
the KV bucket ``sink_pace``, and the in-process pacer (no KV at all)."""

from __future__ import annotations

import bisect
import itertools
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.relay.pacing import Pacer, take_slots
from shared.relay.target import Paced, RetryableError


def test_a_free_target_sends_now() -> None:
    assert take_slots(0.0, 100.0, 0.2) == [100.0]
    assert take_slots(99.0, 100.0, 0.2) == [100.0]  # a stale next slot is just free


def test_a_busy_target_sends_at_its_next_free_slot() -> None:
    assert take_slots(100.5, 100.0, 0.2) == [100.5]


def test_several_sends_take_consecutive_slots_one_period_apart() -> None:
    assert take_slots(0.0, 50.0, 0.25, count=5) == pytest.approx([50.0, 50.25, 50.5, 50.75, 51.0])


def test_only_slots_within_the_horizon_are_taken() -> None:
    assert take_slots(100.0, 100.0, 1.0, count=10, horizon=2.5) == [100.0, 101.0, 102.0]
    assert take_slots(103.0, 100.0, 1.0, count=10, horizon=2.5) == []  # none: nothing taken
    assert take_slots(102.5, 100.0, 1.0, count=1, horizon=2.5) == [102.5]  # at the edge


@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=30), st.integers(min_value=1, max_value=5)),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([1.0, 2.0, 5.0, 50.0]),
    st.sampled_from([0.5, 5.0, math.inf]),
)
def test_however_claims_arrive_no_second_holds_more_than_the_rate(
    asks: list[tuple[float, int]], per_second: float, horizon: float
) -> None:
    """Whichever replica claims, whenever and for how many sends, through one shared
    ``next``: every slot is at or after its claim and within the horizon, slots are a
    period apart, and no 1-second window holds more than ``per_second`` + 1 of them."""
    period = 1.0 / per_second
    next_free, slots = 0.0, []
    for now, count in sorted(asks):
        taken = take_slots(next_free, now, period, count, horizon)
        assert len(taken) <= count
        assert all(now <= slot <= now + horizon for slot in taken)
        if taken:
            next_free = taken[-1] + period
        slots.extend(taken)
    assert all(b - a >= period - 1e-9 for a, b in itertools.pairwise(slots))
    if slots:
        busiest = max(bisect.bisect_left(slots, t + 1.0) - i for i, t in enumerate(slots))
        assert busiest <= per_second + 1


async def test_an_in_process_pacer_spaces_sends_by_its_period() -> None:
    pacer = Pacer("svc", 20.0)
    assert pacer.rated
    assert not pacer.shared
    started = time.monotonic()
    for _ in range(5):
        await pacer.turn()
    assert time.monotonic() - started >= 4 * 0.05 - 0.01


async def test_a_pause_longer_than_max_wait_is_handed_back() -> None:
    pacer = Pacer("Slack", None, max_wait=1.0)
    assert not pacer.rated
    await pacer.turn()  # no rate, no pause: at once
    pacer.pause(30.0)
    with pytest.raises(Paced) as caught:
        await pacer.turn()
    assert isinstance(caught.value, RetryableError)  # the runner retries it later
    assert caught.value.retry_after is not None
    assert 29 < caught.value.retry_after <= 30
    assert str(caught.value).startswith("paused by a Slack rate limit for ")


async def test_a_short_pause_is_waited_out() -> None:
    pacer = Pacer("svc", 100.0, max_wait=5.0)
    pacer.pause(0.3)
    started = time.monotonic()
    await pacer.turn()
    assert time.monotonic() - started >= 0.29


async def test_a_429_pause_is_capped_by_max_retry_after() -> None:
    """A service answering "Retry-After: one week" pauses the target for max_retry_after."""
    pacer = Pacer("Slack", None, max_wait=1.0, max_pause=120.0)
    pacer.pause(7 * 86400.0)
    with pytest.raises(Paced) as caught:
        await pacer.turn()
    assert caught.value.retry_after is not None
    assert 119 < caught.value.retry_after <= 120
