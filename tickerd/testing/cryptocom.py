"""A fake Crypto.com Exchange v1 market data server (``/exchange/v1/market``): ``ticker.{instrument}``.

Like the real one it answers each ``subscribe``/``unsubscribe`` request by its id with
``code`` 0, follows a subscription with the current ticker, refuses an unknown instrument (or
another channel) with a non-zero ``code`` (the other requests still subscribe), sends
``public/heartbeat`` every ``heartbeat_interval`` seconds (30 s) and closes a connection that
did not answer one with ``public/respond-heartbeat`` (same id) within ``heartbeat_timeout``
(5 s).  It records as violations the rules Crypto.com sets for clients: a request within 1 s of
connecting, more than 100 requests in a second.  Crypto.com asks no client to reconnect.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

#: Crypto.com's rules for what a client sends.
_CONNECT_WAIT = 1.0
_REQUESTS_PER_SECOND = 100
#: The code of a request the fake cannot serve ("INVALID_REQUEST" in the code table of the
#: Common API Reference; the pages give no example of an unknown instrument's refusal).
_INVALID = 40003


def _text(value: float) -> str:
    return str(float(value))


class FakeCryptocom(FakeExchange):
    name = "cryptocom"
    path = "/exchange/v1/market"

    def __init__(
        self, *, heartbeat_interval: float = 30.0, heartbeat_timeout: float = 5.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        #: Per connection: when it opened, the id of the heartbeat it owes an answer to, when it
        #: sent its latest requests.
        self._opened: dict[FakeConnection, float] = {}
        self._owed: dict[FakeConnection, int] = {}
        self._sent: dict[FakeConnection, deque[float]] = {}

    def default_reject_reason(self, symbol: str) -> str:
        return "INVALID_REQUEST"

    # -- connection ------------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        due = self._opened[conn] = trio.current_time()
        try:
            while True:  # a heartbeat every interval; one unanswered in time closes the connection
                due += self.heartbeat_interval
                await trio.sleep_until(due)
                beat = int(time.time() * 1000)
                self._owed[conn] = beat
                await conn.send(orjson.dumps({"id": beat, "method": "public/heartbeat", "code": 0}).decode())
                await trio.sleep(self.heartbeat_timeout)
                if self._owed.get(conn) == beat:
                    await conn.close(1000, "heartbeat not answered")
                    return
        finally:
            self._opened.pop(conn, None)
            self._owed.pop(conn, None)
            self._sent.pop(conn, None)

    async def _send(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        await conn.send(orjson.dumps(frame).decode())

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        now = trio.current_time()
        if now - self._opened.get(conn, now) < _CONNECT_WAIT:
            self.violations.append(f"a request within {_CONNECT_WAIT:g} s of connecting")
        sent = self._sent.setdefault(conn, deque(maxlen=_REQUESTS_PER_SECOND + 1))
        sent.append(now)
        if len(sent) > _REQUESTS_PER_SECOND and sent[-1] - sent[0] < 1.0:
            self.violations.append(f"more than {_REQUESTS_PER_SECOND} requests in a second")
        if not isinstance(message, dict) or "id" not in message or "method" not in message:
            # The documented answer to a request it cannot match to an id and a method.
            await self._send(conn, {"id": -1, "method": "ERROR", "code": 40001, "message": "BAD_REQUEST"})
            return
        method, request = message["method"], message["id"]
        if method == "public/respond-heartbeat":
            if self._owed.get(conn) == request:
                self._owed.pop(conn)
                self.keepalives += 1
            return
        channels = (message.get("params") or {}).get("channels")
        if method not in ("subscribe", "unsubscribe") or not isinstance(channels, list):
            await self._send(
                conn, {"id": request, "method": method, "code": _INVALID, "message": "INVALID_REQUEST"}
            )
            return
        symbols = [self._symbol(channel) for channel in channels]
        refused = next((s for s in symbols if s is None or s in self.rejected), "")
        if refused != "":
            reason = self.rejected.get(refused or "", "INVALID_REQUEST")
            await self._send(conn, {"id": request, "method": method, "code": _INVALID, "message": reason})
            return
        await self._send(conn, {"id": request, "method": method, "code": 0})
        for symbol in symbols:
            assert symbol is not None
            if method == "unsubscribe":
                conn.unsubscribe(symbol)
                continue
            conn.subscribe(symbol)
            for frame in self.ticker_frames(conn, symbol, self.state(symbol)):
                await conn.send(frame)

    @staticmethod
    def _symbol(channel: object) -> str | None:
        """The unified symbol of a ``ticker.BASE_QUOTE`` channel; ``None`` for anything else."""
        if not isinstance(channel, str) or not channel.startswith("ticker."):
            return None
        base, sep, quote = channel.removeprefix("ticker.").partition("_")
        if not sep or not base.isalnum() or not quote.isalnum():
            return None
        return f"{base}/{quote}"

    # -- frames ----------------------------------------------------------------------------

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        instrument = symbol.replace("/", "_")
        last = state["last"]
        item = {
            "h": _text(state["high"]),
            "l": _text(state["low"]),
            "a": _text(last),
            "c": _text(state["change_pct"] / 100),
            "b": _text(state["bid"]),
            "bs": _text(state["bid_size"]),
            "k": _text(state["ask"]),
            "ks": _text(state["ask_size"]),
            "i": instrument,
            "v": _text(state["volume"]),
            "vv": _text(state["volume"] * last),
            "oi": "0",
            "t": int(state.get("ts", time.time()) * 1000),
        }
        push = {
            "id": -1,
            "method": "subscribe",
            "code": 0,
            "result": {
                "instrument_name": instrument,
                "subscription": f"ticker.{instrument}",
                "channel": "ticker",
                "data": [item],
            },
        }
        return [orjson.dumps(push).decode()]
