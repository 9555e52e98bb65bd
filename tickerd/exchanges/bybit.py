"""Bybit v5 public streams: ``tickers`` for spot and USDT perpetuals, ``orderbook.1`` for spot.

Bybit serves each market category on its own URL (``…/v5/public/spot``, ``…/v5/public/linear``)
and the same native name means a different market on each (``BTCUSDT`` is spot BTC/USDT on one
and the BTC/USDT:USDT perpetual on the other), so :meth:`Bybit.endpoint` sends every symbol to
its category's URL and a connection never mixes categories.

The two categories' ``tickers`` differ in ways that shape the decoder:

* linear sends one snapshot, then *deltas* that carry only the fields that changed; the decoder
  keeps the snapshot per symbol and overlays each delta, so a delta that moves only the bid
  still yields the last price.  A delta with no snapshot before it is dropped: the snapshot
  arrives right after subscribing (and again after every reconnect).
* spot sends snapshots only, and they carry no best bid/ask at all; the level-1 order book
  (``orderbook.1``, snapshot-only per the docs) supplies bid/ask with sizes, and each frame of
  either topic yields one merged Ticker.

Bybit takes at most 10 topics per subscribe request and refuses a whole request when one topic
in it is bad (``Invalid symbol :[tickers.XUSDT]``) or already subscribed, so each request keeps a
``req_id`` → symbols record: the named symbol is rejected (or, if merely already subscribed,
confirmed) and the request's other symbols are sent again without it.  Bybit cuts connections
that stay silent for 10 minutes and asks for ``{"op":"ping"}`` every 20 s.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Keepalive,
    Rejected,
    Reply,
    Subscribed,
    split_unified,
)
from tickerd.model import Ticker

#: Bybit's limit of topics (``args``) in one subscribe request.
_TOPICS_PER_REQUEST = 10
_CATEGORIES = ("spot", "linear")
#: Tokens of an error text, to find which of a request's topics or native names it names.
_TOKEN = re.compile(r"[A-Za-z0-9_.\-]+")


def category(symbol: str) -> str:
    """``BTC/USDT`` → ``spot``; ``BTC/USDT:USDT`` → ``linear``."""
    return "linear" if ":" in symbol else "spot"


def native(symbol: str) -> str:
    """``BTC/USDT`` and ``BTC/USDT:USDT`` → ``BTCUSDT`` (the URL tells the two apart)."""
    base, quote, _ = split_unified(symbol)
    return base + quote


def topics(symbol: str) -> tuple[str, ...]:
    """The topics that make up one symbol's Ticker on its category's connection."""
    name = native(symbol)
    if category(symbol) == "spot":
        return (f"tickers.{name}", f"orderbook.1.{name}")
    return (f"tickers.{name}",)


def _difference(minuend: object, subtrahend: object) -> float | None:
    """Exact decimal ``a - b`` of two numeric strings (no float noise); ``None`` if one is absent."""
    if minuend in (None, "") or subtrahend in (None, ""):
        return None
    return float(Decimal(str(minuend)) - Decimal(str(subtrahend)))


def _percent(fraction: object) -> float | None:
    """Bybit's ``price24hPcnt`` is a fraction (``0.0171`` = 1.71 %); Ticker wants percent."""
    if fraction in (None, ""):
        return None
    return float(Decimal(str(fraction)) * 100)


#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order (see ``_merged``).
_Book = tuple[float | None, float | None, float | None, float | None]
#: 24 h volume, high, low, change, change percent: in :class:`Ticker`'s field order.
_Statistics = tuple[float | None, float | None, float | None, float | None, float | None]


def _statistics(stats: dict[str, Any]) -> tuple[float, _Statistics]:
    """The last price and 24 h statistics of a ``tickers`` snapshot (with its deltas applied):
    every snapshot carries these fields, so a missing one makes the frame junk."""
    last = stats["lastPrice"]
    return float(last), (
        float(stats["volume24h"]),
        float(stats["highPrice24h"]),
        float(stats["lowPrice24h"]),
        _difference(last, stats["prevPrice24h"]),
        _percent(stats["price24hPcnt"]),
    )


class _State:
    """One symbol's merged view: the ticker snapshot with deltas applied (raw, for the next
    delta, and parsed, for book frames), and the best levels."""

    __slots__ = ("book", "last", "statistics", "stats", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.stats: dict[str, Any] = {}
        self.last: float | None = None
        self.statistics: _Statistics = (None, None, None, None, None)
        self.book: _Book = (None, None, None, None)


class BybitDecoder(Decoder):
    """Decodes one category's frames; one decoder never mixes spot and linear symbols."""

    exchange = "bybit"
    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        self._req_ids = itertools.count(1)
        self._requests: dict[str, tuple[str, ...]] = {}
        self._by_native: dict[str, _State] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_native.setdefault(native(symbol), _State(symbol))

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_native.pop(native(symbol), None)

    # -- requests --------------------------------------------------------------------------

    def _requests_for(self, op: str, symbols: Sequence[str]) -> list[str]:
        """Requests of at most 10 topics; a symbol's topics always share one request, so one
        ack answers for the whole symbol."""
        frames: list[str] = []
        batch: list[str] = []
        count = 0
        for symbol in symbols:
            needed = len(topics(symbol))
            if batch and count + needed > _TOPICS_PER_REQUEST:
                frames.append(self._request(op, batch))
                batch, count = [], 0
            batch.append(symbol)
            count += needed
        if batch:
            frames.append(self._request(op, batch))
        return frames

    def _request(self, op: str, symbols: Sequence[str]) -> str:
        req_id = str(next(self._req_ids))
        if op == "subscribe":
            self._requests[req_id] = tuple(symbols)
        args = [topic for symbol in symbols for topic in topics(symbol)]
        return orjson.dumps({"op": op, "req_id": req_id, "args": args}).decode()

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests_for("subscribe", symbols)

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests_for("unsubscribe", symbols)

    # -- frames ----------------------------------------------------------------------------

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        topic = msg.get("topic")
        if isinstance(topic, str):
            kind, _, name = topic.rpartition(".")
            state = self._by_native.get(name)
            if kind == "tickers":
                return [] if state is None else self._ticker(state, msg)
            if kind == "orderbook.1":
                return [] if state is None else self._book(state, msg)
            return self.junk_frame()
        op = msg.get("op")
        if op == "subscribe":
            self._answer(msg)
            return []
        if op in ("unsubscribe", "ping", "pong") or msg.get("ret_msg") == "pong":
            return []  # unsubscribe acks and the several pong shapes Bybit uses
        return self.junk_frame()

    def _ticker(self, state: _State, msg: dict[str, Any]) -> list[Ticker]:
        """A snapshot is complete by Bybit's docs: without a field :func:`_statistics` reads
        (linear ones: or the best levels, ``bid1Price``…) it is junk.  A linear delta carries
        only what changed and is overlaid on the snapshot, so a field it lacks keeps its value."""
        data: dict[str, Any] = msg["data"]
        if msg.get("type") == "delta":
            if not state.stats:
                return []  # nothing to overlay yet; the snapshot is on its way
            stats = state.stats | data
        else:
            stats = data
        book = state.book
        if category(state.symbol) == "linear":
            book = (
                float(stats["bid1Price"]),
                float(stats["ask1Price"]),
                float(stats["bid1Size"]),
                float(stats["ask1Size"]),
            )
        return self._merged(state, stats, *_statistics(stats), book, msg["ts"] / 1000.0)

    def _book(self, state: _State, msg: dict[str, Any]) -> list[Ticker]:
        """A level-1 snapshot always carries both sides (``b``, ``a``); an empty one means no
        orders on that side."""
        data: dict[str, Any] = msg["data"]
        bids, asks = data["b"], data["a"]
        bid, bid_size = (float(bids[0][0]), float(bids[0][1])) if bids else (None, None)
        ask, ask_size = (float(asks[0][0]), float(asks[0][1])) if asks else (None, None)
        book = (bid, ask, bid_size, ask_size)
        return self._merged(state, state.stats, state.last, state.statistics, book, msg["ts"] / 1000.0)

    def _merged(
        self,
        state: _State,
        stats: dict[str, Any],
        last: float | None,
        statistics: _Statistics,
        book: _Book,
        exchange_ts: float,
    ) -> list[Ticker]:
        """The ticker of the statistics and the book, kept in ``state`` only if it passes the
        sanity rule (a junk frame leaves the merged view as it was).  Built positionally, in
        the Ticker's field order: fewer keyword arguments pay for the check on every frame."""
        ticker = Ticker("bybit", state.symbol, last, *book, *statistics, exchange_ts, time.time())
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.stats, state.last, state.statistics, state.book = stats, last, statistics, book
        return [ticker]

    # -- acks ------------------------------------------------------------------------------

    def _answer(self, msg: dict[str, Any]) -> None:
        asked = [s for s in self._requests.pop(str(msg.get("req_id")), ()) if s in self.symbols]
        if msg.get("success"):
            self.events.extend(Subscribed(symbol) for symbol in asked)
            return
        reason = str(msg.get("ret_msg") or "subscription refused")
        tokens = set(_TOKEN.findall(reason))
        named = [s for s in asked if tokens & {native(s), *topics(s)}]
        if named:
            if "already subscribed" in reason:
                self.events.extend(Subscribed(symbol) for symbol in named)
            else:
                self.events.extend(Rejected(symbol, reason) for symbol in named)
            rest = [s for s in asked if s not in named]
            # Bybit dropped the whole request: the innocent symbols go again without the culprit.
            self.events.extend(Reply(frame) for frame in self._requests_for("subscribe", rest))
        elif len(asked) == 1:
            self.events.append(Rejected(asked[0], reason))
        else:
            # The error names no symbol: ask one by one, so only the bad one is refused.
            self.events.extend(Reply(self._request("subscribe", [symbol])) for symbol in asked)


class Bybit(Exchange):
    """Bybit v5 spot (``BTC/USDT`` ↔ ``BTCUSDT`` on ``/spot``) and USDT perpetuals
    (``BTC/USDT:USDT`` ↔ ``BTCUSDT`` on ``/linear``).

    ``url`` is the base the category is appended to; a configured URL that already ends in a
    category is taken as that base too.
    """

    name = "bybit"
    lacks = ("mark_price", "index_price", "funding_rate", "next_funding_ts", "open_interest", "sequence")
    decoder_class = BybitDecoder
    fake = "tickerd.testing.bybit:FakeBybit"
    sample_symbols = ("BTC/USDT", "ETH/USDT:USDT")
    feeds = "spot: `tickers.{S}` + `orderbook.1.{S}`; linear: `tickers.{S}` (snapshot + deltas merged)"
    symbol_forms = "`BTC/USDT` ↔ `BTCUSDT` on `/spot`, `BTC/USDT:USDT` ↔ `BTCUSDT` on `/linear`"
    url = "wss://stream.bybit.com/v5/public"
    #: Spot uses two topics a symbol; 100 symbols keep a connection's topic list modest.
    max_symbols_per_connection = 100
    keepalive = Keepalive(interval=20.0, frame='{"op":"ping"}')
    send_interval = 0.1

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        _, quote, settle = split_unified(symbol)
        if settle is not None and (settle != "USDT" or quote != "USDT"):
            raise ValueError(
                f"{symbol!r}: bybit serves spot BASE/QUOTE and USDT perpetuals BASE/USDT:USDT only"
            )

    def endpoint(self, url: str, symbol: str, group: str = "") -> str:
        base = url.rstrip("/")
        for name in _CATEGORIES:
            if base.endswith(f"/{name}"):
                base = base[: -len(name) - 1]
        return f"{base}/{category(symbol)}"
