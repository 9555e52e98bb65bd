"""A fake Gate.io USDT futures server (``/v4/ws/usdt``): ``futures.tickers`` and
``futures.book_ticker`` pushes in the documented shapes, on the request protocol of
:class:`~tickerd.testing.gate_v4.FakeGateV4`.

``push(symbol, ...)`` sends one push of each channel the client holds for the contract: the book
first, then the ticker.  Prices are decimal strings as Gate writes them; book sizes are JSON
numbers (contracts); ``total_size`` carries the open interest.  Its listing is every
``BASE_USDT`` contract.
"""

from __future__ import annotations

from typing import Any

from tickerd.exchanges.gate_v4 import native
from tickerd.exchanges.gateio_futures import BOOK, TICKERS
from tickerd.testing.gate_v4 import FakeGateV4, decimal


class FakeGateioFutures(FakeGateV4):
    name = "gateio_futures"
    path = "/v4/ws/usdt"
    prefix = "futures"
    channels = (TICKERS, BOOK)
    first_update_id = 9793320463

    def unified(self, name: str) -> str | None:
        base, _, quote = name.partition("_")
        if not base.isalnum() or quote != "USDT":
            return None
        return f"{base}/USDT:USDT"

    def default_reject_reason(self, symbol: str) -> str:
        return f"unknown contract {native(symbol)}"

    def size(self, value: float) -> Any:
        return value

    def tickers_result(self, name: str, state: dict[str, float]) -> Any:
        last, volume = state["last"], state["volume"]
        return [
            {
                "contract": name,
                "last": decimal(last),
                "change_percentage": decimal(state["change_pct"]),
                "funding_rate": decimal(state["funding_rate"]),
                "funding_rate_indicative": decimal(state["funding_rate"]),
                "mark_price": decimal(state["mark"]),
                "index_price": decimal(state["index"]),
                "total_size": decimal(state["open_interest"]),
                "volume_24h": str(round(volume * 10000)),
                "volume_24h_base": decimal(volume),
                "volume_24h_quote": str(round(volume * last)),
                "volume_24h_settle": str(round(volume * last)),
                "low_24h": decimal(state["low"]),
                "high_24h": decimal(state["high"]),
                "quanto_base_rate": "",
            }
        ]
