"""A fake KuCoin spot server: ``bullet-public`` beside a websocket serving ``/market/ticker``
and ``/market/snapshot``.

The protocol (tokens, welcome, ping, acks and errors) is :class:`~tickerd.testing.kucoin.FakeKucoin`'s;
``/market/snapshot`` takes one symbol a request, as its page documents.  A push sends every
topic the connection subscribed for the symbol, in the shapes of the docs' examples:
``trade.snapshot`` (numbers, ``changeRate`` a fraction, ``datetime`` in ms) then
``trade.ticker`` (strings, ``sequence`` a string, ``time`` in ms).  KuCoin has no reconnect
request: :meth:`reconnect_frame` is the base class's refusal.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson

from tickerd.exchanges import kucoin_spot
from tickerd.testing.kucoin import FakeKucoin
from tickerd.testing.server import FakeConnection


class FakeKucoinSpot(FakeKucoin):
    name = "kucoin"
    topics = ("/market/snapshot", "/market/ticker")
    single_symbol_topics = frozenset({"/market/snapshot"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sequence = itertools.count(1545896668986)

    def native(self, symbol: str) -> str:
        return kucoin_spot.native(symbol)

    def unified(self, name: str) -> str | None:
        try:
            return kucoin_spot.unified(name)
        except ValueError:
            return None

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        name = self.native(symbol)
        now_ms = int(time.time() * 1000)
        frames: list[dict[str, Any]] = []
        for topic in self.subscribed_topics(conn, symbol):
            if topic == "/market/ticker":
                sequence = next(self._sequence)
                data: dict[str, Any] = {
                    "sequence": str(sequence),
                    "price": str(state["last"]),
                    "size": "0.011",
                    "bestAsk": str(state["ask"]),
                    "bestAskSize": str(state["ask_size"]),
                    "bestBid": str(state["bid"]),
                    "bestBidSize": str(state["bid_size"]),
                    "time": now_ms,
                }
                frames.append(
                    {"type": "message", "topic": f"{topic}:{name}", "subject": "trade.ticker", "data": data}
                )
            else:
                base, _, quote = name.partition("-")
                snapshot = {
                    "askSize": state["ask_size"],
                    "baseCurrency": base,
                    "bidSize": state["bid_size"],
                    "buy": state["bid"],
                    "changePrice": state["change"],
                    "changeRate": state["change_pct"] / 100.0,
                    "close": state["last"],
                    "datetime": now_ms,
                    "high": state["high"],
                    "lastTradedPrice": state["last"],
                    "low": state["low"],
                    "market": quote,
                    "quoteCurrency": quote,
                    "sell": state["ask"],
                    "symbol": name,
                    "symbolCode": name,
                    "trading": True,
                    "vol": state["volume"],
                    "volValue": state["volume"] * state["last"],
                }
                frames.append(
                    {
                        "topic": f"{topic}:{name}",
                        "type": "message",
                        "subject": "trade.snapshot",
                        "data": {"sequence": str(next(self._sequence)), "data": snapshot},
                    }
                )
        return [orjson.dumps(frame).decode() for frame in frames]
