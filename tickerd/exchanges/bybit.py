"""Bybit v5 public streams: ``tickers`` for spot and derivatives, ``orderbook.1`` for spot.

Documentation: https://bybit-exchange.github.io/docs/v5/websocket/public/ticker (the ticker
topic, its fields by category), …/v5/websocket/public/orderbook (level 1), …/v5/enum#symbol
(native names) and …/v5/market/tickers (units, by its inverse example).

Bybit serves each market category on its own URL (``…/v5/public/spot``, ``…/linear``,
``…/inverse``) and the same native name means a different market on each (``BTCUSDT`` is spot
BTC/USDT on one and the BTC/USDT:USDT perpetual on the other), so :meth:`Bybit.endpoint` sends
every symbol to its category's URL and a connection never mixes categories.  Native names, per
the docs' symbol list:

* linear (USDT and USDC contracts): perpetuals ``BTCUSDT`` and ``BTCPERP`` (USDC), dated futures
  ``BTCUSDT-25DEC26`` and ``BTC-25DEC26`` (USDC);
* inverse: the perpetual ``BTCUSD`` and quarterly futures ``BTCUSDZ26`` (``H``/``M``/``U``/``Z``:
  March, June, September, December).  The quarter code carries no day, so the unified symbol's
  expiry day is taken as written (Bybit lists one contract a quarter).

The docs write day numbers unpadded in their option examples (``BTC-6JAN23-…``) and give no
future with a one-digit day; the futures names other clients use pad them (``BTCUSDT-07AUG26``),
and so does the adapter.

The categories' ``tickers`` differ in ways that shape the decoder:

* linear and inverse send one snapshot, then *deltas* that carry only the fields that changed;
  the decoder keeps the snapshot per symbol and overlays each delta, so a delta that moves only
  the bid still yields the last price, the mark price and the funding rate.  A delta with no
  snapshot before it is dropped: the snapshot arrives right after subscribing (and again after
  every reconnect).  Their tickers carry the derivative fields: ``markPrice``, ``indexPrice``,
  ``fundingRate`` (one period's rate, a fraction), ``nextFundingTime`` (ms) and ``openInterest``
  (linear: in the base asset; inverse: in contracts of 1 USD, as the docs' inverse example shows
  beside its ``openInterestValue`` in BTC).  Dated futures pay no funding: their funding fields,
  absent or empty (the docs' REST examples write a missing time as ``"0"`` and a missing value as
  ``""``), stay null.
* spot sends snapshots only, and they carry no best bid/ask at all; the level-1 order book
  (``orderbook.1``, snapshot-only per the docs) supplies bid/ask with sizes, and each frame of
  either topic yields one merged Ticker.

Inverse contracts count sizes and ``volume24h`` in contracts of 1 USD; the base-asset volume is
their ``turnover24h``, which is what ``volume_24h`` holds for them (as for every other market).
``sequence`` is the *cross sequence* the docs name: ``cs`` of a derivative's ``tickers``; on spot,
``seq`` of ``orderbook.1``, which spot ticker frames keep (spot ``tickers`` carry a ``cs`` too, but
the docs' examples of the two lie orders of magnitude apart on the same day, so they are not
taken for one series).

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
    market,
    optional_float,
)
from tickerd.model import Ticker

#: Bybit's limit of topics (``args``) in one subscribe request.
_TOPICS_PER_REQUEST = 10
_CATEGORIES = ("spot", "linear", "inverse")
#: Tokens of an error text, to find which of a request's topics or native names it names.
_TOKEN = re.compile(r"[A-Za-z0-9_.\-]+")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: Inverse futures' quarter codes by month.
_QUARTERS = {"03": "H", "06": "M", "09": "U", "12": "Z"}
_FORMS = (
    "bybit serves spot BASE/QUOTE, linear BASE/USDT:USDT and BASE/USDC:USDC and inverse "
    "BASE/USD:BASE, each perpetual or dated (…-YYMMDD; inverse: quarterly)"
)


def category(symbol: str) -> str:
    """``BTC/USDT`` → ``spot``; ``BTC/USDT:USDT``, ``BTC/USDC:USDC-261225`` → ``linear``;
    ``BTC/USD:BTC`` → ``inverse``."""
    parts = market(symbol)
    if parts.spot:
        return "spot"
    return "inverse" if parts.inverse else "linear"


def native(symbol: str) -> str:
    """The native name on the symbol's category URL (the module docstring lists the forms)."""
    parts = market(symbol)
    name = parts.base + parts.quote
    if parts.spot:
        return name
    usdc = parts.settle == "USDC"
    if parts.expiry is None:
        return parts.base + "PERP" if usdc else name
    year, month, day = parts.expiry[:2], parts.expiry[2:4], parts.expiry[4:]
    if parts.inverse:
        return name + _QUARTERS[month] + year
    return f"{parts.base if usdc else name}-{day}{_MONTHS[int(month) - 1]}{year}"


def topics(symbol: str) -> tuple[str, ...]:
    """The topics that make up one symbol's Ticker on its category's connection."""
    name = native(symbol)
    if ":" not in symbol:
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


def _epoch(milliseconds: object) -> float | None:
    """``nextFundingTime`` (ms, a string) in epoch seconds; ``"0"`` or ``""`` (dated futures,
    which pay no funding) is no time."""
    if milliseconds in (None, "", "0", 0):
        return None
    return int(str(milliseconds)) / 1000.0


#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order (see ``_merged``).
_Book = tuple[float | None, float | None, float | None, float | None]
#: 24 h volume, high, low, change, change percent: in :class:`Ticker`'s field order.
_Statistics = tuple[float | None, float | None, float | None, float | None, float | None]
#: Mark, index, funding rate, next funding time, open interest: in :class:`Ticker`'s field order.
_Derivatives = tuple[float | None, float | None, float | None, float | None, float | None]
_NONE5: _Derivatives = (None, None, None, None, None)
#: The fields each parsed group is read from: a delta touching none of a group's keeps the group
#: (the derivative fields are read one by one, :func:`_derivatives`).
_STATISTICS_KEYS = frozenset(
    ("lastPrice", "volume24h", "turnover24h", "highPrice24h", "lowPrice24h", "prevPrice24h", "price24hPcnt")
)
_BOOK_KEYS = frozenset(("bid1Price", "ask1Price", "bid1Size", "ask1Size"))


def _statistics(stats: dict[str, Any], volume: str) -> tuple[float, _Statistics]:
    """The last price and 24 h statistics of a ``tickers`` snapshot (with its deltas applied):
    every snapshot carries these fields, so a missing one makes the frame junk.  ``volume`` names
    the field in the base asset (``volume24h``; inverse: ``turnover24h``)."""
    last = stats["lastPrice"]
    return float(last), (
        float(stats[volume]),
        float(stats["highPrice24h"]),
        float(stats["lowPrice24h"]),
        _difference(last, stats["prevPrice24h"]),
        _percent(stats["price24hPcnt"]),
    )


def _best_levels(stats: dict[str, Any]) -> _Book:
    """The best levels of a derivative's ``tickers`` snapshot (with its deltas applied)."""
    return (
        float(stats["bid1Price"]),
        float(stats["ask1Price"]),
        float(stats["bid1Size"]),
        float(stats["ask1Size"]),
    )


def _derivatives(data: dict[str, Any], previous: _Derivatives) -> _Derivatives:
    """The derivative fields of a linear or inverse snapshot (``previous``: none) or of a delta
    overlaid on ``previous``: a field the frame lacks keeps its value, and only the fields it
    carries are converted (a delta usually moves the mark price alone).  Read as optional: a
    dated future has no funding, and a market in its pre-listing phase may lack an index."""
    mark, index, rate, funding_at, interest = previous
    if "markPrice" in data:
        mark = optional_float(data["markPrice"])
    if "indexPrice" in data:
        index = optional_float(data["indexPrice"])
    if "fundingRate" in data:
        rate = optional_float(data["fundingRate"])
    if "nextFundingTime" in data:
        funding_at = _epoch(data["nextFundingTime"])
    if "openInterest" in data:
        interest = optional_float(data["openInterest"])
    return mark, index, rate, funding_at, interest


class _State:
    """One symbol's merged view: the ticker snapshot with deltas applied (raw, for the next
    delta, and parsed, for book frames), the best levels and the cross sequence."""

    __slots__ = (
        "book",
        "derivative",
        "derivatives",
        "last",
        "sequence",
        "statistics",
        "stats",
        "symbol",
        "volume",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        #: Linear or inverse: its tickers carry the book's top and the derivative fields.
        self.derivative = ":" in symbol
        #: Where the base-asset volume is: inverse contracts count ``volume24h`` in USD.
        self.volume = "turnover24h" if category(symbol) == "inverse" else "volume24h"
        self.stats: dict[str, Any] = {}
        self.last: float | None = None
        self.statistics: _Statistics = (None, None, None, None, None)
        self.book: _Book = (None, None, None, None)
        self.derivatives = _NONE5
        self.sequence: int | None = None


class BybitDecoder(Decoder):
    """Decodes one category's frames; one decoder never mixes categories."""

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
        (derivatives: or the best levels, ``bid1Price``…) it is junk.  A derivative's delta
        carries only what changed and is overlaid on the snapshot, so a field it lacks keeps its
        value; of the parsed groups (statistics, book, derivative fields) a delta re-reads only
        those it touches, so a delta that moves the bid costs four conversions, not fifteen."""
        data: dict[str, Any] = msg["data"]
        last, statistics, book = state.last, state.statistics, state.book
        derivatives, sequence = state.derivatives, state.sequence
        if msg.get("type") == "delta":
            if not state.stats:
                return []  # nothing to overlay yet; the snapshot is on its way
            stats = state.stats | data
            touched = data.keys()
            if not touched.isdisjoint(_STATISTICS_KEYS):
                last, statistics = _statistics(stats, state.volume)
            if not touched.isdisjoint(_BOOK_KEYS):
                book = _best_levels(stats)
            derivatives = _derivatives(data, derivatives)
        else:
            stats = data
            last, statistics = _statistics(stats, state.volume)
            if state.derivative:
                book, derivatives = _best_levels(stats), _derivatives(stats, _NONE5)
        if state.derivative:
            sequence = msg.get("cs")
        return self._merged(state, stats, last, statistics, book, derivatives, sequence, msg["ts"])

    def _book(self, state: _State, msg: dict[str, Any]) -> list[Ticker]:
        """A level-1 snapshot always carries both sides (``b``, ``a``); an empty one means no
        orders on that side."""
        data: dict[str, Any] = msg["data"]
        bids, asks = data["b"], data["a"]
        bid, bid_size = (float(bids[0][0]), float(bids[0][1])) if bids else (None, None)
        ask, ask_size = (float(asks[0][0]), float(asks[0][1])) if asks else (None, None)
        book = (bid, ask, bid_size, ask_size)
        return self._merged(
            state, state.stats, state.last, state.statistics, book, _NONE5, data.get("seq"), msg["ts"]
        )

    def _merged(
        self,
        state: _State,
        stats: dict[str, Any],
        last: float | None,
        statistics: _Statistics,
        book: _Book,
        derivatives: _Derivatives,
        sequence: int | None,
        ts: int,
    ) -> list[Ticker]:
        """The ticker of the statistics, the book and the derivative fields, kept in ``state``
        only if it passes the sanity rule (a junk frame leaves the merged view as it was).
        Built positionally, in the Ticker's field order: fewer keyword arguments pay for the
        check on every frame."""
        ticker = Ticker(
            "bybit",
            state.symbol,
            last,
            *book,
            *statistics,
            ts / 1000.0,
            time.time(),
            *derivatives,
            sequence,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.stats, state.last, state.statistics, state.book = stats, last, statistics, book
        state.derivatives, state.sequence = derivatives, sequence
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
    """Bybit v5 spot (``BTC/USDT`` ↔ ``BTCUSDT`` on ``/spot``), linear USDT and USDC contracts
    (``/linear``) and inverse contracts (``/inverse``), perpetual and dated.

    ``url`` is the base the category is appended to; a configured URL that already ends in a
    category is taken as that base too.
    """

    name = "bybit"
    decoder_class = BybitDecoder
    dated_futures = True
    fake = "tickerd.testing.bybit:FakeBybit"
    sample_symbols = (
        "BTC/USDT",
        "ETH/USDT:USDT",
        "BTC/USD:BTC",
        "BTC/USDT:USDT-261225",
        "BTC/USD:BTC-270326",
    )
    feeds = (
        "spot: `tickers.{S}` + `orderbook.1.{S}`; linear and inverse: `tickers.{S}` (snapshot + "
        "deltas merged, with mark, index, funding and open interest)"
    )
    symbol_forms = (
        "`BTC/USDT` ↔ `BTCUSDT` on `/spot`; on `/linear`: `BTC/USDT:USDT` ↔ `BTCUSDT`, "
        "`BTC/USDT:USDT-261225` ↔ `BTCUSDT-25DEC26`, `BTC/USDC:USDC` ↔ `BTCPERP`, "
        "`BTC/USDC:USDC-261225` ↔ `BTC-25DEC26`; on `/inverse`: `BTC/USD:BTC` ↔ `BTCUSD`, "
        "`BTC/USD:BTC-261225` ↔ `BTCUSDZ26`"
    )
    lacks_note = (
        "dated futures have no funding; inverse sizes count contracts of 1 USD, and their volume "
        "is `turnover24h`, in the base asset"
    )
    open_interest_unit = "linear: base asset; inverse: contracts of 1 USD"
    sequence_source = "`tickers` `cs` (derivatives) and `orderbook.1` `seq` (spot): the cross sequence"
    url = "wss://stream.bybit.com/v5/public"
    #: Spot uses two topics a symbol; 100 symbols keep a connection's topic list modest.
    max_symbols_per_connection = 100
    keepalive = Keepalive(interval=20.0, frame='{"op":"ping"}')
    send_interval = 0.1

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        parts = market(symbol)
        if parts.spot:
            return
        linear = parts.settle == parts.quote and parts.quote in ("USDT", "USDC")
        inverse = parts.inverse and parts.quote == "USD"
        if not (linear or inverse):
            raise ValueError(f"{symbol!r}: {_FORMS}")
        if inverse and parts.expiry is not None and parts.expiry[2:4] not in _QUARTERS:
            raise ValueError(
                f"{symbol!r}: bybit's inverse futures expire in March, June, September and "
                f"December ({_FORMS})"
            )

    def endpoint(self, url: str, symbol: str, group: str = "") -> str:
        base = url.rstrip("/")
        for name in _CATEGORIES:
            if base.endswith(f"/{name}"):
                base = base[: -len(name) - 1]
        return f"{base}/{category(symbol)}"
