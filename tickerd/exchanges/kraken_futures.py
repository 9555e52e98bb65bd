"""Kraken Futures (``wss://futures.kraken.com/ws/v1``), the public ``ticker`` feed.

Grounded in Kraken's documentation: the ticker feed
(https://docs.kraken.com/api/docs/futures-api/websocket/ticker), the heartbeat feed
(https://docs.kraken.com/api/docs/futures-api/websocket/heartbeat), the websocket guide
(https://docs.kraken.com/api/docs/guides/futures-websockets) and the contract specifications
on support.kraken.com (perpetuals, fixed maturities, funding).

Protocol.  The server greets with ``{"event":"info","version":1}``.  A subscription is
``{"event":"subscribe","feed":"ticker","product_ids":[…]}``, answered by ``subscribed`` (or
``subscribed_failed``) echoing the product ids; an invalid one is answered by
``{"event":"error","message":"Invalid product id"}``, which names no product.  So the adapter
subscribes one product per request and blames an error on the oldest request still unanswered:
the server answers a connection's requests in order.  Every ticker message is a full object
("values for all fields even if only a single field has changed"), at most one a second per
product, so no merging is needed.  The ticker message carries no sequence number (the ``book``
and ``trade`` feeds have ``seq``; the ticker has none).

Keepalive.  Kraken closes a connection that sends nothing for 60 s ("make a ping request at
least every 60 seconds"); its sample implementation sends websocket protocol pings every 30 s,
and a JSON ``{"event":"ping"}`` is not part of the protocol.  tickerd's transport sends text
frames only, so the adapter's keepalive is a documented request instead: every 30 s it
subscribes to the ``heartbeat`` feed again, which the server acknowledges.  The heartbeat
subscription itself goes out with the first ticker subscription of a connection, so the server's
heartbeats (about every 10 s; the interval is not documented) show a quiet subscription to be
alive.

Symbols.  Kraken calls bitcoin ``XBT``; the unified form uses ``BTC``.

* linear perpetuals settle in the quote: ``BTC/USD:USD`` ↔ ``PF_XBTUSD``;
* inverse perpetuals settle in the base: ``BTC/USD:BTC`` ↔ ``PI_XBTUSD``;
* fixed maturities, inverse and linear: ``BTC/USD:BTC-261225`` ↔ ``FI_XBTUSD_261225``,
  ``BTC/USD:USD-261225`` ↔ ``FF_XBTUSD_261225``.

Fields.  ``change`` is the 24 h change in percent (the docs say "change in price"; their own
example and every captured frame put it at (last − open) / open × 100), so the absolute change is
``last − open``.  ``funding_rate`` in Kraken's message is an absolute amount per contract; the
rate as a fraction is ``relative_funding_rate``, which is what tickerd stores.  Perpetuals fund
every hour ("auto-rolling feature every hour", settling at the end of each hour), so it is the
rate of one hour.  Funding fields are "not populated" when zero, so a perpetual's missing
``relative_funding_rate`` is 0.  ``next_funding_rate_time`` is described as "the time until next
funding rate in milliseconds", but the docs' own example (1676394000000 next to ``time``
1676393235406) and live frames carry the epoch milliseconds of the next full hour: it is read as
that.  ``openInterest`` and ``volume`` are in contracts: 1 USD for inverse contracts (``PI_``,
``FI_``), 1 unit of the base currency for linear ones (``PF_``, ``FF_``).

The documentation's example ticker is not valid JSON (a comma is missing after ``volumeQuote``
and one too many follows ``low``); the decoder tests use it with those two slips mended.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Keepalive,
    Rejected,
    Subscribed,
    market,
)
from tickerd.model import Ticker

#: The heartbeat subscription: sent with a connection's first subscription, and again as the
#: keepalive (see the module docstring).
HEARTBEAT = '{"event":"subscribe","feed":"heartbeat"}'
#: The error Kraken answers a subscription to an unknown product with.
INVALID_PRODUCT = "Invalid product id"
#: The events that answer a ticker request, naming its products.
_ACKS = frozenset(("subscribed", "unsubscribed", "subscribed_failed", "unsubscribed_failed"))
#: Product id prefixes: (perpetual, inverse) → prefix.
_PREFIXES = {(True, False): "PF", (True, True): "PI", (False, False): "FF", (False, True): "FI"}


def _xbt(currency: str) -> str:
    return "XBT" if currency == "BTC" else currency


def native(symbol: str) -> str:
    """``BTC/USD:USD`` → ``PF_XBTUSD``; ``BTC/USD:BTC-261225`` → ``FI_XBTUSD_261225``."""
    parts = market(symbol)
    prefix = _PREFIXES[parts.perpetual, parts.inverse]
    expiry = f"_{parts.expiry}" if parts.expiry else ""
    return f"{prefix}_{_xbt(parts.base)}{_xbt(parts.quote)}{expiry}"


def _request(event: str, product: str) -> str:
    return orjson.dumps({"event": event, "feed": "ticker", "product_ids": [product]}).decode()


class KrakenFuturesDecoder(Decoder):
    """Decodes ticker messages; attributes acks and errors to the requests it sent."""

    exchange = "kraken_futures"

    def __init__(self, symbols: Iterable[str]) -> None:
        #: product id → (unified symbol, perpetual): perpetuals have funding fields.
        self._products: dict[str, tuple[str, bool]] = {}
        #: The requests not answered yet, oldest first: (event, product id).
        self._pending: deque[tuple[str, str]] = deque()
        self._heartbeat = False
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._products[native(symbol)] = (symbol, market(symbol).perpetual)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._products.pop(native(symbol), None)

    def _requests(self, event: str, symbols: Sequence[str]) -> list[str]:
        products = [native(symbol) for symbol in symbols]
        self._pending.extend((event, product) for product in products)
        return [_request(event, product) for product in products]

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        frames = self._requests("subscribe", symbols)
        if not self._heartbeat:
            self._heartbeat = True
            frames.insert(0, HEARTBEAT)
        return frames

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests("unsubscribe", symbols)

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        feed = msg.get("feed")
        event = msg.get("event")
        if event is None:
            if feed == "ticker":
                product = self._products.get(msg["product_id"])
                return [] if product is None else [self._ticker(msg, *product)]
            if feed == "heartbeat":
                return []
        elif feed == "ticker" and event in _ACKS:
            self._answered(event, msg.get("product_ids") or ())
            return []
        elif event == "error":
            self._error(str(msg.get("message", "")))
            return []
        elif feed == "heartbeat" or event in ("info", "alert"):  # acks, greeting, notices
            return []
        return self.junk_frame()

    def _answered(self, event: str, products: Iterable[str]) -> None:
        """An ack names its products: each answers the request for it."""
        request = "subscribe" if event.startswith("subscribed") else "unsubscribe"
        for product in products:
            if (request, product) in self._pending:
                self._pending.remove((request, product))
            tracked = self._products.get(product)
            if tracked is None or request == "unsubscribe":
                continue
            if event == "subscribed":
                self.events.append(Subscribed(tracked[0]))
            else:
                self.events.append(Rejected(tracked[0], f"{product}: {event}"))

    def _error(self, message: str) -> None:
        """An error names no product: it answers the oldest request still unanswered.  Only an
        invalid product refuses that request's symbol; other errors (``Json Error``, ``Invalid
        feed``) leave it to the ready timeout and staleness rather than blame it wrongly."""
        if not self._pending:
            return
        request, product = self._pending.popleft()
        tracked = self._products.get(product)
        if request == "subscribe" and tracked is not None and message == INVALID_PRODUCT:
            self.events.append(Rejected(tracked[0], f"{product}: {message}"))

    @staticmethod
    def _ticker(msg: dict[str, Any], symbol: str, perpetual: bool) -> Ticker:
        """Built positionally, in the Ticker's field order.  The book is required (a ticker
        without it is junk); the statistics are taken where present.  Kraken sends JSON
        numbers, so each optional field is converted inline: a call to ``optional_float`` per
        field would cost a third of the decode."""
        get = msg.get
        last, opened, volume, high, low = get("last"), get("open"), get("volume"), get("high"), get("low")
        change, mark, index, interest = get("change"), get("markPrice"), get("index"), get("openInterest")
        funding = next_funding = None
        if perpetual:  # "if zero, field is not populated"
            funding = float(get("relative_funding_rate", 0.0))
            next_time = get("next_funding_rate_time")
            next_funding = None if next_time is None else next_time / 1000.0
        return Ticker(
            "kraken_futures",
            symbol,
            None if last is None else float(last),
            float(msg["bid"]),
            float(msg["ask"]),
            float(msg["bid_size"]),
            float(msg["ask_size"]),
            None if volume is None else float(volume),
            None if high is None else float(high),
            None if low is None else float(low),
            None if last is None or opened is None else float(last - opened),
            None if change is None else float(change),
            msg["time"] / 1000.0,
            time.time(),
            None if mark is None else float(mark),
            None if index is None else float(index),
            funding,
            next_funding,
            None if interest is None else float(interest),
        )


class KrakenFutures(Exchange):
    """Kraken Futures perpetuals and fixed maturities; ``XBT`` ↔ ``BTC``."""

    name = "kraken_futures"
    lacks = ("sequence",)
    decoder_class = KrakenFuturesDecoder
    dated_futures = True
    fake = "tickerd.testing.kraken_futures:FakeKrakenFutures"
    sample_symbols = ("BTC/USD:USD", "BTC/USD:BTC", "BTC/USD:BTC-261225")
    feeds = "`ticker` (one product a request) + `heartbeat`"
    symbol_forms = (
        "`BTC/USD:USD` ↔ `PF_XBTUSD`, `BTC/USD:BTC` ↔ `PI_XBTUSD`, "
        "`BTC/USD:BTC-261225` ↔ `FI_XBTUSD_261225`, `BTC/USD:USD-261225` ↔ `FF_XBTUSD_261225`"
    )
    keepalive_note = "server heartbeats (`heartbeat` feed); Kraken drops connections silent for 60 s"
    lacks_note = (
        "funding is the hourly `relative_funding_rate`; volume in contracts; dated futures have no funding"
    )
    open_interest_unit = "contracts: USD for inverse (`PI_`, `FI_`), base currency for linear (`PF_`, `FF_`)"
    url = "wss://futures.kraken.com/ws/v1"
    max_symbols_per_connection = 200
    keepalive = Keepalive(interval=30.0, frame=HEARTBEAT)
    #: One subscribe request per product: pace them.
    send_interval = 0.05

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        parts = market(symbol)
        if "XBT" in (parts.base, parts.quote, parts.settle):
            raise ValueError(
                f"{symbol!r}: write BTC, Kraken's XBT is mapped to it (e.g. BTC/USD:USD for PF_XBTUSD)"
            )
        if parts.settle not in (parts.base, parts.quote):
            raise ValueError(
                f"{symbol!r}: Kraken Futures serves perpetuals and futures settled in their quote "
                "(linear, BTC/USD:USD) or their base (inverse, BTC/USD:BTC); no spot"
            )
