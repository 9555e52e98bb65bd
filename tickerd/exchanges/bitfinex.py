"""Bitfinex WebSocket v2 public ``ticker`` channel (spot pairs and ``F0`` perpetuals).

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
* 25 channels per connection (the documented limit; the wire was seen to accept more).

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


class BitfinexDecoder(Decoder):
    """Routes ``[CHAN_ID, …]`` frames by the ids the ``subscribed`` events assign."""

    exchange = "bitfinex"

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_native: dict[str, str] = {}
        self._channels: dict[int, str] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_native[native(symbol)] = symbol

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_native.pop(native(symbol), None)

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [
            orjson.dumps({"event": "subscribe", "channel": "ticker", "symbol": native(s)}).decode()
            for s in symbols
        ]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        # Forget the ids now, so that frames still in flight for them are dropped.
        gone = [chan_id for chan_id, symbol in self._channels.items() if symbol in symbols]
        for chan_id in gone:
            del self._channels[chan_id]
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
        symbol = self._channels.get(chan_id)
        if symbol is None:
            return []  # a channel unsubscribed a moment ago (late frames are expected)
        if not isinstance(payload, list):
            return self.junk_frame()
        return [self._ticker(symbol, payload)]

    def _subscribed(self, msg: dict[str, Any]) -> None:
        symbol = self._by_native.get(msg.get("symbol") or "t" + msg.get("pair", ""))
        if symbol is None:  # removed before its ack: it has an id now, so it can go
            self.events.append(Reply(self._unsubscribe(msg["chanId"])))
            return
        self._channels[msg["chanId"]] = symbol
        self.events.append(Subscribed(symbol))

    def _error(self, msg: dict[str, Any]) -> None:
        symbol = self._by_native.get(msg.get("symbol", ""))
        if symbol is None:
            return  # about no symbol of ours (an unknown chanId to unsubscribe, say)
        if msg.get("code") == _DUPLICATE and "chanId" in msg:
            self._subscribed(msg)
            return
        self.events.append(Rejected(symbol, f"{msg.get('code')}: {msg.get('msg')}"))

    @staticmethod
    def _ticker(symbol: str, values: list[Any]) -> Ticker:
        """Every payload is a full snapshot of ten numbers: a shorter one, or a null among
        them, makes the frame junk (``IndexError``, ``TypeError``).  Built positionally, in the
        Ticker's field order (keyword arguments cost a fifth of the decode); the values are read
        in the payload's order, so the one a junk frame is blamed on is the first bad one."""
        bid, bid_size, ask, ask_size = float(values[0]), float(values[1]), float(values[2]), float(values[3])
        change, change_pct = float(values[4]), float(values[5]) * 100
        last, volume, high, low = float(values[6]), float(values[7]), float(values[8]), float(values[9])
        return Ticker(
            "bitfinex",
            symbol,
            last,
            bid,
            ask,
            bid_size,
            ask_size,
            volume,
            high,
            low,
            change,
            change_pct,
            None,
            time.time(),
        )


class Bitfinex(Exchange):
    """Bitfinex v2; ``BTC/USD`` ↔ ``tBTCUSD``, ``DOGE/USD`` ↔ ``tDOGE:USD``,
    ``BTC/USDT:USDT`` ↔ ``tBTCF0:USTF0``."""

    name = "bitfinex"
    decoder_class = BitfinexDecoder
    fake = "tickerd.testing.bitfinex:FakeBitfinex"
    sample_symbols = ("BTC/USD", "ETH/USD", "BTC/USDT:USDT")
    feeds = "v2 `ticker`, routed by `chanId`"
    symbol_forms = (
        "`BTC/USD` ↔ `tBTCUSD`, `DOGE/USD` ↔ `tDOGE:USD`, `BTC/USDT:USDT` ↔ `tBTCF0:USTF0` (UST ↔ USDT etc.)"
    )
    keepalive_note = "server `hb`"
    url = "wss://api-pub.bitfinex.com/ws/2"
    #: One ``ticker`` channel per symbol; Bitfinex allows 25 channels per connection.
    max_symbols_per_connection = 25
    keepalive = Keepalive(interval=20.0, frame='{"event":"ping","cid":1}')
    reconnect_request = True
    lacks = (
        "exchange_ts",
        "mark_price",
        "index_price",
        "funding_rate",
        "next_funding_ts",
        "open_interest",
        "sequence",
    )

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        _, quote, settle = split_unified(symbol)
        if settle is not None and settle != quote:
            raise ValueError(
                f"{symbol!r}: Bitfinex perpetuals settle in their quote currency "
                f"(expected BASE/QUOTE:QUOTE, e.g. BTC/USDT:USDT for tBTCF0:USTF0)"
            )
