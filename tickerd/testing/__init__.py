"""Fake exchange servers for tests, benchmarks and the offline demo.

Each fake is a trio-websocket server on 127.0.0.1 that speaks its exchange's real protocol
(acks, heartbeats, pings, errors, real frame shapes) and can misbehave on command.
"""

from __future__ import annotations

from tickerd.exchanges import load_class
from tickerd.testing.binance import FakeBinance
from tickerd.testing.kraken import FakeKraken
from tickerd.testing.server import FakeConnection, FakeExchange

_FAKES: dict[str, str] = {
    "binance": "tickerd.testing.binance:FakeBinance",
    "bitfinex": "tickerd.testing.bitfinex:FakeBitfinex",
    "bitmex": "tickerd.testing.bitmex:FakeBitMEX",
    "bitstamp": "tickerd.testing.bitstamp:FakeBitstamp",
    "bybit": "tickerd.testing.bybit:FakeBybit",
    "coinbase": "tickerd.testing.coinbase:FakeCoinbase",
    "hyperliquid": "tickerd.testing.hyperliquid:FakeHyperliquid",
    "kraken": "tickerd.testing.kraken:FakeKraken",
    "okx": "tickerd.testing.okx:FakeOKX",
}


def fake_for(name: str) -> type[FakeExchange]:
    """The fake server class of exchange ``name``."""
    cls: type[FakeExchange] = load_class(_FAKES[name])
    return cls


__all__ = ["FakeBinance", "FakeConnection", "FakeExchange", "FakeKraken", "fake_for"]
