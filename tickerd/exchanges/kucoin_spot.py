"""KuCoin spot: ``/market/ticker`` merged with ``/market/snapshot`` into one record.

Documentation: KuCoin API docs, Spot public channels (https://www.kucoin.com/docs-new):
"Ticker" (``/market/ticker:{symbol},{symbol}``, page 3470063w0) and "Symbol Snapshot"
(``/market/snapshot:{symbol}``, page 3470065w0); the connection protocol (token from
``POST https://api.kucoin.com/api/v1/bullet-public``, welcome, ping, acks) is
:mod:`tickerd.exchanges.kucoin`'s.

Two topics make one ticker, each frame of either producing a complete one from the latest of
both (:class:`~tickerd.exchanges.kucoin.MergingKucoinDecoder`):

* ``trade.ticker`` (``/market/ticker``, up to every 100 ms): ``bestBid``/``bestAsk`` with
  ``bestBidSize``/``bestAskSize``, ``price`` (the last trade), ``sequence`` (a string, increasing)
  and the time of the last match in ms.  The page's schema calls that field ``time``, its
  example ``Time``; the frames KuCoin sends say ``time``, and both are read.  The data carries
  no symbol: it is read from the ``topic``.
* ``trade.snapshot`` (``/market/snapshot``, every 2 s): ``data.data`` holds ``vol`` (base
  asset), ``high``, ``low``, ``changePrice``, ``changeRate`` (a fraction: ``0.0047`` is
  0.47 %), ``lastTradedPrice`` and ``datetime`` (ms), as JSON numbers.  Its last price is used
  only until a ticker frame brings one: the ticker's is fresher.  The page documents this topic
  for one symbol (the market form ``/market/snapshot:{market}`` sends a whole quote market, far
  more than asked for), so it is subscribed one request a symbol
  (:attr:`~tickerd.exchanges.kucoin.KucoinDecoder.single_symbol_topics`), while
  ``/market/ticker`` takes up to 100 symbols a request.

The records are kept across reconnects (:meth:`Kucoin.merged_state`), so a new connection's
first book keeps the statistics until the next snapshot.  An unknown symbol is refused by an
``error`` to its ``/market/ticker`` request, and reported as rejected.

Symbols: ``BTC-USDT`` ↔ ``BTC/USDT``.
"""

from __future__ import annotations

from typing import Any

from tickerd.exchanges import kucoin
from tickerd.exchanges.base import market
from tickerd.exchanges.kucoin import NO_DERIVATIVE
from tickerd.model import Ticker

#: Where KuCoin hands out its public spot tokens.
REST_URL = "https://api.kucoin.com/api/v1/bullet-public"


def native(symbol: str) -> str:
    """``BTC/USDT`` → ``BTC-USDT``."""
    parts = market(symbol)
    return f"{parts.base}-{parts.quote}"


def unified(name: str) -> str:
    """``BTC-USDT`` → ``BTC/USDT``; ``ValueError`` for a name of another form."""
    base, dash, quote = name.partition("-")
    if not (base and dash and quote) or "-" in quote:
        raise ValueError(f"{name!r} is not a KuCoin spot symbol (BASE-QUOTE)")
    return f"{base}/{quote}"


class KucoinSpotDecoder(kucoin.MergingKucoinDecoder):
    exchange = "kucoin"
    derivatives = False
    topics = ("/market/snapshot", "/market/ticker")
    single_symbol_topics = frozenset({"/market/snapshot"})
    native = staticmethod(native)

    def _message(self, msg: dict[str, Any]) -> list[Ticker]:
        subject = msg["subject"]
        if subject == "trade.ticker":
            state = self._merged.get(msg["topic"].partition(":")[2])
            if state is None:
                return []
            data = msg["data"]
            sequence = int(data["sequence"])
            if state.sequence is not None and sequence < state.sequence:
                return []  # older than the book merged (the old connection's, during a rotation)
            when = data.get("time") or data["Time"]
            book = (
                float(data["bestBid"]),
                float(data["bestAsk"]),
                float(data["bestBidSize"]),
                float(data["bestAskSize"]),
            )
            return self._ticker(
                state, book, float(data["price"]), state.statistics, NO_DERIVATIVE, when / 1000.0, sequence
            )
        if subject == "trade.snapshot":
            data = msg["data"]["data"]
            state = self._merged.get(data["symbol"])
            if state is None:
                return []
            statistics = (
                float(data["vol"]),
                float(data["high"]),
                float(data["low"]),
                float(data["changePrice"]),
                float(data["changeRate"]) * 100.0,
            )
            last = state.last if state.last is not None else float(data["lastTradedPrice"])
            return self._ticker(
                state, state.book, last, statistics, NO_DERIVATIVE, data["datetime"] / 1000.0, state.sequence
            )
        return self.junk_frame(f"unknown subject {subject!r}")


class Kucoin(kucoin.KucoinExchange):
    """KuCoin spot markets."""

    name = "kucoin"
    #: What the docs name; the endpoint actually used comes with each token (:meth:`resolve`).
    url = "wss://ws-api-spot.kucoin.com/"
    rest_url = REST_URL
    decoder_class = KucoinSpotDecoder
    #: A symbol takes a snapshot request of its own: 50 symbols are 51 requests, half of the
    #: 100 KuCoin takes in 10 s, leaving room for pings and the retries after a refusal; and
    #: 100 topics, well under the 300 a connection may have.
    max_symbols_per_connection = 50
    send_interval = kucoin.SEND_INTERVAL
    spot_only = True
    fake = "tickerd.testing.kucoin_spot:FakeKucoinSpot"
    sample_symbols = ("BTC/USDT", "ETH/USDT", "ETH/BTC")
    feeds = (
        "`/market/ticker` (BBO with sizes, last) + `/market/snapshot` (24 h stats), merged; "
        "endpoint and token from `POST /api/v1/bullet-public` before every connection"
    )
    symbol_forms = "`BTC/USDT` ↔ `BTC-USDT`"
    keepalive_note = (
        '`{"type":"ping"}` every half `pingInterval` of the token answer; dead after '
        "`pingInterval + pingTimeout` without a frame"
    )
    lacks_note = (
        "24 h stats every 2 s (`/market/snapshot`, one request a symbol); `volume_24h` in the base asset"
    )
    sequence_source = "`/market/ticker` `sequence`"
