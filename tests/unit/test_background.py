"""shared.core.background.Repeating: a stop never hangs on a step that swallowed its
cancellation, and the loop ends with it."""

from __future__ import annotations

import asyncio

from shared.core import background
from shared.core.background import Repeating


async def test_steps_repeat_until_stopped() -> None:
    steps: list[int] = []
    three = asyncio.Event()

    async def step() -> None:
        steps.append(len(steps))
        if len(steps) == 3:
            three.set()

    loop = Repeating(step, lambda: 0.01)
    loop.start()
    await asyncio.wait_for(three.wait(), 5)
    await loop.stop()
    seen = len(steps)
    await asyncio.sleep(0.05)
    assert len(steps) == seen  # nothing after stop


async def test_wait_first_waits_before_the_first_step() -> None:
    steps: list[int] = []

    async def step() -> None:
        steps.append(1)

    loop = Repeating(step, lambda: 60.0, wait_first=True)
    loop.start()
    await asyncio.sleep(0.05)
    await loop.stop()
    assert steps == []


async def test_a_step_that_swallows_its_cancellation_does_not_hold_the_stop() -> None:
    """As a library call may turn a cancellation into its own timeout, which a step that
    survives failures suppresses: the stop returns within its grace and the loop ends."""
    inside = asyncio.Event()
    steps = 0

    async def step() -> None:
        nonlocal steps
        steps += 1
        inside.set()
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:  # swallowed, as a library's own error would be
            await asyncio.sleep(0.05)

    loop = Repeating(step, lambda: 0.0)
    loop.start()
    await inside.wait()
    started = asyncio.get_running_loop().time()
    await loop.stop()
    assert asyncio.get_running_loop().time() - started <= background.STOP_GRACE + 0.5
    await asyncio.sleep(0.4)
    assert steps == 1  # the loop ended on its flag: no step after the stop
