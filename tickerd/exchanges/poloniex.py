"""Poloniex v3 public websocket (``wss://ws.poloniex.com/ws/public``): the ``ticker`` and
``book`` channels of spot markets, merged into one record per symbol.

Documentation: https://api-docs.poloniex.com/spot/websocket (the overview: endpoints, limits,
``ping``/``pong``, subscribe, unsubscribe, errors) and
https://api-docs.poloniex.com/spot/websocket/market-data (the ``ticker`` and ``book`` channels
and their pushes).  The field lists below are also those of Poloniex's own SDK
(``poloniex/polo-sdk-java``: ``TickerEvent``, ``BookEvent``), whose descriptions are the
page's.

Symbols.  Spot markets are named ``BASE_QUOTE``: ``BTC/USDT`` ↔ ``BTC_USDT``.

Fields.  ``ticker`` pushes carry the 24 h statistics and the last price: ``close`` (last),
``open``, ``high``, ``low``, ``quantity`` (base volume), ``amount`` (quote volume, not read),
``dailyChange`` ("daily change in decimal": ``-0.0002`` is −0.02 %) and ``ts`` (push time,
ms); ``markPrice`` (a margin mark price), ``tradeCount``, ``startTime`` and ``closeTime`` are
not read.  All numbers but the times and the count are decimal strings.  The absolute change
is ``close − open``, computed exactly.  ``book`` pushes are snapshots of the book's top levels
(``bids`` best-first descending, ``asks`` best-first ascending, each level ``[price, size]``)
with ``id`` (the record's sequence id), which supplies ``sequence``, ``createTime`` and
``ts``.  The channel takes a ``depth`` of 5, 10 or 20 levels, none smaller, so the top level
the adapter wants comes from the shallowest, 5, whose first level is read.  Each channel's
fields are merged with the other's latest (:attr:`Decoder.merges`); a candidate that breaks
the sanity rule leaves the state as it was.

Protocol.  ``{"event":"subscribe","channel":["ticker"],"symbols":["BTC_USDT"]}`` is answered by
``{"event":"subscribe","channel":"ticker","symbols":["BTC_USDT"]}`` (the channel a string
there); a failure by ``{"event":"error","message":…}``, which names neither the channel nor
the symbol.  So each request names one channel and one symbol, and the answers, which come in
request order, one a request, are matched to the requests in order: an error refuses the
symbol of the oldest unanswered request, whatever its message says, and the ``book`` request's
ack (sent after the ``ticker`` one) confirms the symbol.  A connection may send 500 requests a
second.

Keepalive.  Poloniex ends a session that sent no message or ``{"event":"ping"}`` for 30 seconds
(only clients ping); ``{"event":"pong"}`` answers.  The adapter pings every 20 s, and the
pongs keep a quiet connection past the silence watchdog.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from tickerd.exchanges.base import Decoder, Exchange, Keepalive, Rejected, Subscribed
from tickerd.model import Ticker

TICKER = "ticker"
BOOK = "book"
#: The book depth asked for: the shallowest of the documented 5, 10 and 20 (there is no 1);
#: only the top level is read.
_DEPTH = 5

_F = float | None


def native(symbol: str) -> str:
    """``BTC/USDT`` → ``BTC_USDT``."""
    return symbol.replace("/", "_")


class _State:
    """One market's latest fields of both channels (``None`` before their first push)."""

    __slots__ = ("book", "sequence", "statistics", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        #: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order.
        self.book: tuple[_F, _F, _F, _F] = (None, None, None, None)
        #: Last, then (after the book in a Ticker) volume, high, low, change, change percent.
        self.statistics: tuple[_F, _F, _F, _F, _F, _F] = (None,) * 6
        self.sequence: int | None = None


class PoloniexDecoder(Decoder):
    """Decodes ``ticker`` and ``book`` pushes into per-market merged state; matches answers to
    requests in order."""

    exchange = "poloniex"
    merges = True
    derivatives = False

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Market name → its merged state.
        self._states: dict[str, _State] = {}
        #: The requests not answered yet, oldest first: (event, channel, symbol).
        self._pending: deque[tuple[str, str, str]] = deque()
        #: Symbols an error refused on this connection (refused once, whichever channel).
        self._refused: set[str] = set()
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._states.setdefault(native(symbol), _State(symbol))

    def untrack(self, symbol: str) -> None:
        """Forget the merged state too: a market added again starts afresh."""
        super().untrack(symbol)
        self._states.pop(native(symbol), None)

    # -- requests --------------------------------------------------------------------------

    def _requests(self, event: str, symbols: Sequence[str]) -> list[str]:
        frames = []
        for symbol in symbols:
            for channel in (TICKER, BOOK):
                self._pending.append((event, channel, symbol))
                depth = f',"depth":{_DEPTH}' if channel == BOOK and event == "subscribe" else ""
                frames.append(
                    f'{{"event":"{event}","channel":["{channel}"],"symbols":["{native(symbol)}"]{depth}}}'
                )
        return frames

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests("subscribe", symbols)

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests("unsubscribe", symbols)

    # -- frames ----------------------------------------------------------------------------

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        channel = msg.get("channel")
        data = msg.get("data")
        if data is not None:
            if channel == BOOK:
                return self._book(data)
            if channel == TICKER:
                return self._tickers(data)
            return self.junk_frame(f"a push of {channel}, never subscribed")
        event = msg["event"]
        if event == "pong":
            return []
        if event in ("subscribe", "unsubscribe", "error"):
            if not self._pending:  # answering no request of ours
                return []
            asked, asked_channel, symbol = self._pending.popleft()
            if asked == "subscribe" and symbol in self.symbols and symbol not in self._refused:
                if event == "error":
                    self._refused.add(symbol)
                    self.events.append(Rejected(symbol, str(msg.get("message", ""))))
                elif asked_channel == BOOK:  # the last channel's answer: both serve the symbol
                    self.events.append(Subscribed(symbol))
            return []
        return self.junk_frame()

    def _book(self, data: list[dict[str, Any]]) -> list[Ticker]:
        """Best level of each side (an empty side is ``None``), the book's ``id`` as sequence."""
        changes: list[tuple[_State, Ticker]] = []
        now = time.time()
        for item in data:
            state = self._states.get(item["symbol"])
            if state is None:  # a late push of a market just unsubscribed
                continue
            bids, asks = item["bids"], item["asks"]
            bid, ask = (bids[0] if bids else (None, None)), (asks[0] if asks else (None, None))
            book = (
                None if bid[0] is None else float(bid[0]),
                None if ask[0] is None else float(ask[0]),
                None if bid[1] is None else float(bid[1]),
                None if ask[1] is None else float(ask[1]),
            )
            stats = state.statistics
            sequence: int = item["id"]
            ticker = Ticker(
                "poloniex",
                state.symbol,
                stats[0],
                *book,
                *stats[1:6],
                item["ts"] / 1000.0,
                now,
                None,
                None,
                None,
                None,
                None,
                sequence,
            )
            if (reason := self.flaw(ticker)) is not None:
                return self.junk_frame(reason)
            changes.append((state, ticker))
        for state, t in changes:
            state.book, state.sequence = (t.bid, t.ask, t.bid_size, t.ask_size), t.sequence
        return [ticker for _, ticker in changes]

    def _tickers(self, data: list[dict[str, Any]]) -> list[Ticker]:
        """Every field read is sent on every push (a missing one makes the frame junk)."""
        changes: list[tuple[_State, Ticker]] = []
        now = time.time()
        for item in data:
            state = self._states.get(item["symbol"])
            if state is None:
                continue
            close = item["close"]
            ticker = Ticker(
                "poloniex",
                state.symbol,
                float(close),
                *state.book,
                float(item["quantity"]),
                float(item["high"]),
                float(item["low"]),
                float(Decimal(close) - Decimal(item["open"])),
                float(Decimal(item["dailyChange"]).scaleb(2)),
                item["ts"] / 1000.0,
                now,
                None,
                None,
                None,
                None,
                None,
                state.sequence,
            )
            if (reason := self.flaw(ticker)) is not None:
                return self.junk_frame(reason)
            changes.append((state, ticker))
        for state, t in changes:
            state.statistics = (t.last, t.volume_24h, t.high_24h, t.low_24h, t.change_24h, t.change_pct_24h)
        return [ticker for _, ticker in changes]


class Poloniex(Exchange):
    """Poloniex v3: spot ``BTC/USDT`` ↔ ``BTC_USDT``."""

    name = "poloniex"
    url = "wss://ws.poloniex.com/ws/public"
    decoder_class = PoloniexDecoder
    #: Two channels a symbol; the page sets no limit per connection, this keeps one modest.
    max_symbols_per_connection = 100
    #: 500 requests a second a connection.
    send_interval = 0.002
    #: A ping well inside Poloniex's 30 s (and the 30 s silence watchdog, see above).
    keepalive = Keepalive(interval=20.0, frame='{"event":"ping"}')
    spot_only = True
    fake = "tickerd.testing.poloniex:FakePoloniex"
    sample_symbols = ("BTC/USDT", "ETH/USDT", "ETH/BTC")
    feeds = "v3 `ticker` + `book` (depth 5, top level read), merged"
    symbol_forms = "`BTC/USDT` ↔ `BTC_USDT`"
    sequence_source = "`book` `id`"
