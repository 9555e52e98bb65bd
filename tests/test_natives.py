"""The fakes' native-name index (:mod:`tickerd.testing.natives`)."""

from __future__ import annotations

from tickerd.testing.binance import FakeBinance
from tickerd.testing.natives import NativeIndex


def _lower(symbol: str) -> str:
    return symbol.replace("/", "").lower()


def test_it_finds_symbols_added_after_earlier_lookups() -> None:
    market: dict[str, object] = {"BTC/USDT": {}}
    index = NativeIndex(_lower, market)
    assert index.get("btcusdt") == "BTC/USDT"
    assert index.get("ethusdt") is None
    market["ETH/USDT"] = {}
    assert index.get("ethusdt") == "ETH/USDT"


def test_the_first_table_and_the_first_symbol_win() -> None:
    market: dict[str, object] = {"AB/CUSD": {}, "ABC/USD": {}}
    rejected = {"A/BCUSD": "no such market"}
    index = NativeIndex(_lower, market, rejected)
    assert index.get("abcusd") == "AB/CUSD"
    assert NativeIndex(_lower, rejected, market).get("abcusd") == "A/BCUSD"


def test_symbols_without_a_name_are_left_out() -> None:
    index = NativeIndex(lambda symbol: None if ":" in symbol else symbol, {"BTC/USD:BTC": {}})
    assert index.get("BTC/USD:BTC") is None


def test_a_fake_maps_a_stream_to_a_symbol_it_rejected_since() -> None:
    fake = FakeBinance()
    fake.state("BTC/USDT")
    assert fake._unified("btcusdt") == "BTC/USDT"
    fake.reject("DOGE/TRYX")  # no known quote splits it: only the rejection names it
    assert fake._unified("dogetryx") == "DOGE/TRYX"
