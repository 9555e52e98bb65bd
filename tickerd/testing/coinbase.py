"""A fake Coinbase Advanced Trade market data server.

It keeps the rules a client must follow and the habits a client must survive:

* a connection that has not subscribed within 5 s is closed;
* one channel per subscribe message (a request naming ``channels`` is answered with an
  error and recorded in :attr:`FakeExchange.violations`);
* a ``ticker`` subscription gets a ``snapshot`` event per product, then the
  ``subscriptions`` ack, which lists the connection's whole subscription set; an unknown
  (rejected) product is silently left out of it, as Coinbase does;
* ``-USDC`` products come back labelled ``-USD``;
* ``heartbeats`` subscribers get one heartbeat a second; a connection with neither
  heartbeats nor ticker traffic for ``idle_close`` seconds is closed, as Coinbase closes
  quiet channels.

Frame shapes follow frames captured from the live feed (envelope with ``channel``,
``client_id``, ``timestamp`` with nanoseconds, ``sequence_num``, ``events``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import trio

from tickerd.exchanges.coinbase import native, unified, usd_twin
from tickerd.testing.server import FakeConnection, FakeExchange


def _timestamp(epoch: float) -> str:
    """RFC 3339 with nanoseconds, as Coinbase writes it."""
    whole = int(epoch)
    nanos = round((epoch - whole) * 1e9)
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


class _Session:
    """What the fake remembers about one client connection."""

    def __init__(self, now: float) -> None:
        self.sequence = 0
        self.subscribed_any = False
        self.heartbeats = False
        self.heartbeat_counter = 0
        #: When ticker data last went out (trio clock): quiet connections get closed.
        self.last_data = now


class FakeCoinbase(FakeExchange):
    name = "coinbase"
    path = "/"

    def __init__(self, *, subscribe_deadline: float = 5.0, idle_close: float = 60.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subscribe_deadline = subscribe_deadline
        self.idle_close = idle_close
        self._sessions: dict[FakeConnection, _Session] = {}

    def default_reject_reason(self, symbol: str) -> str:
        return f"{native(symbol)} is not a product"

    def _session(self, conn: FakeConnection) -> _Session:
        return self._sessions.setdefault(conn, _Session(trio.current_time()))

    def _envelope(self, conn: FakeConnection, channel: str, events: list[Any], epoch: float) -> str:
        """One frame; a connection without a session (benchmarks) numbers every frame 0."""
        session = self._sessions.get(conn)
        frame = {
            "channel": channel,
            "client_id": "",
            "timestamp": _timestamp(epoch),
            "sequence_num": session.sequence if session else 0,
            "events": events,
        }
        if session:
            session.sequence += 1
        return orjson.dumps(frame).decode()

    async def on_connect(self, conn: FakeConnection) -> None:
        session = self._session(conn)
        try:
            await trio.sleep(self.subscribe_deadline)
            if not session.subscribed_any:
                await conn.close(1000, "no subscribe within 5 s")
                return
            while not conn.closed:
                await trio.sleep(1.0)
                if session.heartbeats:
                    self.keepalives += 1
                    self.notify()
                    session.heartbeat_counter += 1
                    event = {
                        "current_time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC"),
                        "heartbeat_counter": session.heartbeat_counter,
                    }
                    await conn.send(self._envelope(conn, "heartbeats", [event], time.time()))
                elif trio.current_time() - session.last_data >= self.idle_close:
                    await conn.close(1000, "idle channels closed")
                    return
        finally:
            self._sessions.pop(conn, None)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict) or message.get("type") not in ("subscribe", "unsubscribe"):
            self.violations.append(f"not a subscribe/unsubscribe request: {message!r}")
            await conn.send('{"type":"error","message":"subscribe or unsubscribe required"}')
            return
        channel = message.get("channel")
        if "channels" in message or not isinstance(channel, str):
            self.violations.append(f"one channel per subscribe message: {message!r}")
            await conn.send('{"type":"error","message":"authentication failure"}')
            return
        if channel not in ("ticker", "heartbeats"):
            # Coinbase reports an unknown channel as an authentication failure.
            await conn.send('{"type":"error","message":"authentication failure"}')
            return
        session = self._session(conn)
        subscribe = message["type"] == "subscribe"
        session.subscribed_any = True
        if channel == "heartbeats":
            session.heartbeats = subscribe
        else:
            await self._ticker_request(conn, subscribe, message.get("product_ids", []))
        listed = sorted({self._label(symbol) for symbol in conn.subscribed})
        subscriptions: dict[str, list[str]] = {"ticker": listed} if listed else {}
        if session.heartbeats:
            subscriptions["heartbeats"] = ["heartbeats"]
        await conn.send(
            self._envelope(conn, "subscriptions", [{"subscriptions": subscriptions}], time.time())
        )

    async def _ticker_request(self, conn: FakeConnection, subscribe: bool, product_ids: list[str]) -> None:
        for product_id in product_ids:
            symbol = unified(product_id)
            if not subscribe:
                conn.unsubscribe(symbol)
            elif symbol not in self.rejected and symbol not in conn.subscribed:
                conn.subscribe(symbol)
                state = self.state(symbol)
                await conn.send(self._ticker_frame(conn, "snapshot", symbol, state))

    @staticmethod
    def _label(symbol: str) -> str:
        """The product id Coinbase puts on this symbol's market data."""
        product_id = native(symbol)
        return usd_twin(product_id) or product_id

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        return [self._ticker_frame(conn, "update", symbol, state)]

    def _ticker_frame(self, conn: FakeConnection, kind: str, symbol: str, state: dict[str, float]) -> str:
        session = self._sessions.get(conn)
        if session:
            session.last_data = trio.current_time()
        ticker = {
            "type": "ticker",
            "product_id": self._label(symbol),
            "price": f"{state['last']}",
            "volume_24_h": f"{state['volume']}",
            "low_24_h": f"{state['low']}",
            "high_24_h": f"{state['high']}",
            "low_52_w": f"{state['low'] * 0.5}",
            "high_52_w": f"{state['high'] * 1.5}",
            "price_percent_chg_24_h": f"{state['change_pct']}",
            "best_bid": f"{state['bid']}",
            "best_ask": f"{state['ask']}",
            "best_bid_quantity": f"{state['bid_size']}",
            "best_ask_quantity": f"{state['ask_size']}",
        }
        epoch = state.get("ts", time.time())
        return self._envelope(conn, "ticker", [{"type": kind, "tickers": [ticker]}], epoch)
