"""Exchange adapters: one module per exchange, registered here by name.

The registry names modules rather than importing them, so an exchange's code is loaded only
when a configuration uses it.
"""

from __future__ import annotations

import importlib

from tickerd.exchanges.base import Decoder, Exchange

_REGISTRY: dict[str, str] = {
    "binance": "tickerd.exchanges.binance:Binance",
    "binance_coinm": "tickerd.exchanges.binance_futures:BinanceCoinm",
    "binance_usdm": "tickerd.exchanges.binance_futures:BinanceUsdm",
    "binanceus": "tickerd.exchanges.binanceus:BinanceUs",
    "bitfinex": "tickerd.exchanges.bitfinex:Bitfinex",
    "bitflyer": "tickerd.exchanges.bitflyer:Bitflyer",
    "bitget": "tickerd.exchanges.bitget:Bitget",
    "bitmex": "tickerd.exchanges.bitmex:BitMEX",
    "bitstamp": "tickerd.exchanges.bitstamp:Bitstamp",
    "bitvavo": "tickerd.exchanges.bitvavo:Bitvavo",
    "bybit": "tickerd.exchanges.bybit:Bybit",
    "coinbase": "tickerd.exchanges.coinbase:Coinbase",
    "cryptocom": "tickerd.exchanges.cryptocom:Cryptocom",
    "deribit": "tickerd.exchanges.deribit:Deribit",
    "gateio": "tickerd.exchanges.gateio:Gateio",
    "gateio_futures": "tickerd.exchanges.gateio_futures:GateioFutures",
    "gemini": "tickerd.exchanges.gemini:Gemini",
    "htx": "tickerd.exchanges.htx_spot:HtxSpot",
    "htx_swap": "tickerd.exchanges.htx_swap:HtxSwap",
    "hyperliquid": "tickerd.exchanges.hyperliquid:Hyperliquid",
    "kraken": "tickerd.exchanges.kraken:Kraken",
    "kraken_futures": "tickerd.exchanges.kraken_futures:KrakenFutures",
    "kucoin": "tickerd.exchanges.kucoin_spot:Kucoin",
    "kucoin_futures": "tickerd.exchanges.kucoin_futures:KucoinFutures",
    "okx": "tickerd.exchanges.okx:OKX",
    "poloniex": "tickerd.exchanges.poloniex:Poloniex",
    "upbit": "tickerd.exchanges.upbit:Upbit",
}


def names() -> list[str]:
    """The names of every supported exchange, sorted."""
    return sorted(_REGISTRY)


def load_class(target: str) -> type:
    """``"package.module:Class"`` → the class."""
    module, _, attr = target.partition(":")
    cls: type = getattr(importlib.import_module(module), attr)
    return cls


def get(name: str) -> Exchange:
    """The adapter for ``name``; ``KeyError`` names the supported exchanges."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown exchange {name!r} (supported: {', '.join(names())})")
    adapter: Exchange = load_class(_REGISTRY[name])()
    return adapter


__all__ = ["Decoder", "Exchange", "get", "load_class", "names"]
