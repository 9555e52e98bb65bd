"""Crypto.com Exchange API v1 market data websocket (``wss://stream.crypto.com/exchange/v1/market``):
the ``ticker.{instrument_name}`` channel of spot markets.

Documentation (Crypto.com's v1 reference, one page per method since it moved from the single
page https://exchange-docs.crypto.com/exchange/v1/rest-ws/index.html), under
https://exchange-developer.crypto.com/exchange/v1/docs/api/:

- ``websocket/ws-channel-ticker-instrument-name``: the subscription and the push, its fields;
- ``websocket/ws-market-data-client-commands-market-data-subscribe-request`` and
  ``...-market-data-unsubscribe-request``: the requests;
- ``websocket/ws-market-data-client-commands-heartbeat-request`` and
  ``...-respond-heartbeat-request``: the keepalive;
- ``websocket-common-api-reference``: the root endpoints, rate limits, request and response
  format, response codes, termination codes and "TOO_MANY_REQUESTS After Websocket Connects"
  (the 1 s wait).

Symbols.  Spot instruments are named ``BASE_QUOTE``: ``BTC/USDT`` ↔ ``BTC_USDT``.  The adapter
serves spot only (the same connection would carry ``BTCUSD-PERP``, the instrument of the
page's examples, but this venue is covered for its spot markets).

Fields.  A push carries ``data``, a list of objects: ``b``/``bs`` and ``k``/``ks`` (best bid and
ask with sizes), ``a`` (last trade price), ``h``/``l`` (24 h high and low), ``v`` (24 h volume
in the base asset), ``c`` (24 h change), ``i`` (instrument) and ``t`` (ms); ``vv`` (USD value)
and ``oi`` (open interest, a derivative's) are not read.  The page marks ``l``, ``a`` and ``c``
null where there were no trades and ``b``/``k`` null where there are no bids/asks, so those,
their sizes and ``h`` are optional; ``i``, ``v`` and ``t`` are required.  Numbers are decimal
strings; the schema types ``t`` as a string too (``"1771761038000"``) while its example sends a
number, so both are read.  ``c`` is documented as "24-hour price change" and its example
(``"0.03955106"`` beside a last price of 51174.5) shows it is the relative change as a
fraction, as every push seen is: ``change_pct_24h`` is ``c`` × 100, and the absolute change is
not sent (no open price either), so ``change_24h`` stays ``None``.  No sequence number.

Protocol.  ``{"id":n,"method":"subscribe","params":{"channels":[…]},"nonce":ms}`` is answered
with the request's ``id`` and ``method`` and a ``code``: 0 for success, anything else refuses
the request (with a ``message``).  The schema types ``id`` and ``code`` as strings of digits
while every example and the response-format table send integers, so both are read.  The push
example carries ``"id":-1``; a first push may carry the request's id, which then acks it.
The pages give no example of an unknown instrument's refusal (the code table has 40003
INVALID_REQUEST and 209 INVALID_INSTRUMENT, among others), so each symbol is subscribed in a
request of its own and a refusal is read from the request id and any non-zero ``code``, never
from its text.  Crypto.com pro-rates its rate limits by the calendar second the connection
opened in and advises a 1 s sleep after connecting before sending: ``connect_delay``.  The
market data websocket takes at most 100 requests a second.

Keepalive.  The server sends ``{"id":…,"method":"public/heartbeat","code":0}`` every 30 s and
disconnects (close code 1000) a client that does not answer with
``{"id":…,"method":"public/respond-heartbeat"}`` (same id) within 5 s; the decoder answers
with a :class:`~tickerd.exchanges.base.Reply`.  The pages document no client ping, so the
heartbeats are what keeps a quiet connection past the silence watchdog: they come every 30 s,
the default ``feed.silence_timeout``, which the watchdog (sampling every quarter of it) lets
through; a longer timeout gives a late heartbeat some margin.
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
        symbol = self._pending.pop(int(msg.get("id", -1)), None) if self._pending else None
        if symbol is not None and symbol in self.symbols:
            code = int(msg.get("code", 0))
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
                    int(item["t"]) / 1000.0,
                    now,
                )
            )
        return tickers


class Cryptocom(Exchange):
    """Crypto.com Exchange v1: spot ``BTC/USDT`` ↔ ``BTC_USDT``."""

    name = "cryptocom"
    url = "wss://stream.crypto.com/exchange/v1/market"
    decoder_class = CryptocomDecoder
    #: A market data connection takes at most 400 subscriptions (Crypto.com's "Market Data
    #: Websocket Subscription Limits"; one more is refused with 40107 EXCEED_MAX_SUBSCRIPTIONS).
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
