"""A fake Poloniex v3 public server (``/ws/public``): the ``ticker`` and ``book`` channels.

Like the real one it answers every request once, in order: a subscribe or unsubscribe with an
ack repeating the channel and symbols, followed for a subscription by the channel's current
push; an unknown symbol or channel, a malformed request, with ``{"event":"error","message":…}``
naming nothing.  It answers ``{"event":"ping"}`` with ``{"event":"pong"}`` and ends a session
that sent nothing for ``idle_timeout`` seconds (30 s on Poloniex).  It records as violations a
book depth other than 5, 10 or 20 and more than 500 requests in a second.  Poloniex asks no
client to reconnect.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

_REQUESTS_PER_SECOND = 500
_DEPTHS = (5, 10, 20)
_CHANNELS = ("ticker", "book")


def _text(value: float) -> str:
    return str(float(value))


def _unified(name: object) -> str | None:
    """``BTC_USDT`` → ``BTC/USDT``; ``None`` for what is no market name."""
    if not isinstance(name, str):
        return None
    base, sep, quote = name.partition("_")
    return f"{base}/{quote}" if sep and base.isalnum() and quote.isalnum() else None


class FakePoloniex(FakeExchange):
    name = "poloniex"
    path = "/ws/public"

    def __init__(self, *, idle_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_timeout = idle_timeout
        #: Per connection: when it last sent anything, when it sent its latest requests.
        self._heard: dict[FakeConnection, float] = {}
        self._sent: dict[FakeConnection, deque[float]] = {}
        #: The book's update id, per symbol.
        self._book_ids: dict[str, int] = {}
        #: The channels a connection subscribed a symbol to so far: it is subscribed (for
        #: :meth:`FakeExchange.subscribers`) once it has both.
        self._channels: dict[tuple[FakeConnection, str], set[str]] = {}

    def default_reject_reason(self, symbol: str) -> str:
        return f'Invalid symbols value ["{symbol.replace("/", "_")}"]'

    # -- connection ------------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        self._heard[conn] = trio.current_time()
        try:
            while True:  # Poloniex's rule: nothing for 30 s and the session ends
                await trio.sleep(1.0)
                if trio.current_time() - self._heard[conn] >= self.idle_timeout:
                    await conn.close(1000, "idle")
                    return
        finally:
            self._heard.pop(conn, None)
            self._sent.pop(conn, None)
            for key in [key for key in self._channels if key[0] is conn]:
                del self._channels[key]

    async def _send(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        await conn.send(orjson.dumps(frame).decode())

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        now = self._heard[conn] = trio.current_time()
        sent = self._sent.setdefault(conn, deque(maxlen=_REQUESTS_PER_SECOND + 1))
        sent.append(now)
        if len(sent) > _REQUESTS_PER_SECOND and sent[-1] - sent[0] < 1.0:
            self.violations.append(f"more than {_REQUESTS_PER_SECOND} requests in a second")
        event = message.get("event") if isinstance(message, dict) else None
        if event == "ping":
            self.keepalives += 1
            await self._send(conn, {"event": "pong"})
            return
        channels, names = (message.get("channel"), message.get("symbols")) if event else (None, None)
        if (
            event not in ("subscribe", "unsubscribe")
            or not isinstance(channels, list)
            or not isinstance(names, list)
        ):
            await self._send(conn, {"event": "error", "message": "Invalid request"})
            return
        if "book" in channels and event == "subscribe" and message.get("depth", 5) not in _DEPTHS:
            self.violations.append(f"book depth {message.get('depth')!r} (valid: 5, 10, 20)")
        symbols = [_unified(name) for name in names]
        bad_channel = next((c for c in channels if c not in _CHANNELS), None)
        unknown = next(
            (n for n, s in zip(names, symbols, strict=True) if s is None or s in self.rejected), None
        )
        if bad_channel is not None or unknown is not None:
            what = f'channel value ["{bad_channel}"]' if bad_channel else f'symbols value ["{unknown}"]'
            await self._send(conn, {"event": "error", "message": f"Invalid {what}"})
            return
        for channel in channels:
            await self._send(conn, {"event": event, "channel": channel, "symbols": names})
        for symbol in symbols:
            assert symbol is not None
            subscribed = self._channels.setdefault((conn, symbol), set())
            if event == "unsubscribe":
                subscribed.difference_update(channels)
                conn.unsubscribe(symbol)
                continue
            subscribed.update(channels)
            if subscribed.issuperset(_CHANNELS):
                conn.subscribe(symbol)
            for frame in self._frames(symbol, self.state(symbol), channels):
                await conn.send(frame)

    # -- frames ----------------------------------------------------------------------------

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        return self._frames(symbol, state, _CHANNELS)

    def _frames(self, symbol: str, state: dict[str, float], channels: Any) -> list[str]:
        name = symbol.replace("/", "_")
        ts = int(state.get("ts", time.time()) * 1000)
        last = state["last"]
        frames = []
        if "ticker" in channels:
            item = {
                "symbol": name,
                "startTime": ts - 86_400_000,
                "open": _text(last - state["change"]),
                "high": _text(state["high"]),
                "low": _text(state["low"]),
                "close": _text(last),
                "quantity": _text(state["volume"]),
                "amount": _text(state["volume"] * last),
                "tradeCount": 17582,
                "dailyChange": _text(state["change_pct"] / 100),
                "markPrice": _text(last),
                "closeTime": ts,
                "ts": ts + 5,
            }
            frames.append(orjson.dumps({"channel": "ticker", "data": [item]}).decode())
        if "book" in channels:
            self._book_ids[symbol] = book_id = self._book_ids.get(symbol, 164148724) + 1
            item = {
                "symbol": name,
                "createTime": ts,
                "asks": [
                    [_text(state["ask"]), _text(state["ask_size"])],
                    [_text(state["ask"] * 1.001), "1.0"],
                ],
                "bids": [
                    [_text(state["bid"]), _text(state["bid_size"])],
                    [_text(state["bid"] * 0.999), "1.0"],
                ],
                "id": book_id,
                "ts": ts + 7,
            }
            frames.append(orjson.dumps({"channel": "book", "data": [item]}).decode())
        return frames
