"""A fake Hyperliquid ``/ws`` server: text greeting, per-subscription acks, ``bbo`` and
``activeAssetCtx`` pushes, pong, and the error texts of the real server."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson

from tickerd.exchanges.hyperliquid import FEEDS, GREETING, coin_of, unified
from tickerd.testing.server import FakeConnection, FakeExchange


def _text(value: float) -> str:
    """Hyperliquid sends every number as a decimal string (``"113373.0"``, ``"0.0000125"``:
    never an exponent)."""
    return format(Decimal(repr(float(value))), "f")


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


class FakeHyperliquid(FakeExchange):
    """``push(symbol, ...)`` sends the symbol's ``bbo`` and ``activeAssetCtx`` frames.

    The listing is open: every coin exists except rejected symbols' coins, the upper-case
    spellings of ``kilo_coins`` (``KPEPE`` does not exist, ``kPEPE`` does) and lowercase-``k``
    names that are not in ``kilo_coins``.  Unknown coins get the real server's
    ``Invalid subscription {…}`` error, duplicates ``Already subscribed: {…}``.
    """

    name = "hyperliquid"
    path = "/ws"

    def __init__(self, *, kilo_coins: tuple[str, ...] = ("kPEPE", "kBONK"), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kilo_coins = set(kilo_coins)
        #: The (feed, coin) subscriptions of each open connection.
        self.feeds: dict[FakeConnection, set[tuple[str, str]]] = {}

    def default_reject_reason(self, symbol: str) -> str:
        return "Invalid subscription"

    def _listed(self, coin: str) -> bool:
        if unified(coin) in self.rejected:
            return False
        if coin.startswith("k"):
            return coin in self.kilo_coins
        return "k" + coin[1:] not in self.kilo_coins

    async def on_connect(self, conn: FakeConnection) -> None:
        self.feeds[conn] = set()
        await conn.send(GREETING)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict):
            await conn.send(_dump({"channel": "error", "data": f"Error parsing JSON: {message}"}))
            return
        method = message.get("method")
        if method == "ping":
            self.keepalives += 1
            await conn.send('{"channel":"pong"}')
            return
        subscription = message.get("subscription")
        if method not in ("subscribe", "unsubscribe") or not isinstance(subscription, dict):
            await conn.send(_dump({"channel": "error", "data": f"Invalid request {_dump(message)}"}))
            return
        feed, coin = subscription.get("type", ""), str(subscription.get("coin", ""))
        feeds = self.feeds.setdefault(conn, set())
        if feed not in FEEDS or not self._listed(coin):
            await conn.send(
                _dump({"channel": "error", "data": f"Invalid subscription {_dump(subscription)}"})
            )
            return
        if method == "subscribe" and (feed, coin) in feeds:
            await conn.send(_dump({"channel": "error", "data": f"Already subscribed: {_dump(subscription)}"}))
            return
        if method == "unsubscribe" and (feed, coin) not in feeds:
            await conn.send(
                _dump({"channel": "error", "data": f"Already unsubscribed: {_dump(subscription)}"})
            )
            return
        symbol = unified(coin)
        if method == "subscribe":
            feeds.add((feed, coin))
            conn.subscribe(symbol)
        else:
            feeds.discard((feed, coin))
            if not any(unified(c) == symbol for _, c in feeds):
                conn.unsubscribe(symbol)
        await conn.send(_dump({"channel": "subscriptionResponse", "data": message}))
        if method == "subscribe":
            await conn.send(self._frame(feed, coin, self.state(symbol)))

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        feeds = self.feeds.get(conn)
        if feeds is None:  # a detached connection (benchmarks): both feeds, plain coin name
            return [self._frame(feed, coin_of(symbol), state) for feed in FEEDS]
        return [self._frame(feed, coin, state) for feed, coin in sorted(feeds) if unified(coin) == symbol]

    async def push_ctx(self, symbol: str, **fields: float) -> int:
        """Send only the ``activeAssetCtx`` frame (the book is unchanged)."""
        return await self._push_one("activeAssetCtx", symbol, fields)

    async def push_bbo(self, symbol: str, **fields: float) -> int:
        """Send only the ``bbo`` frame (the 24 h context is unchanged)."""
        return await self._push_one("bbo", symbol, fields)

    async def _push_one(self, feed: str, symbol: str, fields: dict[str, float]) -> int:
        state = self.state(symbol)
        state.update(fields)
        targets = self.subscribers(symbol)
        for conn in targets:
            for key, coin in sorted(self.feeds.get(conn, set())):
                if key == feed and unified(coin) == symbol:
                    await conn.send(self._frame(feed, coin, state))
        return len(targets)

    def _frame(self, feed: str, coin: str, state: dict[str, float]) -> str:
        if feed == "bbo":
            data: dict[str, Any] = {
                "coin": coin,
                "time": int(state.get("ts", time.time()) * 1000),
                "bbo": [
                    {"px": _text(state["bid"]), "sz": _text(state["bid_size"]), "n": 3},
                    {"px": _text(state["ask"]), "sz": _text(state["ask_size"]), "n": 5},
                ],
            }
        else:
            last = state["last"]
            data = {
                "coin": coin,
                "ctx": {
                    "funding": _text(state["funding_rate"]),
                    "openInterest": _text(state["open_interest"]),
                    "prevDayPx": _text(last - state["change"]),
                    "dayNtlVlm": _text(state["volume"] * last),
                    "premium": "0.00031774",
                    "oraclePx": _text(state["index"]),
                    "markPx": _text(state["mark"]),
                    "midPx": _text(last),
                    "impactPxs": [_text(state["bid"]), _text(state["ask"])],
                    "dayBaseVlm": _text(state["volume"]),
                },
            }
        return _dump({"channel": feed, "data": data})
