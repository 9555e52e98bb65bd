"""A fake Gate.io spot server (``/ws/v4/``): ``spot.tickers`` and ``spot.book_ticker`` pushes in
the documented shapes, on the request protocol of :class:`~tickerd.testing.gate_v4.FakeGateV4`.

``push(symbol, ...)`` sends one push of each channel the client holds for the pair: the book
first, then the ticker.  Prices and amounts are decimal strings as Gate writes them.  Its listing
is every ``BASE_QUOTE`` pair of alphanumeric names; an unlisted (``reject``-ed) one is refused
with the documented ``unknown currency pair`` error.
"""

from __future__ import annotations

from typing import Any

from tickerd.exchanges.gate_v4 import native
from tickerd.exchanges.gateio import BOOK, TICKERS
from tickerd.testing.gate_v4 import FakeGateV4, decimal


class FakeGateio(FakeGateV4):
    name = "gateio"
    path = "/ws/v4/"
    prefix = "spot"
    channels = (TICKERS, BOOK)
    first_update_id = 48733181

    def unified(self, name: str) -> str | None:
        base, _, quote = name.partition("_")
        if not base.isalnum() or not quote.isalnum():
            return None
        return f"{base}/{quote}"

    def default_reject_reason(self, symbol: str) -> str:
        return f"unknown currency pair {native(symbol)}"

    def size(self, value: float) -> Any:
        return decimal(value)

    def tickers_result(self, name: str, state: dict[str, float]) -> Any:
        last, volume = state["last"], state["volume"]
        return {
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
