"""Upbit (KRW, BTC and USDT markets): the ``ticker`` and ``orderbook`` types, merged.

Grounded in Upbit's official documentation: "WebSocket 사용 및 에러 안내"
(https://docs.upbit.com/kr/reference/websocket-guide: request format, error shape),
"현재가 (Ticker)" (https://docs.upbit.com/kr/reference/websocket-ticker), "호가 (Orderbook)"
(https://global-docs.upbit.com/reference/websocket-orderbook: the ``{code}.{count}`` units) and
"연결 관리" / Connection Management (https://docs-e.upbit.com/reference/connection: idle timeout
and ``PING``).

Why it looks the way it does:

* A request is one JSON array: a ``ticket``, one object per data type (``type`` + ``codes``), a
  ``format``.  Upbit keeps no per-code subscriptions: a new request *replaces* the connection's
  whole subscription set.  A live add or remove therefore resends the whole set the decoder
  still tracks; removing the last symbol sends nothing (a request without codes is refused,
  ``NO_CODES``), the decoder having stopped accepting its frames already.
* ``ticker`` carries the last trade and the statistics but no book; ``orderbook`` (asked for
  with one unit, ``KRW-BTC.1``) carries the best bid and ask with their sizes.  Both are kept
  per symbol and merged, so each frame of either kind yields one complete ticker.
* Data frames are binary websocket frames holding JSON (``DEFAULT`` format: the documented
  field names; ``SIMPLE`` would only shorten the keys).
* No request is acknowledged, and an unknown code is ignored silently: a symbol counts as
  subscribed with its first frame (the snapshot that follows every request), and an unknown one
  waits, then shows as stale.  Errors (``{"error":{"name":…}}``) name no code; they are junk.
* Upbit closes a connection on which nothing was sent or received for 120 s.  The client
  sends the text message ``PING``, which the server answers with ``{"status":"UP"}``.
* ``high_price``/``low_price`` and ``signed_change_*`` are the day's (since 00:00 KST, against
  the previous close), not a rolling 24 h; ``acc_trade_volume_24h`` is rolling 24 h.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import Decoder, Exchange, Keepalive, Subscribed
from tickerd.model import Ticker


def native(symbol: str) -> str:
    """``BTC/KRW`` → ``KRW-BTC``: Upbit writes the quote (the market) first."""
    base, _, quote = symbol.partition("/")
    return f"{quote}-{base}"


def unified(code: str) -> str:
    """``KRW-BTC`` → ``BTC/KRW``."""
    quote, _, base = code.partition("-")
    return f"{base}/{quote}"


#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order.
Book = tuple[float | None, float | None, float | None, float | None]
#: Last, then 24 h volume, high, low, change, change percent, exchange time: the Ticker's order.
Statistics = tuple[
    float | None, float | None, float | None, float | None, float | None, float | None, float | None
]
_NO_BOOK: Book = (None, None, None, None)
_NO_STATISTICS: Statistics = (None, None, None, None, None, None, None)


class _Merged:
    """The latest book and statistics of one symbol, parsed; ``seen`` once its first frame came."""

    __slots__ = ("book", "seen", "statistics", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.seen = False
        self.book: Book = _NO_BOOK
        self.statistics: Statistics = _NO_STATISTICS


class UpbitDecoder(Decoder):
    """Decodes ``ticker`` and ``orderbook`` frames; every request names the whole set."""

    exchange = "upbit"
    merges = True
    derivatives = False

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_code: dict[str, _Merged] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_code.setdefault(native(symbol), _Merged(symbol))

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_code.pop(native(symbol), None)

    def _request(self) -> list[str]:
        """The one request that subscribes everything tracked (Upbit replaces the set)."""
        if not self._by_code:
            return []
        codes = sorted(self._by_code)
        request = [
            {"ticket": "tickerd"},
            {"type": "ticker", "codes": codes},
            {"type": "orderbook", "codes": [f"{code}.1" for code in codes]},
            {"format": "DEFAULT"},
        ]
        return [orjson.dumps(request).decode()]

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._request()

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._request()

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        kind = msg.get("type")
        if kind == "orderbook":
            return self._book(msg)
        if kind == "ticker":
            return self._statistics(msg)
        if msg.get("status") == "UP":
            return []  # the answer to PING
        if "error" in msg:
            error = msg["error"]
            return self.junk_frame(f"Upbit error {error.get('name')}: {error.get('message')}")
        return self.junk_frame()

    def _book(self, msg: dict[str, Any]) -> list[Ticker]:
        """The best level is the first unit; an orderbook always has its four fields."""
        state = self._by_code.get(msg["code"])
        if state is None:
            return []
        best = msg["orderbook_units"][0]
        book = (
            float(best["bid_price"]),
            float(best["ask_price"]),
            float(best["bid_size"]),
            float(best["ask_size"]),
        )
        return self._merged(state, book, state.statistics)

    def _statistics(self, msg: dict[str, Any]) -> list[Ticker]:
        """Every ticker frame carries the fields read here: without one the frame is junk."""
        state = self._by_code.get(msg["code"])
        if state is None:
            return []
        statistics = (
            float(msg["trade_price"]),
            float(msg["acc_trade_volume_24h"]),
            float(msg["high_price"]),
            float(msg["low_price"]),
            float(msg["signed_change_price"]),
            float(msg["signed_change_rate"]) * 100.0,  # a fraction: 0.0211 is 2.11 %
            msg["timestamp"] / 1000.0,
        )
        return self._merged(state, state.book, statistics)

    def _merged(self, state: _Merged, book: Book, statistics: Statistics) -> list[Ticker]:
        """The ticker of ``book`` and ``statistics``, kept in ``state`` only if it passes the
        sanity rule (a junk frame leaves the merged view as it was); built positionally."""
        last, volume, high, low, change, change_pct, exchange_ts = statistics
        ticker = Ticker(
            "upbit",
            state.symbol,
            last,
            *book,
            volume,
            high,
            low,
            change,
            change_pct,
            exchange_ts,
            time.time(),
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.book, state.statistics = book, statistics
        if not state.seen:  # Upbit acknowledges nothing: the first frame is the confirmation
            state.seen = True
            self.events.append(Subscribed(state.symbol))
        return [ticker]


class Upbit(Exchange):
    """Upbit spot; unified ``BTC/KRW`` ↔ code ``KRW-BTC`` (KRW, BTC and USDT markets)."""

    name = "upbit"
    decoder_class = UpbitDecoder
    spot_only = True
    rejects_unknown = False
    fake = "tickerd.testing.upbit:FakeUpbit"
    sample_symbols = ("BTC/KRW", "ETH/KRW", "BTC/USDT")
    feeds = "`ticker` + `orderbook` (one unit), merged; binary JSON frames"
    symbol_forms = "`BTC/KRW` ↔ `KRW-BTC` (quote first)"
    keepalive_note = "Upbit closes connections idle for 120 s"
    lacks_note = "24 h high, low and change are the day's (since 00:00 KST)"
    url = "wss://api.upbit.com/websocket/v1"
    #: Not documented; every live change resends the whole set, so sets stay moderate.
    max_symbols_per_connection = 100
    #: Upbit allows 5 data requests a second and 100 a minute on a connection ("Request Rate
    #: Limit", https://docs-e.upbit.com/docs/user-request-guide): stay under both.
    send_interval = 0.7
    #: The text ``PING`` keeps the connection inside Upbit's 120 s idle timeout.
    keepalive = Keepalive(interval=20.0, frame="PING")
    lacks = ("sequence",)
