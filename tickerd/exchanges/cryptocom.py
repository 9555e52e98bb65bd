"""Crypto.com Exchange API v1 market data websocket (``wss://stream.crypto.com/exchange/v1/market``):
the ``ticker.{instrument_name}`` channel of spot markets.

Documentation: https://exchange-docs.crypto.com/exchange/v1/rest-ws/index.html, sections
"Websocket Root Endpoints" (the URL, the 1-second wait after connecting, the rate limits),
"Websocket Heartbeats" (``public/heartbeat`` answered by ``public/respond-heartbeat``),
"subscribe" / "unsubscribe" and "ticker.{instrument_name}" (the push and its fields).

Symbols.  Spot instruments are named ``BASE_QUOTE``: ``BTC/USDT`` ↔ ``BTC_USDT``.  The adapter
serves spot only (the same connection would carry ``BTCUSD-PERP``, but this venue is covered
for its spot markets).

Fields.  A push carries ``data``, a list of objects: ``b``/``bs`` and ``k``/``ks`` (best bid and
ask with sizes), ``a`` (last trade price), ``h``/``l`` (24 h high and low), ``v`` (24 h volume
in the base asset), ``c`` (24 h change) and ``t`` (ms).  The page marks the prices, sizes and
the change as null where there are no bids, asks or trades, so those are optional; ``i``, ``v``
and ``t`` are required.  ``c`` is documented as "24-hour price change" and its example
(``"0.03955106"`` beside a last price of 51174.5) shows it is the relative change as a
fraction, as every push seen is: ``change_pct_24h`` is ``c`` × 100, and the absolute change is
not sent (no open price either), so ``change_24h`` stays ``None``.  No sequence number.

Protocol.  ``{"id":n,"method":"subscribe","params":{"channels":[…]},"nonce":ms}`` is answered
by ``{"id":n,"method":"subscribe","code":0}`` (a non-zero ``code`` refuses the request); the
first push of a subscription may carry the request's id too.  The page gives no example of
an unknown instrument's refusal, so each symbol is subscribed in a request of its own and a
refusal is read from the request id and any non-zero ``code``, never from its text.
Crypto.com asks clients to wait 1 second after connecting before sending (its rate limits are
pro-rated by the calendar second the connection opened in): ``connect_delay``.  The market
data websocket takes at most 100 requests a second.

Keepalive.  The server sends ``{"id":…,"method":"public/heartbeat","code":0}`` every 30 s and
disconnects a client that does not answer with ``{"id":…,"method":"public/respond-heartbeat"}``
(same id) within 5 s; the decoder answers with a :class:`~tickerd.exchanges.base.Reply`.  The
page documents no client ping, so the heartbeats are what keeps a quiet connection past the
silence watchdog: they come every 30 s, the default ``feed.silence_timeout``, which the
watchdog (sampling every quarter of it) lets through; a longer timeout gives a late heartbeat
some margin.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import Decoder, Exchange, Rejected, Reply, Subscribed
from tickerd.model import Ticker


def native(symbol: str) -> str:
    """``BTC/USDT`` → ``BTC_USDT``."""
    return symbol.replace("/", "_")


class CryptocomDecoder(Decoder):
    """Decodes ``ticker`` pushes, request answers and heartbeats."""

    exchange = "cryptocom"
    derivatives = False

    def __init__(self, symbols: Iterable[str]) -> None:
        #: instrument name → unified symbol.
        self._names: dict[str, str] = {}
        #: request id → the symbol a pending subscribe request is for.
        self._pending: dict[int, str] = {}
        self._next_id = 0
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._names[native(symbol)] = symbol

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._names.pop(native(symbol), None)

    # -- requests --------------------------------------------------------------------------

    def _request(self, method: str, symbol: str) -> str:
        self._next_id += 1
        if method == "subscribe":
            self._pending[self._next_id] = symbol
        return orjson.dumps(
            {
                "id": self._next_id,
                "method": method,
                "params": {"channels": [f"ticker.{native(symbol)}"]},
                "nonce": int(time.time() * 1000),
            }
        ).decode()

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("subscribe", symbol) for symbol in symbols]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("unsubscribe", symbol) for symbol in symbols]

    # -- frames ----------------------------------------------------------------------------

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        method = msg["method"]
        if method == "public/heartbeat":
            self.events.append(Reply(f'{{"id":{int(msg["id"])},"method":"public/respond-heartbeat"}}'))
            return []
        if method == "unsubscribe":
            return []
        if method != "subscribe":
            return self.junk_frame()
        symbol = self._pending.pop(msg.get("id"), None) if self._pending else None
        if symbol is not None and symbol in self.symbols:
            code = msg.get("code", 0)
            if code:
                self.events.append(Rejected(symbol, f"{code}: {msg.get('message', '')}"))
                return []
            self.events.append(Subscribed(symbol))
        result = msg.get("result")
        if result is None:
            return []
        if result["channel"] != "ticker":
            return self.junk_frame()
        return self._tickers(result["data"])

    def _tickers(self, data: list[dict[str, Any]]) -> list[Ticker]:
        """The tickers of one push, built positionally in the Ticker's field order; the
        nullable fields (see the module docstring) converted inline."""
        now = time.time()
        names = self._names
        tickers = []
        for item in data:
            symbol = names.get(item["i"])
            if symbol is None:
                continue
            a, b, k, bs, ks, h, low, c = (
                item.get("a"),
                item.get("b"),
                item.get("k"),
                item.get("bs"),
                item.get("ks"),
                item.get("h"),
                item.get("l"),
                item.get("c"),
            )
            tickers.append(
                Ticker(
                    "cryptocom",
                    symbol,
                    None if a is None else float(a),
                    None if b is None else float(b),
                    None if k is None else float(k),
                    None if bs is None else float(bs),
                    None if ks is None else float(ks),
                    float(item["v"]),
                    None if h is None else float(h),
                    None if low is None else float(low),
                    None,
                    None if c is None else float(c) * 100.0,
                    item["t"] / 1000.0,
                    now,
                )
            )
        return tickers


class Cryptocom(Exchange):
    """Crypto.com Exchange v1: spot ``BTC/USDT`` ↔ ``BTC_USDT``."""

    name = "cryptocom"
    url = "wss://stream.crypto.com/exchange/v1/market"
    decoder_class = CryptocomDecoder
    #: A market data connection takes at most 400 subscriptions.
    max_symbols_per_connection = 400
    #: At most 100 requests a second on the market data websocket.
    send_interval = 0.01
    #: "Wait 1 second after connecting before sending", as documented.
    connect_delay = 1.0
    spot_only = True
    lacks = ("change_24h", "sequence")
    fake = "tickerd.testing.cryptocom:FakeCryptocom"
    sample_symbols = ("BTC/USDT", "ETH/USDT", "BTC/USD")
    feeds = "v1 `ticker.{instrument_name}` (one request per symbol)"
    symbol_forms = "`BTC/USDT` ↔ `BTC_USDT`"
    keepalive_note = (
        "answers the server's `public/heartbeat` (every 30 s) with `public/respond-heartbeat`; "
        "waits 1 s after connecting before sending"
    )
    lacks_note = "`c` is the relative 24 h change (no open price, so no absolute change)"
