"""A fake Binance spot ``/ws`` server: live SUBSCRIBE acks, protocol pings, ``serverShutdown``."""

from __future__ import annotations

import time
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

_QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


def _stream_symbol(symbol: str) -> str:
    return symbol.replace("/", "").lower()


class FakeBinance(FakeExchange):
    """``push(symbol, ...)`` sends a ``@bookTicker`` frame; ``push_stats`` a ``@ticker`` one.

    Binance accepts a stream of an unknown symbol silently, and so does this fake for a
    :meth:`reject`-ed symbol: the request is acknowledged, and nothing is ever sent for it.
    """

    name = "binance"
    path = "/ws"

    def __init__(self, *, ping_interval: float = 20.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ping_interval = ping_interval
        self._update_id = 1000
        #: The ids of every SUBSCRIBE request, in order (clients must respect the rate limit).
        self.request_times: list[float] = []

    def reconnect_frame(self, conn: FakeConnection) -> str:
        return orjson.dumps({"e": "serverShutdown", "E": int(time.time() * 1000)}).decode()

    async def on_connect(self, conn: FakeConnection) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            if self.silent or conn.closed:
                continue
            try:
                await conn.ws.ping()  # returns once the client's pong arrived
            except Exception:  # noqa: BLE001 - a vanished client simply stops being pinged
                return
            self.keepalives += 1
            self.notify()

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict) or "method" not in message:
            await conn.send(orjson.dumps({"code": 3, "msg": "Invalid JSON: expected value"}).decode())
            return
        request_id = message.get("id")
        self.request_times.append(trio.current_time())
        method, params = message["method"], message.get("params", [])
        for param in params:
            native = param.partition("@")[0]
            symbol = self._unified(native)
            if symbol is None or symbol in self.rejected:
                continue
            if method == "SUBSCRIBE":
                conn.subscribe(symbol)
            elif method == "UNSUBSCRIBE":
                conn.unsubscribe(symbol)
        await conn.send(orjson.dumps({"result": None, "id": request_id}).decode())

    def _unified(self, native: str) -> str | None:
        """Native → unified: a market the fake holds, else split on a known quote asset
        (Binance's own names cannot be split in general; the fake's listing can)."""
        for symbol in [*self.market, *self.rejected]:
            if _stream_symbol(symbol) == native:
                return symbol
        for quote in _QUOTES:
            if native.endswith(quote.lower()) and len(native) > len(quote):
                return f"{native[: -len(quote)].upper()}/{quote}"
        return None

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        self._update_id += 1
        book = {
            "u": self._update_id,
            "s": symbol.replace("/", ""),
            "b": f"{state['bid']:.8f}",
            "B": f"{state['bid_size']:.8f}",
            "a": f"{state['ask']:.8f}",
            "A": f"{state['ask_size']:.8f}",
        }
        return [orjson.dumps(book).decode()]

    async def push_stats(self, symbol: str, **fields: float) -> int:
        """Send a ``24hrTicker`` (``@ticker``) frame with ``symbol``'s state."""
        state = self.state(symbol)
        state.update(fields)
        now_ms = int(state.get("ts", time.time()) * 1000)
        frame = orjson.dumps(
            {
                "e": "24hrTicker",
                "E": now_ms,
                "s": symbol.replace("/", ""),
                "p": f"{state['change']:.8f}",
                "P": f"{state['change_pct']:.3f}",
                "w": f"{state['last']:.8f}",
                "x": f"{state['last']:.8f}",
                "c": f"{state['last']:.8f}",
                "Q": "0.01000000",
                "b": f"{state['bid']:.8f}",
                "B": f"{state['bid_size']:.8f}",
                "a": f"{state['ask']:.8f}",
                "A": f"{state['ask_size']:.8f}",
                "o": f"{state['last'] - state['change']:.8f}",
                "h": f"{state['high']:.8f}",
                "l": f"{state['low']:.8f}",
                "v": f"{state['volume']:.8f}",
                "q": f"{state['volume'] * state['last']:.8f}",
                "O": now_ms - 86_400_000,
                "C": now_ms,
                "F": 0,
                "L": 18150,
                "n": 18151,
            }
        ).decode()
        targets = self.subscribers(symbol)
        for conn in targets:
            await conn.send(frame)
        return len(targets)
