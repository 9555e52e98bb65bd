"""bitFlyer Lightning: the ``lightning_ticker_{product_code}`` channel over JSON-RPC 2.0.

Grounded in bitFlyer's official Realtime API documentation: "JSON-RPC 2.0 over WebSocket"
(https://bf-lightning-api.readme.io/docs/endpoint-json-rpc: endpoint, ``subscribe`` /
``unsubscribe`` with ``params: {channel}`` answered ``true``, batch requests, the
``channelMessage`` client method) and "Ticker"
(https://bf-lightning-api.readme.io/docs/realtime-ticker: best bid/ask with sizes, ``ltp``,
``volume``/``volume_by_product``, ``tick_id``; its example is the frame of the decoder tests).

Why it looks the way it does:

* Every ticker message is complete (best bid and ask with sizes, last price, 24 h volume), so
  nothing is merged.  ``tick_id`` grows with every ticker of a product: it is the ``sequence``.
  The message has no 24 h high, low or change.  ``timestamp`` is RFC 3339 with seven
  fractional digits.
* One channel per request, but JSON-RPC batches are supported and processed in order: the
  subscriptions of a connection go out as one batch (an array), answered by an array.
* The documentation rate-limits the ticker channel's messages "for rational reasons such as
  delivery efficiency" (it points to ``lightning_executions`` for every trade): ``ltp`` is the
  last price as of the latest ticker.
* ``FX_BTC_JPY`` (formerly Lightning FX, now "bitFlyer Crypto CFD") is a margin product without
  expiry, settled in yen, whose positions are charged a swap point rather than paid a funding
  rate: it is served as the perpetual ``BTC/JPY:JPY``.  Its ticker carries no mark or index
  price, funding or open interest, so those stay ``None``.  Lightning Futures (dated) were
  discontinued: no dated futures.
* The documentation names no error for an unknown channel and no keepalive duty: a
  subscription to an unknown product is answered ``true`` and never served, so the symbol
  waits, then shows as stale (a JSON-RPC ``error`` answer, should one come, rejects it); the
  websocket layer answers the server's ping frames.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import Decoder, Exchange, Rejected, Subscribed, chunks, market
from tickerd.exchanges.coinbase import rfc3339
from tickerd.model import Ticker

#: Requests per batch frame: keeps frames small; bitFlyer documents no limit.
_PER_BATCH = 50
#: The channel name's prefix: ``lightning_ticker_BTC_JPY``.
CHANNEL = "lightning_ticker_"
#: The product code prefix of bitFlyer Crypto CFD (formerly Lightning FX), its perpetual-like market.
FX = "FX_"


def native(symbol: str) -> str:
    """``BTC/JPY`` → ``BTC_JPY``; ``BTC/JPY:JPY`` → ``FX_BTC_JPY`` (Crypto CFD)."""
    parts = market(symbol)
    code = f"{parts.base}_{parts.quote}"
    return code if parts.spot else FX + code


def unified(product_code: str) -> str:
    """``BTC_JPY`` → ``BTC/JPY``; ``FX_BTC_JPY`` → ``BTC/JPY:JPY``."""
    fx = product_code.startswith(FX)
    base, _, quote = product_code.removeprefix(FX).partition("_")
    return f"{base}/{quote}:{quote}" if fx else f"{base}/{quote}"


class BitflyerDecoder(Decoder):
    """Decodes ``channelMessage`` notifications and the answers to (batched) requests."""

    exchange = "bitflyer"

    def __init__(self, symbols: Iterable[str]) -> None:
        self._ids = itertools.count(1)
        #: Request id → (symbol, whether it subscribes).
        self._requests: dict[int, tuple[str, bool]] = {}
        #: Channel name → unified symbol.
        self._by_channel: dict[str, str] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_channel[CHANNEL + native(symbol)] = symbol

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_channel.pop(CHANNEL + native(symbol), None)

    def _batches(self, method: str, symbols: Sequence[str]) -> list[str]:
        frames = []
        for part in chunks(symbols, _PER_BATCH):
            batch = []
            for symbol in part:
                request_id = next(self._ids)
                self._requests[request_id] = (symbol, method == "subscribe")
                channel = CHANNEL + native(symbol)
                batch.append(
                    {"jsonrpc": "2.0", "method": method, "params": {"channel": channel}, "id": request_id}
                )
            frames.append(orjson.dumps(batch).decode())
        return frames

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._batches("subscribe", symbols)

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._batches("unsubscribe", symbols)

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        if type(msg) is dict:
            if msg.get("method") == "channelMessage":
                return self._ticker(msg["params"])
            if "id" in msg:
                self._answer(msg)
                return []
        elif type(msg) is list and msg and all(type(answer) is dict and "id" in answer for answer in msg):
            for answer in msg:  # the answers to a batch, in order
                self._answer(answer)
            return []
        return self.junk_frame()

    def _answer(self, msg: dict[str, Any]) -> None:
        """``true`` confirms a subscription; an ``error`` refuses it (naming the symbol)."""
        asked = self._requests.pop(msg["id"], None)
        if asked is None:
            return
        symbol, subscribe = asked
        if not subscribe or symbol not in self.symbols:
            return
        if "error" in msg:
            error = msg["error"]
            self.events.append(Rejected(symbol, f"{error.get('code')}: {error.get('message')}"))
        elif msg.get("result") is True:
            self.events.append(Subscribed(symbol))

    def _ticker(self, params: dict[str, Any]) -> list[Ticker]:
        """A ticker message always carries the fields read here: without one it is junk.
        Built positionally, in the Ticker's field order."""
        symbol = self._by_channel.get(params["channel"])
        if symbol is None:
            return []
        m = params["message"]
        return [
            Ticker(
                "bitflyer",
                symbol,
                float(m["ltp"]),
                float(m["best_bid"]),
                float(m["best_ask"]),
                float(m["best_bid_size"]),
                float(m["best_ask_size"]),
                float(m["volume_by_product"]),
                None,  # no 24 h high, low or change
                None,
                None,
                None,
                rfc3339(m["timestamp"]),
                time.time(),
                None,  # mark_price … open_interest: not in the ticker (FX_BTC_JPY neither)
                None,
                None,
                None,
                None,
                int(m["tick_id"]),
            )
        ]


class Bitflyer(Exchange):
    """bitFlyer Lightning spot (``BTC/JPY`` ↔ ``BTC_JPY``) and Crypto CFD (``BTC/JPY:JPY`` ↔
    ``FX_BTC_JPY``)."""

    name = "bitflyer"
    decoder_class = BitflyerDecoder
    rejects_unknown = False
    fake = "tickerd.testing.bitflyer:FakeBitflyer"
    sample_symbols = ("BTC/JPY", "ETH/JPY", "BTC/JPY:JPY")
    feeds = "`lightning_ticker_{product_code}` (JSON-RPC 2.0, batched subscribes)"
    symbol_forms = "`BTC/JPY` ↔ `BTC_JPY`; Crypto CFD `BTC/JPY:JPY` ↔ `FX_BTC_JPY`"
    keepalive_note = "answers server ping frames"
    lacks_note = "Crypto CFD (`FX_BTC_JPY`) has swap points, not funding; its ticker has no derivative fields"
    sequence_source = "`tick_id`"
    url = "wss://ws.lightstream.bitflyer.com/json-rpc"
    #: Not documented; kept moderate.
    max_symbols_per_connection = 50
    send_interval = 0.2
    lacks = (
        "high_24h",
        "low_24h",
        "change_24h",
        "change_pct_24h",
        "mark_price",
        "index_price",
        "funding_rate",
        "next_funding_ts",
        "open_interest",
    )

    def check_symbol(self, symbol: str) -> None:
        """Beyond the base rules: a perpetual is the Crypto CFD, settled in its quote (yen)."""
        super().check_symbol(symbol)
        parts = market(symbol)
        if parts.perpetual and parts.settle != parts.quote:
            raise ValueError(
                f"{symbol!r}: bitFlyer's only perpetual-like market is the Crypto CFD, settled in "
                f"its quote (expected {parts.base}/{parts.quote}:{parts.quote})"
            )
