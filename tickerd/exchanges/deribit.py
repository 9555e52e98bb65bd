"""Deribit JSON-RPC 2.0 over websocket: ``ticker.{instrument}.100ms`` for perpetuals and futures.

Grounded in Deribit's API documentation (docs.deribit.com): the channel page
``/subscriptions/market-data/tickerinstrument_nameinterval`` (what the notification carries),
``/api-reference/market-data/public-ticker`` (the same ticker object, with an example),
``/api-reference/subscription-management/public-subscribe`` (the result is "a list of subscribed
channels"), ``/api-reference/session-management/public-set_heartbeat``,
``/api-reference/supporting/public-test``, ``/articles/json-rpc-overview`` (every request carries
an ``id``; errors are ``{"error": {"code", "message", "data"}}``), and the support article
"Funding Specifications" (support.deribit.com).

One notification carries the whole ticker: best bid/ask with amounts, last price, 24 h
``stats`` (volume in the base currency, high, low, ``price_change`` in percent), mark and index
price, open interest and, for perpetuals, ``current_funding`` and ``funding_8h``.  The public
interval is ``100ms``: ``raw`` is for authorised connections only.

* ``funding_rate`` is ``current_funding``: Deribit states funding as an 8-hour rate, a fraction
  (``0.0000211`` = 0.00211 %), and ``current_funding`` is that rate now, the one that accrues on
  a position from this moment (as the other venues' current or predicted rate for the period in
  progress); ``funding_8h`` is the funding of the trailing 8 hours (as the funding history's
  ``interest_8h``), a figure of the past.  Funding is paid continuously ("calculated every
  millisecond"), so there is no next funding time: ``next_funding_ts`` stays ``None``.  Dated
  futures have no funding.
* ``open_interest`` is in Deribit's amount units: USD for inverse contracts (``BTC-PERPETUAL``,
  ``BTC-25DEC26``), the base currency for linear ones (``BTC_USDC-PERPETUAL``).  The docs'
  wording ("for perpetual and inverse futures the amount is in USD units. For options and
  linear futures it is the underlying base currency coin") predates the linear perpetuals;
  they are taken to count as linear futures do, which no live frame here has confirmed.
* Only the percentage of the 24 h change is sent; the change itself is not derived from it.
* A side without orders: the docs say ``null``; a zero price is read the same way (no price).
* The ticker carries no sequence number (the book channels have ``change_id``).

Subscriptions are acknowledged with the list of channels actually subscribed: a channel Deribit
cannot serve is left out of it, without an error (``"result": []``, adampointer/go-deribit#16),
so a symbol whose channel is missing from its request's result is rejected.  An error answer
(``-32602 Invalid params``) rejects every symbol of the request.  The docs describe no request to
reconnect; connections rotate at ``feed.max_lifetime``.

Keepalive: the first request on a connection is ``public/set_heartbeat`` (10 s, the minimum);
Deribit then sends ``heartbeat`` and ``test_request`` messages, and each test request must be
answered with a ``public/test`` request, or "the API server will immediately close the
connection".  The docs do not spell the message out; its shape,
``{"method":"heartbeat","params":{"type":"test_request"}}``, is the one client libraries read
(the Rust ``deribit`` crate's ``HeartbeatType::TestRequest``).  The test requests also keep a
quiet subscription from looking dead to the silence watchdog.

Symbols: inverse contracts are named by their base and settle in it (``BTC-PERPETUAL`` ↔
``BTC/USD:BTC``), linear ones join base and quote with an underscore (``BTC_USDC-PERPETUAL`` ↔
``BTC/USDC:USDC``); dated futures replace ``PERPETUAL`` with the expiry as ``DMMMYY``, the day
without a leading zero (``BTC-25DEC26`` ↔ ``BTC/USD:BTC-261225``), linear ones too
(``BTC_USDC-25DEC26``) where Deribit lists them.  Options and spot are not served.
"""

from __future__ import annotations

import datetime
import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Rejected,
    Reply,
    Subscribed,
    market,
)
from tickerd.model import Ticker

#: The public aggregation interval of the ticker channel (``raw`` needs an authorised connection).
INTERVAL = "100ms"
#: Deribit's month codes in expiries (``25DEC26``), by month number less one.
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: Seconds between the heartbeats asked for: Deribit's minimum, three test requests a silence
#: timeout (30 s by default), so a quiet subscription never looks dead.
HEARTBEAT_INTERVAL = 10


def expiry_code(expiry: str) -> str:
    """``261225`` (YYMMDD) → ``25DEC26``, Deribit's form: the day without a leading zero."""
    day = datetime.datetime.strptime(expiry, "%y%m%d")
    return f"{day.day}{MONTHS[day.month - 1]}{expiry[:2]}"


def instrument(symbol: str) -> str:
    """``BTC/USD:BTC`` → ``BTC-PERPETUAL``, ``BTC/USDC:USDC`` → ``BTC_USDC-PERPETUAL``,
    ``BTC/USD:BTC-261225`` → ``BTC-25DEC26`` (see :meth:`Deribit.check_symbol` for the forms)."""
    parts = market(symbol)
    name = parts.base if parts.inverse else f"{parts.base}_{parts.quote}"
    return f"{name}-{'PERPETUAL' if parts.expiry is None else expiry_code(parts.expiry)}"


def channel(symbol: str) -> str:
    """The ticker channel of ``symbol``."""
    return f"ticker.{instrument(symbol)}.{INTERVAL}"


def _request(request_id: int, method: str, params: dict[str, Any]) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).decode()


class DeribitDecoder(Decoder):
    """Decodes ticker notifications; answers test requests; resolves subscriptions by the
    ``id`` of the request they answer."""

    exchange = "deribit"

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Ticker channel → unified symbol, for the symbols tracked.
        self._by_channel: dict[str, str] = {}
        #: Request ids are unique per connection (the JSON-RPC rule Deribit enforces).
        self._ids = itertools.count(1)
        #: Subscribe requests not yet answered: id → the symbols they asked for.
        self._pending: dict[int, list[str]] = {}
        #: Whether this connection asked for heartbeats (its first request does).
        self._heartbeats = False
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_channel[channel(symbol)] = symbol

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_channel.pop(channel(symbol), None)

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        """One ``public/subscribe`` for ``symbols``, after ``public/set_heartbeat`` when this is
        the connection's first request (the loop subscribes first thing on every connection)."""
        frames = []
        if not self._heartbeats:
            self._heartbeats = True
            frames.append(_request(next(self._ids), "public/set_heartbeat", {"interval": HEARTBEAT_INTERVAL}))
        if symbols:
            request_id = next(self._ids)
            self._pending[request_id] = list(symbols)
            channels = [channel(symbol) for symbol in symbols]
            frames.append(_request(request_id, "public/subscribe", {"channels": channels}))
        return frames

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        channels = [channel(symbol) for symbol in symbols]
        return [_request(next(self._ids), "public/unsubscribe", {"channels": channels})]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        method = msg.get("method")
        if method == "subscription":
            params = msg["params"]
            symbol = self._by_channel.get(params["channel"])
            if symbol is None:  # a late frame of a symbol just unsubscribed
                return []
            return [self._ticker(symbol, params["data"])]
        if method == "heartbeat":
            if msg["params"]["type"] == "test_request":
                self.events.append(Reply(_request(next(self._ids), "public/test", {})))
            return []
        if "id" in msg and method is None:
            return self._answer(msg)
        return self.junk_frame()

    @staticmethod
    def _ticker(symbol: str, data: dict[str, Any]) -> Ticker:
        """The notification's fields, positionally in :class:`Ticker`'s order (keywords cost
        more than the rest of the frame).  The prices, amounts and mark/index/open interest
        are always sent; ``last_price`` and the ``stats`` are null before the first trade, and
        a side without orders has no price (null, or zero).  Inline conditionals, not
        :func:`~tickerd.exchanges.base.optional_float`: Deribit sends JSON numbers or null, and
        a call per field costs a tenth of the frame."""
        stats = data["stats"]
        last, bid, ask = data["last_price"], data["best_bid_price"], data["best_ask_price"]
        volume, high, low, pct = stats["volume"], stats["high"], stats["low"], stats["price_change"]
        funding = data.get("current_funding")
        return Ticker(
            "deribit",
            symbol,
            None if last is None else float(last),
            float(bid) if bid else None,
            float(ask) if ask else None,
            float(data["best_bid_amount"]),
            float(data["best_ask_amount"]),
            None if volume is None else float(volume),
            None if high is None else float(high),
            None if low is None else float(low),
            None,
            None if pct is None else float(pct),
            data["timestamp"] / 1000.0,
            time.time(),
            float(data["mark_price"]),
            float(data["index_price"]),
            None if funding is None else float(funding),
            None,
            float(data["open_interest"]),
        )

    def _answer(self, msg: dict[str, Any]) -> list[Ticker]:
        """A response: a subscribe's result lists the channels it subscribed, so a symbol left
        out of it is unknown to Deribit; an error refuses the whole request.  Answers to the
        other requests (heartbeat set-up, tests, unsubscribes) need nothing; an error to one
        of them is counted as junk, so that its reason is logged."""
        asked = self._pending.pop(msg["id"], None)
        error = msg.get("error")
        if asked is None:
            return [] if error is None else self.junk_frame(f"request {msg['id']} failed: {error}")
        asked = [symbol for symbol in asked if symbol in self.symbols]  # not removed meanwhile
        if error is not None:
            reason = f"{error.get('message')} ({error.get('code')}): {error.get('data')}"
            self.events.extend(Rejected(symbol, reason) for symbol in asked)
            return []
        subscribed = set(msg["result"])
        for symbol in asked:
            name = channel(symbol)
            if name in subscribed:
                self.events.append(Subscribed(symbol))
            else:
                self.events.append(Rejected(symbol, f"Deribit left {name} out: no such instrument"))
        return []


class Deribit(Exchange):
    """Deribit perpetuals and dated futures, inverse and linear (see the module docstring)."""

    name = "deribit"
    url = "wss://www.deribit.com/ws/api/v2"
    #: Not documented; 32 connections are allowed per IP, so one connection carries many.
    max_symbols_per_connection = 200
    #: ``public/subscribe`` has its own rate limit, about 3.3 requests a second sustained.
    send_interval = 0.3
    dated_futures = True
    lacks = ("change_24h", "next_funding_ts", "sequence")
    decoder_class = DeribitDecoder
    fake = "tickerd.testing.deribit:FakeDeribit"
    #: The linear perpetual first: the conformance suite makes other markets of the first
    #: symbol by swapping its base, which keeps an inverse settle (``ETH/USD:BTC``, a quanto).
    sample_symbols = ("BTC/USDC:USDC", "BTC/USD:BTC", "BTC/USD:BTC-261225")
    feeds = "`ticker.{instrument}.100ms` (JSON-RPC `public/subscribe`)"
    symbol_forms = (
        "`BTC/USD:BTC` ↔ `BTC-PERPETUAL`, `BTC/USDC:USDC` ↔ `BTC_USDC-PERPETUAL`, "
        "`BTC/USD:BTC-261225` ↔ `BTC-25DEC26`, `BTC/USDC:USDC-261225` ↔ `BTC_USDC-25DEC26`"
    )
    keepalive_note = (
        f"`public/set_heartbeat` ({HEARTBEAT_INTERVAL} s) on connect, answers every `test_request` "
        "with `public/test`"
    )
    lacks_note = (
        "funding is paid continuously, so there is no next funding time; `funding_rate` is "
        "`current_funding` (an 8 h rate), none for dated futures; the 24 h change comes as a "
        "percentage only"
    )
    open_interest_unit = "USD (inverse), base currency (linear)"

    def check_symbol(self, symbol: str) -> None:
        """Perpetuals and futures only: inverse ones are quoted in USD and settle in their base,
        linear ones settle in their quote."""
        super().check_symbol(symbol)
        parts = market(symbol)
        if parts.spot or not ((parts.inverse and parts.quote == "USD") or parts.settle == parts.quote):
            raise ValueError(
                f"{symbol!r}: the deribit adapter serves perpetuals and futures, inverse "
                "(BTC/USD:BTC, BTC/USD:BTC-261225) or linear (BTC/USDC:USDC, BTC/USDC:USDC-261225)"
            )
