"""A fake Bitvavo WebSocket v2 server: ``ticker`` and ``ticker24h`` channels.

* ``{"action":"subscribe","channels":[{"name":…,"markets":[…]},…]}`` is answered with
  ``{"event":"subscribed","subscriptions":{…}}`` listing every subscription of the connection,
  as Bitvavo does; ``unsubscribe`` likewise with ``"unsubscribed"``.
* A request naming a market the fake refuses (:meth:`FakeExchange.reject`) is refused whole,
  the way Bitvavo refuses an unknown market: ``{"action":"subscribe","errorCode":205,
  "error":"market parameter NOPE-EUR is invalid."}``; an unknown channel or action and text
  that is not JSON get Bitvavo's answers too, and count as violations.
* ``getTime`` is answered (the client's keepalive); the server sends protocol pings every
  ``ping_interval`` seconds (50 s on Bitvavo).

:meth:`FakeExchange.push` sends a full ``ticker`` event and a ``ticker24h`` event;
:meth:`FakeBitvavo.push_ticker` sends a ``ticker`` event of some fields only, as Bitvavo does.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tickerd.exchanges.bitvavo import native
from tickerd.testing.server import FakeConnection, FakeExchange

_CHANNELS = ("ticker", "ticker24h")


class FakeBitvavo(FakeExchange):
    name = "bitvavo"
    path = "/v2/"

    def __init__(self, *, ping_interval: float = 50.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ping_interval = ping_interval
        #: Per connection, channel → the markets subscribed to it.
        self._subscriptions: dict[FakeConnection, dict[str, list[str]]] = {}

    def default_reject_reason(self, symbol: str) -> str:
        return f"market parameter {native(symbol)} is invalid."

    async def on_connect(self, conn: FakeConnection) -> None:
        self._subscriptions[conn] = {}
        try:
            await self.ping_forever(conn, self.ping_interval)
        finally:
            del self._subscriptions[conn]

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict):
            self.violations.append(f"not JSON: {message!r}")
            await conn.send('{"errorCode":102,"error":"Invalid JSON."}')
            return
        action = message.get("action")
        if action == "getTime":
            self.keepalives += 1
            await conn.send(
                orjson.dumps({"action": "getTime", "response": {"time": int(time.time() * 1000)}}).decode()
            )
            return
        if action not in ("subscribe", "unsubscribe"):
            self.violations.append(f"unknown action: {message!r}")
            await conn.send(
                '{"action":"unknown","errorCode":415,"error":"Invalid action. Please check the request."}'
            )
            return
        channels = message.get("channels", [])
        if any(channel.get("name") not in _CHANNELS for channel in channels):
            self.violations.append(f"unknown channel: {message!r}")
            await conn.send(
                orjson.dumps(
                    {"action": action, "errorCode": 205, "error": "channel.name parameter is invalid."}
                ).decode()
            )
            return
        for channel in channels:
            for market in channel.get("markets", []):
                symbol = market.replace("-", "/")
                if symbol in self.rejected:
                    error = {"action": action, "errorCode": 205, "error": self.rejected[symbol]}
                    await conn.send(orjson.dumps(error).decode())
                    return
        await self._apply(conn, action == "subscribe", channels)

    async def _apply(self, conn: FakeConnection, subscribe: bool, channels: list[dict[str, Any]]) -> None:
        subscriptions = self._subscriptions.setdefault(conn, {})
        for channel in channels:
            markets = subscriptions.setdefault(channel["name"], [])
            for market in channel.get("markets", []):
                if subscribe and market not in markets:
                    markets.append(market)
                elif not subscribe and market in markets:
                    markets.remove(market)
        for market in {m for channel in channels for m in channel.get("markets", [])}:
            symbol = market.replace("-", "/")
            if all(market in subscriptions.get(name, ()) for name in _CHANNELS):
                conn.subscribe(symbol)
            else:
                conn.unsubscribe(symbol)
        listed = {name: markets for name, markets in subscriptions.items() if markets}
        event = "subscribed" if subscribe else "unsubscribed"
        await conn.send(orjson.dumps({"event": event, "subscriptions": listed}).decode())

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        return [
            self._ticker_frame(symbol, state, ("bestBid", "bestAsk", "lastPrice")),
            self._ticker24h_frame(symbol, state),
        ]

    async def push_ticker(self, symbol: str, *fields: str, **values: float) -> int:
        """Update ``symbol``'s state and send a ``ticker`` event of ``fields`` only (``bestBid``
        with its size, ``bestAsk`` with its size, ``lastPrice``)."""
        state = self.state(symbol)
        state.update(values)
        targets = self.subscribers(symbol)
        for conn in targets:
            await conn.send(self._ticker_frame(symbol, state, fields))
        return len(targets)

    @staticmethod
    def _ticker_frame(symbol: str, state: dict[str, float], fields: tuple[str, ...]) -> str:
        event: dict[str, str] = {"event": "ticker", "market": native(symbol)}
        if "bestBid" in fields:
            event |= {"bestBid": f"{state['bid']}", "bestBidSize": f"{state['bid_size']:.8f}"}
        if "bestAsk" in fields:
            event |= {"bestAsk": f"{state['ask']}", "bestAskSize": f"{state['ask_size']:.8f}"}
        if "lastPrice" in fields:
            event["lastPrice"] = f"{state['last']}"
        return orjson.dumps(event).decode()

    @staticmethod
    def _ticker24h_frame(symbol: str, state: dict[str, float]) -> str:
        """As Bitvavo sends it: ``data`` a list (the documentation shows one object)."""
        item = {
            "market": native(symbol),
            "timestamp": int(state.get("ts", time.time()) * 1000),
            "open": f"{state['last'] - state['change']}",
            "high": f"{state['high']}",
            "low": f"{state['low']}",
            "last": f"{state['last']}",
            "bid": f"{state['bid']}",
            "bidSize": f"{state['bid_size']:.8f}",
            "ask": f"{state['ask']}",
            "askSize": f"{state['ask_size']:.8f}",
            "volume": f"{state['volume']:.8f}",
            "volumeQuote": f"{state['volume'] * state['last']:.2f}",
        }
        return orjson.dumps({"event": "ticker24h", "data": [item]}).decode()
