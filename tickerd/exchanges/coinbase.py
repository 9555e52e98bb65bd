"""Coinbase Advanced Trade market data: the ``ticker`` channel, kept open by ``heartbeats``.

Why it looks the way it does:

* Coinbase disconnects a client that has not subscribed within 5 s of connecting, and takes
  one channel per subscribe message.  The first frames of a connection are therefore the
  ``ticker`` subscription (sent first, so that the first ``subscriptions`` ack already lists
  the products) and then the ``heartbeats`` one.
* Channels without traffic are closed after 60-90 s unless the connection subscribes to
  ``heartbeats``, which then sends one message a second: that subscription *is* the
  keepalive, so no application ping is needed, and silence means a dead connection.
* Every ``ticker`` object is complete (snapshot first, then updates with the same schema),
  so no merging is needed.  The only timestamp is the envelope's RFC 3339 one, with
  nanoseconds.
* Coinbase does not refuse an unknown product id: it leaves it out of the ``subscriptions``
  ack, which always lists the connection's whole subscription set, one ack per request.
  A product still missing once the ack of its own request has arrived is rejected.
* ``-USDC`` products are served on market data channels as their ``-USD`` twin: a
  subscription to ``BTC-USDC`` gets data labelled ``BTC-USD``.  Data is routed by both
  labels, so it reaches every symbol asked for (``BTC/USDC`` and ``BTC/USD`` both, if the
  connection carries both).  ``USDT-USDC`` and ``EURC-USDC`` are real products on every
  channel and keep their own label.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Rejected,
    Subscribed,
    chunks,
)
from tickerd.model import Ticker

#: Product ids per subscribe message: keeps frames small; Coinbase documents no limit.
_PER_REQUEST = 100
#: Bases whose ``-USDC`` product is a market of its own on every channel (websocket-channels doc).
_OWN_USDC_MARKETS = frozenset({"USDT", "EURC"})


def native(symbol: str) -> str:
    """``BTC/USD`` → ``BTC-USD``, Coinbase's product id."""
    return symbol.replace("/", "-")


def unified(product_id: str) -> str:
    """``BTC-USD`` → ``BTC/USD``."""
    base, _, quote = product_id.partition("-")
    return f"{base}/{quote}"


def usd_twin(product_id: str) -> str | None:
    """The label Coinbase puts on a ``-USDC`` product's market data, if it relabels it."""
    base, _, quote = product_id.partition("-")
    if quote == "USDC" and base not in _OWN_USDC_MARKETS:
        return f"{base}-USD"
    return None


def rfc3339(value: str) -> float:
    """``2023-02-09T20:30:37.167359596Z`` → epoch seconds.

    Coinbase sends nanoseconds, which ``datetime`` cannot hold: the whole seconds are parsed
    and the fraction is added as a float (double precision keeps microseconds at today's
    epoch).
    """
    head, _, fraction = value.rstrip("Z").partition(".")
    seconds = _whole_seconds(head)
    return seconds + float("0." + fraction) if fraction else seconds


@functools.lru_cache(maxsize=4)
def _whole_seconds(head: str) -> float:
    """``2023-02-09T20:30:37`` (UTC) → epoch seconds.  Remembered: every frame of the same
    second shares it, and the parse is half of :func:`rfc3339`."""
    return datetime.fromisoformat(head + "+00:00").timestamp()


class CoinbaseDecoder(Decoder):
    """Decodes Advanced Trade frames; judges subscriptions by the acks that answer them."""

    exchange = "coinbase"
    derivatives = False

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Product id as labelled in data → the unified symbols it feeds.
        self._routes: dict[str, set[str]] = {}
        #: Symbol → how many acks must have arrived before its absence from one is a refusal.
        self._awaiting: dict[str, int] = {}
        self._requests = 0
        self._acks = 0
        self._heartbeats = False
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        for label in self._labels(symbol):
            self._routes.setdefault(label, set()).add(symbol)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._awaiting.pop(symbol, None)
        for label in self._labels(symbol):
            routed = self._routes.get(label)
            if routed is not None:
                routed.discard(symbol)
                if not routed:
                    del self._routes[label]

    @staticmethod
    def _labels(symbol: str) -> list[str]:
        product_id = native(symbol)
        twin = usd_twin(product_id)
        return [product_id] if twin is None else [product_id, twin]

    def _request(self, kind: str, channel: str, product_ids: list[str]) -> str:
        self._requests += 1  # Coinbase answers every (un)subscribe with one ack
        return orjson.dumps({"type": kind, "product_ids": product_ids, "channel": channel}).decode()

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        frames = []
        for part in chunks(symbols, _PER_REQUEST):
            frames.append(self._request("subscribe", "ticker", [native(s) for s in part]))
            self._awaiting.update(dict.fromkeys(part, self._requests))
        if not self._heartbeats:  # once per connection, after the first ticker request
            self._heartbeats = True
            frames.append(self._request("subscribe", "heartbeats", []))
        return frames

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [
            self._request("unsubscribe", "ticker", [native(s) for s in part])
            for part in chunks(symbols, _PER_REQUEST)
        ]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        channel = msg.get("channel")
        if channel == "ticker":
            return self._tickers(msg)
        if channel == "heartbeats":
            return []
        if channel == "subscriptions":
            self._ack(msg["events"][0]["subscriptions"])
            return []
        if msg.get("type") == "error":
            self._error(str(msg.get("message", "")) + " " + str(msg.get("reason", "")))
            return []
        return self.junk_frame()

    def _tickers(self, msg: dict[str, Any]) -> list[Ticker]:
        exchange_ts = rfc3339(msg["timestamp"])
        now = time.time()
        tickers = []
        for event in msg["events"]:
            for item in event["tickers"]:
                # Coinbase sometimes sends an empty ticker (product_id ""), which routes nowhere.
                for symbol in self._routes.get(item["product_id"], ()):
                    tickers.append(self._ticker(symbol, item, exchange_ts, now))
        return tickers

    def _ack(self, subscriptions: dict[str, list[str]]) -> None:
        """One ack answers one request and lists every product the connection now has."""
        self._acks += 1
        listed = set(subscriptions.get("ticker", ()))
        for symbol, due in list(self._awaiting.items()):
            if any(label in listed for label in self._labels(symbol)):
                self.events.append(Subscribed(symbol))
            elif due <= self._acks:
                self.events.append(Rejected(symbol, f"{native(symbol)} is not a Coinbase product"))
            else:
                continue
            del self._awaiting[symbol]

    def _error(self, text: str) -> None:
        """An error names the product it is about, if any; only that symbol is refused."""
        for symbol in list(self._awaiting):
            if native(symbol) in text:
                self.events.append(Rejected(symbol, text.strip()))
                del self._awaiting[symbol]

    @staticmethod
    def _ticker(symbol: str, item: dict[str, Any], exchange_ts: float, now: float) -> Ticker:
        """Each ticker object is complete (snapshot and updates share the schema): the fields
        read here are all required, so a frame without one is junk instead of a null
        overwriting the stored value.  Built positionally, in the Ticker's field order (keyword
        arguments cost a sixth of the decode)."""
        return Ticker(
            "coinbase",
            symbol,
            float(item["price"]),
            float(item["best_bid"]),
            float(item["best_ask"]),
            float(item["best_bid_quantity"]),
            float(item["best_ask_quantity"]),
            float(item["volume_24_h"]),
            float(item["high_24_h"]),
            float(item["low_24_h"]),
            None,  # Coinbase sends no absolute change
            float(item["price_percent_chg_24_h"]),
            exchange_ts,
            now,
        )


class Coinbase(Exchange):
    """Coinbase Advanced Trade spot; unified ``BTC/USD`` ↔ product id ``BTC-USD``."""

    name = "coinbase"
    decoder_class = CoinbaseDecoder
    spot_only = True
    fake = "tickerd.testing.coinbase:FakeCoinbase"
    sample_symbols = ("BTC/USD", "ETH/USD")
    feeds = "Advanced Trade `ticker` + `heartbeats`"
    symbol_forms = "`BTC/USD` ↔ `BTC-USD` (`-USDC` ids answered as `-USD` are mapped back)"
    keepalive_note = "the `heartbeats` channel"
    lacks_note = "only the percentage is sent"
    url = "wss://advanced-trade-ws.coinbase.com"
    #: Not documented; kept moderate so one refused or slow connection costs little.
    max_symbols_per_connection = 100
    #: Unauthenticated clients may send 8 messages a second per IP: stay well under it.
    send_interval = 0.2
    lacks = ("change_24h", "sequence")
