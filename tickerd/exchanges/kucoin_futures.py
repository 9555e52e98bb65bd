"""KuCoin Futures: ``tickerV2`` merged with ``snapshot`` and ``instrument`` into one record.

Documentation: KuCoin API docs, Futures public channels (https://www.kucoin.com/docs-new):
"Get Ticker v2" (``/contractMarket/tickerV2:{symbol}``, page 3470080w0), "Symbol Snapshot"
(``/contractMarket/snapshot:{symbol}``, 3470089w0) and "Instrument"
(``/contract/instrument:{symbol}``, 3470087w0); the connection protocol is
:mod:`tickerd.exchanges.kucoin`'s.

Three topics make one ticker, each frame of any of them producing a complete one from the
latest of all three, the sanity rule applied to the merged candidate before it is kept:

* ``tickerV2`` (real time, on every change of the book's top): ``bestBidPrice``/``bestAskPrice``
  (strings in the current docs, numbers in the older ones: both are read), ``bestBidSize``/
  ``bestAskSize`` in contracts (lots; one XBTUSDTM lot is 0.001 BTC), ``sequence`` (shared with
  the level-2 book, increasing but not contiguous) and ``ts`` in **nanoseconds**;
* ``snapshot.24h`` of ``/contractMarket/snapshot`` (about every 5 s): ``lastPrice``,
  ``highPrice``, ``lowPrice``, ``priceChg``, ``priceChgPct`` (a fraction: ``-0.0281`` is
  −2.81 %), ``volume`` (the base asset on linear contracts: the docs' example has 12062 for
  XBTUSDTM with a turnover of 1.03e9 USDT) and ``ts`` in nanoseconds;
* ``/contract/instrument``: ``mark.index.price`` (every second: ``markPrice``,
  ``indexPrice``, ``timestamp`` in ms) and ``funding.rate`` (every minute: ``fundingRate``,
  one period's rate as a fraction; the topic has no ``symbol`` field, so the symbol is read
  from the ``topic``).

Open interest and the next funding time are on no public websocket topic (REST only:
``GET /api/v1/contracts/{symbol}`` has ``openInterest`` and ``nextFundingRateTime``), so they
stay null.  The records are kept across reconnects (:meth:`KucoinFutures.merged_state`):
``funding.rate`` comes once a minute, and a fresh connection must not blank it meanwhile.

Symbols: ``XBTUSDTM`` ↔ ``BTC/USDT:USDT`` and ``XBTUSDCM`` ↔ ``BTC/USDC:USDC`` (linear
perpetuals, the quote then ``M``), ``XBTUSDM`` ↔ ``BTC/USD:BTC`` (inverse); KuCoin calls bitcoin
``XBT`` in contract names.  Dated futures (``XBTMZ25``) are not served yet.
"""

from __future__ import annotations

from typing import Any

from tickerd.exchanges import kucoin
from tickerd.exchanges.base import market
from tickerd.model import Ticker

#: Unified ↔ native base asset names where KuCoin's contracts differ from the ecosystem's.
_NATIVE_BASE = {"BTC": "XBT"}
_UNIFIED_BASE = {native: unified for unified, native in _NATIVE_BASE.items()}
#: Quote assets of KuCoin's linear perpetuals, longest first (``USDT`` before ``USD``).
_QUOTES = ("USDT", "USDC", "USD")
#: Where KuCoin Futures hands out its public tokens.
REST_URL = "https://api-futures.kucoin.com/api/v1/bullet-public"


def native(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``XBTUSDTM``, ``BTC/USD:BTC`` → ``XBTUSDM``."""
    parts = market(symbol)
    return f"{_NATIVE_BASE.get(parts.base, parts.base)}{parts.quote}M"


def unified(name: str) -> str:
    """``XBTUSDTM`` → ``BTC/USDT:USDT``, ``XBTUSDM`` → ``BTC/USD:BTC``; ``ValueError`` for a name
    of no perpetual's form."""
    pair = name.removesuffix("M")
    quote = next((q for q in _QUOTES if pair.endswith(q) and len(pair) > len(q)), None)
    if pair == name or quote is None:
        raise ValueError(f"{name!r} is not a KuCoin perpetual (BASE + USDT/USDC/USD + M)")
    base = pair.removesuffix(quote)
    base = _UNIFIED_BASE.get(base, base)
    return f"{base}/{quote}:{base if quote == 'USD' else quote}"


class KucoinFuturesDecoder(kucoin.MergingKucoinDecoder):
    exchange = "kucoin_futures"
    topics = ("/contract/instrument", "/contractMarket/snapshot", "/contractMarket/tickerV2")
    native = staticmethod(native)

    def _message(self, msg: dict[str, Any]) -> list[Ticker]:
        subject = msg["subject"]
        data = msg["data"]
        if subject == "tickerV2":
            state = self._merged.get(data["symbol"])
            if state is None:
                return []
            sequence = data["sequence"]
            if state.sequence is not None and sequence < state.sequence:
                return []  # older than the book merged (the old connection's, during a rotation)
            book = (
                float(data["bestBidPrice"]),
                float(data["bestAskPrice"]),
                float(data["bestBidSize"]),
                float(data["bestAskSize"]),
            )
            return self._ticker(
                state, book, state.last, state.statistics, state.derivative, data["ts"] / 1e9, sequence
            )
        if subject == "snapshot.24h":
            state = self._merged.get(data["symbol"])
            if state is None:
                return []
            statistics = (
                float(data["volume"]),
                float(data["highPrice"]),
                float(data["lowPrice"]),
                float(data["priceChg"]),
                float(data["priceChgPct"]) * 100.0,
            )
            return self._ticker(
                state,
                state.book,
                float(data["lastPrice"]),
                statistics,
                state.derivative,
                data["ts"] / 1e9,
                state.sequence,
            )
        if subject == "mark.index.price" or subject == "funding.rate":
            state = self._merged.get(msg["topic"].partition(":")[2])
            if state is None:
                return []
            mark, index, funding = state.derivative
            if subject == "funding.rate":
                funding = float(data["fundingRate"])
            else:
                mark, index = float(data["markPrice"]), float(data["indexPrice"])
            return self._ticker(
                state,
                state.book,
                state.last,
                state.statistics,
                (mark, index, funding),
                data["timestamp"] / 1000.0,
                state.sequence,
            )
        return self.junk_frame(f"unknown subject {subject!r}")


class KucoinFutures(kucoin.KucoinExchange):
    """KuCoin Futures perpetuals (linear in USDT and USDC, inverse in USD)."""

    name = "kucoin_futures"
    #: What the docs name; the endpoint actually used comes with each token (:meth:`resolve`).
    url = "wss://ws-api-futures.kucoin.com/"
    rest_url = REST_URL
    decoder_class = KucoinFuturesDecoder
    #: Three topics a symbol; KuCoin allows 400 topics a connection (300 by older docs).
    max_symbols_per_connection = 100
    send_interval = kucoin.SEND_INTERVAL
    lacks = ("open_interest", "next_funding_ts")
    fake = "tickerd.testing.kucoin_futures:FakeKucoinFutures"
    sample_symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USD:BTC")
    feeds = (
        "`/contractMarket/tickerV2` (real-time BBO) + `/contractMarket/snapshot` (24 h stats) + "
        "`/contract/instrument` (mark, index, funding), merged; endpoint and token from "
        "`POST /api/v1/bullet-public` before every connection"
    )
    symbol_forms = (
        "`BTC/USDT:USDT` ↔ `XBTUSDTM`, `BTC/USDC:USDC` ↔ `XBTUSDCM` (linear), `BTC/USD:BTC` ↔ "
        "`XBTUSDM` (inverse)"
    )
    keepalive_note = (
        '`{"type":"ping"}` every half `pingInterval` of the token answer; dead after '
        "`pingInterval + pingTimeout` without a frame"
    )
    lacks_note = (
        "open interest and next funding time are REST-only; bid/ask sizes in contracts (lots); "
        "`volume_24h` as KuCoin's `volume` (base asset on linear contracts)"
    )
    sequence_source = "`tickerV2` `sequence` (shared with the level-2 book)"

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        parts = market(symbol)
        if parts.spot or not (
            parts.settle == parts.quote != "USD" or (parts.inverse and parts.quote == "USD")
        ):
            raise ValueError(
                f"{symbol!r}: {self.name} serves perpetuals only "
                "(BASE/USDT:USDT, BASE/USDC:USDC or BASE/USD:BASE)"
            )
