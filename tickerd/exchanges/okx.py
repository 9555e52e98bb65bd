"""OKX v5 public channels: ``tickers`` for spot, perpetual swaps and dated futures, and for the
derivatives ``mark-price``, ``funding-rate``, ``open-interest`` and ``index-tickers`` merged in.

Documentation: https://www.okx.com/docs-v5/en/ — "Order book trading › Market data ›
WS / Tickers channel" and "Public data › WebSocket": "Mark price channel", "Funding rate
channel", "Open interest channel", "Index tickers channel".

Every ``tickers`` push is a full object with best bid/ask and sizes, so spot needs nothing
else.  A derivative's other fields come on channels of their own, pushed at their own pace
(mark price every 200 ms while it moves, open interest every 3 s, funding every 30–90 s, the
index every 100 ms while it moves), so the decoder keeps each derivative's latest ``tickers``
fields and derivative fields and answers a push of any of them with the merged Ticker.  A
derivative push that comes before the symbol's first ``tickers`` push is kept, not sent: a
record without a price would be no ticker.  What the channels carry:

* ``mark-price``: ``markPx``.
* ``funding-rate`` (swaps only: dated futures pay no funding and are not subscribed to it):
  ``fundingRate``, the rate of the current period as a fraction, settled at ``fundingTime``
  (ms), which is therefore the next payment (``nextFundingTime`` is the one after it; the docs'
  example has ``ts`` half an hour before ``fundingTime``).
* ``open-interest``: ``oiCcy``, in the base asset (``oi`` counts contracts, whose size differs
  by instrument, ``oiUsd`` is a value).
* ``index-tickers``: ``idxPx`` of an index named like a spot pair (``BTC-USDT``), shared by every
  swap and future on it: one subscription per index and connection, and each push updates every
  tracked derivative of that index.

``sequence``: ``tickers`` carries no sequence number (``bbo-tbt`` has a ``seqId``, but the
adapter reads ``tickers``, which also brings last price and 24 h statistics).

What else shapes this module:

* OKX allows 480 subscribe/unsubscribe requests per connection per hour, so symbols are
  batched many to a request (at most 100 args, a symbol's channels always in one request; the
  args of a request must stay under 64 KB).
* OKX acks each arg separately and refuses a bad one with an ``error`` event that names the
  channel and instrument only in its text (``channel:tickers,instId:LTC-USD doesn't exist``),
  while the request's other args still subscribe; so they are read from the text.  Only the
  ``tickers`` ack and refusal speak for a symbol: the index ``BTC-USDT`` is spelled as the spot
  pair is, and the derivative channels come with the ``tickers`` one.
* OKX closes a connection after 30 s without a push; the client keeps it alive with the
  *plain text* ``ping`` (answered by plain text ``pong``, which is not JSON and not junk).
* ``{"event":"notice","code":"64008"}`` warns that the server will close the connection for an
  upgrade about 30 s later: the loop opens a replacement before that happens.

For swaps and futures ``bidSz``/``askSz`` count contracts (OKX sends no contract size on this
channel), while the 24 h volume is taken from ``volCcy24h``, which is in the base currency for
them; for spot ``vol24h`` is the base volume.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Keepalive,
    ReconnectRequested,
    Rejected,
    Subscribed,
    market,
)
from tickerd.model import Ticker

#: Args per subscribe request: a few KB, far under OKX's 64 KB, and few requests per hour.
_PER_REQUEST = 100
#: The service-upgrade notice: OKX will close the connection shortly.
_UPGRADE_NOTICE = "64008"
#: What an error names: ``channel:tickers,instId:LTC-USD doesn't exist`` (or the instrument alone).
_REFUSED = re.compile(r"(?:channel:([A-Za-z0-9\-]+),)?instId:([A-Za-z0-9\-]+)")
_INDEX = "index-tickers"


def native(symbol: str) -> str:
    """``BTC/USDT`` → ``BTC-USDT``; perpetual swaps ``BTC/USDT:USDT`` → ``BTC-USDT-SWAP`` and
    ``BTC/USD:BTC`` → ``BTC-USD-SWAP``; dated futures ``BTC/USDT:USDT-261225`` →
    ``BTC-USDT-261225``."""
    parts = market(symbol)
    pair = f"{parts.base}-{parts.quote}"
    return pair if parts.spot else f"{pair}-{parts.expiry or 'SWAP'}"


def index_of(symbol: str) -> str:
    """The index a derivative is marked against: ``BTC/USD:BTC-261225`` → ``BTC-USD``."""
    base, _, rest = symbol.partition("/")
    return f"{base}-{rest.partition(':')[0]}"


def channels(symbol: str) -> tuple[str, ...]:
    """The channels of the symbol's own instrument (a derivative's index is shared: ``_INDEX``)."""
    if ":" not in symbol:
        return ("tickers",)
    if "-" in symbol:  # a dated future: no funding
        return ("tickers", "mark-price", "open-interest")
    return ("tickers", "mark-price", "funding-rate", "open-interest")


def _change(last: object, open_24h: object) -> tuple[float | None, float | None]:
    """24 h change and percent from ``last`` and ``open24h`` (exact decimals, no float noise)."""
    if last in (None, "") or open_24h in (None, ""):
        return None, None
    now, then = Decimal(str(last)), Decimal(str(open_24h))
    change = now - then
    return float(change), (float(change / then * 100) if then else None)


_F = float | None
#: Last, bid, ask, bid size, ask size, 24 h volume, high, low, change, change percent: a
#: ``tickers`` push's fields, in :class:`Ticker`'s order (all ``None`` before the first push).
_Fields = tuple[_F, _F, _F, _F, _F, _F, _F, _F, _F, _F]
#: Mark, index, funding rate, next funding time, open interest: in :class:`Ticker`'s order.
_Derivatives = tuple[_F, _F, _F, _F, _F]
_NO_FIELDS: _Fields = (None, None, None, None, None, None, None, None, None, None)
_NO_DERIVATIVES: _Derivatives = (None, None, None, None, None)


def _fields(item: dict[str, Any], volume: str) -> _Fields:
    """Every push is a full object: the fields read here are all required (a push without one
    is junk, so it never overwrites a stored value with null).  ``volume`` names the base
    volume's field (spot ``vol24h``, derivatives ``volCcy24h``)."""
    change, change_pct = _change(item["last"], item["open24h"])
    return (
        float(item["last"]),
        float(item["bidPx"]),
        float(item["askPx"]),
        float(item["bidSz"]),
        float(item["askSz"]),
        float(item[volume]),
        float(item["high24h"]),
        float(item["low24h"]),
        change,
        change_pct,
    )


def _mark(d: _Derivatives, item: dict[str, Any]) -> _Derivatives:
    return float(item["markPx"]), d[1], d[2], d[3], d[4]


def _index(d: _Derivatives, item: dict[str, Any]) -> _Derivatives:
    return d[0], float(item["idxPx"]), d[2], d[3], d[4]


def _funding(d: _Derivatives, item: dict[str, Any]) -> _Derivatives:
    return d[0], d[1], float(item["fundingRate"]), int(item["fundingTime"]) / 1000.0, d[4]


def _open_interest(d: _Derivatives, item: dict[str, Any]) -> _Derivatives:
    return d[0], d[1], d[2], d[3], float(item["oiCcy"])


#: How a push of each derivative channel changes the derivative fields (all its fields are
#: required: the docs list them for every push).
_UPDATES: dict[str, Callable[[_Derivatives, dict[str, Any]], _Derivatives]] = {
    "mark-price": _mark,
    "funding-rate": _funding,
    "open-interest": _open_interest,
    _INDEX: _index,
}


class _State:
    """One derivative's latest ``tickers`` fields (``None`` before its first push) and
    derivative fields."""

    __slots__ = ("derivatives", "fields", "index", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.index = index_of(symbol)
        self.fields: _Fields | None = None
        self.derivatives = _NO_DERIVATIVES


#: One merged candidate: the derivative's state (``None`` for spot), its symbol, its ``tickers``
#: fields, derivative fields and exchange time.
_Change = tuple[_State | None, str, _Fields | None, _Derivatives, float]


class OKXDecoder(Decoder):
    """Decodes ``tickers`` and the derivative channels' pushes, per-arg acks, errors and notices."""

    exchange = "okx"
    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        #: instId → spot symbol; instId → derivative state; index → its derivatives' states.
        self._spot: dict[str, str] = {}
        self._states: dict[str, _State] = {}
        self._by_index: dict[str, list[_State]] = {}
        #: The indexes this connection subscribed to (``index-tickers``), one for all their
        #: derivatives.
        self._indexes: set[str] = set()
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        inst = native(symbol)
        if ":" not in symbol:
            self._spot[inst] = symbol
        elif inst not in self._states:
            state = self._states[inst] = _State(symbol)
            self._by_index.setdefault(state.index, []).append(state)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        inst = native(symbol)
        self._spot.pop(inst, None)
        state = self._states.pop(inst, None)
        if state is not None:
            sharing = self._by_index[state.index]
            sharing.remove(state)
            if not sharing:
                del self._by_index[state.index]

    def _symbol(self, inst: str) -> str | None:
        """The tracked symbol whose ``tickers`` instrument is ``inst``."""
        state = self._states.get(inst)
        return self._spot.get(inst) if state is None else state.symbol

    # -- requests --------------------------------------------------------------------------

    def _args(self, symbol: str, subscribe: bool) -> list[dict[str, str]]:
        """A symbol's args; a derivative's index goes with the first subscribing symbol of it
        and with the last unsubscribing one (untracked already)."""
        inst = native(symbol)
        args = [{"channel": channel, "instId": inst} for channel in channels(symbol)]
        if ":" in symbol:
            index = index_of(symbol)
            if subscribe and index not in self._indexes:
                self._indexes.add(index)
                args.append({"channel": _INDEX, "instId": index})
            elif not subscribe and index in self._indexes and index not in self._by_index:
                self._indexes.discard(index)
                args.append({"channel": _INDEX, "instId": index})
        return args

    def _requests(self, op: str, symbols: Sequence[str]) -> list[str]:
        """Requests of at most :data:`_PER_REQUEST` args, a symbol's args in one request."""
        frames: list[str] = []
        batch: list[dict[str, str]] = []
        for symbol in symbols:
            args = self._args(symbol, op == "subscribe")
            if batch and len(batch) + len(args) > _PER_REQUEST:
                frames.append(orjson.dumps({"op": op, "args": batch}).decode())
                batch = []
            batch += args
        if batch:
            frames.append(orjson.dumps({"op": op, "args": batch}).decode())
        return frames

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests("subscribe", symbols)

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests("unsubscribe", symbols)

    # -- frames ----------------------------------------------------------------------------

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        if frame in ("pong", b"pong"):
            return []
        msg = orjson.loads(frame)
        if "data" in msg:
            channel = msg["arg"]["channel"]
            if channel == "tickers":
                return self._tickers(msg["data"])
            update = _UPDATES.get(channel)
            if update is None:
                return self.junk_frame()
            return self._derivatives(msg["data"], update, channel == _INDEX)
        event = msg.get("event")
        if event == "subscribe":
            arg = msg["arg"]
            symbol = self._symbol(arg["instId"]) if arg["channel"] == "tickers" else None
            if symbol is not None:
                self.events.append(Subscribed(symbol))
            return []
        if event == "error":
            self._refused(msg)
            return []
        if event == "notice":
            if str(msg.get("code")) == _UPGRADE_NOTICE:
                self.events.append(
                    ReconnectRequested(f"{_UPGRADE_NOTICE}: {msg.get('msg', 'service upgrade')}")
                )
            return []
        if event in ("unsubscribe", "channel-conn-count"):
            return []
        return self.junk_frame()

    def _tickers(self, data: list[dict[str, Any]]) -> list[Ticker]:
        changes: list[_Change] = []
        for item in data:
            inst = item["instId"]
            ts = int(item["ts"]) / 1000.0
            symbol = self._spot.get(inst)
            if symbol is not None:
                changes.append((None, symbol, _fields(item, "vol24h"), _NO_DERIVATIVES, ts))
            elif (state := self._states.get(inst)) is not None:
                changes.append((state, state.symbol, _fields(item, "volCcy24h"), state.derivatives, ts))
        return self._merged(changes)

    def _derivatives(
        self,
        data: list[dict[str, Any]],
        update: Callable[[_Derivatives, dict[str, Any]], _Derivatives],
        by_index: bool,
    ) -> list[Ticker]:
        changes: list[_Change] = []
        for item in data:
            inst = item["instId"]
            ts = int(item["ts"]) / 1000.0
            if by_index:
                states: Iterable[_State] = self._by_index.get(inst, ())
            else:
                state = self._states.get(inst)
                states = () if state is None else (state,)
            for state in states:
                changes.append((state, state.symbol, state.fields, update(state.derivatives, item), ts))
        return self._merged(changes)

    def _merged(self, changes: list[_Change]) -> list[Ticker]:
        """The tickers of ``changes``, checked by the sanity rule before any is kept (a junk
        frame leaves every merged view as it was).  A derivative without a ``tickers`` push yet
        is checked and kept, not sent.  Built positionally, in the Ticker's field order:
        keyword arguments cost more than the float conversions."""
        now = time.time()
        tickers: list[Ticker] = []
        for _, symbol, fields, derivatives, ts in changes:
            ticker = Ticker("okx", symbol, *(fields or _NO_FIELDS), ts, now, *derivatives)
            if (reason := self.flaw(ticker)) is not None:
                return self.junk_frame(reason)
            if fields is not None:
                tickers.append(ticker)
        for state, _, fields, derivatives, _ in changes:
            if state is not None:
                state.fields, state.derivatives = fields, derivatives
        return tickers

    def _refused(self, msg: dict[str, Any]) -> None:
        """An error names the refused instrument only in its text; one naming none (a
        malformed request) cannot be pinned on a symbol, so it blames nobody, and one naming
        another channel than ``tickers`` blames nobody either (see the module docstring)."""
        text = str(msg.get("msg", ""))
        reason = f"{msg.get('code', '')}: {text}"
        for channel, inst in sorted(set(_REFUSED.findall(text))):
            symbol = self._symbol(inst) if channel in ("", "tickers") else None
            if symbol is not None:
                self.events.append(Rejected(symbol, reason))


class OKX(Exchange):
    """OKX v5: spot ``BTC/USDT`` ↔ ``BTC-USDT``; linear swaps ``BTC/USDT:USDT`` ↔ ``BTC-USDT-SWAP``;
    inverse swaps ``BTC/USD:BTC`` ↔ ``BTC-USD-SWAP``; dated futures ``BTC/USDT:USDT-261225`` ↔
    ``BTC-USDT-261225`` and ``BTC/USD:BTC-261225`` ↔ ``BTC-USD-261225``."""

    name = "okx"
    lacks = ("sequence",)
    decoder_class = OKXDecoder
    dated_futures = True
    fake = "tickerd.testing.okx:FakeOKX"
    sample_symbols = (
        "BTC/USDT",
        "ETH/USDT:USDT",
        "BTC/USD:BTC",
        "BTC/USDT:USDT-261225",
        "BTC/USD:BTC-261225",
    )
    feeds = (
        "v5 `tickers`; derivatives also `mark-price`, `funding-rate` (swaps), `open-interest` and "
        "`index-tickers` (one per index, shared), merged"
    )
    symbol_forms = (
        "`BTC/USDT` ↔ `BTC-USDT`, `BTC/USDT:USDT` ↔ `BTC-USDT-SWAP`, `BTC/USD:BTC` ↔ `BTC-USD-SWAP`, "
        "`BTC/USDT:USDT-261225` ↔ `BTC-USDT-261225`, `BTC/USD:BTC-261225` ↔ `BTC-USD-261225`"
    )
    lacks_note = (
        "swap and future sizes are in contracts; dated futures have no funding; `tickers` carries "
        "no sequence number"
    )
    open_interest_unit = "base asset (`oiCcy`)"
    url = "wss://ws.okx.com:8443/ws/v5/public"
    #: Derivatives take four or five args each; OKX documents no cap on a public connection's
    #: subscriptions, only on the requests that make them (batched above).
    max_symbols_per_connection = 200
    #: Text ping well inside OKX's 30 s no-push limit.
    keepalive = Keepalive(interval=20.0, frame="ping")
    reconnect_request = True
    send_interval = 0.1

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        parts = market(symbol)
        linear = parts.settle == parts.quote and parts.quote != "USD"  # OKX's USD-quoted swaps are inverse
        inverse = parts.inverse and parts.quote == "USD"
        if not parts.spot and not (linear or inverse):
            raise ValueError(
                f"{symbol!r}: okx serves spot BASE/QUOTE, linear BASE/QUOTE:QUOTE and inverse "
                "BASE/USD:BASE swaps, and those as dated futures (…-YYMMDD)"
            )
