"""A fake Gemini market data v2 server: ``l2`` books with their trades, and heartbeats.

* ``{"type": "subscribe"|"unsubscribe", "subscriptions": [{"name": "l2", "symbols": [...]}]}``;
  no acknowledgement, as Gemini documents none.  A subscribed symbol gets its whole book at
  once (``l2_updates`` with ``changes`` and the recent ``trades``), then changes only.
* A symbol Gemini does not list (``reject``-ed) is accepted and silently never served.
* ``{"type": "heartbeat", "timestamp": ms}`` every 5 s on every connection.
* Anything else is answered with an error in Gemini's REST error shape and recorded as a
  violation.

The fake remembers which levels it sent each connection, so :meth:`FakeExchange.push` sends
what the venue would: the levels that changed (deleted ones with quantity ``"0"``) and a
``trade`` when the last price moved.  :meth:`FakeGemini.send_changes` sends changes as given
(a crossed book, an update to a symbol never snapshotted).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import orjson
import trio

from tickerd.exchanges.gemini import native
from tickerd.testing.natives import NativeIndex
from tickerd.testing.server import FakeConnection, FakeExchange

_QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "SGD", "BTC", "ETH", "DAI")
#: Levels a side of the fake's book has: the best and a few worse ones.
_DEPTH = 3
_HEARTBEAT = 5.0

#: Side → price text → size text: a book as sent.
_Levels = dict[str, dict[str, str]]


class _Sent:
    """What one connection holds of one symbol: its levels and the last trade price."""

    __slots__ = ("last", "levels")

    def __init__(self, levels: _Levels, last: float) -> None:
        self.levels = levels
        self.last = last


class FakeGemini(FakeExchange):
    name = "gemini"
    path = "/v2/marketdata"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sent: dict[FakeConnection, dict[str, _Sent]] = {}
        self._ids = itertools.count(3575573053)
        self._known = NativeIndex(native, self.market, self.rejected)

    def default_reject_reason(self, symbol: str) -> str:
        return "not listed: subscriptions to it are never served"

    def _unified(self, name: str) -> str | None:
        known = self._known.get(name)
        if known is not None:
            return known
        for quote in _QUOTES:
            if name.endswith(quote) and len(name) > len(quote):
                return f"{name[: -len(quote)]}/{quote}"
        return None

    async def on_connect(self, conn: FakeConnection) -> None:
        self._sent[conn] = {}
        try:
            while not conn.closed:
                await trio.sleep(_HEARTBEAT)
                await conn.send(orjson.dumps({"type": "heartbeat", "timestamp": _ms()}).decode())
                self.keepalives += 1
        finally:
            self._sent.pop(conn, None)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        subscriptions = message.get("subscriptions") if isinstance(message, dict) else None
        if kind not in ("subscribe", "unsubscribe") or not isinstance(subscriptions, list):
            self.violations.append(f"not a Gemini request: {message!r}")
            await conn.send('{"result":"error","reason":"InvalidJson","message":"Malformed request"}')
            return
        for subscription in subscriptions:
            if subscription.get("name") != "l2":
                self.violations.append(f"not the l2 feed: {subscription!r}")
                continue
            for name in subscription.get("symbols", ()):
                symbol = self._unified(name)
                if symbol is None or symbol in self.rejected:
                    continue  # Gemini ignores symbols it does not list
                if kind == "unsubscribe":
                    self._sent.get(conn, {}).pop(symbol, None)
                    conn.unsubscribe(symbol)
                else:
                    conn.subscribe(symbol)
                    await conn.send(self._snapshot(conn, symbol, self.state(symbol)))

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        sent = self._sent.setdefault(conn, {}).get(symbol)
        if sent is None:
            return [self._snapshot(conn, symbol, state)]
        levels = _levels(state)
        changes = [
            [side, price, "0"]
            for side, book in sent.levels.items()
            for price in book
            if price not in levels[side]
        ] + [
            [side, price, size]
            for side, book in levels.items()
            for price, size in book.items()
            if sent.levels[side].get(price) != size
        ]
        sent.levels = levels
        frames = []
        if changes:
            frames.append(_dump({"type": "l2_updates", "symbol": native(symbol), "changes": changes}))
        if state["last"] != sent.last:
            sent.last = state["last"]
            frames.append(_dump(self._trade(symbol, state)))
        return frames

    async def send_changes(self, symbol: str, changes: Sequence[tuple[str, str, str]]) -> None:
        """Send ``changes`` of ``symbol`` as they are to every client (the fake's idea of their
        books is left alone)."""
        frame = _dump({"type": "l2_updates", "symbol": native(symbol), "changes": [list(c) for c in changes]})
        await self.send_raw(frame)

    def bench_frames(self, symbols: list[str], count: int) -> tuple[list[str | bytes], list[str | bytes]]:
        """Snapshots first (changes build on them), then changes and trades."""
        conn = FakeConnection.detached(self, symbols)
        setup: list[str | bytes] = [self._snapshot(conn, symbol, self.state(symbol)) for symbol in symbols]
        updates: list[str | bytes] = []
        i = 0
        while len(updates) < count:
            symbol = symbols[i % len(symbols)]
            updates.extend(self.ticker_frames(conn, symbol, self.wiggle(symbol)))
            i += 1
        return setup, updates[:count]

    def _snapshot(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> str:
        levels = _levels(state)
        self._sent.setdefault(conn, {})[symbol] = _Sent(levels, state["last"])
        trade = self._trade(symbol, state)
        trade["eventid"] = trade.pop("event_id")  # the snapshot's trades spell it so
        changes = [[side, price, size] for side, book in levels.items() for price, size in book.items()]
        return _dump({"type": "l2_updates", "symbol": native(symbol), "changes": changes, "trades": [trade]})

    def _trade(self, symbol: str, state: dict[str, float]) -> dict[str, Any]:
        return {
            "type": "trade",
            "symbol": native(symbol),
            "event_id": next(self._ids),
            "timestamp": int(state.get("ts", time.time()) * 1000),
            "price": f"{state['last']}",
            "quantity": "0.09110000",
            "side": "buy",
            "tid": next(self._ids),
        }


def _levels(state: dict[str, float]) -> _Levels:
    """The book of ``state``: its best bid and ask with their sizes, and worse levels 0.1 % apart."""
    return {
        "buy": _side(state["bid"], state["bid_size"], -0.001),
        "sell": _side(state["ask"], state["ask_size"], 0.001),
    }


def _side(best: float, size: float, step: float) -> dict[str, str]:
    worse = {f"{round(best * (1 + i * step), 8)}": "1.0" for i in range(1, _DEPTH)}
    return {f"{best}": f"{size}"} | worse


def _ms() -> int:
    return int(time.time() * 1000)


def _dump(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()
