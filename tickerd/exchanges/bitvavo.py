"""Bitvavo spot: the ``ticker`` channel (best bid/ask with sizes, last) merged with ``ticker24h``.

Grounded in Bitvavo's WebSocket API documentation: *API structure*
(https://docs.bitvavo.com/docs/websocket-overview: ``wss://ws.bitvavo.com/v2/``, actions and
channels), *Ticker subscription* (https://docs.bitvavo.com/docs/websocket-api/ticker-subscription),
*Ticker 24 hour subscription*
(https://docs.bitvavo.com/docs/websocket-api/ticker-24-hour-subscription) and *Handle errors*
(https://docs.bitvavo.com/docs/errors).

* One ``{"action":"subscribe","channels":[{"name":"ticker","markets":[…]},
  {"name":"ticker24h","markets":[…]}]}`` subscribes a batch of markets to both channels; the
  answer, ``{"event":"subscribed","subscriptions":{…}}``, lists *every* subscription of the
  connection, so a batch's symbols are confirmed when both channels list them.  Answers carry
  no request id: they come in the order of the requests, and are matched to them in turn.
* A market Bitvavo does not list is refused with error 205 ("Invalid parameter value", per the
  errors page); on the wire the answer names it:
  ``{"action":"subscribe","errorCode":205,"error":"market parameter NOPE-EUR is invalid."}``
  (the errors page shows WebSocket errors as ``{"event":"error",…}``, without ``action``:
  both are read).  The named market is rejected and the rest of its batch subscribed again, as
  if the refusal were of the whole request (should Bitvavo have kept the others, subscribing
  them again is harmless: a repeated subscription is acknowledged, with no duplicate events).
  An error naming none of the batch's markets is retried market by market, as Binance's are.
  A halted market is accepted and never served: it goes stale.
* ``ticker`` frames carry only the fields that changed: the bid and its size, the ask and its
  size, or ``lastPrice`` alone, most of the time (the documentation's example shows them all).
  The decoder keeps each symbol's latest values and merges every frame into them.
* ``ticker24h`` comes every second.  The documentation shows ``data`` as one object; the
  server sends a list of them (as client libraries, go-bitvavo and ccxt, read it), so both
  are accepted.
  Its ``bid``/``ask`` fill the book only until ``ticker`` has sent it; the 24 h change is
  ``last - open``, which Bitvavo does not send.
* Keepalive: undocumented; the server sends protocol pings (every 50 s, observed), which the
  transport answers, but 50 s is longer than the silence watchdog waits, and ``ticker`` is
  quiet while a market's book does not move.  ``ticker24h`` is documented as sent every second;
  the adapter does not rely on that for a quiet market and sends the ``getTime`` action every
  25 s (one weight point), whose answer proves the connection alive.  No connection lifetime
  or reconnect request is documented.

Inbound limits: 1000 weight points a minute per IP (a subscription costs one, whatever the
number of markets) and 5000 messages a second a connection.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import Decoder, Exchange, Keepalive, Rejected, Reply, Subscribed, chunks
from tickerd.model import Ticker

#: Markets per subscribe request: one request costs one weight point whatever it carries, and
#: Bitvavo acknowledged 437 markets in one; 100 keeps a refused batch's retries small.
_PER_REQUEST = 100
_CHANNELS = ("ticker", "ticker24h")


def native(symbol: str) -> str:
    """``BTC/EUR`` → ``BTC-EUR``."""
    return symbol.replace("/", "-")


class _Merged:
    """The latest values of one market: ``ticker`` updates some, ``ticker24h`` the others."""

    __slots__ = (
        "ask",
        "ask_size",
        "bid",
        "bid_size",
        "booked",
        "change",
        "change_pct",
        "high",
        "last",
        "low",
        "symbol",
        "volume",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        #: ``ticker`` has sent a side of the book: ``ticker24h``'s (older) best prices no longer do.
        self.booked = False
        self.bid: float | None = None
        self.ask: float | None = None
        self.bid_size: float | None = None
        self.ask_size: float | None = None
        self.last: float | None = None
        self.volume: float | None = None
        self.high: float | None = None
        self.low: float | None = None
        self.change: float | None = None
        self.change_pct: float | None = None


class BitvavoDecoder(Decoder):
    """Decodes ``ticker`` and ``ticker24h`` events, subscription answers and errors."""

    exchange = "bitvavo"
    merges = True
    derivatives = False

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_native: dict[str, _Merged] = {}
        #: The batches of subscribe requests not yet answered, oldest first.
        self._pending: collections.deque[tuple[str, ...]] = collections.deque()
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_native.setdefault(native(symbol), _Merged(symbol))

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_native.pop(native(symbol), None)

    def _request(self, action: str, symbols: Sequence[str]) -> str:
        markets = [native(symbol) for symbol in symbols]
        channels = [{"name": name, "markets": markets} for name in _CHANNELS]
        return orjson.dumps({"action": action, "channels": channels}).decode()

    def _subscribe_request(self, symbols: Sequence[str]) -> str:
        self._pending.append(tuple(symbols))
        return self._request("subscribe", symbols)

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._subscribe_request(part) for part in chunks(symbols, _PER_REQUEST)]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("unsubscribe", part) for part in chunks(symbols, _PER_REQUEST)]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        event = msg.get("event")
        if event == "ticker":
            return self._ticker(msg)
        if event == "ticker24h":
            return self._statistics(msg["data"])
        if event == "subscribed":
            self._confirm(msg["subscriptions"])
            return []
        if event == "unsubscribed":
            return []
        if "errorCode" in msg:
            return self._error(msg)
        if msg.get("action") == "getTime":
            return []  # the keepalive's answer
        return self.junk_frame()

    def _ticker(self, msg: dict[str, Any]) -> list[Ticker]:
        """A ``ticker`` event always names its market; the rest is whatever changed."""
        state = self._by_native.get(msg["market"])
        if state is None:
            return []
        bid, ask, bid_size, ask_size = state.bid, state.ask, state.bid_size, state.ask_size
        booked = state.booked
        if (value := msg.get("bestBid")) is not None:
            bid, bid_size, booked = float(value), float(msg["bestBidSize"]), True
        if (value := msg.get("bestAsk")) is not None:
            ask, ask_size, booked = float(value), float(msg["bestAskSize"]), True
        last = state.last if (value := msg.get("lastPrice")) is None else float(value)
        ticker = Ticker(
            "bitvavo",
            state.symbol,
            last,
            bid,
            ask,
            bid_size,
            ask_size,
            state.volume,
            state.high,
            state.low,
            state.change,
            state.change_pct,
            None,  # ``ticker`` events carry no time
            time.time(),
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.bid, state.ask, state.bid_size, state.ask_size = bid, ask, bid_size, ask_size
        state.last, state.booked = last, booked
        return [ticker]

    def _statistics(self, data: list[dict[str, Any]] | dict[str, Any]) -> list[Ticker]:
        """``ticker24h``'s ``data``: a list of markets on the wire, one object in the docs.
        Values a market lacks (no trade in 24 h) come as ``null`` or ``""``: ``None``."""
        tickers = []
        items = data if isinstance(data, list) else [data]
        for item in items:
            state = self._by_native.get(item["market"])
            if state is None:
                continue
            if state.booked:
                bid, ask, bid_size, ask_size = state.bid, state.ask, state.bid_size, state.ask_size
            else:
                bid = float(v) if (v := item.get("bid")) else None
                ask = float(v) if (v := item.get("ask")) else None
                bid_size = float(v) if (v := item.get("bidSize")) else None
                ask_size = float(v) if (v := item.get("askSize")) else None
            last = float(v) if (v := item.get("last")) else None
            open_ = float(v) if (v := item.get("open")) else None
            change = change_pct = None
            if last is not None and open_:
                change = last - open_
                change_pct = change / open_ * 100.0
            ticker = Ticker(
                "bitvavo",
                state.symbol,
                last,
                bid,
                ask,
                bid_size,
                ask_size,
                float(v) if (v := item.get("volume")) else None,
                float(v) if (v := item.get("high")) else None,
                float(v) if (v := item.get("low")) else None,
                change,
                change_pct,
                item["timestamp"] / 1000.0,
                time.time(),
            )
            if (reason := self.flaw(ticker)) is not None:
                self.junk_frame(reason)  # this market's values stay; the others' go on
                continue
            state.bid, state.ask, state.bid_size, state.ask_size = bid, ask, bid_size, ask_size
            state.last, state.volume, state.high, state.low = (
                last,
                ticker.volume_24h,
                ticker.high_24h,
                ticker.low_24h,
            )
            state.change, state.change_pct = change, change_pct
            tickers.append(ticker)
        return tickers

    def _confirm(self, subscriptions: dict[str, list[str]]) -> None:
        """The oldest pending batch is answered: its symbols both channels now list are
        confirmed (the answer lists the connection's every subscription)."""
        if not self._pending:
            return
        asked = self._pending.popleft()
        served = set(subscriptions.get("ticker", ())).intersection(subscriptions.get("ticker24h", ()))
        self.events.extend(
            Subscribed(symbol) for symbol in asked if symbol in self.symbols and native(symbol) in served
        )

    def _error(self, msg: dict[str, Any]) -> list[Ticker]:
        """A refused subscribe answers the oldest pending batch: reject the market it names and
        subscribe the rest again, or retry the batch market by market when it names none.

        The wire echoes ``"action":"subscribe"``; the errors page shows WebSocket errors as
        ``{"event":"error",…}`` without it, so an error naming a market of the oldest batch
        counts as its answer too.
        """
        action = msg.get("action")
        if action == "unsubscribe":
            return []  # nothing to undo: the symbol is already untracked
        reason = f"{msg['errorCode']}: {msg.get('error')}"
        asked = [symbol for symbol in self._pending[0] if symbol in self.symbols] if self._pending else []
        text = f" {msg.get('error')} "
        named = [symbol for symbol in asked if f" {native(symbol)} " in text]
        if not self._pending or (action != "subscribe" and not named):
            return self.junk_frame(f"error answer {reason}")
        self._pending.popleft()
        if named or len(asked) == 1:
            bad = named[0] if named else asked[0]
            self.events.append(Rejected(bad, reason))
            rest = [symbol for symbol in asked if symbol != bad]
            if rest:
                self.events.append(Reply(self._subscribe_request(rest)))
            return []
        self.events.extend(Reply(self._subscribe_request([symbol])) for symbol in asked)
        return []


class Bitvavo(Exchange):
    """Bitvavo spot; unified ``BTC/EUR`` ↔ native ``BTC-EUR``."""

    name = "bitvavo"
    decoder_class = BitvavoDecoder
    spot_only = True
    fake = "tickerd.testing.bitvavo:FakeBitvavo"
    sample_symbols = ("BTC/EUR", "ETH/EUR")
    feeds = "`ticker` (best bid/ask + sizes, last; changed fields only) + `ticker24h` (24 h stats), merged"
    symbol_forms = "`BTC/EUR` ↔ `BTC-EUR` (spot)"
    keepalive = Keepalive(interval=25.0, frame='{"action":"getTime"}')
    keepalive_note = "answers server ping frames (every 50 s, undocumented)"
    lacks_note = "24 h change derived from `open`; `ticker` updates carry no exchange time"
    url = "wss://ws.bitvavo.com/v2/"
    #: No documented limit; one connection was seen carrying all 437 markets.  A moderate count
    #: keeps a reconnect's resubscription (and its cost in weight points) small.
    max_symbols_per_connection = 200
    #: 1000 weight points a minute per IP; a subscribe request costs one.
    send_interval = 0.1
    lacks = ("sequence",)
