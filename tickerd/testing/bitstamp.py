"""A fake Bitstamp WebSocket v2 server: ``order_book_*`` and ``live_trades_*`` channels.

* ``bts:subscribe`` / ``bts:unsubscribe`` one channel per message, answered with
  ``bts:subscription_succeeded`` / ``bts:unsubscription_succeeded`` naming the channel; a
  subscribed ``order_book`` sends its current book at once (Bitstamp sends the full top of
  the book on every change).
* A channel of a rejected pair, or an unknown channel, is answered the way Bitstamp
  answers it: ``bts:error`` with an *empty* channel, so the client cannot tell which of its
  requests failed from the frame alone.
* ``bts:heartbeat`` is answered with ``{"status": "success"}``.
* :meth:`FakeExchange.request_reconnect` sends ``bts:request_reconnect`` and closes those
  connections some seconds later, as Bitstamp does before maintenance.

:meth:`FakeExchange.push` sends a book frame and a trade frame; :meth:`FakeBitstamp.push_book`
and :meth:`FakeBitstamp.push_trade` send one kind only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson
import trio

from tickerd.exchanges.bitstamp import native
from tickerd.testing.natives import NativeIndex
from tickerd.testing.server import FakeConnection, FakeExchange

_BOOK = "order_book_"
_TRADES = "live_trades_"
_QUOTES = ("usdt", "usdc", "usd", "eur", "gbp", "btc", "eth", "pax")
_ERROR = '{"event":"bts:error","channel":"","data":{"code":null,"message":"Invalid channel provided."}}'


class FakeBitstamp(FakeExchange):
    name = "bitstamp"
    path = "/"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._channels: dict[FakeConnection, set[str]] = {}
        self._trade_ids = itertools.count(216000477)
        self._known = NativeIndex(native, self.market, self.rejected)

    def default_reject_reason(self, symbol: str) -> str:
        return "Invalid channel provided."

    def channels(self, conn: FakeConnection) -> set[str]:
        return self._channels.setdefault(conn, set())

    def _unified(self, pair: str) -> str | None:
        """Pair → unified: a market the fake knows, else split on a known quote."""
        known = self._known.get(pair)
        if known is not None:
            return known
        for quote in _QUOTES:
            if pair.endswith(quote) and len(pair) > len(quote):
                return f"{pair[: -len(quote)].upper()}/{quote.upper()}"
        return None

    async def on_connect(self, conn: FakeConnection) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self._channels.pop(conn, None)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        event = message.get("event") if isinstance(message, dict) else None
        if event == "bts:heartbeat":
            self.keepalives += 1
            await conn.send('{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}')
            return
        channel = (message.get("data") or {}).get("channel") if isinstance(message, dict) else None
        if event not in ("bts:subscribe", "bts:unsubscribe") or not isinstance(channel, str):
            self.violations.append(f"not a Bitstamp request: {message!r}")
            await conn.send(
                '{"event":"bts:error","channel":"","data":{"code":null,"message":"Incorrect JSON format."}}'
            )
            return
        prefix = _BOOK if channel.startswith(_BOOK) else _TRADES if channel.startswith(_TRADES) else None
        symbol = self._unified(channel.removeprefix(prefix)) if prefix else None
        if prefix is None or symbol is None or symbol in self.rejected:
            await conn.send(_ERROR)
            return
        channels = self.channels(conn)
        both = {_BOOK + native(symbol), _TRADES + native(symbol)}
        if event == "bts:unsubscribe":
            channels.discard(channel)
            conn.unsubscribe(symbol)
            await conn.send(self._control("bts:unsubscription_succeeded", channel))
            return
        channels.add(channel)
        await conn.send(self._control("bts:subscription_succeeded", channel))
        if both <= channels:
            conn.subscribe(symbol)
        if prefix == _BOOK:
            await conn.send(self._book_frame(symbol, self.state(symbol)))

    @staticmethod
    def _control(event: str, channel: str) -> str:
        return orjson.dumps({"event": event, "channel": channel, "data": {}}).decode()

    def reconnect_frame(self, conn: FakeConnection) -> str:
        return '{"event":"bts:request_reconnect","channel":"","data":""}'

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        channels = self._channels.get(conn, {_BOOK + native(symbol), _TRADES + native(symbol)})
        frames = []
        if _BOOK + native(symbol) in channels:
            frames.append(self._book_frame(symbol, state))
        if _TRADES + native(symbol) in channels:
            frames.append(self._trade_frame(symbol, state))
        return frames

    async def push_book(self, symbol: str, **fields: float) -> int:
        """Update and send only ``symbol``'s order book (bid/ask and sizes)."""
        return await self._send_one(symbol, fields, self._book_frame)

    async def push_trade(self, symbol: str, **fields: float) -> int:
        """Update ``last`` and send only a trade."""
        return await self._send_one(symbol, fields, self._trade_frame)

    async def _send_one(
        self, symbol: str, fields: dict[str, float], make: Callable[[str, dict[str, float]], str]
    ) -> int:
        state = self.state(symbol)
        state.update(fields)
        targets = self.subscribers(symbol)
        for conn in targets:
            await conn.send(make(symbol, state))
        return len(targets)

    @staticmethod
    def _stamp(state: dict[str, float]) -> dict[str, str]:
        micros = int(state.get("ts", time.time()) * 1e6)
        return {"timestamp": str(micros // 1_000_000), "microtimestamp": str(micros)}

    def _book_frame(self, symbol: str, state: dict[str, float]) -> str:
        """A top-of-book snapshot: the best level first, then a few worse ones."""
        bid, ask = state["bid"], state["ask"]
        bids = [[f"{bid}", f"{state['bid_size']:.8f}"]] + [[f"{bid - i:.2f}", "1.00000000"] for i in (1, 2)]
        asks = [[f"{ask}", f"{state['ask_size']:.8f}"]] + [[f"{ask + i:.2f}", "1.00000000"] for i in (1, 2)]
        data = self._stamp(state) | {"bids": bids, "asks": asks}
        return orjson.dumps({"data": data, "channel": _BOOK + native(symbol), "event": "data"}).decode()

    def _trade_frame(self, symbol: str, state: dict[str, float]) -> str:
        trade_id = next(self._trade_ids)
        data = {
            "id": trade_id,
            "timestamp": self._stamp(state)["timestamp"],
            "amount": 0.0792,
            "amount_str": "0.07920000",
            "price": state["last"],
            "price_str": f"{state['last']}",
            "type": trade_id % 2,
            "microtimestamp": self._stamp(state)["microtimestamp"],
            "buy_order_id": 1443875737346049,
            "sell_order_id": 1443875731320832,
        }
        return orjson.dumps({"data": data, "channel": _TRADES + native(symbol), "event": "trade"}).decode()
