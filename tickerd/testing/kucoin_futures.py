"""A fake KuCoin Futures server: ``bullet-public`` beside a websocket serving
``/contractMarket/tickerV2``, ``/contractMarket/snapshot`` and ``/contract/instrument``.

The protocol (tokens, welcome, ping, acks and errors) is :class:`~tickerd.testing.kucoin.FakeKucoin`'s.
A push sends every topic the connection subscribed for the symbol, in the shapes of the docs'
examples: ``mark.index.price`` and ``funding.rate`` (``timestamp`` in ms), ``snapshot.24h``
(``priceChgPct`` a fraction, ``ts`` in ns), then ``tickerV2`` (prices as strings, sizes as
numbers, ``ts`` in ns).  KuCoin has no reconnect request: :meth:`reconnect_frame` is the base
class's refusal.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson

from tickerd.exchanges import kucoin_futures
from tickerd.testing.kucoin import FakeKucoin
from tickerd.testing.server import FakeConnection


class FakeKucoinFutures(FakeKucoin):
    name = "kucoin_futures"
    topics = ("/contract/instrument", "/contractMarket/snapshot", "/contractMarket/tickerV2")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sequence = itertools.count(1713516609293)

    def native(self, symbol: str) -> str:
        return kucoin_futures.native(symbol)

    def unified(self, name: str) -> str | None:
        try:
            return kucoin_futures.unified(name)
        except ValueError:
            return None

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        name = self.native(symbol)
        now = time.time()
        frames: list[dict[str, Any]] = []
        for topic in self.subscribed_topics(conn, symbol):
            if topic == "/contractMarket/tickerV2":
                sequence = next(self._sequence)
                data: dict[str, Any] = {
                    "symbol": name,
                    "sequence": sequence,
                    "bestBidSize": state["bid_size"],
                    "bestBidPrice": str(state["bid"]),
                    "bestAskPrice": str(state["ask"]),
                    "bestAskSize": state["ask_size"],
                    "ts": int(now * 1e9),
                }
                frames.append(
                    {
                        "topic": f"{topic}:{name}",
                        "type": "message",
                        "subject": "tickerV2",
                        "sn": sequence,
                        "data": data,
                    }
                )
            elif topic == "/contractMarket/snapshot":
                data = {
                    "highPrice": state["high"],
                    "lastPrice": state["last"],
                    "lowPrice": state["low"],
                    "price24HoursBefore": state["last"] - state["change"],
                    "priceChg": state["change"],
                    "priceChgPct": state["change_pct"] / 100.0,
                    "symbol": name,
                    "turnover": state["volume"] * state["last"],
                    "volume": state["volume"],
                    "ts": int(now * 1e9),
                }
                frames.append(
                    {"topic": f"{topic}:{name}", "type": "message", "subject": "snapshot.24h", "data": data}
                )
            else:
                timestamp = int(now * 1000)
                mark = {
                    "granularity": 1000,
                    "indexPrice": state["index"],
                    "markPrice": state["mark"],
                    "timestamp": timestamp,
                }
                funding = {"granularity": 60000, "fundingRate": state["funding_rate"], "timestamp": timestamp}
                for subject, data in (("mark.index.price", mark), ("funding.rate", funding)):
                    frames.append(
                        {"topic": f"{topic}:{name}", "type": "message", "subject": subject, "data": data}
                    )
        return [orjson.dumps(frame).decode() for frame in frames]
