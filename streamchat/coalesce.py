"""How a turn's stream of events becomes a few UI updates (coalescing), and how the
update interval stretches when the event loop falls behind (issue 16).

A reply can carry thousands of deltas; the UI is refreshed at most once per interval:
the first update at once, then one per interval while events keep coming, and always
the last. Each update costs the app (Gradio diffs and sends the chat) and the browser
(a re-render). When many sessions share one event loop, a fixed interval can ask for
more updates than the loop can send, and the queue backs up: every reply ends late.
So the interval follows the loop's measured lag: how late the coalescers' own timers
wake after their deadlines. While the loop keeps time, the interval is the configured
one; under load it grows (up to a ceiling), so the updates thin out instead of piling
up, and every reply still ends on time with its last update.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

STRETCH = 4.0
"""Each second of loop lag adds this many seconds to the update interval."""
CEILING = 0.5
"""The interval never grows beyond this (seconds): slower than this does not look like streaming."""
WEIGHT = 0.2
"""Weight of each new lag sample in the running mean (about the last 5 wake-ups count)."""


class LagGauge:
    """The event loop's lag: a running mean of how late timers woke after their
    deadlines. One per loop (``gauge_for``), fed by every turn's coalescer, so a crowd's
    sessions all see the load at once."""

    def __init__(self, weight: float = WEIGHT) -> None:
        self.weight = weight
        self.lag = 0.0

    def observe(self, late: float) -> None:
        """One wake-up, ``late`` seconds after its deadline (early counts as on time)."""
        self.lag += self.weight * (max(late, 0.0) - self.lag)


_gauges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LagGauge] = weakref.WeakKeyDictionary()


def gauge_for(loop: asyncio.AbstractEventLoop | None = None) -> LagGauge:
    """The lag gauge shared by everything on ``loop`` (default: the running loop)."""
    loop = loop or asyncio.get_running_loop()
    gauge = _gauges.get(loop)
    if gauge is None:
        gauge = _gauges[loop] = LagGauge()
    return gauge


class Pace:
    """The update interval: ``base`` while the loop keeps time, plus ``stretch`` times
    the measured lag under load, never above ``ceiling`` (nor below ``base``). A base
    of 0 means every event is its own update, whatever the load."""

    def __init__(self, base: float, gauge: LagGauge, *, stretch: float = STRETCH, ceiling: float = CEILING) -> None:
        self.base = base
        self.gauge = gauge
        self.stretch = stretch
        self.ceiling = max(ceiling, base)

    @property
    def interval(self) -> float:
        if self.base <= 0:
            return 0.0
        return min(self.ceiling, self.base + self.stretch * self.gauge.lag)


class Coalescer(Generic[T]):
    """Takes events from ``queue`` (``None`` ends the stream), hands each to ``handle``,
    and says when the UI should show the result::

        while await coalescer.wait():
            show()
        if coalescer.dirty:
            show()  # the last update, always

    ``wait`` returns True for an update: the first event at once, then at most one
    per ``pace.interval`` while events keep coming (and one when the interval is up
    with events not yet shown). It returns False once the stream has ended; ``ended``
    is then True and ``dirty`` says whether events arrived after the last update.
    Timers that wake late feed ``pace.gauge``: that is the loop lag the interval follows.

    With nothing to show, ``silence()`` seconds without an event (None: no limit) call
    ``on_silence`` (a status line such as "Waiting for the server…") and give an update.
    """

    def __init__(
        self,
        queue: asyncio.Queue[T | None],
        handle: Callable[[T], object],
        pace: Pace,
        clock: Callable[[], float] = time.monotonic,
        *,
        silence: Callable[[], float | None] = lambda: None,
        on_silence: Callable[[], object] = lambda: None,
    ) -> None:
        self.queue = queue
        self.handle = handle
        self.pace = pace
        self.clock = clock
        self.silence = silence
        self.on_silence = on_silence
        self.last = float("-inf")
        """When the last update was given (clock seconds)."""
        self.dirty = False
        self.ended = False

    def _shown(self) -> bool:
        self.last, self.dirty = self.clock(), False
        return True

    async def wait(self) -> bool:
        while not self.ended:
            interval = self.pace.interval
            if self.dirty and interval > 0:
                deadline = self.last + interval
                try:
                    async with asyncio.timeout(max(deadline - self.clock(), 0)):
                        item = await self.queue.get()
                except TimeoutError:
                    self.pace.gauge.observe(self.clock() - deadline)
                    return self._shown()
            else:
                try:
                    async with asyncio.timeout(self.silence()):
                        item = await self.queue.get()
                except TimeoutError:
                    self.on_silence()
                    return self._shown()
            # Take every event already queued: one update for all of them.
            while item is not None:
                self.handle(item)
                self.dirty = True
                if interval <= 0 or self.queue.empty():
                    break
                item = self.queue.get_nowait()
            if item is None:
                self.ended = True
                return False
            if self.clock() - self.last >= interval:
                return self._shown()
        return False
