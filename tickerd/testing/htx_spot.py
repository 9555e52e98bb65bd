"""A fake HTX spot server (``/ws``): the HTX market protocol of :class:`~tickerd.testing.htx.FakeHtx`
with the ``market.$symbol.bbo`` and ``market.$symbol.ticker`` topics.

The fake lists every pair quoted in one of :data:`QUOTES` (the lowercase concatenation is split
at the quote it ends with).  ``push(symbol, ...)`` sends each subscribed topic's frame in the
shape of the documentation's examples: a ``bbo`` tick (``seqId`` growing, ``quoteTime``) and a
``ticker`` tick (rolling 24 h ``open``/``high``/``low``, ``amount`` in the base asset, ``vol`` in
the quote, its own copy of the best prices, ``lastPrice``/``lastSize``).
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from tickerd.exchanges.htx_spot import native
from tickerd.testing.htx import FakeHtx, gzipped
from tickerd.testing.server import FakeConnection

#: The quote assets of the fake's listing, matched as suffixes in this order.
QUOTES = ("usdt", "usdc", "btc", "eth")
#: ``market.btcusdt.bbo``, ``market.ethbtc.ticker``.
_TOPIC = re.compile(r"^market\.(?P<name>[a-z0-9]+)\.(?:bbo|ticker)$")


class FakeHtxSpot(FakeHtx):
    name = "htx"
    path = "/ws"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sequence = itertools.count(137005210233)

    def topic_symbol(self, topic: str) -> str | None:
        match = _TOPIC.match(topic)
        if match is None:
            return None
        name = match["name"]
        for quote in QUOTES:
            base = name.removesuffix(quote)
            if base != name and base:
                return f"{base.upper()}/{quote.upper()}"
        return None

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[bytes]:
        name = native(symbol)
        subscribed = self.subscribed_topics(conn)
        now = int(state.get("ts", time.time()) * 1000)
        frames = []
        book, ticker = f"market.{name}.bbo", f"market.{name}.ticker"
        if subscribed is None or book in subscribed:
            tick: dict[str, Any] = {
                "seqId": next(self._sequence),
                "ask": state["ask"],
                "askSize": state["ask_size"],
                "bid": state["bid"],
                "bidSize": state["bid_size"],
                "quoteTime": now - 1,
                "symbol": name,
            }
            frames.append(gzipped({"ch": book, "ts": now, "tick": tick}))
        if subscribed is None or ticker in subscribed:
            last, volume = state["last"], state["volume"]
            tick = {
                "open": round(last - state["change"], 8),
                "high": state["high"],
                "low": state["low"],
                "close": last,
                "amount": volume,
                "vol": round(volume * last, 8),
                "count": 448737,
                "bid": state["bid"],
                "bidSize": state["bid_size"],
                "ask": state["ask"],
                "askSize": state["ask_size"],
                "lastPrice": last,
                "lastSize": 0.03,
            }
            frames.append(gzipped({"ch": ticker, "ts": now, "tick": tick}))
        return frames
