"""Bitfinex WebSocket v2 public ``ticker`` channel (spot pairs and ``F0`` perpetuals), merged
with the ``status`` channel's derivatives status for perpetuals.

Why it looks the way it does:

* Data frames are bare arrays ``[CHAN_ID, payload]`` that name no symbol: the ``subscribed``
  event's ``chanId`` is the only link, so the decoder keeps ``chanId → symbol`` for the
  connection (ids are not stable across connections).  Unsubscribing is by ``chanId`` too; a
  symbol removed before its ack arrived is unsubscribed as soon as the ack tells its id.
* Every ticker payload is a full snapshot ``[BID, BID_SIZE, ASK, ASK_SIZE, DAILY_CHANGE,
  DAILY_CHANGE_RELATIVE, LAST_PRICE, VOLUME, HIGH, LOW, …]``; Bitfinex may append fields, so
  only the leading ten are read.  ``DAILY_CHANGE_RELATIVE`` is a fraction (×100 for %).
  Without the ``TIMESTAMP`` conf flag frames carry no time, so ``exchange_ts`` is ``None``.
* The server sends ``[CHAN_ID, "hb"]`` every 15 s per channel; the client pings every 20 s
  anyway, because an idle socket without client traffic is closed at about 60 s and a pong
  keeps frames flowing even while every channel is quiet.
* ``info`` 20051 (server restart) and 20061 (maintenance over, resubscribe everything) are
  reconnect requests; an ``error`` event echoes the refused request's ``symbol``, so it is
  reported for exactly that symbol.  10301 (already subscribed) carries the existing
  ``chanId`` and is treated as a confirmation.
* A perpetual's mark price, funding and open interest come on a second channel, ``status``
  with the key ``deriv:tBTCF0:USTF0`` ("Status", https://docs.bitfinex.com/reference/ws-public-status):
  ``[CHAN_ID, [TIME_MS, _, DERIV_PRICE, SPOT_PRICE, _, INSURANCE_FUND_BALANCE, _,
  NEXT_FUNDING_EVT_TIMESTAMP_MS, NEXT_FUNDING_ACCRUED, NEXT_FUNDING_STEP, _, CURRENT_FUNDING,
  _, _, MARK_PRICE, _, _, OPEN_INTEREST, _, _, _, CLAMP_MIN, CLAMP_MAX]]``.  The decoder keeps
  each perpetual's latest ticker values and latest status, and a frame of either channel gives
  the merged ticker.  Bitfinex publishes no index price here: ``index_price`` is
  ``SPOT_PRICE``, "book mid price of the underlying Bitfinex spot trading pair" (REST
  "Derivatives Status", https://docs.bitfinex.com/reference/rest-public-derivatives-status;
  the mark price is "based on the BFX Composite Index").  ``CURRENT_FUNDING`` is the rate of
  the current 8 h period as a fraction (``NEXT_FUNDING_ACCRUED`` is the next period's, still
  accruing); ``NEXT_FUNDING_EVT_TIMESTAMP_MS`` the next funding time;  ``OPEN_INTEREST`` the
  outstanding contracts, each one unit of the base currency.  ``TIME_MS`` is the status's
  time, not the book's, so ``exchange_ts`` stays ``None``.  The docs show flat payloads; a
  nested snapshot (``[CHAN_ID, [[…]]]``, as bitfinex-api-go also decodes) is read as its last
  row.
* 25 channels per connection (the documented limit; the wire was seen to accept more).  A
  perpetual takes two (:meth:`Bitfinex.channels`), so a connection carries 25 spot symbols, or
  12 perpetuals, or a mix within the 25 channels.

Symbols: ``t`` + pair.  Pairs of two three-letter codes are concatenated (``tBTCUSD``), longer
codes are joined by a colon (``tDOGE:USD``, ``tTESTBTC:TESTUSD``).  Perpetuals are
``t{BASE}F0:{QUOTE}F0`` and settle in their quote currency, so unified
``BTC/USDT:USDT`` ↔ ``tBTCF0:USTF0`` (the form ccxt uses too).  Bitfinex's own codes for
some currencies (``UST`` for USDT, ``UDC`` for USDC, ``BCHN`` for BCH…) are translated both
ways so that unified symbols use the common codes.
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
    Reply,
    Subscribed,
    optional_float,
    split_unified,
)
from tickerd.model import Ticker

#: Bitfinex currency code → common code (the subset of ccxt's ``commonCurrencies`` for
#: Bitfinex that is a plain rename; ambiguous ones such as LUNA are left as Bitfinex has them).
_COMMON = {
    "UST": "USDT",
    "UDC": "USDC",
    "BCHN": "BCH",
    "ALG": "ALGO",
    "DSH": "DASH",
    "EUT": "EURT",
    "IOT": "IOTA",
    "MNA": "MANA",
    "QTM": "QTUM",
    "STJ": "STORJ",
    "TSD": "TUSD",
}
_BITFINEX = {common: code for code, common in _COMMON.items()}
_PERPETUAL = "F0"
#: ``info`` codes that ask the client to reconnect (restart; maintenance ended).
_RECONNECT_CODES = {20051: "server restarting", 20061: "maintenance ended, resubscribe"}
_DUPLICATE = 10301
#: The ``status`` channel's key of a perpetual's derivatives status: ``deriv:tBTCF0:USTF0``.
STATUS_KEY = "deriv:"
#: A ticker's last price, best bid and ask with sizes, 24 h volume, high, low, change and
#: change percent, in :class:`Ticker`'s field order: a perpetual's status frames build on them.
_F = float | None
_Spot = tuple[_F, _F, _F, _F, _F, _F, _F, _F, _F, _F]
_NO_SPOT: _Spot = (None, None, None, None, None, None, None, None, None, None)
#: Mark price, index price, funding rate, next funding time, open interest (Ticker's order).
_Derivatives = tuple[_F, _F, _F, _F, _F]
_NO_DERIVATIVES: _Derivatives = (None, None, None, None, None)


def native(symbol: str) -> str:
    """``BTC/USD`` → ``tBTCUSD``; ``DOGE/USD`` → ``tDOGE:USD``; ``BTC/USDT:USDT`` → ``tBTCF0:USTF0``."""
    base, quote, settle = split_unified(symbol)
    base, quote = _BITFINEX.get(base, base), _BITFINEX.get(quote, quote)
    if settle is not None:
        return f"t{base}{_PERPETUAL}:{quote}{_PERPETUAL}"
    if len(base) == 3 and len(quote) == 3:
        return f"t{base}{quote}"
    return f"t{base}:{quote}"


def unified(symbol: str) -> str:
    """The inverse of :func:`native`: ``tBTCF0:USTF0`` → ``BTC/USDT:USDT``."""
    pair = symbol.removeprefix("t")
    base, colon, quote = pair.partition(":")
    if not colon:
        base, quote = pair[:3], pair[3:]
    if base.endswith(_PERPETUAL) and quote.endswith(_PERPETUAL):
        base, quote = base.removesuffix(_PERPETUAL), quote.removesuffix(_PERPETUAL)
        quote = _COMMON.get(quote, quote)
        return f"{_COMMON.get(base, base)}/{quote}:{quote}"
    return f"{_COMMON.get(base, base)}/{_COMMON.get(quote, quote)}"


class _Market:
    """One symbol's channels: the latest ticker values, for the status frames that follow them,
    and the latest derivatives status, for the ticker frames (a spot pair has none)."""

    __slots__ = ("derivatives", "spot", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.spot = _NO_SPOT
        self.derivatives = _NO_DERIVATIVES


class BitfinexDecoder(Decoder):
    """Routes ``[CHAN_ID, …]`` frames by the ids the ``subscribed`` events assign; merges a
    perpetual's ``ticker`` and ``status`` channels."""

    exchange = "bitfinex"
    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_native: dict[str, _Market] = {}
        #: ``ticker`` channels, then ``status`` channels, by id: a frame names only its id.
        self._channels: dict[int, _Market] = {}
        self._statuses: dict[int, _Market] = {}
        #: Refused symbols (a perpetual's two channels may both be refused: reported once).
        self._rejected: set[str] = set()
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_native.setdefault(native(symbol), _Market(symbol))
        self._rejected.discard(symbol)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_native.pop(native(symbol), None)

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        frames = []
        for symbol in symbols:
            name = native(symbol)
            frames.append(orjson.dumps({"event": "subscribe", "channel": "ticker", "symbol": name}).decode())
            if split_unified(symbol)[2] is not None:
                request = {"event": "subscribe", "channel": "status", "key": STATUS_KEY + name}
                frames.append(orjson.dumps(request).decode())
        return frames

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        # Forget the ids now, so that frames still in flight for them are dropped.
        gone = []
        for channels in (self._channels, self._statuses):
            ids = [chan_id for chan_id, market in channels.items() if market.symbol in symbols]
            for chan_id in ids:
                del channels[chan_id]
            gone.extend(ids)
        return [self._unsubscribe(chan_id) for chan_id in gone]

    @staticmethod
    def _unsubscribe(chan_id: int) -> str:
        return orjson.dumps({"event": "unsubscribe", "chanId": chan_id}).decode()

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        if isinstance(msg, list):
            return self._data(msg)
        event = msg["event"]
        if event == "subscribed":
            self._subscribed(msg)
        elif event == "error":
            self._error(msg)
        elif event == "info":
            code = msg.get("code")
            if code in _RECONNECT_CODES:
                self.events.append(ReconnectRequested(f"info {code}: {_RECONNECT_CODES[code]}"))
        elif event not in ("unsubscribed", "pong", "conf"):
            return self.junk_frame()
        return []

    def _data(self, msg: list[Any]) -> list[Ticker]:
        chan_id, payload = msg[0], msg[1]
        if payload == "hb":
            return []
        market = self._channels.get(chan_id)
        if market is not None:
            if not isinstance(payload, list):
                return self.junk_frame()
            return self._ticker(market, payload)
        market = self._statuses.get(chan_id)
        if market is None:
            return []  # a channel unsubscribed a moment ago (late frames are expected)
        if not isinstance(payload, list):
            return self.junk_frame()
        return self._status(market, payload)

    def _subscribed(self, msg: dict[str, Any]) -> None:
        """A channel's id.  The ``ticker`` channel's ack confirms the symbol; a perpetual's
        ``status`` channel only starts its derivative fields."""
        status = msg.get("channel") == "status"
        name = (
            msg.get("key", "").removeprefix(STATUS_KEY)
            if status
            else msg.get("symbol") or "t" + msg.get("pair", "")
        )
        market = self._by_native.get(name)
        if market is None:  # removed before its ack: it has an id now, so it can go
            self.events.append(Reply(self._unsubscribe(msg["chanId"])))
            return
        if status:
            self._statuses[msg["chanId"]] = market
        else:
            self._channels[msg["chanId"]] = market
            if market.symbol not in self._rejected:
                self.events.append(Subscribed(market.symbol))

    def _error(self, msg: dict[str, Any]) -> None:
        market = self._by_native.get(msg.get("symbol") or msg.get("key", "").removeprefix(STATUS_KEY))
        if market is None:
            return  # about no symbol of ours (an unknown chanId to unsubscribe, say)
        if msg.get("code") == _DUPLICATE and "chanId" in msg:
            self._subscribed(msg)
            return
        if market.symbol not in self._rejected:
            self._rejected.add(market.symbol)
            self.events.append(Rejected(market.symbol, f"{msg.get('code')}: {msg.get('msg')}"))

    def _ticker(self, market: _Market, values: list[Any]) -> list[Ticker]:
        """Every payload is a full snapshot of ten numbers: a shorter one, or a null among
        them, makes the frame junk (``IndexError``, ``TypeError``).  Built positionally, in the
        Ticker's field order (keyword arguments cost a fifth of the decode); the values are read
        in the payload's order, so the one a junk frame is blamed on is the first bad one."""
        bid, bid_size, ask, ask_size = float(values[0]), float(values[1]), float(values[2]), float(values[3])
        change, change_pct = float(values[4]), float(values[5]) * 100
        last, volume, high, low = float(values[6]), float(values[7]), float(values[8]), float(values[9])
        spot = (last, bid, ask, bid_size, ask_size, volume, high, low, change, change_pct)
        ticker = Ticker("bitfinex", market.symbol, *spot, None, time.time(), *market.derivatives)
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        market.spot = spot
        return [ticker]

    def _status(self, market: _Market, values: list[Any]) -> list[Ticker]:
        """A derivatives status, merged with the perpetual's latest ticker values.  Mark price,
        funding, next funding time and open interest are always there (a null among them makes
        the frame junk); the spot price is null for a perpetual without a spot pair."""
        if values and isinstance(values[0], list):  # a snapshot: one row per key
            values = values[-1]
        derivatives = (
            float(values[14]),
            optional_float(values[3]),
            float(values[11]),
            values[7] / 1000.0,
            float(values[17]),
        )
        ticker = Ticker("bitfinex", market.symbol, *market.spot, None, time.time(), *derivatives)
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        market.derivatives = derivatives
        return [ticker]


class Bitfinex(Exchange):
    """Bitfinex v2; ``BTC/USD`` ↔ ``tBTCUSD``, ``DOGE/USD`` ↔ ``tDOGE:USD``,
    ``BTC/USDT:USDT`` ↔ ``tBTCF0:USTF0``."""

    name = "bitfinex"
    decoder_class = BitfinexDecoder
    fake = "tickerd.testing.bitfinex:FakeBitfinex"
    sample_symbols = ("BTC/USD", "ETH/USD", "BTC/USDT:USDT")
    feeds = "v2 `ticker`, routed by `chanId`; perpetuals also `status` `deriv:{S}`, merged"
    symbol_forms = (
        "`BTC/USD` ↔ `tBTCUSD`, `DOGE/USD` ↔ `tDOGE:USD`, `BTC/USDT:USDT` ↔ `tBTCF0:USTF0` (UST ↔ USDT etc.)"
    )
    keepalive_note = "server `hb`"
    url = "wss://api-pub.bitfinex.com/ws/2"
    #: Bitfinex allows 25 channels per connection; a perpetual takes two (:meth:`channels`).
    max_symbols_per_connection = 25
    keepalive = Keepalive(interval=20.0, frame='{"event":"ping","cid":1}')
    reconnect_request = True
    lacks = ("exchange_ts", "sequence")
    lacks_note = "`index_price` is the mid of the underlying spot pair's book"
    open_interest_unit = "contracts of one unit of the base currency"

    def channels(self, symbol: str) -> int:
        """A perpetual subscribes ``ticker`` and ``status``; spot ``ticker`` alone."""
        return 2 if ":" in symbol else 1

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        _, quote, settle = split_unified(symbol)
        if settle is not None and settle != quote:
            raise ValueError(
                f"{symbol!r}: Bitfinex perpetuals settle in their quote currency "
                f"(expected BASE/QUOTE:QUOTE, e.g. BTC/USDT:USDT for tBTCF0:USTF0)"
            )
