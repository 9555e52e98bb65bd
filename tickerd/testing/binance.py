"""A fake Binance spot ``/ws`` server: live SUBSCRIBE acks, protocol pings, 24 h-style lifetime."""

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

    Binance itself accepts unknown symbols silently; :meth:`reject` makes this fake answer a
    request that names the symbol the way Binance answers an invalid stream
    (``{"code":2,"msg":…,"id":…}``), which is what tickerd must survive.
    """

    name = "binance"
    path = "/ws"

    def __init__(self, *, ping_interval: float = 20.0, lifetime: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ping_interval = ping_interval
        #: Close every connection this many seconds after it opened (Binance's 24 h limit).
        self.lifetime = lifetime
        self.pongs = 0
        self._update_id = 1000
        #: The ids of every SUBSCRIBE request, in order (clients must respect the rate limit).
        self.request_times: list[float] = []

    def default_reject_reason(self, symbol: str) -> str:
        return "Invalid request: invalid stream"

    async def on_connect(self, conn: FakeConnection) -> None:
        async with trio.open_nursery() as nursery:
            if self.lifetime is not None:
                nursery.start_soon(self._expire, conn)
            while True:
                await trio.sleep(self.ping_interval)
                if self.silent or conn.closed:
                    continue
                try:
                    await conn.ws.ping()
                    self.pongs += 1
                    self.notify()
                except Exception:  # noqa: BLE001 - a vanished client simply stops being pinged
                    return

    async def _expire(self, conn: FakeConnection) -> None:
        await trio.sleep(self.lifetime or 0)
        conn.closed = True
        await conn.ws.aclose(1001, "connection lifetime reached")

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict) or "method" not in message:
            await conn.send(orjson.dumps({"code": 3, "msg": "Invalid JSON: expected value"}).decode())
            return
        request_id = message.get("id")
        self.request_times.append(trio.current_time())
        method, params = message["method"], message.get("params", [])
        streams = {p.partition("@")[0] for p in params}
        refused = [s for s in self.rejected if _stream_symbol(s) in streams]
        if method == "SUBSCRIBE" and refused:
            await conn.send(
                orjson.dumps({"code": 2, "msg": self.rejected[refused[0]], "id": request_id}).decode()
            )
            return
        for param in params:
            native = param.partition("@")[0]
            symbol = self._unified(native)
            if symbol is None:
                continue
            if method == "SUBSCRIBE":
                conn.subscribed.add(symbol)
            elif method == "UNSUBSCRIBE":
                conn.subscribed.discard(symbol)
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
