"""Gemini market data v2: the ``l2`` book kept whole per symbol, plus the trades it carries.

Documentation: "Market Data v2", https://docs.gemini.com/websocket/market-data/v2/about,
.../v2/level-2-data and .../v2/unsubscribe (archived at
https://developer.gemini.com/websocket/archived/v2.md; ``wss://api.gemini.com/v2/marketdata``
still serves it).

Why it looks the way it does:

* Gemini has no ticker channel.  The ``l2`` subscription sends the symbol's whole book first
  (an ``l2_updates`` frame that also carries ``trades``, the last 50 trades) and then
  ``l2_updates`` frames of changes (``[side, price, quantity]``, quantity ``"0"`` deleting the
  level), and the symbol's ``trade`` events.  The decoder keeps every level, as sent, and
  exposes only the top: each side is a dict of price → size with a heap of prices beside it,
  so the best level costs O(log n) when it is deleted and O(1) otherwise, never a sort.
* A book that cannot be trusted is rebuilt by resubscribing the symbol (an ``unsubscribe``
  and a ``subscribe`` frame, as :class:`Reply` events; Gemini answers the subscribe with a
  fresh snapshot): changes before any snapshot, a level that is not a number or breaks the
  sanity rule (junk, after which the copy may differ from the venue's), and a book still
  crossed after the next change of the symbol (a single crossed frame is the momentary cross
  of a trade in progress: written, and counted by :meth:`Decoder.flaw`).  Until the snapshot
  arrives the symbol's changes are dropped and no ticker is written.
* The documentation shows no subscription acknowledgement and no error for a symbol Gemini
  does not list: such a subscription is silently never served (``rejects_unknown = False``;
  the symbol shows as waiting, then stale).  A symbol is confirmed by its snapshot.  Should an
  error in Gemini's REST error shape (``{"result": "error", "reason", "message"}``) name a
  symbol, that symbol is rejected.
* Heartbeats: the v2 pages do not describe them, but the server sends
  ``{"type": "heartbeat", "timestamp": ms}`` every 5 s, as v1's documentation says of its
  ``heartbeat=true`` feed; the client owes no ping.
* Only trades carry a time: a ticker made by a trade has the trade's ``timestamp`` (ms) as
  ``exchange_ts``, one made by a book change has none.  Book frames carry no sequence and the
  feed no 24 h statistics.  The documentation spells the trade id ``eventid`` in the
  snapshot's trades and ``event_id`` in trade events; neither is read here.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import Decoder, Exchange, Rejected, Reply, Subscribed, chunks
from tickerd.model import Ticker

#: Symbols per subscribe message: keeps frames small; Gemini documents no limit.
_PER_REQUEST = 20
#: Consecutive crossed updates of one symbol after which its book is rebuilt: one is the
#: momentary cross of a trade whose other side is yet to come.
_CROSSED_UPDATES = 2
_INF = float("inf")


def native(symbol: str) -> str:
    """``BTC/USD`` → ``BTCUSD``, Gemini's symbol."""
    return symbol.replace("/", "")


def _request(kind: str, symbols: Sequence[str]) -> str:
    return orjson.dumps({"type": kind, "subscriptions": [{"name": "l2", "symbols": list(symbols)}]}).decode()


#: Best bid, best ask, bid size, ask size.
_Top = tuple[float | None, float | None, float | None, float | None]


class _Side:
    """One side of a book: price → size, and a heap of (signed) prices for the best level.

    The heap keeps prices of deleted levels until they reach its top, where :meth:`best`
    drops them; it is rebuilt from the levels when such leftovers outnumber them, so a level
    that keeps coming and going deep in the book cannot grow it without bound.
    """

    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: float) -> None:
        #: -1.0 for bids (the heap is a min-heap: the highest bid is the smallest negation).
        self.sign = sign
        self.levels: dict[float, float] = {}
        self.heap: list[float] = []

    def add(self, price: float) -> None:
        """Heap a level's price; the caller stores its size in :attr:`levels` (inlined in the
        decoder's loop, which also deletes levels: a method call per change costs a fifth of a
        frame)."""
        heap = self.heap
        heapq.heappush(heap, self.sign * price)
        if len(heap) > 2 * len(self.levels) + 64:
            self.heap = [self.sign * p for p in self.levels]
            self.heap.append(self.sign * price)
            heapq.heapify(self.heap)

    def best(self) -> tuple[float | None, float | None]:
        """The best price and its size, or ``None``s for an empty side."""
        heap, levels, sign = self.heap, self.levels, self.sign
        while heap:
            price = heap[0] * sign
            size = levels.get(price)
            if size is not None:
                return price, size
            heapq.heappop(heap)
        return None, None


class _Book:
    """One symbol's book, last trade price and rebuild state."""

    __slots__ = ("asks", "bids", "confirmed", "crossed", "last", "ready", "rebuilding", "symbol", "top")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = _Side(-1.0)
        self.asks = _Side(1.0)
        self.last: float | None = None
        #: Best bid, best ask, their sizes (in :class:`Ticker`'s field order), as of the latest
        #: change: a trade's ticker reuses them.
        self.top: _Top = (None, None, None, None)
        #: A snapshot arrived and nothing since made the book untrustworthy.
        self.ready = False
        #: A rebuild was requested and its snapshot has not arrived yet.
        self.rebuilding = False
        #: The symbol's first snapshot was reported as :class:`Subscribed`.
        self.confirmed = False
        #: Consecutive updates after which the book was crossed.
        self.crossed = 0


class GeminiDecoder(Decoder):
    """Keeps each symbol's ``l2`` book and last trade; rebuilds books that go wrong."""

    exchange = "gemini"
    derivatives = False
    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        self._books: dict[str, _Book] = {}
        #: Books rebuilt by resubscribing (tests and logs read it).
        self.rebuilds = 0
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._books[native(symbol)] = _Book(symbol)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._books.pop(native(symbol), None)

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [_request("subscribe", [native(s) for s in part]) for part in chunks(symbols, _PER_REQUEST)]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [_request("unsubscribe", [native(s) for s in part]) for part in chunks(symbols, _PER_REQUEST)]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        kind = msg.get("type")
        if kind == "l2_updates":
            return self._l2(msg)
        if kind == "trade":
            return self._trade(msg)
        if kind == "heartbeat":
            return []
        if msg.get("result") == "error":
            self._error(msg)
            return []
        return self.junk_frame()

    def _l2(self, msg: dict[str, Any]) -> list[Ticker]:
        book = self._books.get(msg["symbol"])
        if book is None:
            return []  # unsubscribed meanwhile
        changes = msg["changes"]
        if "trades" in msg:  # the snapshot
            book.bids, book.asks = _Side(-1.0), _Side(1.0)
            book.ready, book.rebuilding, book.crossed = True, False, 0
            trades = msg["trades"]
            if trades:
                price = float(max(trades, key=lambda t: t["timestamp"])["price"])
                if 0.0 < price < _INF:
                    book.last = price
            if not book.confirmed:
                book.confirmed = True
                self.events.append(Subscribed(book.symbol))
        elif not book.ready:
            if not book.rebuilding:  # changes to a book never sent: ask for it
                self._rebuild(book)
            return []  # else a rebuild is under way: its snapshot replaces the book
        bids, asks = book.bids, book.asks
        try:
            for side, price_text, size_text in changes:
                price, size = float(price_text), float(size_text)
                if not (0.0 < price < _INF and 0.0 <= size < _INF):
                    self._rebuild(book)
                    name = "bid" if side == "buy" else "ask"
                    if 0.0 < price < _INF:
                        return self.junk_frame(f"{book.symbol}: {name}_size {size!r} is not a valid amount")
                    return self.junk_frame(f"{book.symbol}: {name} {price!r} is not a valid price")
                if side == "buy":
                    book_side = bids
                elif side == "sell":
                    book_side = asks
                else:
                    self._rebuild(book)
                    return self.junk_frame(f"{book.symbol}: side {side!r} is neither buy nor sell")
                levels = book_side.levels
                if size == 0.0:
                    levels.pop(price, None)
                    continue
                if price not in levels:
                    book_side.add(price)
                levels[price] = size
        except Exception:  # a malformed change, half applied: the book is no longer known
            self._rebuild(book)
            raise
        bid, bid_size = bids.best()
        ask, ask_size = asks.best()
        if bid is not None and ask is not None and bid > ask:
            book.crossed += 1
            if book.crossed >= _CROSSED_UPDATES:
                self._rebuild(book)
                return []
        else:
            book.crossed = 0
        book.top = top = (bid, ask, bid_size, ask_size)
        ticker = Ticker(
            "gemini", book.symbol, book.last, *top, None, None, None, None, None, None, time.time()
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        return [ticker]

    def _trade(self, msg: dict[str, Any]) -> list[Ticker]:
        book = self._books.get(msg["symbol"])
        if book is None:
            return []
        price = float(msg["price"])
        if not book.ready:  # no book to go with it: remembered for the snapshot's ticker
            if 0.0 < price < _INF:
                book.last = price
            return []
        exchange_ts = msg["timestamp"] / 1000
        ticker = Ticker(
            "gemini", book.symbol, price, *book.top, None, None, None, None, None, exchange_ts, time.time()
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        book.last = price
        return [ticker]

    def _rebuild(self, book: _Book) -> None:
        """Drop ``book`` and resubscribe its symbol: Gemini answers with a fresh snapshot."""
        self.rebuilds += 1
        book.bids, book.asks = _Side(-1.0), _Side(1.0)
        book.ready, book.rebuilding, book.crossed = False, True, 0
        name = native(book.symbol)
        self.events.append(Reply(_request("unsubscribe", [name])))
        self.events.append(Reply(_request("subscribe", [name])))

    def _error(self, msg: dict[str, Any]) -> None:
        """An error naming a symbol of this connection refuses that symbol."""
        message = str(msg.get("message", ""))
        for name, book in self._books.items():
            if name in message and not book.confirmed:
                self.events.append(Rejected(book.symbol, f"{msg.get('reason')}: {message}"))


class Gemini(Exchange):
    """Gemini spot; unified ``BTC/USD`` ↔ symbol ``BTCUSD``."""

    name = "gemini"
    decoder_class = GeminiDecoder
    spot_only = True
    rejects_unknown = False
    fake = "tickerd.testing.gemini:FakeGemini"
    sample_symbols = ("BTC/USD", "ETH/USD")
    feeds = "market data v2 `l2` (book kept whole: best bid/ask + sizes) + its `trade` events (last)"
    symbol_forms = "`BTC/USD` ↔ `BTCUSD` (spot)"
    keepalive_note = "server `heartbeat` every 5 s; crossed or broken books resubscribed"
    lacks_note = "no 24 h stats on the websocket; `exchange_ts` only from trades"
    url = "wss://api.gemini.com/v2/marketdata"
    #: Not documented; every symbol's whole book lives in the decoder and a reconnect resends
    #: them all, so a moderate count keeps one connection's cost small.
    max_symbols_per_connection = 20
    lacks = ("volume_24h", "high_24h", "low_24h", "change_24h", "change_pct_24h", "sequence")
