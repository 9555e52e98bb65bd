"""Gate.io spot: the documented ``spot.tickers`` and ``spot.book_ticker`` pushes, the ``tickers``
fields, pair names both ways.  The protocol it shares with the futures (requests, answers,
refusals, pongs, the merge, the fake's answers) is tested once for both in
``tests/test_gate_v4.py``, on these frames."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.gate_v4 import native
from tickerd.exchanges.gateio import GateioDecoder
from tickerd.testing.gateio import FakeGateio

BTC = "BTC/USDT"
ETH = "ETH/USDT"
#: https://www.gate.com/docs/developers/apiv4/ws/en/, "Tickers Channel", the notification
#: example (it carries ``time`` alone; live pushes add ``time_ms``).
TICKER = """{
  "time": 1606291803,
  "channel": "spot.tickers",
  "event": "update",
  "result": {
    "currency_pair": "BTC_USDT",
    "last": "19106.55",
    "lowest_ask": "19108.71",
    "highest_bid": "19106.55",
    "change_percentage": "3.66",
    "base_volume": "2811.3042155865",
    "quote_volume": "53441606.52411221454674732293",
    "high_24h": "19417.74",
    "low_24h": "18434.21"
  }
}"""
#: The same page, "Best bid or ask price", the notification example.
BOOK_TICKER = """{
  "time": 1606293275,
  "time_ms": 1606293275723,
  "channel": "spot.book_ticker",
  "event": "update",
  "result": {
    "t": 1606293275123,
    "u": 48733182,
    "s": "BTC_USDT",
    "b": "19177.79",
    "B": "0.0003341504",
    "a": "19179.38",
    "A": "0.09"
  }
}"""
#: The page's "Application ping pong" answer.
PONG = '{"time": 1545404023, "time_ms": 1545404023123, "channel": "spot.pong", "event": "", "result": null}'


def decoder(*symbols: str) -> GateioDecoder:
    return exchanges.get("gateio").decoder(symbols)  # type: ignore[return-value]


def test_the_documented_ticker_maps_every_field() -> None:
    [t] = decoder(BTC).decode(TICKER)
    assert (t.exchange, t.symbol, t.last) == ("gateio", BTC, 19106.55)
    assert (t.bid, t.ask, t.bid_size, t.ask_size, t.sequence) == (None,) * 5  # its prices lag the book
    assert (t.volume_24h, t.high_24h, t.low_24h) == (2811.3042155865, 19417.74, 18434.21)
    assert (t.change_24h, t.change_pct_24h) == (None, 3.66)
    assert t.exchange_ts == 1606291803.0  # ``time``: the example has no ``time_ms``
    assert (t.mark_price, t.index_price, t.funding_rate, t.next_funding_ts, t.open_interest) == (None,) * 5


def test_the_documented_book_ticker_maps_every_field() -> None:
    [t] = decoder(BTC).decode(BOOK_TICKER)
    assert (t.bid, t.ask, t.bid_size, t.ask_size) == (19177.79, 19179.38, 0.0003341504, 0.09)
    assert (t.sequence, t.exchange_ts) == (48733182, 1606293275.123)
    assert (t.last, t.volume_24h) == (None, None)  # no tickers push yet


def test_the_tickers_time_is_time_ms_where_sent() -> None:
    msg = orjson.loads(TICKER) | {"time_ms": 1606291804567}
    [t] = decoder(BTC).decode(orjson.dumps(msg))
    assert t.exchange_ts == 1606291804.567


def test_a_pair_not_yet_traded_sends_empty_values() -> None:
    msg = orjson.loads(TICKER)
    msg["result"] |= {"last": "", "change_percentage": "", "high_24h": "", "low_24h": ""}
    [t] = decoder(BTC).decode(orjson.dumps(msg))
    assert (t.last, t.change_pct_24h, t.high_24h, t.low_24h) == (None,) * 4
    assert t.volume_24h == 2811.3042155865


def test_a_push_missing_a_field_is_junk() -> None:
    msg = orjson.loads(TICKER)
    del msg["result"]["base_volume"]
    d = decoder(BTC)
    assert d.decode(orjson.dumps(msg)) == [] and d.junk == 1 and "base_volume" in d.junk_reason


@pytest.mark.parametrize(
    ("symbol", "name"), [(BTC, "BTC_USDT"), ("ETH/BTC", "ETH_BTC"), ("GT/USDT", "GT_USDT")]
)
def test_pair_names_both_ways(symbol: str, name: str) -> None:
    assert native(symbol) == name
    assert FakeGateio().unified(name) == symbol


@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "BTC/USD:BTC", "BTC/USDT:USDT-261225"])
def test_derivatives_are_refused(symbol: str) -> None:
    with pytest.raises(ValueError, match=r"spot only|serves no dated futures"):
        exchanges.get("gateio").check_symbol(symbol)
