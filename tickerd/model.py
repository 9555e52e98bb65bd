"""The one value type every layer shares: the latest ticker of one (exchange, symbol)."""

from __future__ import annotations

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


@attrs.frozen(slots=True)
class Removal:
    """``symbol`` of ``exchange`` left the desired set: its stored value is to be deleted.

    It travels to the writer through the tickers' channel, so it lands behind the symbol's
    tickers already queued and replaces them, as a newer ticker would.
    """

    exchange: str
    symbol: str
