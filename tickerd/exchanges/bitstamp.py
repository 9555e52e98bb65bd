"""Bitstamp WebSocket v2: ``order_book_{pair}`` and ``live_trades_{pair}`` merged into tickers.

Bitstamp has no ticker channel.  The best bid/ask with their sizes come from the top levels
of ``order_book`` (every message is a full top-100 snapshot), the last price from
``live_trades``; the decoder keeps both per symbol and every frame of either kind yields one
complete Ticker, so a book update keeps the last trade price and a trade keeps the book.
24 h statistics exist only over REST, so the feed leaves them ``None``.

Control:

* Subscriptions are one channel per message.  ``bts:subscription_succeeded`` names its
  channel; a symbol is confirmed once both its channels are.  ``bts:error`` comes with an
  empty ``channel`` and does not say which request failed, so it is blamed on the oldest
  subscription still unanswered (Bitstamp answers a connection's requests in order).
* ``bts:request_reconnect`` asks the client to move to a new connection (the server closes
  the old one soon after): it becomes :class:`ReconnectRequested`, which the loop handles
  make-before-break.
* Quiet pairs can go minutes without a trade or book change, so the client sends
  ``bts:heartbeat`` (answered by the server) to keep frames flowing for the silence
  watchdog.  Bitstamp ends every connection after 90 days; the loop rotates it before that.
"""

from __future__ import annotations

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
    Subscribed,
)
from tickerd.model import Ticker

_BOOK = "order_book_"
_TRADES = "live_trades_"


def native(symbol: str) -> str:
    """``BTC/USD`` → ``btcusd``, the pair name in Bitstamp's channel names."""
    return symbol.replace("/", "").lower()


#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order (see ``_merged``).
_Book = tuple[float | None, float | None, float | None, float | None]


class _Merged:
    """The latest top of book and last trade of one symbol."""

    __slots__ = ("book", "confirmed", "last", "rejected", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book: _Book = (None, None, None, None)
        self.last: float | None = None
        #: Channels of this symbol the server confirmed (by prefix).
        self.confirmed: set[str] = set()
        #: Whether a refusal was reported already (both channels of a bad pair fail).
        self.rejected = False


def _micros(data: dict[str, Any]) -> float | None:
    """Bitstamp stamps frames with ``microtimestamp`` (µs, a string) and ``timestamp`` (s)."""
    if data.get("microtimestamp"):
        return int(data["microtimestamp"]) / 1e6
    if data.get("timestamp"):
        return float(data["timestamp"])
    return None


class BitstampDecoder(Decoder):
    """Merges ``order_book`` and ``live_trades`` frames per pair; tracks channel acks."""

    exchange = "bitstamp"
    derivatives = False
    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_native: dict[str, _Merged] = {}
        #: Subscribe requests not answered yet, oldest first (errors are blamed in order).
        self._pending: list[str] = []
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_native.setdefault(native(symbol), _Merged(symbol))

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_native.pop(native(symbol), None)

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        channels = [prefix + native(s) for s in symbols for prefix in (_BOOK, _TRADES)]
        self._pending.extend(channels)
        return [self._request("bts:subscribe", channel) for channel in channels]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("bts:unsubscribe", p + native(s)) for s in symbols for p in (_BOOK, _TRADES)]

    @staticmethod
    def _request(event: str, channel: str) -> str:
        return orjson.dumps({"event": event, "data": {"channel": channel}}).decode()

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        event = msg["event"]
        channel: str = msg.get("channel") or ""
        if event == "data" and channel.startswith(_BOOK):
            return self._book(channel.removeprefix(_BOOK), msg["data"])
        if event == "trade" and channel.startswith(_TRADES):
            return self._trade(channel.removeprefix(_TRADES), msg["data"])
        if event == "bts:subscription_succeeded":
            self._succeeded(channel)
            return []
        if event == "bts:error":
            self._failed(channel, msg.get("data") or {})
            return []
        if event == "bts:request_reconnect":
            self.events.append(ReconnectRequested("bts:request_reconnect"))
            return []
        if event in ("bts:heartbeat", "bts:unsubscription_succeeded", "bts:connection_established"):
            return []
        return self.junk_frame()

    def _book(self, pair: str, data: dict[str, Any]) -> list[Ticker]:
        """An ``order_book`` message always carries ``bids`` and ``asks`` (an empty side has no
        orders)."""
        state = self._by_native.get(pair)
        if state is None:
            return []
        bids, asks = data["bids"], data["asks"]
        bid, bid_size = (float(bids[0][0]), float(bids[0][1])) if bids else (None, None)
        ask, ask_size = (float(asks[0][0]), float(asks[0][1])) if asks else (None, None)
        return self._merged(state, state.last, (bid, ask, bid_size, ask_size), _micros(data))

    def _trade(self, pair: str, data: dict[str, Any]) -> list[Ticker]:
        """A trade always carries its price."""
        state = self._by_native.get(pair)
        if state is None:
            return []
        return self._merged(state, float(data.get("price_str") or data["price"]), state.book, _micros(data))

    def _merged(
        self, state: _Merged, last: float | None, book: _Book, exchange_ts: float | None
    ) -> list[Ticker]:
        """The ticker of ``last`` and ``book``, kept in ``state`` only if it passes the sanity
        rule (a junk frame leaves the merged view as it was).  Built positionally, in the
        Ticker's field order: fewer keyword arguments pay for the check on every frame."""
        ticker = Ticker(
            "bitstamp", state.symbol, last, *book, None, None, None, None, None, exchange_ts, time.time()
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.last, state.book = last, book
        return [ticker]

    def _succeeded(self, channel: str) -> None:
        if channel in self._pending:
            self._pending.remove(channel)
        for prefix in (_BOOK, _TRADES):
            if channel.startswith(prefix):
                state = self._by_native.get(channel.removeprefix(prefix))
                if state is None:
                    return
                state.confirmed.add(prefix)
                if len(state.confirmed) == 2:
                    self.events.append(Subscribed(state.symbol))

    def _failed(self, channel: str, data: dict[str, Any]) -> None:
        """Blame the channel the error names, else the oldest unanswered request."""
        if channel not in self._pending:
            if not self._pending:
                return  # an error about no subscription (a malformed heartbeat, say)
            channel = self._pending[0]
        self._pending.remove(channel)
        pair = channel.removeprefix(_BOOK).removeprefix(_TRADES)
        state = self._by_native.get(pair)
        if state is None or state.rejected:
            return  # untracked meanwhile, or its other channel already reported it
        state.rejected = True
        reason = data.get("message") or f"code {data.get('code')}"
        self.events.append(Rejected(state.symbol, f"{channel}: {reason}"))


class Bitstamp(Exchange):
    """Bitstamp spot; unified ``BTC/USD`` ↔ pair ``btcusd`` (channels ``order_book_btcusd``…)."""

    name = "bitstamp"
    decoder_class = BitstampDecoder
    spot_only = True
    fake = "tickerd.testing.bitstamp:FakeBitstamp"
    sample_symbols = ("BTC/USD", "ETH/EUR")
    feeds = "`order_book_{pair}` (best bid/ask + sizes) + `live_trades_{pair}` (last), merged"
    symbol_forms = "`BTC/USD` ↔ `btcusd` (spot)"
    lacks_note = "no 24 h stats on the websocket"
    url = "wss://ws.bitstamp.net"
    #: Two channels a symbol, and each ``order_book`` message is a top-100 snapshot: a
    #: moderate count keeps one connection's traffic (and a reconnect's cost) small.
    #: Bitstamp documents no per-connection limit.
    max_symbols_per_connection = 20
    #: Bitstamp ends connections at 90 days; rotate a day before.
    max_lifetime = 89 * 86400.0
    keepalive = Keepalive(interval=10.0, frame='{"event":"bts:heartbeat"}')
    reconnect_request = True
    #: No documented inbound limit; pacing keeps a 40-channel subscribe burst to 2 s.
    send_interval = 0.05
    lacks = ("volume_24h", "high_24h", "low_24h", "change_24h", "change_pct_24h", "sequence")
