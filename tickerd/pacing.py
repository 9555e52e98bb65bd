"""The batch window's clock: one timer a tick, however many connections wait for it.

A connection that just handed tickers on waits for the next tick of ``feed.batch_window``
before it reads again (:meth:`tickerd.feed._Session._reader`), so that what a steady feed sends
meanwhile is read, decoded and written in one wake-up of the process.  Ticks are the multiples
of the window on trio's clock, the same instants for every connection, and the first
connection to wait for a tick keeps its timer for all the others: twenty paced connections
cost one timer (and one expiry) a tick, not twenty.
"""

from __future__ import annotations

import math

import trio


def next_tick(now: float, window: float) -> float:
    """The first multiple of ``window`` after ``now`` (strictly: float rounding can put the
    naive answer on ``now`` itself)."""
    tick = (math.floor(now / window) + 1) * window
    return tick if tick > now else tick + window


class Pacer:
    """Waits for the next tick of ``window`` seconds (``0``: never waits)."""

    def __init__(self, window: float) -> None:
        self.window = window
        #: The ticks being waited for, each with the event its timekeeper sets.
        self._ticks: dict[float, trio.Event] = {}

    async def tick(self) -> None:
        """Return at the next tick.

        The first waiter of a tick sleeps until it and then wakes the others; if it is
        cancelled first (its connection closed), it wakes them at once: an early read costs
        nothing but a smaller batch, a missed wake-up would stall a connection.
        """
        if not self.window:
            return
        deadline = next_tick(trio.current_time(), self.window)
        event = self._ticks.get(deadline)
        if event is not None:
            await event.wait()
            return
        event = self._ticks[deadline] = trio.Event()
        try:
            await trio.sleep_until(deadline)
        finally:
            del self._ticks[deadline]
            event.set()
