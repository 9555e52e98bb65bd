"""Binance USDⓈ-M and COIN-M futures: ``@bookTicker`` merged with ``@ticker`` and ``@markPrice@1s``.

Documentation (developers.binance.com, derivatives):

* USDⓈ-M: ``/docs/derivatives/usds-margined-futures/websocket-market-streams`` (connection,
  limits, pings), its pages ``Important-WebSocket-Change-Notice`` (the base URL split),
  ``Individual-Symbol-Book-Ticker-Streams``, ``Individual-Symbol-Ticker-Streams``,
  ``Mark-Price-Stream`` and ``Live-Subscribing-Unsubscribing-to-streams``;
* COIN-M: ``/docs/derivatives/coin-margined-futures/websocket-market-streams`` and the same
  stream pages under it.

Three streams make one ticker: ``<symbol>@bookTicker`` (best bid and ask in real time, with the
order book update id ``u``), ``<symbol>@ticker`` (24 h statistics every 2 s on USDⓈ-M, 500 ms
on COIN-M; unlike spot's it carries no best prices) and ``<symbol>@markPrice@1s`` (mark and
index price, the funding rate of one period as a fraction and the next funding time).  Each
frame of any of them produces one complete ticker from the latest of all three, the sanity rule
applied to the merged candidate before it is kept (:attr:`Decoder.merges`).

Since 2026 USDⓈ-M serves these streams on two routed URLs: ``wss://fstream.binance.com/public``
(high-frequency data: ``bookTicker``) and ``wss://fstream.binance.com/market`` (``ticker``,
``markPrice``); the unrouted root ``/ws`` was retired on 2026-04-23 and, per the docs, delivers
only ``/public`` streams now.  So one set of USDⓈ-M symbols takes two connections, the
endpoint groups ``public`` and ``market``, whose decoders share one merged state
(:meth:`BinanceFutures.merged_state`): a group that is reconnecting leaves the other's fields
in the record, and the state outlives the reconnect.  COIN-M's ``dstream`` documents no such
split (its page still names the root ``wss://dstream.binance.com/ws`` for every stream;
third-party clients route ``dstream`` like ``fstream`` too, unconfirmed by Binance), so it
uses one connection for all three streams; should Binance split it, it takes USDⓈ-M's
``groups`` and ``streams``.

Subscriptions are live ``SUBSCRIBE`` requests, as on spot (:class:`BinanceStreamsDecoder`);
unknown symbols are accepted and never served.  The server pings every 3 minutes (the
transport answers), and a ``bookTicker`` of a quiet market may send nothing for longer than
the silence watchdog waits, so the adapter sends ``GET_PROPERTY`` every 20 s, a documented
request whose small answer proves the connection alive.  Binance allows 10 incoming messages a
second and 1024 streams a connection, and closes connections at the 24 h mark; the futures docs
announce no ``serverShutdown`` event, so connections rotate at ``max_lifetime``.  Open interest
is REST-only (``/fapi/v1/openInterest``, ``/dapi/v1/openInterest``): no futures stream carries
it.  Dated futures have no funding: their mark price frames send ``"r":""`` and ``"T":0``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable
from typing import Any, ClassVar, cast

import orjson

from tickerd.exchanges.base import Exchange, Market, market, optional_float
from tickerd.exchanges.binance import GET_PROPERTY_KEEPALIVE, BinanceStreamsDecoder, Book, Merged, Statistics
from tickerd.model import Ticker

#: The stream kinds of each endpoint group; ``""`` is one connection carrying all of them.
_PUBLIC = ("bookTicker",)
_MARKET = ("ticker", "markPrice@1s")
_ALL = _PUBLIC + _MARKET


def native(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``BTCUSDT``, ``BTC/USDT:USDT-261225`` → ``BTCUSDT_261225``,
    ``BTC/USD:BTC`` → ``BTCUSD_PERP``: Binance's futures symbol, as payloads spell it (stream
    names use it in lower case).  Linear perpetuals have no suffix, inverse ones ``_PERP``."""
    parts = market(symbol)
    pair = parts.base + parts.quote
    if parts.expiry is not None:
        return f"{pair}_{parts.expiry}"
    return f"{pair}_PERP" if parts.inverse else pair


#: Mark price, index price, funding rate, next funding time: in :class:`Ticker`'s field order.
_Derivative = tuple[float | None, float | None, float | None, float | None]


class FuturesMerged(Merged):
    """Spot's record of one symbol plus its mark price, shared by the decoders of every
    connection that carries one of its streams; a frame of any kind refreshes it."""

    __slots__ = ("derivative",)

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.derivative: _Derivative = (None, None, None, None)


#: Native symbol → its merged record: what :meth:`BinanceFutures.merged_state` makes.
MergedState = dict[str, FuturesMerged]


class FuturesDecoder(BinanceStreamsDecoder):
    """Decodes raw ``/ws`` payloads of the streams ``kinds`` of one connection into the
    ``merged`` state it shares with the set's other connections."""

    merges = True
    #: The ``24hrTicker`` field holding the 24 h volume in the base asset.
    volume: ClassVar[str]

    def __init__(self, symbols: Iterable[str], kinds: tuple[str, ...], merged: MergedState) -> None:
        self._kinds = kinds
        self._merged = merged
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._merged.setdefault(native(symbol), FuturesMerged(symbol))

    def untrack(self, symbol: str) -> None:
        """Forget ``symbol``'s merged record too: it was removed, and a symbol added again
        must not start from its old statistics."""
        super().untrack(symbol)
        self._merged.pop(native(symbol), None)

    def streams(self, symbol: str) -> list[str]:
        name = native(symbol).lower()
        return [f"{name}@{kind}" for kind in self._kinds]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        event = msg.get("e")
        if event == "bookTicker":
            return self._book(msg)
        if event == "markPriceUpdate":
            return self._mark(msg)
        if event == "24hrTicker":
            return self._statistics(msg)
        if self._is_answer(msg):
            self._answer(msg)
            return []
        return self.junk_frame()

    def _book(self, msg: dict[str, Any]) -> list[Ticker]:
        """A ``bookTicker`` always carries ``u``, ``E``, ``b``, ``B``, ``a``, ``A``."""
        state = self._merged.get(msg["s"])
        if state is None:
            return []
        update_id = msg["u"]
        if update_id < state.update_id:
            return []  # an older book than the one merged (another connection's, during a rotation)
        book = float(msg["b"]), float(msg["a"]), float(msg["B"]), float(msg["A"])
        return self._ticker(
            state, update_id, book, state.last, state.statistics, state.derivative, msg["E"] / 1000.0
        )

    def _statistics(self, msg: dict[str, Any]) -> list[Ticker]:
        """A futures ``24hrTicker`` always carries the fields read here (and no best prices)."""
        state = self._merged.get(msg["s"])
        if state is None:
            return []
        statistics = (
            float(msg[self.volume]),
            float(msg["h"]),
            float(msg["l"]),
            float(msg["p"]),
            float(msg["P"]),
        )
        return self._ticker(
            state,
            state.update_id,
            state.book,
            float(msg["c"]),
            statistics,
            state.derivative,
            msg["E"] / 1000.0,
        )

    def _mark(self, msg: dict[str, Any]) -> list[Ticker]:
        """A ``markPriceUpdate`` always carries the mark ``p`` and index ``i``; a dated future's
        has no funding (``"r":""``, ``"T":0``).  ``T`` is in ms."""
        state = self._merged.get(msg["s"])
        if state is None:
            return []
        next_funding = msg.get("T")
        derivative = (
            float(msg["p"]),
            float(msg["i"]),
            optional_float(msg.get("r")),
            next_funding / 1000.0 if next_funding else None,
        )
        return self._ticker(
            state, state.update_id, state.book, state.last, state.statistics, derivative, msg["E"] / 1000.0
        )

    def _ticker(
        self,
        state: FuturesMerged,
        update_id: int,
        book: Book,
        last: float | None,
        statistics: Statistics,
        derivative: _Derivative,
        exchange_ts: float,
    ) -> list[Ticker]:
        """The ticker of the merged parts, kept in ``state`` only if it passes the sanity rule
        (a junk frame leaves the merged view as it was).  Built positionally, in
        :class:`Ticker`'s field order, as on spot: this runs for every frame."""
        ticker = Ticker(
            self.exchange,
            state.symbol,
            last,
            *book,
            *statistics,
            exchange_ts,
            time.time(),
            *derivative,
            None,
            update_id if update_id >= 0 else None,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.update_id, state.book, state.last = update_id, book, last
        state.statistics, state.derivative = statistics, derivative
        return [ticker]


class UsdmDecoder(FuturesDecoder):
    """USDⓈ-M: sizes and volume in the base asset."""

    exchange = "binance_usdm"
    #: ``v``: base asset (``q``: quote asset).
    volume = "v"


class CoinmDecoder(FuturesDecoder):
    """COIN-M: book sizes in contracts, volume read in the base asset."""

    exchange = "binance_coinm"
    #: ``q``: base asset (``v`` counts contracts, of the symbol's ``contractSize`` USD each).
    volume = "q"


class BinanceFutures(Exchange):
    """What USDⓈ-M and COIN-M share: the protocol, the merge, the limits."""

    decoder_class: ClassVar[type[FuturesDecoder]]
    #: The markets :meth:`serves`, in words, for the error that refuses another kind.
    markets: ClassVar[str]
    #: The stream kinds each endpoint group's connection subscribes.
    streams: ClassVar[dict[str, tuple[str, ...]]]
    #: Three streams a symbol at most: 600 of the 1024 a connection may carry.
    max_symbols_per_connection = 200
    max_lifetime = 23 * 3600.0
    #: A documented request with a small answer: it keeps a quiet ``bookTicker`` connection from
    #: looking dead between the server's pings, three minutes apart.  Id 0 is never a
    #: subscription's (:class:`BinanceStreamsDecoder`).
    keepalive = GET_PROPERTY_KEEPALIVE
    keepalive_note = "answers server ping frames"
    #: Binance allows 10 incoming messages a second, pongs included: stay well under it.
    send_interval = 0.25
    rejects_unknown = False
    dated_futures = True
    lacks = ("open_interest",)
    sequence_source = "`@bookTicker` `u` (order book update id)"

    @abc.abstractmethod
    def serves(self, parts: Market) -> bool:
        """Whether this venue lists markets of ``parts``' kind (linear or inverse)."""

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        if not self.serves(market(symbol)):
            raise ValueError(f"{symbol!r}: {self.name} serves {self.markets}")

    def endpoint(self, url: str, symbol: str, group: str = "") -> str:
        """``{url}/{group}/ws``, or ``{url}/ws`` for the one connection of no group."""
        return "/".join(part for part in (url.rstrip("/"), group, "ws") if part)

    def merged_state(self) -> MergedState:
        return {}

    def decoder(self, symbols: Iterable[str], group: str = "", merged: object = None) -> FuturesDecoder:
        shared = self.merged_state() if merged is None else cast(MergedState, merged)
        return self.decoder_class(symbols, self.streams[group], shared)


class BinanceUsdm(BinanceFutures):
    """Binance USDⓈ-M futures (linear, margined and settled in USDT or USDC)."""

    name = "binance_usdm"
    markets = "linear futures only (BASE/QUOTE:QUOTE, BASE/QUOTE:QUOTE-YYMMDD)"
    decoder_class = UsdmDecoder
    url = "wss://fstream.binance.com"
    groups = ("public", "market")
    #: ``""``: one decoder of every stream (tests and benchmarks; Binance serves only the
    #: ``/public`` ones on the unrouted ``/ws``).
    streams: ClassVar[dict[str, tuple[str, ...]]] = {"public": _PUBLIC, "market": _MARKET, "": _ALL}
    fake = "tickerd.testing.binance_futures:FakeBinanceUsdm"
    sample_symbols = ("BTC/USDT:USDT", "ETH/USDC:USDC", "BTC/USDT:USDT-261225")
    feeds = (
        "`/public` `@bookTicker` (real-time BBO) + `/market` `@ticker` (24 h stats) and "
        "`@markPrice@1s` (mark, index, funding): two connections merged into one record"
    )
    symbol_forms = (
        "`BTC/USDT:USDT` ↔ `BTCUSDT`, `BTC/USDC:USDC` ↔ `BTCUSDC` (perpetuals), "
        "`BTC/USDT:USDT-261225` ↔ `BTCUSDT_261225` (quarterly)"
    )
    lacks_note = "open interest is REST-only; quarterlies have no funding; `volume_24h` in the base asset"

    def serves(self, parts: Market) -> bool:
        return parts.settle == parts.quote


class BinanceCoinm(BinanceFutures):
    """Binance COIN-M futures (inverse, margined and settled in the base asset)."""

    name = "binance_coinm"
    markets = "inverse futures only (BASE/USD:BASE, BASE/USD:BASE-YYMMDD)"
    decoder_class = CoinmDecoder
    url = "wss://dstream.binance.com"
    streams: ClassVar[dict[str, tuple[str, ...]]] = {"": _ALL}
    fake = "tickerd.testing.binance_futures:FakeBinanceCoinm"
    sample_symbols = ("BTC/USD:BTC", "ETH/USD:ETH", "BTC/USD:BTC-261225")
    feeds = (
        "`@bookTicker` (real-time BBO) + `@ticker` (24 h stats) + `@markPrice@1s` (mark, index, "
        "funding), merged"
    )
    symbol_forms = (
        "`BTC/USD:BTC` ↔ `BTCUSD_PERP` (perpetual), `BTC/USD:BTC-261225` ↔ `BTCUSD_261225` (quarterly)"
    )
    lacks_note = (
        "open interest is REST-only; quarterlies have no funding; `volume_24h` in the base asset "
        "(`q`), bid/ask sizes in contracts"
    )

    def serves(self, parts: Market) -> bool:
        return parts.quote == "USD" and parts.settle == parts.base
