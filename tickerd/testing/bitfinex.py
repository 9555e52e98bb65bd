"""A fake Bitfinex WebSocket v2 public server (``ticker`` and ``status`` channels).

* Greets with ``{"event":"info","version":2,…,"platform":{"status":1}}``.
* ``subscribe`` gets ``subscribed`` with a fresh ``chanId`` (different on every connection),
  then the current ticker on that id; later data frames name only the id.  Frames follow
  captured ones, including a trailing ``null`` field after the documented ten.
* A perpetual's ``status`` channel (key ``deriv:tBTCF0:USTF0``) sends the documented
  derivatives status array: mark and spot price, funding, next funding time, open interest.
  Keys of anything but a listed perpetual are refused as an unknown symbol is.
* A rejected symbol gets the real error event, echoing the request
  (``"msg":"symbol: invalid","code":10300``); a second subscription to the same symbol gets
  10301 ``subscribe: dup`` with the existing ``chanId``; past ``max_channels`` channels a
  connection gets 10305 ``subscribe: limit``.
* ``[CHAN_ID,"hb"]`` on every channel each ``heartbeat_interval`` seconds; ``ping`` → ``pong``.
* :meth:`FakeExchange.request_reconnect` sends ``info`` 20051 ("Stopping. Please try to
  reconnect") and closes those connections some seconds later, as a restarting server does.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
import trio

from tickerd.exchanges.bitfinex import STATUS_KEY, native, unified
from tickerd.testing.server import FakeConnection, FakeExchange

_RESTARTING = '{"event":"info","code":20051,"msg":"Stopping. Please try to reconnect"}'
#: The channels the fake serves: a symbol's ``ticker``, a perpetual's ``status``.
_TICKER, _STATUS = "ticker", "status"


class FakeBitfinex(FakeExchange):
    name = "bitfinex"
    path = "/ws/2"

    def __init__(self, *, heartbeat_interval: float = 15.0, max_channels: int = 30, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heartbeat_interval = heartbeat_interval
        #: Bitfinex documents 25 (and 30) channels per connection; more get error 10305.
        self.max_channels = max_channels
        self._channels: dict[FakeConnection, dict[int, tuple[str, str]]] = {}
        self._ids = itertools.count(232949, 7)

    def default_reject_reason(self, symbol: str) -> str:
        return "symbol: invalid"

    def channels(self, conn: FakeConnection) -> dict[int, tuple[str, str]]:
        """The connection's ``chanId → (channel, symbol)`` (unified symbol)."""
        return self._channels.setdefault(conn, {})

    def _ids_of(self, conn: FakeConnection, symbol: str, channel: str | None = None) -> list[int]:
        """The ids of ``symbol``'s channels on ``conn`` (of one kind, if ``channel`` is given)."""
        return [
            chan_id
            for chan_id, (kind, s) in self.channels(conn).items()
            if s == symbol and channel in (None, kind)
        ]

    async def on_connect(self, conn: FakeConnection) -> None:
        greeting = {
            "event": "info",
            "version": 2,
            "serverId": "fb5877a3-ded1-4754",
            "platform": {"status": 1},
        }
        await conn.send(orjson.dumps(greeting).decode())
        try:
            while True:
                await trio.sleep(self.heartbeat_interval)
                for chan_id in list(self.channels(conn)):
                    await conn.send(f'[{chan_id},"hb"]')
        finally:
            self._channels.pop(conn, None)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict):
            self.violations.append(f"not JSON: {message!r}")  # Bitfinex does not answer these
            return
        event = message.get("event")
        if event == "ping":
            self.keepalives += 1
            pong = {"event": "pong", "ts": int(time.time() * 1000), "cid": message.get("cid")}
            await conn.send(orjson.dumps(pong).decode())
        elif event == "conf":
            await conn.send(
                orjson.dumps({"event": "conf", "status": "OK", "flags": message.get("flags")}).decode()
            )
        elif event == "subscribe" and message.get("channel") in (_TICKER, _STATUS):
            await self._subscribe(conn, message)
        elif event == "unsubscribe":
            await self._unsubscribe(conn, message.get("chanId"))
        else:
            self.violations.append(f"unexpected request: {message!r}")
            await conn.send(
                orjson.dumps({"event": "error", "msg": f"event: invalid ({event})", "code": 10000}).decode()
            )

    async def _subscribe(self, conn: FakeConnection, message: dict[str, Any]) -> None:
        channel = message["channel"]
        if channel == _STATUS:
            requested = str(message.get("key", "")).removeprefix(STATUS_KEY)
            echo = {"channel": channel, "key": STATUS_KEY + requested}
        else:
            requested = str(message.get("symbol", ""))
            echo = {"channel": channel, "symbol": requested, "pair": requested.removeprefix("t")}
        symbol = unified(requested)
        channels = self.channels(conn)
        if symbol in self.rejected or (channel == _STATUS and ":" not in symbol):
            error = {"event": "error", "msg": self.rejected.get(symbol, "symbol: invalid"), "code": 10300}
        elif existing := self._ids_of(conn, symbol, channel):
            error = {"event": "error", "msg": "subscribe: dup", "code": 10301, "chanId": existing[0]}
        elif len(channels) >= self.max_channels:
            self.violations.append(f"more than {self.max_channels} channels on one connection")
            error = {"event": "error", "msg": "subscribe: limit", "code": 10305}
        else:
            chan_id = next(self._ids)
            channels[chan_id] = (channel, symbol)
            conn.subscribe(symbol)
            await conn.send(orjson.dumps({"event": "subscribed", "chanId": chan_id} | echo).decode())
            await conn.send(self._frame(channel, chan_id, self.state(symbol)))
            return
        await conn.send(orjson.dumps(echo | error).decode())

    async def _unsubscribe(self, conn: FakeConnection, chan_id: Any) -> None:
        channel = self.channels(conn).pop(chan_id, None)
        if channel is None:
            error = {"event": "error", "msg": "unsubscribe: invalid", "code": 10400}
            await conn.send(orjson.dumps(error).decode())
            return
        _, symbol = channel
        if not self._ids_of(conn, symbol):
            conn.unsubscribe(symbol)
        await conn.send(orjson.dumps({"event": "unsubscribed", "status": "OK", "chanId": chan_id}).decode())

    def reconnect_frame(self, conn: FakeConnection) -> str:
        return _RESTARTING

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        channels = self.channels(conn)
        return [self._frame(channels[chan_id][0], chan_id, state) for chan_id in self._ids_of(conn, symbol)]

    @classmethod
    def _frame(cls, channel: str, chan_id: int, state: dict[str, float]) -> str:
        return cls._status_frame(chan_id, state) if channel == _STATUS else cls._ticker_frame(chan_id, state)

    @staticmethod
    def _status_frame(chan_id: int, state: dict[str, float]) -> str:
        """The documented derivatives status array (placeholders null, the insurance fund and
        the accrual as in the docs' example)."""
        values = [
            int(state.get("ts", time.time()) * 1000),
            None,
            state["last"],
            state["index"],
            None,
            1396531.67460709,
            None,
            int(state["next_funding"] * 1000),
            0.0001056,
            6,
            None,
            state["funding_rate"],
            None,
            None,
            state["mark"],
            None,
            None,
            state["open_interest"],
            None,
            None,
            None,
            None,
            0.3,
        ]
        return orjson.dumps([chan_id, values]).decode()

    @staticmethod
    def _ticker_frame(chan_id: int, state: dict[str, float]) -> str:
        relative = state["change_pct"] / 100
        values = [
            state["bid"],
            state["bid_size"],
            state["ask"],
            state["ask_size"],
            state["change"],
            relative,
            state["last"],
            state["volume"],
            state["high"],
            state["low"],
            None,
        ]
        return orjson.dumps([chan_id, values]).decode()

    def bench_frames(self, symbols: list[str], count: int) -> tuple[list[str], list[str]]:
        """Setup frames are the ``subscribed`` events that assign the channel ids."""
        conn = FakeConnection.detached(self, symbols)
        setup = []
        for symbol in symbols:
            pair = native(symbol)
            acks: list[dict[str, Any]] = [{"channel": _TICKER, "symbol": pair, "pair": pair[1:]}]
            if ":" in symbol:
                acks.append({"channel": _STATUS, "key": STATUS_KEY + pair})
            for ack in acks:
                chan_id = next(self._ids)
                self.channels(conn)[chan_id] = (ack["channel"], symbol)
                setup.append(orjson.dumps({"event": "subscribed", "chanId": chan_id} | ack).decode())
        updates = []
        for i in range(count):
            symbol = symbols[i % len(symbols)]
            updates.extend(self.ticker_frames(conn, symbol, self.wiggle(symbol)))
        self._channels.pop(conn, None)
        return setup, updates[:count]
