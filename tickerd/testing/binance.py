"""A fake Binance spot ``/ws`` server: live SUBSCRIBE acks, protocol pings, ``serverShutdown``.

:class:`FakeBinanceStreams` is the request protocol every Binance market-stream websocket
speaks (spot here, futures in :mod:`tickerd.testing.binance_futures`): server ping frames,
``SUBSCRIBE``/``UNSUBSCRIBE`` acknowledged by id, ``GET_PROPERTY``, errors for anything else,
and the inbound message limit checked.
"""

from __future__ import annotations

import abc
import collections
import time
from typing import Any, ClassVar

import orjson
import trio

from tickerd.testing.natives import NativeIndex
from tickerd.testing.server import FakeConnection, FakeExchange

_QUOTES = ("USDT", "USDC", "FDUSD", "USD", "BTC", "ETH", "BNB", "EUR", "TRY")


def _stream_symbol(symbol: str) -> str:
    return symbol.replace("/", "").lower()


class FakeBinanceStreams(FakeExchange):
    """The Binance market-stream protocol; subclasses map stream names to symbols
    (:meth:`on_stream`) and format the frames.

    Binance accepts a stream of an unknown symbol silently, and so does this fake for a
    :meth:`reject`-ed symbol: the request is acknowledged, and nothing is ever sent for it.
    More than :attr:`max_messages_per_second` messages from a client within a second is a
    violation (Binance disconnects such a client).
    """

    max_messages_per_second: ClassVar[int]

    def __init__(self, *, ping_interval: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ping_interval = ping_interval
        self._update_id = 1000
        #: When (trio clock) each request arrived, in order (clients must respect the rate limit).
        self.request_times: list[float] = []
        #: Per connection, the arrival times of its latest messages (one more than the limit).
        self._recent: dict[FakeConnection, collections.deque[float]] = {}

    async def on_connect(self, conn: FakeConnection) -> None:
        self._recent[conn] = collections.deque(maxlen=self.max_messages_per_second + 1)
        try:
            await self.ping_forever(conn, self.ping_interval)
        finally:
            del self._recent[conn]

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        self._count(conn)
        if not isinstance(message, dict) or "method" not in message:
            await conn.send(orjson.dumps({"code": 3, "msg": "Invalid JSON: expected value"}).decode())
            return
        request_id = message.get("id")
        self.request_times.append(trio.current_time())
        method, params = message["method"], message.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            for stream in params:
                self.on_stream(conn, method == "SUBSCRIBE", stream)
            answer: dict[str, Any] = {"result": None, "id": request_id}
        elif method == "GET_PROPERTY" and params == ["combined"]:
            answer = {"result": False, "id": request_id}  # raw ``/ws`` streams are not combined
            self.keepalives += 1
        else:
            answer = {"code": 2, "msg": f"Invalid request: unknown variant {method}", "id": request_id}
        await conn.send(orjson.dumps(answer).decode())

    def _count(self, conn: FakeConnection) -> None:
        recent = self._recent.get(conn)
        if recent is None:
            return
        recent.append(trio.current_time())
        if len(recent) == recent.maxlen and recent[-1] - recent[0] < 1.0:
            self.violations.append(f"more than {self.max_messages_per_second} messages in a second")

    @abc.abstractmethod
    def on_stream(self, conn: FakeConnection, subscribe: bool, stream: str) -> None:
        """Subscribe ``conn`` to ``stream`` (``btcusdt@bookTicker``), or unsubscribe it."""

    def next_update_id(self) -> int:
        """An order book update id, increasing across all symbols as Binance's do."""
        self._update_id += 1
        return self._update_id


class FakeBinance(FakeBinanceStreams):
    """``push(symbol, ...)`` sends a ``@bookTicker`` frame; ``push_stats`` a ``@ticker`` one."""

    name = "binance"
    path = "/ws"
    max_messages_per_second = 5

    def __init__(self, *, ping_interval: float = 20.0, **kwargs: Any) -> None:
        super().__init__(ping_interval=ping_interval, **kwargs)
        self._known = NativeIndex(_stream_symbol, self.market, self.rejected)

    def reconnect_frame(self, conn: FakeConnection) -> str:
        return orjson.dumps({"e": "serverShutdown", "E": int(time.time() * 1000)}).decode()

    def on_stream(self, conn: FakeConnection, subscribe: bool, stream: str) -> None:
        symbol = self._unified(stream.partition("@")[0])
        if symbol is None or symbol in self.rejected:
            return
        if subscribe:
            conn.subscribe(symbol)
        else:
            conn.unsubscribe(symbol)

    def _unified(self, native: str) -> str | None:
        """Native → unified: a market the fake holds, else split on a known quote asset
        (Binance's own names cannot be split in general; the fake's listing can)."""
        known = self._known.get(native)
        if known is not None:
            return known
        for quote in _QUOTES:
            if native.endswith(quote.lower()) and len(native) > len(quote):
                return f"{native[: -len(quote)].upper()}/{quote}"
        return None

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        book = {
            "u": self.next_update_id(),
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
