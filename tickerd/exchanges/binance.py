"""Binance spot: ``@bookTicker`` (real-time best bid/ask) merged with ``@ticker`` (24 h stats).

Each update of either stream produces one complete Ticker: the decoder keeps the latest book
and the latest statistics per symbol and merges them.  Streams are subscribed with live
``SUBSCRIBE`` requests on the raw ``/ws`` endpoint, so a symbol added to a running connection
needs no reconnect.  Binance accepts unknown symbols silently; a request it refuses
(``{"code":…,"msg":…,"id":…}``) is split and retried symbol by symbol so that only the bad
symbol is reported.  Binance closes every connection at the 24 h mark; ``max_lifetime``
makes the loop rotate it earlier, make-before-break.

That request protocol is the same on every Binance market-stream websocket (spot here, USDⓈ-M
and COIN-M futures in :mod:`tickerd.exchanges.binance_futures`), so it lives in one place,
:class:`BinanceStreamsDecoder`.
"""

from __future__ import annotations

import abc
import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Keepalive,
    ReconnectRequested,
    Rejected,
    Reply,
    Subscribed,
    chunks,
)
from tickerd.model import Ticker

#: Symbols per SUBSCRIBE request (two streams each); Binance allows 1024 streams a connection.
_PER_REQUEST = 100


#: A keepalive for Binance servers that ping only every 3 minutes (futures, Binance.US): a
#: documented request with a small answer every 20 s, so a quiet connection keeps proving itself
#: alive to the silence watchdog.  Id 0 is never a subscription's (those count from 1).
GET_PROPERTY_KEEPALIVE = Keepalive(
    interval=20.0, frame='{"method":"GET_PROPERTY","params":["combined"],"id":0}'
)


def native(symbol: str) -> str:
    """``BTC/USDT`` → ``btcusdt``, the lowercase form stream names use."""
    return symbol.replace("/", "").lower()


#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order (see ``_merged``).
Book = tuple[float | None, float | None, float | None, float | None]
#: 24 h volume, high, low, change, change percent: in :class:`Ticker`'s field order.
Statistics = tuple[float | None, float | None, float | None, float | None, float | None]


class Merged:
    """The latest book and statistics of one symbol; a frame of either kind refreshes it.

    The statistics are kept parsed: book frames, by far the most frequent, then build their
    Ticker from floats already at hand.  The futures adapters' record extends it.
    """

    __slots__ = ("book", "last", "statistics", "symbol", "update_id")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.update_id = -1
        self.book: Book = (None, None, None, None)
        self.last: float | None = None
        self.statistics: Statistics = (None, None, None, None, None)


class BinanceStreamsDecoder(Decoder):
    """The request side of every Binance market-stream websocket: live ``SUBSCRIBE`` and
    ``UNSUBSCRIBE`` requests carrying an id, ``{"result":null,"id":…}`` acknowledging them, and
    a refused request (``{"code":…,"msg":…,"id":…}``) split and retried symbol by symbol, since
    a refusal does not say which stream was bad.

    Subclasses name a symbol's streams on their connection (:meth:`streams`) and hand every
    answer (:meth:`_is_answer`) to :meth:`_answer`.  Request ids start at 1, so a constant
    request with id 0 (a keepalive) never matches one of them.
    """

    def __init__(self, symbols: Iterable[str]) -> None:
        self._ids = itertools.count(1)
        self._requests: dict[int, tuple[str, ...]] = {}
        super().__init__(symbols)

    @abc.abstractmethod
    def streams(self, symbol: str) -> list[str]:
        """The stream names (``btcusdt@bookTicker``) that carry ``symbol`` on this connection."""

    def _request(self, method: str, symbols: Sequence[str]) -> str:
        request_id = next(self._ids)
        self._requests[request_id] = tuple(symbols)
        streams = [stream for symbol in symbols for stream in self.streams(symbol)]
        return orjson.dumps({"method": method, "params": streams, "id": request_id}).decode()

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("SUBSCRIBE", part) for part in chunks(symbols, _PER_REQUEST)]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("UNSUBSCRIBE", part) for part in chunks(symbols, _PER_REQUEST)]

    @staticmethod
    def _is_answer(msg: dict[str, Any]) -> bool:
        """Whether ``msg`` answers a request (an ack or a refusal) rather than carrying data."""
        return "id" in msg and ("result" in msg or "code" in msg)

    def _answer(self, msg: dict[str, Any]) -> None:
        """Report the symbols an ack confirms, or retry a refused batch one symbol at a time and
        reject a symbol refused on its own."""
        asked = self._requests.pop(msg["id"], ())
        if "code" not in msg:
            self.events.extend(Subscribed(symbol) for symbol in asked if symbol in self.symbols)
            return
        if len(asked) == 1:
            self.events.append(Rejected(asked[0], f"{msg.get('code')}: {msg.get('msg')}"))
            return
        self.events.extend(
            Reply(self._request("SUBSCRIBE", [symbol])) for symbol in asked if symbol in self.symbols
        )


class BinanceDecoder(BinanceStreamsDecoder):
    """Decodes raw ``/ws`` payloads of ``@bookTicker`` and ``@ticker``."""

    exchange = "binance"
    merges = True
    derivatives = False

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_native: dict[str, Merged] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_native.setdefault(native(symbol).upper(), Merged(symbol))

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_native.pop(native(symbol).upper(), None)

    def streams(self, symbol: str) -> list[str]:
        name = native(symbol)
        return [f"{name}@bookTicker", f"{name}@ticker"]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        if "u" in msg and "e" not in msg:
            return self._book(msg)
        event = msg.get("e")
        if event == "24hrTicker":
            return self._statistics(msg)
        if event == "serverShutdown":
            self.events.append(ReconnectRequested("serverShutdown"))
            return []
        if self._is_answer(msg):
            self._answer(msg)
            return []
        return self.junk_frame()

    def _book(self, msg: dict[str, Any]) -> list[Ticker]:
        """A ``@bookTicker`` always carries ``u``, ``b``, ``B``, ``a``, ``A``: without one the
        frame is junk."""
        state = self._by_native.get(msg["s"])
        if state is None:
            return []
        update_id = msg["u"]
        if update_id < state.update_id:
            return []  # an older book than the one already merged
        book = float(msg["b"]), float(msg["a"]), float(msg["B"]), float(msg["A"])
        return self._merged(state, update_id, book, state.last, state.statistics, None)

    def _statistics(self, msg: dict[str, Any]) -> list[Ticker]:
        """A spot ``@ticker`` always carries the fields read here (its own best prices are
        read only until the first book arrives): without one the frame is junk."""
        state = self._by_native.get(msg["s"])
        if state is None:
            return []
        book = state.book
        if state.update_id < 0:  # no book yet: the ticker's own best prices will do
            book = float(msg["b"]), float(msg["a"]), float(msg["B"]), float(msg["A"])
        statistics = float(msg["v"]), float(msg["h"]), float(msg["l"]), float(msg["p"]), float(msg["P"])
        return self._merged(state, state.update_id, book, float(msg["c"]), statistics, msg["E"] / 1000.0)

    def _merged(
        self,
        state: Merged,
        update_id: int,
        book: Book,
        last: float | None,
        statistics: Statistics,
        exchange_ts: float | None,
    ) -> list[Ticker]:
        """The ticker of ``book`` and ``statistics``, kept in ``state`` only if it passes the
        sanity rule (a junk frame leaves the merged view as it was).

        The Ticker is built positionally from the tuples, in its field order, the derivative
        fields spot never has included: this runs for every frame, and fourteen keyword
        arguments cost more than the sanity check (the one keyword ``sequence=`` alone costs
        ~0.2 µs, four times the five ``None``).
        """
        ticker = Ticker(
            self.exchange,
            state.symbol,
            last,
            *book,
            *statistics,
            exchange_ts,
            time.time(),
            None,  # mark_price … open_interest: spot has none
            None,
            None,
            None,
            None,
            update_id if update_id >= 0 else None,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.update_id, state.book, state.last, state.statistics = update_id, book, last, statistics
        return [ticker]


class Binance(Exchange):
    """Binance spot; unified ``BTC/USDT`` ↔ native ``BTCUSDT``."""

    name = "binance"
    decoder_class = BinanceDecoder
    spot_only = True
    fake = "tickerd.testing.binance:FakeBinance"
    sample_symbols = ("BTC/USDT", "ETH/USDT")
    feeds = "spot `@bookTicker` (real-time BBO) + `@ticker` (24 h stats), merged"
    symbol_forms = "`BTC/USDT` ↔ `BTCUSDT` (spot)"
    keepalive_note = "answers server ping frames"
    lacks_note = "book-only updates carry no exchange time"
    sequence_source = "`@bookTicker` `u` (order book update id)"
    url = "wss://stream.binance.com:9443/ws"
    max_symbols_per_connection = 200
    max_lifetime = 23 * 3600.0
    rejects_unknown = False
    reconnect_request = True
    #: Binance allows 5 inbound messages a second, pongs included: stay well under it.
    send_interval = 0.5
