"""What the fleet's acceptance tests and ``bench/fleet.py`` watch a fleet with.

Several ``python -m tickerd`` instances share one fake exchange; to tell which instance holds
which symbol from the fake's own subscription lists, each instance connects to its own URL path
(``/ws/{instance}``: :meth:`FleetBinance.url_for`).  The same fake can make one instance's feed
lag (:attr:`FleetBinance.lag`): its frames are built when the others' are, so they carry the
same ordering keys, and sent seconds later, as a slow network or a slow host would.

:class:`Arrivals` records every update published on Redis, per symbol, with the time it arrived
and its ordering key (``sequence``, else ``time``): gaps per symbol (:func:`gap`,
:func:`Arrivals.gaps`) and values going backwards (:meth:`Arrivals.backwards`) are read from it.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import orjson
import redis
import trio

from tickerd.broadcast import Broadcast
from tickerd.layout import RedisLayout
from tickerd.testing.binance import FakeBinance
from tickerd.testing.server import FakeConnection


def symbols(count: int) -> list[str]:
    """``count`` Binance spot symbols the fake serves (``C0/USDT``, ``C1/USDT``…)."""
    return [f"C{i}/USDT" for i in range(count)]


class FleetBinance(FakeBinance):
    """A Binance fake that knows which fleet instance each connection is, by its URL path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: instance → seconds its frames are held back.
        self.lag: dict[str, float] = {}
        #: Frames sent late so far (to the instances in :attr:`lag`).
        self.late_sent = 0
        #: Frames held back, in the order they are due (one lag per instance keeps it sorted).
        self._late_send, self._late_receive = trio.open_memory_channel[
            tuple[float, FakeConnection, list[str]]
        ](math.inf)

    async def serve(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_late)
            await nursery.start(super().serve)
            task_status.started(self)

    def url_for(self, instance: str) -> str:
        """The URL instance ``instance`` is configured with."""
        return f"{self.url}/{instance}"

    @staticmethod
    def instance_of(conn: FakeConnection) -> str:
        """The instance a connection came from (the last part of its URL path)."""
        return (conn.ws.path or "").rsplit("/", 1)[-1]

    def holders(self, symbol: str) -> list[str]:
        """The instances subscribed to ``symbol`` now, sorted (one entry per connection)."""
        return sorted(self.instance_of(conn) for conn in self.subscribers(symbol))

    def assignment(self, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """symbol → the instances subscribed to it, for each of ``names``."""
        return {symbol: tuple(self.holders(symbol)) for symbol in names}

    async def push(self, symbol: str, **fields: float) -> int:
        """Send ``symbol``'s state to its subscribers, the lagging ones :attr:`lag` seconds later
        (the frames are built now, with the ordering keys of now)."""
        state = self.state(symbol)
        state.update(fields)
        targets = self.subscribers(symbol)
        for conn in targets:
            frames = [str(frame) for frame in self.ticker_frames(conn, symbol, state)]
            delay = self.lag.get(self.instance_of(conn))
            if delay:
                self._late_send.send_nowait((trio.current_time() + delay, conn, frames))
                continue
            for frame in frames:
                await conn.send(frame)
        return len(targets)

    async def _send_late(self) -> None:
        async for due, conn, frames in self._late_receive:
            await trio.sleep_until(due)
            for frame in frames:
                await conn.send(frame)
            self.late_sent += len(frames)

    async def trade(self, names: Sequence[str], period: float, rng: random.Random) -> None:
        """Move and send every subscribed symbol of ``names`` about once per ``period`` seconds,
        spread evenly over the period, in a new order each round, until cancelled."""
        while True:
            started = trio.current_time()
            for i, symbol in enumerate(rng.sample(list(names), len(names))):
                if self.is_subscribed(symbol):
                    self.wiggle(symbol)
                    await self.push(symbol)
                await trio.sleep_until(started + period * (i + 1) / len(names))


def ordering_key(record: dict[str, Any]) -> float:
    """What the fleet's writes order by: ``sequence`` where the exchange sends one, else ``time``."""
    sequence = record.get("sequence")
    return float(sequence if sequence is not None else record["time"])


def gap(arrivals: Sequence[float], since: float, until: float) -> float:
    """The longest time ``[since, until]`` spent without an arrival, counted from the last
    arrival before ``since`` (the silence an event interrupted began there)."""
    before = [t for t in arrivals if t <= since]
    points = [before[-1] if before else since, *(t for t in arrivals if since < t <= until), until]
    return max(b - a for a, b in itertools.pairwise(points))


@attrs.frozen
class Gaps:
    """The gap per symbol over one event, summarised."""

    symbols: int
    max: float
    p50: float

    @classmethod
    def of(cls, gaps: Sequence[float]) -> Gaps:
        return cls(len(gaps), max(gaps, default=0.0), statistics.median(gaps) if gaps else 0.0)

    def __str__(self) -> str:
        return f"{self.symbols} symbols, gap max {self.max:.2f} s, p50 {self.p50:.2f} s"


class Arrivals:
    """Every update of one exchange published on Redis, per symbol: (arrival, ordering key).

    A subscriber reads the channels in a worker thread, a batch at a time (a thread hop per
    message would cost more than the message), so the test's own loop stays free.  ``only``
    narrows it to those symbols' channels: a reader that falls behind stamps arrivals late,
    and a bench with thousands of symbols measures gaps on a few of them.
    """

    def __init__(
        self, client: redis.Redis, layout: RedisLayout, exchange: str, only: Iterable[str] | None = None
    ) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        if only is None:
            self._pubsub.psubscribe(layout.updates_pattern(exchange))
        else:
            self._pubsub.subscribe(*(layout.updates(exchange, symbol) for symbol in only))
        self._start = len(layout.updates(exchange, ""))
        #: symbol → [(monotonic arrival time, ordering key)], in the order published.
        self.updates: dict[str, list[tuple[float, float]]] = {}
        self._changed: Broadcast[None] = Broadcast()

    async def run(self) -> None:
        """Record until cancelled."""
        try:
            while True:
                batch = await trio.to_thread.run_sync(self._batch)
                for arrived, channel, data in batch:
                    symbol = channel[self._start :].decode()
                    self.updates.setdefault(symbol, []).append((arrived, ordering_key(orjson.loads(data))))
                if batch:
                    self._changed.fire(None)
        finally:
            self._pubsub.close()

    def _batch(self) -> list[tuple[float, bytes, bytes]]:
        """What arrived within 0.1 s (up to 2,000 messages), with when each arrived.

        Never ``timeout=0``: redis-py then reads a message that arrived in part from a
        non-blocking socket and fails; a message still incomplete after 10 ms ends the batch
        (its bytes stay in the parser for the next one)."""
        batch: list[tuple[float, bytes, bytes]] = []
        try:
            message = self._pubsub.get_message(timeout=0.1)
            while message is not None and len(batch) < 2000:
                if message["type"] in ("message", "pmessage"):
                    batch.append((time.monotonic(), message["channel"], message["data"]))
                message = self._pubsub.get_message(timeout=0.01)
        except redis.TimeoutError:
            pass
        return batch

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> None:
        """Return once ``predicate()`` holds, re-checked on every batch of arrivals."""
        with trio.fail_after(within):
            while not predicate():
                await self._changed.wait()

    def times(self, symbol: str) -> list[float]:
        return [arrived for arrived, _ in self.updates.get(symbol, [])]

    def updated_since(self, symbols: Iterable[str], since: float) -> bool:
        """Whether each of ``symbols`` had an update after ``since``."""
        return all((self.updates.get(s) or [(-math.inf, 0.0)])[-1][0] > since for s in symbols)

    def gaps(self, symbols: Iterable[str], since: float, until: float | None = None) -> Gaps:
        """The gap of each of ``symbols`` over ``[since, until]`` (until: now)."""
        end = time.monotonic() if until is None else until
        return Gaps.of([gap(self.times(s), since, end) for s in symbols])

    def backwards(self) -> list[str]:
        """Every published update whose ordering key is below its symbol's previous one."""
        found = []
        for symbol, updates in sorted(self.updates.items()):
            for (_, before), (_, after) in itertools.pairwise(updates):
                if after < before:
                    found.append(f"{symbol}: {before} then {after}")
        return found
