"""A fake Gate.io spot server (``/ws/v4/``): ``spot.tickers`` and ``spot.book_ticker`` pushes in
the documented shapes, on the request protocol of :class:`~tickerd.testing.gate_v4.FakeGateV4`.

``push(symbol, ...)`` sends one push of each channel the client holds for the pair: the book
first, then the ticker.  Prices and amounts are decimal strings as Gate writes them.  Its listing
is every ``BASE_QUOTE`` pair of alphanumeric names; an unlisted (``reject``-ed) one is refused
with the documented ``unknown currency pair`` error.
"""

from __future__ import annotations

import time
from typing import Any

from tickerd.exchanges.gate_v4 import native
from tickerd.exchanges.gateio import BOOK, TICKERS
from tickerd.testing.gate_v4 import FakeGateV4, decimal, dump, envelope


class FakeGateio(FakeGateV4):
    name = "gateio"
    path = "/ws/v4/"
    prefix = "spot"
    channels = (TICKERS, BOOK)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Each pair's order book update id, moved on by every book push.
        self._update_ids: dict[str, int] = {}

    def unified(self, name: str) -> str | None:
        base, _, quote = name.partition("_")
        if not base.isalnum() or not quote.isalnum():
            return None
        return f"{base}/{quote}"

    def default_reject_reason(self, symbol: str) -> str:
        return f"unknown currency pair {native(symbol)}"

    def frame(self, channel: str, symbol: str, state: dict[str, float]) -> str:
        name = native(symbol)
        if channel == BOOK:
            update_id = self._update_ids.get(name, 48733181) + 1
            self._update_ids[name] = update_id
            result: Any = {
                "t": int(state.get("ts", time.time()) * 1000),
                "u": update_id,
                "s": name,
                "b": decimal(state["bid"]),
                "B": decimal(state["bid_size"]),
                "a": decimal(state["ask"]),
                "A": decimal(state["ask_size"]),
            }
            return dump(envelope(channel, "update", result=result))
        last, volume = state["last"], state["volume"]
        result = {
            "currency_pair": name,
            "last": decimal(last),
            "lowest_ask": decimal(state["ask"]),
            "highest_bid": decimal(state["bid"]),
            "change_percentage": decimal(state["change_pct"]),
            "base_volume": decimal(volume),
            "quote_volume": decimal(round(volume * last, 8)),
            "high_24h": decimal(state["high"]),
            "low_24h": decimal(state["low"]),
        }
        return dump(envelope(channel, "update", result=result))
