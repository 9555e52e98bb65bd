"""Gate.io spot: ``spot.tickers`` merged with ``spot.book_ticker``.

Documentation: "Gate Spot WebSocket v4", https://www.gate.com/docs/developers/apiv4/ws/en/
(sections "Server URL", "Application ping pong", "Tickers Channel", "Best bid or ask price");
the request and answer protocol it shares with Gate's futures feed is
:mod:`tickerd.exchanges.gate_v4`.

Two channels make one ticker, both on ``wss://api.gateio.ws/ws/v4/``:

* ``spot.tickers``: one ticker object a push (about once a second), carrying ``last``,
  ``change_percentage`` (24 h, in percent: the change itself is not sent), ``high_24h``/
  ``low_24h`` and ``base_volume`` (the base asset; ``quote_volume`` is not read).  Its
  ``highest_bid``/``lowest_ask`` have no sizes and lag the book channel: not read.  The
  envelope's ``time_ms`` stamps it (the page's own example has only ``time``, in seconds,
  which is read when ``time_ms`` is missing).
* ``spot.book_ticker``: best bid ``b``/``B`` and ask ``a``/``A`` (decimal strings, sizes in
  the base asset), pushed in real time; ``t`` in ms; ``u``, the order book update id, becomes
  ``sequence``.  The page does not say what an empty side looks like; an empty price is read
  as ``None``, as on the futures channel.

Each push of either produces one complete ticker from the latest of both, the sanity rule
applied to the merged candidate before it is kept (:attr:`Decoder.merges`); a book that arrives
before the pair's first ``tickers`` push is sent without a last price.

An unknown pair is refused with an error (``{"code": 2, "message": "unknown currency pair
NOPE_USDT"}``, the shape third-party clients quote from the page's older revision): reported as
rejected.  Gate documents no limit on subscriptions or requests (gateio/gatews#25, see
:mod:`tickerd.exchanges.gate_v4`), no reconnect request and no connection lifetime.  The server
pings (the transport answers); the adapter also sends ``spot.ping`` every 10 s, the interval of
the page's demo client, so a quiet pair's connection feeds the silence watchdog with pongs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from tickerd.exchanges.base import Exchange, Keepalive
from tickerd.exchanges.gate_v4 import GateDecoder, native, ping
from tickerd.model import Ticker

TICKERS = "spot.tickers"
BOOK = "spot.book_ticker"

_F = float | None
#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order.
_Book = tuple[_F, _F, _F, _F]
#: 24 h volume, high, low, change (never sent), change percent: in :class:`Ticker`'s order.
_Statistics = tuple[_F, _F, _F, _F, _F]


class _State:
    """One pair's latest fields of both channels (``None`` before their first push)."""

    __slots__ = ("book", "last", "sequence", "statistics", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.last: float | None = None
        self.book: _Book = (None, None, None, None)
        self.statistics: _Statistics = (None, None, None, None, None)
        self.sequence: int | None = None


class GateioDecoder(GateDecoder):
    """Decodes both channels' pushes into per-pair merged state."""

    exchange = "gateio"
    merges = True
    derivatives = False
    prefix = "spot"
    channels = (TICKERS, BOOK)

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Pair name → its merged state.
        self._states: dict[str, _State] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._states.setdefault(native(symbol), _State(symbol))

    def untrack(self, symbol: str) -> None:
        """Forget the merged state too: a pair added again starts afresh."""
        super().untrack(symbol)
        self._states.pop(native(symbol), None)

    def _update(self, channel: str, msg: dict[str, Any]) -> list[Ticker]:
        if channel == BOOK:
            return self._book(msg["result"])
        if channel == TICKERS:
            return self._tickers(msg)
        return self.junk_frame(f"a push of {channel}, never subscribed")

    def _book(self, result: dict[str, Any]) -> list[Ticker]:
        """``s``, ``t``, ``u`` and both sizes are always sent; a price may be empty."""
        state = self._states.get(result["s"])
        if state is None:  # a late push of a pair just unsubscribed
            return []
        bid, ask = result["b"], result["a"]
        book = (
            float(bid) if bid else None,
            float(ask) if ask else None,
            float(result["B"]),
            float(result["A"]),
        )
        sequence: int = result["u"]
        ticker = Ticker(
            "gateio",
            state.symbol,
            state.last,
            *book,
            *state.statistics,
            result["t"] / 1000.0,
            time.time(),
            None,  # mark_price, index_price, funding_rate, next_funding_ts, open_interest: spot
            None,
            None,
            None,
            None,
            sequence,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.book, state.sequence = book, sequence
        return [ticker]

    def _tickers(self, msg: dict[str, Any]) -> list[Ticker]:
        """Every field read is sent on every push (a missing one makes the frame junk); a value
        may be empty (a pair not yet traded), read as ``None``, converted inline."""
        item = msg["result"]
        state = self._states.get(item["currency_pair"])
        if state is None:
            return []
        ms = msg.get("time_ms")
        last, volume, high, low = item["last"], item["base_volume"], item["high_24h"], item["low_24h"]
        pct = item["change_percentage"]
        ticker = Ticker(
            "gateio",
            state.symbol,
            float(last) if last else None,
            *state.book,
            float(volume) if volume else None,
            float(high) if high else None,
            float(low) if low else None,
            None,
            float(pct) if pct else None,
            ms / 1000.0 if ms is not None else float(msg["time"]),
            time.time(),
            None,
            None,
            None,
            None,
            None,
            state.sequence,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.last = ticker.last
        state.statistics = (ticker.volume_24h, ticker.high_24h, ticker.low_24h, None, ticker.change_pct_24h)
        return [ticker]


class Gateio(Exchange):
    """Gate.io spot (see the module docstring)."""

    name = "gateio"
    url = "wss://api.gateio.ws/ws/v4/"
    #: Two channels a pair; Gate documents no limit, so this only spreads the load.
    max_symbols_per_connection = 100
    keepalive = Keepalive(interval=10.0, frame=ping("spot"))
    keepalive_note = "answers server ping frames"
    lacks = ("change_24h",)
    spot_only = True
    decoder_class = GateioDecoder
    fake = "tickerd.testing.gateio:FakeGateio"
    sample_symbols = ("BTC/USDT", "ETH/USDT", "ETH/BTC")
    feeds = "`spot.tickers` (last, 24 h stats) + `spot.book_ticker` (BBO with sizes), merged"
    symbol_forms = "`BTC/USDT` ↔ `BTC_USDT` (spot)"
    lacks_note = "the 24 h change comes as a percentage only; `volume_24h` in the base asset"
    sequence_source = "`spot.book_ticker` `u` (order book update id)"
