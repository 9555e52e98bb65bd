"""HTX (formerly Huobi) spot: ``market.$symbol.bbo`` merged with ``market.$symbol.ticker``.

Documentation: HTX's spot API pages (www.htx.com/en-us/opend/newApiPages, spot, *Websocket
Market Data*; the same text as huobiapi.github.io/docs/spot/v1/en): "market.$symbol.bbo (Best
Bid/Offer)" and "market.$symbol.ticker (Market Ticker)", each with its "Example of a Data Update",
and the introduction's *Heartbeat and Connection*, *Data Compression* sections.  The framing,
ping/pong and request protocol are HTX's own, shared with its contracts
(:mod:`tickerd.exchanges.htx`).

Both topics are served on ``wss://api.huobi.pro/ws`` (``api-aws.huobi.pro`` for clients hosted
on AWS), a pair named by its lowercase concatenation (``btcusdt``):

* ``bbo`` pushes the best bid and ask with sizes (base asset), JSON numbers, "in tick by tick
  mode", with ``seqId``, which only grows: it is the ticker's ``sequence``, and an older book
  than the one merged is dropped.  ``quoteTime`` (ms) stamps it.  The pages mark every field
  optional and do not show an empty side: a missing or null price or size is read as ``None``.
* ``ticker`` pushes every 100 ms the rolling 24 h ``open``, ``high``, ``low``, ``amount``
  (volume in the base asset; ``vol`` is the quote turnover), the last trade's ``lastPrice``
  (the change is ``lastPrice - open``) and its own copy of the best prices, not read: it is a
  100 ms snapshot that lags the tick-by-tick ``bbo``, and merging both would let an older book
  overwrite a newer one.  The envelope's ``ts`` (ms) stamps it.

Each frame of either produces one complete ticker from the latest of both, the sanity rule
applied to the merged candidate before it is kept (:attr:`Decoder.merges`).  An unknown pair's
topic is refused with an error (``bad-request``, ``invalid topic …``), reported as rejected.
HTX announces no forced reconnects or connection lifetime; the server pings every 5 s and closes
a connection that leaves two pings unanswered.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from tickerd.exchanges.base import Exchange, market
from tickerd.exchanges.htx import HtxDecoder
from tickerd.model import Ticker

_F = float | None
#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order.
_Book = tuple[_F, _F, _F, _F]
#: 24 h volume, high, low, change, change percent: in :class:`Ticker`'s field order.
_Statistics = tuple[_F, _F, _F, _F, _F]


def native(symbol: str) -> str:
    """``BTC/USDT`` → ``btcusdt``: HTX's spot symbol, as its topics spell it."""
    parts = market(symbol)
    return f"{parts.base}{parts.quote}".lower()


class _State:
    """One pair's latest fields of both topics (``None`` before their first frame)."""

    __slots__ = ("book", "last", "sequence", "statistics", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.sequence = -1
        self.last: float | None = None
        self.book: _Book = (None, None, None, None)
        self.statistics: _Statistics = (None, None, None, None, None)


class HtxSpotDecoder(HtxDecoder):
    """Decodes ``bbo`` and ``ticker`` frames into per-pair merged state."""

    exchange = "htx"
    merges = True
    derivatives = False

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Topic → the pair state it updates, one map per topic kind: the topic of a data frame
        #: finds both its pair and its kind in one lookup.
        self._books: dict[str, _State] = {}
        self._tickers: dict[str, _State] = {}
        super().__init__(symbols)

    def topics(self, symbol: str) -> list[str]:
        name = native(symbol)
        return [f"market.{name}.bbo", f"market.{name}.ticker"]

    def track(self, symbol: str) -> None:
        super().track(symbol)
        book, ticker = self.topics(symbol)
        if book not in self._books:
            self._books[book] = self._tickers[ticker] = _State(symbol)

    def untrack(self, symbol: str) -> None:
        """Forget the pair's merged state too: a pair added again starts afresh."""
        super().untrack(symbol)
        book, ticker = self.topics(symbol)
        self._books.pop(book, None)
        self._tickers.pop(ticker, None)

    def _data(self, channel: str, msg: dict[str, Any]) -> list[Ticker]:
        state = self._books.get(channel)
        if state is not None:
            return self._book(state, msg["tick"])
        state = self._tickers.get(channel)
        if state is not None:
            return self._ticker(state, msg)
        return []  # a topic unsubscribed a moment ago

    def _book(self, state: _State, tick: dict[str, Any]) -> list[Ticker]:
        """``seqId`` and ``quoteTime`` are always read; prices and sizes may be missing."""
        sequence: int = tick["seqId"]
        if sequence < state.sequence:
            return []  # an older book than the one merged
        bid, ask = tick.get("bid"), tick.get("ask")
        bid_size, ask_size = tick.get("bidSize"), tick.get("askSize")
        book = (
            float(bid) if bid is not None else None,
            float(ask) if ask is not None else None,
            float(bid_size) if bid_size is not None else None,
            float(ask_size) if ask_size is not None else None,
        )
        ticker = Ticker(
            "htx",
            state.symbol,
            state.last,
            *book,
            *state.statistics,
            tick["quoteTime"] / 1000.0,
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

    def _ticker(self, state: _State, msg: dict[str, Any]) -> list[Ticker]:
        """A ``ticker`` tick always carries ``lastPrice``, ``open``, ``high``, ``low`` and
        ``amount``; a missing one makes the frame junk."""
        tick = msg["tick"]
        last, first = float(tick["lastPrice"]), float(tick["open"])
        change = last - first
        statistics = (
            float(tick["amount"]),
            float(tick["high"]),
            float(tick["low"]),
            change,
            change / first * 100.0 if first else None,
        )
        ticker = Ticker(
            "htx",
            state.symbol,
            last,
            *state.book,
            *statistics,
            msg["ts"] / 1000.0,
            time.time(),
            None,
            None,
            None,
            None,
            None,
            state.sequence if state.sequence >= 0 else None,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.last, state.statistics = last, statistics
        return [ticker]


class HtxSpot(Exchange):
    """HTX spot; ``BTC/USDT`` ↔ ``btcusdt`` (see the module docstring)."""

    name = "htx"
    url = "wss://api.huobi.pro/ws"
    decoder_class = HtxSpotDecoder
    spot_only = True
    #: Two topics a pair; the spot pages name no per-connection limit.
    max_symbols_per_connection = 100
    #: The spot pages name no request rate; the contracts' 40 subscriptions a second is kept.
    send_interval = 0.05
    fake = "tickerd.testing.htx_spot:FakeHtxSpot"
    sample_symbols = ("BTC/USDT", "ETH/USDT", "ETH/BTC")
    feeds = (
        "`market.$symbol.bbo` (tick-by-tick BBO with sizes) + `market.$symbol.ticker` "
        "(last, 24 h stats), merged; gzip frames"
    )
    symbol_forms = "`BTC/USDT` ↔ `btcusdt` (spot)"
    keepalive_note = 'answers the server\'s `{"ping":n}` (every 5 s) with `{"pong":n}`'
    lacks_note = "the 24 h change is `lastPrice - open` of the rolling day; `volume_24h` in the base asset"
    sequence_source = "`bbo` `seqId`"
