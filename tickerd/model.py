"""The one value type every layer shares: the latest ticker of one (exchange, symbol)."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(slots=True)
class Ticker:
    """A normalised ticker.

    Numbers are floats, or ``None`` where the exchange does not send the field (some feeds
    carry no sizes, some no 24 h statistics).  ``exchange_ts`` and ``received_ts`` are epoch
    seconds.  The symbol is unified: ``BASE/QUOTE`` for spot, ``BASE/QUOTE:SETTLE`` for perps.
    """

    exchange: str
    symbol: str
    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    volume_24h: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    change_24h: float | None = None
    change_pct_24h: float | None = None
    exchange_ts: float | None = None
    received_ts: float = 0.0

    def to_record(self) -> dict[str, Any]:
        """The JSON object stored in Redis.

        It carries the fullon_cache field names (``price`` = last, ``volume``, ``time``) that
        existing readers use, plus every Ticker field under its own name.
        """
        return {
            "symbol": self.symbol,
            "exchange": self.exchange,
            "price": self.last,
            "bid": self.bid,
            "ask": self.ask,
            "last": self.last,
            "volume": self.volume_24h,
            "time": self.exchange_ts if self.exchange_ts is not None else self.received_ts,
            "bid_size": self.bid_size,
            "ask_size": self.ask_size,
            "volume_24h": self.volume_24h,
            "high_24h": self.high_24h,
            "low_24h": self.low_24h,
            "change_24h": self.change_24h,
            "change_pct_24h": self.change_pct_24h,
            "exchange_ts": self.exchange_ts,
            "received_ts": self.received_ts,
        }
