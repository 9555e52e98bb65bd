"""BitMEX realtime API: ``quote`` (best bid/ask with sizes) merged with ``instrument`` (last
price, 24 h statistics and, for derivatives, mark and index price, funding and open interest).

Every table sends a ``partial`` (a full snapshot) first, then ``insert``/``update`` rows.
``quote`` rows are complete, so the newest one replaces the last.  ``instrument`` updates carry
only the fields that changed (``{"symbol":"XBTUSD","lastPrice":6716,"timestamp":…}``), so the
decoder keeps the row of each symbol and merges every update onto it; updates that arrive
before their partial are dropped, as BitMEX documents.  Instrument updates that move only
fields no ticker carries (fair and impact prices, turnover) produce no ticker; those of the
mark price do, for derivatives.

The derivative fields, as BitMEX's "/instrument Field Definitions"
(https://support.bitmex.com/hc/en-gb/articles/6206354894365) define them: ``markPrice``;
``indicativeSettlePrice``, "the price of the index associated with the instrument" (the
``.BXBT`` index for ``XBTUSD``; ``fairPrice`` is the mark's fair value, not the index);
``fundingRate``, the rate of one funding period (8 h) as a fraction, null on dated futures;
``fundingTimestamp``, the next funding time (ISO-8601); ``openInterest``, "in terms of number
of contracts" (1 USD each for ``XBTUSD``).  Whatever a spot pair's row carries, its tickers
leave every derivative field ``None``.  Neither table carries a sequence number.

Symbols: BitMEX calls bitcoin ``XBT``; the unified form uses ``BTC`` everywhere.  The native
name is base and quote joined, ``XBT`` for ``BTC``, and the unified settle currency is what the
contract pays out in:

* inverse perpetuals settle in the base: ``XBTUSD`` ↔ ``BTC/USD:BTC``;
* linear perpetuals settle in the quote: ``XBTUSDT`` ↔ ``BTC/USDT:USDT``, ``ETHUSDT`` ↔
  ``ETH/USDT:USDT``;
* quanto perpetuals settle in bitcoin: ``ETHUSD`` ↔ ``ETH/USD:BTC``;
* dated futures add BitMEX's month code (``F`` January … ``Z`` December) and year to the
  perpetual's name, except that USD-quoted inverse futures drop the quote: ``XBTZ26`` ↔
  ``BTC/USD:BTC-261225`` (BitMEX's quarterlies expire on the last Friday of their month, the
  day the unified form names).  Only the bitcoin quarterlies were seen listed; other names
  follow the same rule, and one BitMEX does not list is rejected as unknown;
* spot pairs are joined by an underscore: ``XBT_USDT`` ↔ ``BTC/USDT``.

The name alone cannot tell inverse from quanto (``ETHUSD``), nor a future's day from its
month, so the instrument partial's ``settlCurrency`` (``XBt``, ``USDt``: BitMEX names the unit
it counts in) and ``expiry`` are checked against the configured symbol, and a mismatch rejects
the symbol naming the right form.

Subscriptions go out one symbol per request (``quote:S`` and ``instrument:S``), so an error,
which echoes the ``request`` it answers, names exactly the refused symbol whatever its text says
(``Unknown or expired symbol: …``, ``Unknown table: …``).  The connection opens with an
``info`` welcome frame; the client's text ``ping`` is answered with a text ``pong``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Keepalive,
    Market,
    Rejected,
    Subscribed,
    market,
    optional_float,
    split_unified,
)
from tickerd.model import Ticker

#: The tables one symbol needs, in the order they are subscribed.
TABLES = ("quote", "instrument")
#: Instrument fields a ticker is made of; an update touching none of them changes nothing.
_TICKER_FIELDS = frozenset(
    (
        "lastPrice",
        "highPrice",
        "lowPrice",
        "prevPrice24h",
        "lastChangePcnt",
        "homeNotional24h",
        "bidPrice",
        "askPrice",
    )
)
#: Instrument fields of a derivative's mark and index price, funding and open interest; an
#: update touching one of them changes a derivative's ticker (see :func:`_statistics`).
_DERIVATIVE_FIELDS = frozenset(
    ("markPrice", "indicativeSettlePrice", "fundingRate", "fundingTimestamp", "openInterest")
)
_DERIVATIVE_TICKER_FIELDS = _TICKER_FIELDS | _DERIVATIVE_FIELDS
#: ``settlCurrency`` values are units (satoshi, micro-tether); the currency they count.
_SETTLE_UNITS = {"XBT": "BTC", "USDT": "USDT", "GWEI": "ETH"}
#: BitMEX's futures month codes, January first (``XBTZ26``: December 2026).
MONTH_CODES = "FGHJKMNQUVXZ"


def _xbt(currency: str) -> str:
    return "XBT" if currency == "BTC" else currency


def native(symbol: str) -> str:
    """``BTC/USD:BTC`` → ``XBTUSD``; ``ETH/USDT:USDT`` → ``ETHUSDT``; ``BTC/USDT`` → ``XBT_USDT``;
    ``BTC/USD:BTC-261225`` → ``XBTZ26``."""
    parts = market(symbol)
    base, quote = _xbt(parts.base), _xbt(parts.quote)
    if parts.settle is None:
        return f"{base}_{quote}"
    if parts.expiry is None:
        return f"{base}{quote}"
    root = base if parts.inverse and quote == "USD" else f"{base}{quote}"
    return f"{root}{MONTH_CODES[int(parts.expiry[2:4]) - 1]}{parts.expiry[:2]}"


def settle_currency(unit: str) -> str:
    """``XBt`` → ``BTC``, ``USDt`` → ``USDT``: the unified name of a settlement unit."""
    upper = unit.upper()
    return _SETTLE_UNITS.get(upper, upper)


def _timestamp(value: str | None) -> float | None:
    """BitMEX timestamps are ISO-8601 UTC with milliseconds and a ``Z``."""
    if not value:
        return None
    return datetime.fromisoformat(value).timestamp()  # 3.11 reads the Z itself


#: :func:`_timestamp` of ``fundingTimestamp``, remembered: every perpetual names the same next
#: funding time for 8 hours, and an instrument row is parsed whenever its mark price moves.
_funding_time = functools.lru_cache(maxsize=64)(_timestamp)


def _expiry(value: str | None) -> str | None:
    """An instrument's ``expiry`` (``2026-12-25T12:00:00.000Z``) as the unified ``YYMMDD``."""
    return datetime.fromisoformat(value).strftime("%y%m%d") if value else None


#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order (see ``_table``).
_Book = tuple[float | None, float | None, float | None, float | None]
_Floats5 = tuple[float | None, float | None, float | None, float | None, float | None]
#: An instrument row's last price; its 24 h volume, high, low, change and change percent; and its
#: mark price, index price, funding rate, next funding time and open interest: each in
#: :class:`Ticker`'s field order (see :func:`_statistics`).
_Statistics = tuple[float | None, _Floats5, _Floats5]
_NO_DERIVATIVES: _Floats5 = (None, None, None, None, None)


class _Merged:
    """The latest quote and merged instrument row of one symbol."""

    __slots__ = ("book", "exchange_ts", "fields", "instrument", "market", "statistics", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.market = market(symbol)
        #: The instrument fields that make this symbol's ticker: spot has no derivative fields.
        self.fields = _TICKER_FIELDS if self.market.spot else _DERIVATIVE_TICKER_FIELDS
        #: From the latest ``quote`` row; ``None`` until one arrived (the instrument's best
        #: prices stand in meanwhile).
        self.book: _Book | None = None
        #: ``None`` until the partial arrived: updates before it have nothing to merge onto.
        self.instrument: dict[str, Any] | None = None
        #: :attr:`instrument` parsed (:func:`_statistics`), for the quotes that follow it.
        self.statistics: _Statistics = _statistics(None, derivative=False)
        #: The newest exchange time of the rows merged so far.
        self.exchange_ts: float | None = None


def _statistics(inst: dict[str, Any] | None, *, derivative: bool) -> _Statistics:
    """The numbers of a merged instrument row (all ``None`` before its partial); a spot
    pair's derivative fields are ``None`` whatever its row says.

    Parsed once per instrument row and kept: quote rows, far more frequent, build their Ticker
    from it instead of parsing the row's fields again.
    """
    inst = inst or {}
    last = optional_float(inst.get("lastPrice"))
    previous = optional_float(inst.get("prevPrice24h"))
    pct = optional_float(inst.get("lastChangePcnt"))
    statistics = (
        optional_float(inst.get("homeNotional24h")),
        optional_float(inst.get("highPrice")),
        optional_float(inst.get("lowPrice")),
        last - previous if last is not None and previous is not None else None,
        pct * 100.0 if pct is not None else None,
    )
    if not derivative:
        return last, statistics, _NO_DERIVATIVES
    return (
        last,
        statistics,
        (
            optional_float(inst.get("markPrice")),
            optional_float(inst.get("indicativeSettlePrice")),
            optional_float(inst.get("fundingRate")),
            _funding_time(inst.get("fundingTimestamp")),
            optional_float(inst.get("openInterest")),
        ),
    )


def _newest(exchange_ts: float | None, row: dict[str, Any]) -> float | None:
    ts = _timestamp(row.get("timestamp"))
    return ts if ts is not None and (exchange_ts is None or ts > exchange_ts) else exchange_ts


class BitMEXDecoder(Decoder):
    """Decodes ``quote`` and ``instrument`` tables; routes acks and errors by native symbol."""

    exchange = "bitmex"
    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_native: dict[str, _Merged] = {}
        self._rejected: set[str] = set()
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_native.setdefault(native(symbol), _Merged(symbol))
        self._rejected.discard(symbol)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_native.pop(native(symbol), None)

    @staticmethod
    def _request(op: str, symbol: str) -> str:
        return orjson.dumps({"op": op, "args": [f"{table}:{native(symbol)}" for table in TABLES]}).decode()

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("subscribe", symbol) for symbol in symbols]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("unsubscribe", symbol) for symbol in symbols]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        if frame == "pong":
            return []
        msg = orjson.loads(frame)
        if "table" in msg:
            return self._table(msg["table"], msg["action"], msg["data"])
        if msg.get("success") is True:
            self._ack(msg)
            return []
        if "error" in msg:
            self._refused(msg)
            return []
        if "info" in msg:  # the welcome frame: version, docs link, connection-rate budget
            return []
        return self.junk_frame()

    def _table(self, table: str, action: str, rows: list[dict[str, Any]]) -> list[Ticker]:
        """Merge the rows into each symbol's view; each candidate is checked before any is
        kept, so a junk row leaves every view (and the next ticker) as it was.

        ``partial`` and ``insert`` rows are complete: a quote row must carry both sides with
        sizes, an instrument row every field of :data:`_TICKER_FIELDS` (BitMEX may send them as
        null).  Instrument ``update`` rows carry only what changed and are merged.
        """
        if table not in TABLES:
            return self.junk_frame()
        merged: dict[
            str, tuple[_Merged, Ticker, _Book | None, dict[str, Any] | None, _Statistics, float | None]
        ] = {}
        now = time.time()
        for row in rows:
            state = self._by_native.get(row["symbol"])
            if state is None or state.symbol in self._rejected or action == "delete":
                continue
            earlier = merged.get(state.symbol)
            statistics: _Statistics | None
            book, inst, statistics, ts = (
                earlier[2:]
                if earlier
                else (state.book, state.instrument, state.statistics, state.exchange_ts)
            )
            if table == "quote":
                book = (
                    float(row["bidPrice"]),
                    float(row["askPrice"]),
                    float(row["bidSize"]),
                    float(row["askSize"]),
                )
            elif action in ("partial", "insert"):
                if not row.keys() >= _TICKER_FIELDS:
                    missing = ", ".join(sorted(_TICKER_FIELDS - row.keys()))
                    return self.junk_frame(f"instrument {action} without {missing}")
                if not self._as_configured(state, row):
                    continue
                # Only the fields a ticker takes: a real row has about a hundred, and every
                # update below copies the merged row.
                inst, statistics = {key: row.get(key) for key in state.fields}, None
            elif inst is None or state.fields.isdisjoint(row):
                continue
            else:
                inst, statistics = inst | row, None
            ts = _newest(ts, row)
            quoted = book
            if quoted is None:  # no quote yet: the instrument's best prices, without sizes
                fields = inst or {}
                quoted = (
                    optional_float(fields.get("bidPrice")),
                    optional_float(fields.get("askPrice")),
                    None,
                    None,
                )
            if statistics is None:  # a new instrument row: parsed once, for the quotes after it
                statistics = _statistics(inst, derivative=not state.market.spot)
            last, rest, derivatives = statistics
            # Positional, in the Ticker's field order: keyword arguments cost more than the check.
            ticker = Ticker("bitmex", state.symbol, last, *quoted, *rest, ts, now, *derivatives)
            if (reason := self.flaw(ticker)) is not None:
                return self.junk_frame(reason)
            merged[state.symbol] = (state, ticker, book, inst, statistics, ts)
        for state, _, book, inst, parsed, ts in merged.values():
            state.book, state.instrument, state.statistics, state.exchange_ts = book, inst, parsed, ts
        return [ticker for _, ticker, *_ in merged.values()]

    def _as_configured(self, state: _Merged, row: dict[str, Any]) -> bool:
        """Reject a contract whose settle currency or expiry is not the configured one
        (``ETHUSD`` is a quanto settling in bitcoin, not an inverse ``ETH/USD:ETH``; ``XBTZ26``
        expires on 25 December 2026, not on another day of that month)."""
        wanted = state.market
        if wanted.spot:
            return True
        unit = row.get("settlCurrency")
        expiry = _expiry(row.get("expiry")) if wanted.expiry is not None else None
        actual = Market(
            wanted.base,
            wanted.quote,
            settle_currency(unit) if unit else wanted.settle,
            expiry or wanted.expiry,
        )
        if actual == wanted:
            return True
        if actual.settle != wanted.settle:
            reason = f"{row['symbol']} settles in {unit}: use {actual.symbol}"
        else:
            reason = f"{row['symbol']} expires on {row['expiry'][:10]}: use {actual.symbol}"
        self._rejected.add(state.symbol)
        self.events.append(Rejected(state.symbol, reason))
        return False

    def _symbols_of(self, args: Iterable[object]) -> list[str]:
        """The tracked symbols that ``table:SYMBOL`` arguments name, each once."""
        names = [str(arg).partition(":")[2] for arg in args]
        states = [self._by_native[name] for name in dict.fromkeys(names) if name in self._by_native]
        return [state.symbol for state in states]

    def _ack(self, msg: dict[str, Any]) -> None:
        if "subscribe" not in msg:
            return
        for symbol in self._symbols_of([msg["subscribe"]]):
            if symbol not in self._rejected:
                self.events.append(Subscribed(symbol))

    def _refused(self, msg: dict[str, Any]) -> None:
        request = msg.get("request")
        if not isinstance(request, dict) or request.get("op") != "subscribe":
            return
        reason = str(msg["error"])
        for symbol in self._symbols_of(request.get("args", ())):
            if symbol not in self._rejected:
                self._rejected.add(symbol)
                self.events.append(Rejected(symbol, reason))


class BitMEX(Exchange):
    """BitMEX perpetuals, dated futures and spot; ``XBT`` ↔ ``BTC`` (see the module docstring
    for the forms)."""

    name = "bitmex"
    lacks = ("sequence",)
    lacks_note = "dated futures have no funding: `funding_rate`, `next_funding_ts` null"
    open_interest_unit = "contracts (`instrument.openInterest`; `XBTUSD`: 1 USD each)"
    decoder_class = BitMEXDecoder
    fake = "tickerd.testing.bitmex:FakeBitMEX"
    sample_symbols = ("BTC/USD:BTC", "ETH/USDT:USDT", "BTC/USD:BTC-261225")
    feeds = "`quote:{S}` + `instrument:{S}` (partial rows merged)"
    symbol_forms = (
        "`BTC/USD:BTC` ↔ `XBTUSD`, `ETH/USDT:USDT` ↔ `ETHUSDT`, `ETH/USD:BTC` ↔ `ETHUSD` (quanto), "
        "`BTC/USD:BTC-261225` ↔ `XBTZ26`, `BTC/USDT` ↔ `XBT_USDT`"
    )
    dated_futures = True
    url = "wss://ws.bitmex.com/realtime"
    #: Two subscriptions a symbol; BitMEX documents no per-connection cap, and its whole
    #: listing fits in a few connections (new connections are limited to 60 an hour).
    max_symbols_per_connection = 100
    #: BitMEX recommends a text ping after 5 s without a message; the pong keeps a quiet feed
    #: from looking dead to the silence watchdog.
    keepalive = Keepalive(interval=5.0, frame="ping")
    #: One subscribe request per symbol: pace them.
    send_interval = 0.1

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        base, quote, settle = split_unified(symbol)
        if "XBT" in (base, quote, settle):
            raise ValueError(
                f"{symbol!r}: write BTC, BitMEX's XBT is mapped to it (e.g. BTC/USD:BTC for XBTUSD)"
            )
        if settle is not None and settle not in (base, quote, "BTC"):
            raise ValueError(
                f"{symbol!r}: a BitMEX perpetual settles in its base (inverse, BTC/USD:BTC), "
                "its quote (linear, ETH/USDT:USDT) or BTC (quanto, ETH/USD:BTC)"
            )
