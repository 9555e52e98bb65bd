"""A fake Upbit quotation websocket (``/websocket/v1``).

It keeps Upbit's rules and habits:

* a request is ``[{"ticket":…}, {"type":…, "codes":[…]}…, {"format":…}]`` and *replaces* the
  connection's subscription set: the fake diffs it against the previous set, so a client that
  sends only the added code loses the others (as on Upbit); a request that breaks the format
  is answered ``{"error":{"name":"WRONG_FORMAT",…}}`` (``NO_TICKET``, ``NO_TYPE``,
  ``NO_CODES`` where those are missing) and recorded in :attr:`FakeExchange.violations`;
* ``ticker`` and ``orderbook`` of one request must name the same codes (tickerd's merge needs
  both): a mismatch is recorded as a violation;
* every request is followed by a snapshot of each known code (``stream_type`` ``SNAPSHOT``),
  updates are ``REALTIME``; data travels in binary frames;
* an unknown (``reject``-ed) code is ignored silently: never subscribed, never served;
* more than 5 requests within a second on a connection is a violation (Upbit's data request
  limit);
* the text ``PING`` is answered ``{"status":"UP"}``; a connection on which the client sent
  nothing for ``idle_timeout`` seconds (120 s on Upbit) and that got no data is closed.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import orjson
import trio

from tickerd.exchanges.upbit import native, unified
from tickerd.testing.server import FakeConnection, FakeExchange

#: Data requests Upbit accepts on a connection within a second.
REQUESTS_PER_SECOND = 5


class FakeUpbit(FakeExchange):
    name = "upbit"
    path = "/websocket/v1"

    def __init__(self, *, idle_timeout: float = 120.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_timeout = idle_timeout
        #: Per connection, when (trio clock) something last went either way.
        self._active: dict[FakeConnection, float] = {}
        #: Per connection, when its latest requests arrived (one more than the limit).
        self._requests: dict[FakeConnection, collections.deque[float]] = {}

    async def on_connect(self, conn: FakeConnection) -> None:
        self._active[conn] = trio.current_time()
        try:
            while not conn.closed:
                await trio.sleep(1.0)
                if trio.current_time() - self._active[conn] >= self.idle_timeout:
                    await conn.close(1000, "idle timeout")
        finally:
            self._active.pop(conn, None)
            self._requests.pop(conn, None)

    async def _error(self, conn: FakeConnection, name: str, message: Any) -> None:
        self.violations.append(f"{name}: {message!r}")
        await conn.send(orjson.dumps({"error": {"name": name, "message": name}}))

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        self._active[conn] = trio.current_time()
        if message == "PING":
            self.keepalives += 1
            await conn.send('{"status":"UP"}')
            return
        if not isinstance(message, list) or not all(isinstance(part, dict) for part in message):
            await self._error(conn, "WRONG_FORMAT", message)
            return
        recent = self._requests.setdefault(conn, collections.deque(maxlen=REQUESTS_PER_SECOND + 1))
        recent.append(trio.current_time())
        if len(recent) == recent.maxlen and recent[-1] - recent[0] < 1.0:
            self.violations.append(f"more than {REQUESTS_PER_SECOND} requests in a second")
        if not any("ticket" in part for part in message):
            await self._error(conn, "NO_TICKET", message)
            return
        types = {part["type"]: part.get("codes") for part in message if "type" in part}
        if not types:
            await self._error(conn, "NO_TYPE", message)
            return
        if not all(types.values()):
            await self._error(conn, "NO_CODES", message)
            return
        ticker = set(types.get("ticker") or ())
        orderbook = {code.partition(".")[0] for code in types.get("orderbook") or ()}
        if ticker != orderbook:
            self.violations.append(f"ticker and orderbook name different codes: {message!r}")
        wanted = {unified(code) for code in ticker} - self.rejected.keys()
        for symbol in sorted(conn.subscribed - wanted):
            conn.unsubscribe(symbol)
        for symbol in sorted(wanted):
            conn.subscribe(symbol)
            for frame in self._frames(symbol, self.state(symbol), "SNAPSHOT"):
                await conn.send(frame)

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[bytes]:
        if conn in self._active:
            self._active[conn] = trio.current_time()
        return self._frames(symbol, state, "REALTIME")

    @staticmethod
    def _frames(symbol: str, state: dict[str, float], stream_type: str) -> list[bytes]:
        """A ``ticker`` and an ``orderbook`` frame, with every field the documentation lists
        that tickerd reads or that shapes the frame."""
        code = native(symbol)
        ms = int(state.get("ts", time.time()) * 1000)
        last = state["last"]
        ticker = {
            "type": "ticker",
            "code": code,
            "opening_price": last - state["change"],
            "high_price": state["high"],
            "low_price": state["low"],
            "trade_price": last,
            "prev_closing_price": last - state["change"],
            "change": "RISE" if state["change"] > 0 else "FALL" if state["change"] < 0 else "EVEN",
            "change_price": abs(state["change"]),
            "signed_change_price": state["change"],
            "change_rate": abs(state["change_pct"]) / 100.0,
            "signed_change_rate": state["change_pct"] / 100.0,
            "trade_volume": 0.01,
            "acc_trade_volume": state["volume"] / 2,
            "acc_trade_volume_24h": state["volume"],
            "acc_trade_price": state["volume"] * last / 2,
            "acc_trade_price_24h": state["volume"] * last,
            "trade_date": time.strftime("%Y%m%d", time.gmtime(ms / 1000)),
            "trade_time": time.strftime("%H%M%S", time.gmtime(ms / 1000)),
            "trade_timestamp": ms,
            "ask_bid": "BID",
            "market_state": "ACTIVE",
            "market_warning": "NONE",
            "timestamp": ms,
            "stream_type": stream_type,
        }
        orderbook = {
            "type": "orderbook",
            "code": code,
            "timestamp": ms,
            "total_ask_size": state["ask_size"] * 10,
            "total_bid_size": state["bid_size"] * 10,
            "orderbook_units": [
                {
                    "ask_price": state["ask"],
                    "bid_price": state["bid"],
                    "ask_size": state["ask_size"],
                    "bid_size": state["bid_size"],
                }
            ],
            "stream_type": stream_type,
            "level": 0,
        }
        return [orjson.dumps(ticker), orjson.dumps(orderbook)]
