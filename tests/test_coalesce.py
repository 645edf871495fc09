"""The coalescing policy (streamchat/coalesce.py) on a fake clock: how many UI updates
a stream becomes, and how the interval stretches with the loop lag the coalescers'
own timers measure. No real waiting: the clock only moves when a test moves it."""

from __future__ import annotations

import asyncio

import pytest

from streamchat.coalesce import CEILING, Coalescer, LagGauge, Pace, gauge_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(base: float = 0.05, **pace: float) -> tuple[Coalescer[str], asyncio.Queue[str | None], list[str], Clock]:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    seen: list[str] = []
    clock = Clock()
    return Coalescer(queue, seen.append, Pace(base, LagGauge(), **pace), clock), queue, seen, clock


def test_the_interval_is_the_base_while_the_loop_keeps_time_and_grows_with_lag_up_to_a_ceiling() -> None:
    gauge = LagGauge()
    pace = Pace(0.05, gauge, stretch=4.0, ceiling=0.5)
    assert pace.interval == 0.05
    gauge.lag = 0.02
    assert pace.interval == pytest.approx(0.05 + 4 * 0.02)
    gauge.lag = 0.04
    assert pace.interval == pytest.approx(0.05 + 4 * 0.04)
    gauge.lag = 1.0
    assert pace.interval == 0.5
    # Coalescing off means every event is shown, whatever the load.
    assert Pace(0.0, gauge).interval == 0.0
    # A base above the ceiling is kept (the ceiling only limits stretching).
    assert Pace(2.0, LagGauge()).interval == 2.0 > CEILING


def test_the_lag_is_a_running_mean_of_late_wakeups_that_decays_once_timers_are_on_time() -> None:
    gauge = LagGauge(weight=0.5)
    gauge.observe(-0.01)  # early: on time
    assert gauge.lag == 0.0
    for _ in range(20):
        gauge.observe(0.1)
    assert gauge.lag == pytest.approx(0.1, rel=1e-4)
    gauge.observe(0.0)
    assert gauge.lag == pytest.approx(0.05, rel=1e-3)
    for _ in range(20):
        gauge.observe(0.0)
    assert gauge.lag < 1e-6


async def test_one_gauge_per_loop() -> None:
    assert gauge_for() is gauge_for(asyncio.get_running_loop())
    other = asyncio.new_event_loop()
    try:
        assert gauge_for(other) is not gauge_for()
    finally:
        other.close()


async def test_the_first_event_is_shown_at_once_and_everything_queued_becomes_one_update() -> None:
    coalescer, queue, seen, clock = make()
    for item in "abc":
        queue.put_nowait(item)
    assert await coalescer.wait() is True
    assert seen == ["a", "b", "c"] and not coalescer.dirty and coalescer.last == 0.0
    clock.now = 0.2  # past the interval: the next event is shown at once too
    queue.put_nowait("d")
    assert await coalescer.wait() is True and seen[-1] == "d"
    queue.put_nowait(None)
    assert await coalescer.wait() is False
    assert coalescer.ended and not coalescer.dirty
    assert await coalescer.wait() is False  # ended stays ended


async def test_the_end_of_the_stream_reports_events_not_yet_shown() -> None:
    coalescer, queue, seen, clock = make()
    queue.put_nowait("a")
    assert await coalescer.wait() is True
    clock.now = 0.01
    queue.put_nowait("b")
    queue.put_nowait(None)
    assert await coalescer.wait() is False
    assert seen == ["a", "b"] and coalescer.ended and coalescer.dirty  # the caller owes a last update


async def test_with_coalescing_off_every_event_is_its_own_update() -> None:
    coalescer, queue, seen, _ = make(base=0.0)
    for item in ["a", "b", "c", None]:
        queue.put_nowait(item)
    updates = 0
    while await coalescer.wait():
        updates += 1
        assert len(seen) == updates
    assert updates == 3 and coalescer.ended


async def test_an_event_within_the_interval_waits_and_a_lagging_loop_stretches_the_interval() -> None:
    # Base 1 s (large, so the real timer this test never lets fire is far away).
    coalescer, queue, seen, clock = make(base=1.0, stretch=4.0, ceiling=100.0)
    queue.put_nowait("a")
    assert await coalescer.wait() is True  # shown at t=0
    # t=2: past the 1 s interval, so shown at once...
    clock.now = 2.0
    queue.put_nowait("b")
    assert await coalescer.wait() is True and coalescer.last == 2.0
    # ...but with the loop lagging 5 s the interval is 21 s: t=4 is too early.
    coalescer.pace.gauge.lag = 5.0
    clock.now = 4.0
    queue.put_nowait("c")
    waiting = asyncio.ensure_future(coalescer.wait())
    await asyncio.sleep(0)  # let it take "c" and start waiting for more
    assert seen == ["a", "b", "c"] and not waiting.done()
    queue.put_nowait(None)
    assert await waiting is False and coalescer.dirty  # "c" only in the last update


async def test_a_late_timer_is_measured_as_loop_lag_and_stretches_the_next_interval() -> None:
    coalescer, queue, _, clock = make(base=1.0, stretch=4.0, ceiling=100.0)
    queue.put_nowait("a")
    assert await coalescer.wait() is True  # shown at t=0; the next update is due at t=1
    queue.put_nowait("b")
    clock.now = 0.5
    waiting = asyncio.ensure_future(coalescer.wait())
    await asyncio.sleep(0)
    assert not waiting.done() and coalescer.dirty
    waiting.cancel()  # a Stop mid-wait: nothing lost, "b" is still owed
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert coalescer.dirty
    # The loop was busy: the timer due at t=1 wakes at t=3, 2 s late.
    clock.now = 3.0
    assert await coalescer.wait() is True
    assert coalescer.pace.gauge.lag == pytest.approx(0.2 * 2.0)
    assert coalescer.pace.interval == pytest.approx(1.0 + 4 * 0.4)
    assert coalescer.last == 3.0 and not coalescer.dirty
