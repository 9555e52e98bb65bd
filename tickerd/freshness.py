"""Which subscribed symbols are fresh, waiting or stale, at a cost that does not grow with them.

Two halves, one idea: keep times *in the order they happen*, so the oldest are at the front and
a check that looks for what is ``stale_after`` old reads from the front and stops at the first
fresh entry.

* :class:`LastSeen` (the writer's): per exchange, symbol → trio time of the latest batch that
  held its ticker, in update order (an update moves the symbol to the end).  It is touched once
  per key per coalesced batch, never per frame.
* :class:`Staleness` (each exchange's runner's): the subscribed symbols with their subscribe
  time (the baseline of a symbol that never ticked), those never ticked in subscribe order, and
  per connection what the resubscribe rule needs.  A check costs in proportion to the symbols
  that are stale or changed state since the last one, plus the connections: not to the number
  of symbols (10,000 symbols cost what 10 do while they are fresh).

Rules kept from before: a symbol is stale when neither its latest ticker nor its subscription
is ``stale_after`` recent; rejected symbols are never stale; a live connection whose frames
still arrive but which produced no ticker for ``stale_after`` resubscribes, at most once per
``stale_after`` (a connection without frames is the feed's watchdog's business).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

import attrs
import trio

Key = tuple[str, str]


class LastSeen:
    """(exchange, symbol) → trio time of the latest batch that held its ticker, oldest first."""

    def __init__(self) -> None:
        self._by_exchange: dict[str, dict[str, float]] = {}

    def taken(self, keys: Iterable[Key], now: float) -> bool:
        """Record a batch taken for Redis at ``now``; whether it held some symbol's first ticker
        (health's "waiting" changed).  Each key moves to the end: the front stays the oldest."""
        first = False
        exchange, seen = "", None
        for name, symbol in keys:
            if name != exchange or seen is None:  # a batch is mostly one exchange after another
                exchange = name
                seen = self._by_exchange.get(name)
                if seen is None:
                    seen = self._by_exchange[name] = {}
            if seen.pop(symbol, None) is None:
                first = True
            seen[symbol] = now
        return first

    def forget(self, key: Key) -> None:
        """Drop a removed symbol's time (its per-symbol state)."""
        exchange, symbol = key
        seen = self._by_exchange.get(exchange)
        if seen is not None:
            seen.pop(symbol, None)
            if not seen:
                del self._by_exchange[exchange]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        return key[1] in self._by_exchange.get(key[0], {})

    def of(self, exchange: str) -> Mapping[str, float]:
        """``exchange``'s symbols → trio time, oldest first (read it, do not keep it)."""
        return self._by_exchange.get(exchange, {})

    def epoch_times(self, exchange: str, symbols: Iterable[str]) -> dict[str, float]:
        """Epoch time of each of ``symbols``' latest ticker (symbols without one are left out)."""
        seen = self._by_exchange.get(exchange, {})
        offset = time.time() - trio.current_time()
        return {s: seen[s] + offset for s in symbols if s in seen}


class Connection(Protocol):
    """What the resubscribe rule reads of a feed (:class:`tickerd.feed.Feed` is one)."""

    @property
    def feed_id(self) -> int: ...
    @property
    def symbols(self) -> Collection[str]: ...
    @property
    def live(self) -> Collection[object]: ...
    @property
    def frame_count(self) -> int: ...
    @property
    def last_ticker_at(self) -> float | None: ...
    def resubscribe(self) -> None: ...


@attrs.frozen
class Verdict:
    """What one check found: symbols that became stale and fresh again (sorted), the
    connections to resubscribe.  Symbols that merely left the subscriptions leave the stale set
    without a word (:attr:`left`)."""

    stale: list[str]
    fresh: list[str]
    left: list[str]
    resubscribe: list[Connection]


class Staleness:
    """One exchange's staleness bookkeeping (kept by its runner, fed by :class:`LastSeen`)."""

    def __init__(self, exchange: str, last_seen: LastSeen, stale_after: float) -> None:
        self.exchange = exchange
        self.stale_after = stale_after
        self._last_seen = last_seen
        #: Subscribed symbol → when it was subscribed (the baseline before its first ticker).
        self._since: dict[str, float] = {}
        #: Subscribed symbols with no ticker seen yet, in subscribe order (oldest first).
        self._waiting: dict[str, float] = {}
        #: Per connection: when the check first saw it (its baseline before a ticker) and its
        #: frame count at the last check.
        self._connections: dict[Connection, tuple[float, int]] = {}
        self._resubscribed: dict[Connection, float] = {}

    def watch(self, symbol: str, now: float) -> None:
        """``symbol`` was subscribed at ``now`` (idempotent)."""
        if symbol not in self._since:
            self._since[symbol] = self._waiting[symbol] = now

    def unwatch(self, symbol: str) -> None:
        """``symbol`` was unsubscribed: it leaves every set here at the next check."""
        self._since.pop(symbol, None)
        self._waiting.pop(symbol, None)

    def check(
        self,
        now: float,
        connections: Sequence[Connection],
        stale: Collection[str],
        rejected: Collection[str],
    ) -> Verdict:
        """What changed since the last check, given the symbols found ``stale`` so far (the
        caller keeps that set, and applies the verdict to it)."""
        limit = now - self.stale_after
        since, waiting = self._since, self._waiting
        seen = self._last_seen.of(self.exchange)
        newly: list[str] = []
        for symbol, at in seen.items():  # ticked, oldest first
            if at > limit:
                break
            first = since.get(symbol)
            # Not subscribed (a removal on its way), subscribed again too recently to judge,
            # already stale, or refused: none of them is a new stale symbol.
            if first is not None and first <= limit and symbol not in stale and symbol not in rejected:
                newly.append(symbol)
        settled: list[str] = []
        for symbol, first in waiting.items():  # never ticked (when last looked), oldest first
            if first > limit:
                break
            settled.append(symbol)
        for symbol in settled:
            del waiting[symbol]
            if symbol in seen:  # it ticked meanwhile: the loop above judges it from now on
                continue
            if symbol in rejected:  # judged again stale_after after it is accepted, if it is
                waiting[symbol] = now
            elif symbol not in stale:
                newly.append(symbol)
        fresh: list[str] = []
        left: list[str] = []
        for symbol in stale:
            if symbol not in since or symbol in rejected:
                left.append(symbol)
                if symbol in since:  # refused: judged again stale_after after this check
                    waiting.setdefault(symbol, now)
            elif seen.get(symbol, -math.inf) > limit:
                fresh.append(symbol)
        resubscribe = self._all_stale(now, connections, rejected)
        return Verdict(sorted(newly), sorted(fresh), sorted(left), resubscribe)

    def _all_stale(
        self, now: float, connections: Sequence[Connection], rejected: Collection[str]
    ) -> list[Connection]:
        """Live connections whose frames arrive but which produced no ticker for
        ``stale_after`` (and were not resubscribed within it): their subscriptions are what went
        wrong.  Per-connection state only: a ticker time, a frame count."""
        states: dict[Connection, tuple[float, int]] = {}
        due: list[Connection] = []
        for conn in connections:
            frames = conn.frame_count
            first, frames_then = self._connections.get(conn, (now, frames))
            states[conn] = (first, frames)
            ticked = conn.last_ticker_at
            if (
                conn.live
                and frames != frames_then
                and now - max(first, -math.inf if ticked is None else ticked) >= self.stale_after
                and now - self._resubscribed.get(conn, -math.inf) >= self.stale_after
                and any(s not in rejected for s in conn.symbols)
            ):
                due.append(conn)
                self._resubscribed[conn] = now
        self._connections = states
        self._resubscribed = {c: t for c, t in self._resubscribed.items() if c in states}
        return due
