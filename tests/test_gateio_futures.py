"""Gate.io USDT futures: the documented ``futures.tickers`` and ``futures.book_ticker`` pushes, the
``tickers`` fields (the derivative ones too), contract names both ways.  The protocol it shares
with spot (requests, answers, refusals, pongs, the merge, the fake's answers) is tested once for
both in ``tests/test_gate_v4.py``, on these frames."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.gate_v4 import native
from tickerd.exchanges.gateio_futures import GateioFuturesDecoder
from tickerd.testing.gateio_futures import FakeGateioFutures

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
#: https://www.gate.com/docs/developers/futures/ws/en/, "Tickers API", the notification example,
#: with its contract renamed ``BTC_USDT`` (the page's example names ``BTC_USD``, of the
#: BTC-settled server).
TICKER = """{
  "time": 1541659086,
  "time_ms": 1541659086123,
  "channel": "futures.tickers",
  "event": "update",
  "result": [
    {
      "contract": "BTC_USDT",
      "last": "118.4",
      "change_percentage": "0.77",
      "funding_rate": "-0.000114",
      "funding_rate_indicative": "0.01875",
      "mark_price": "118.35",
      "index_price": "118.36",
      "total_size": "73648",
      "volume_24h": "745487577",
      "volume_24h_btc": "117",
      "volume_24h_usd": "419950",
      "quanto_base_rate": "",
      "volume_24h_quote": "1665006",
      "volume_24h_settle": "178",
      "volume_24h_base": "5526",
      "low_24h": "99.2",
      "high_24h": "132.5"
    }
  ]
}"""
#: The same page, "Best ask/bid API", the notification example, contract renamed likewise.
BOOK_TICKER = """{
  "time": 1615366379,
  "time_ms": 1615366379123,
  "channel": "futures.book_ticker",
  "event": "update",
  "result": {
    "t": 1615366379123,
    "u": 2517661076,
    "s": "BTC_USDT",
    "b": "54696.6",
    "B": 37000,
    "a": "54696.7",
    "A": 47061
  }
}"""
#: The page's "Ping and Pong" answer.
PONG = (
    '{"time": 1545404023, "time_ms": 1545404023123, "channel": "futures.pong", "event": "", "result": null}'
)


def decoder(*symbols: str) -> GateioFuturesDecoder:
    return exchanges.get("gateio_futures").decoder(symbols)  # type: ignore[return-value]


def test_the_documented_ticker_maps_every_field() -> None:
    [t] = decoder(BTC).decode(TICKER)
    assert (t.exchange, t.symbol, t.last) == ("gateio_futures", BTC, 118.4)
    assert (t.bid, t.ask, t.bid_size, t.ask_size, t.sequence) == (None, None, None, None, None)  # no book yet
    assert (t.volume_24h, t.high_24h, t.low_24h) == (5526.0, 132.5, 99.2)  # volume_24h_base, not contracts
    assert (t.change_24h, t.change_pct_24h) == (None, 0.77)
    assert t.exchange_ts == 1541659086.123
    assert (t.mark_price, t.index_price) == (118.35, 118.36)
    assert t.funding_rate == -0.000114  # the current rate, not funding_rate_indicative
    assert t.next_funding_ts is None  # not on the channel
    assert t.open_interest == 73648.0  # total_size, in contracts


def test_the_documented_book_ticker_maps_every_field() -> None:
    [t] = decoder(BTC).decode(BOOK_TICKER)
    assert (t.bid, t.ask, t.bid_size, t.ask_size) == (54696.6, 54696.7, 37000.0, 47061.0)  # contracts
    assert t.sequence == 2517661076
    assert t.exchange_ts == 1615366379.123
    assert (t.last, t.mark_price) == (None, None)  # no tickers push yet


def test_sizes_sent_as_decimal_strings_are_read() -> None:
    """``X-Gate-Size-Decimal`` sizes are strings (the documented ones are contract counts)."""
    msg = orjson.loads(BOOK_TICKER)
    msg["result"] |= {"B": "37000.25", "A": "47061.5"}
    [t] = decoder(BTC).decode(orjson.dumps(msg))
    assert (t.bid, t.bid_size, t.ask, t.ask_size) == (54696.6, 37000.25, 54696.7, 47061.5)


def test_a_contract_not_yet_traded_sends_empty_values() -> None:
    msg = orjson.loads(TICKER)
    msg["result"][0] |= {"last": "", "change_percentage": "", "high_24h": "", "low_24h": ""}
    [t] = decoder(BTC).decode(orjson.dumps(msg))
    assert (t.last, t.change_pct_24h, t.high_24h, t.low_24h) == (None, None, None, None)
    assert t.mark_price == 118.35


def test_an_insane_push_is_junk_and_leaves_the_merged_state() -> None:
    d = decoder(BTC)
    d.decode(TICKER)
    msg = orjson.loads(TICKER)
    msg["result"][0]["mark_price"] = "-1"
    assert d.decode(orjson.dumps(msg)) == []
    assert d.junk == 1 and "mark_price -1.0 is not a valid price" in d.junk_reason
    [t] = d.decode(BOOK_TICKER)
    assert t.mark_price == 118.35


def test_a_push_missing_a_field_is_junk() -> None:
    msg = orjson.loads(TICKER)
    del msg["result"][0]["total_size"]
    d = decoder(BTC)
    assert d.decode(orjson.dumps(msg)) == [] and d.junk == 1


def test_contract_names() -> None:
    assert native(BTC) == "BTC_USDT"
    assert FakeGateioFutures().unified("BTC_USDT") == BTC


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USD:BTC", "BTC/USDC:USDC", "BTC/USDT:USDT-261225"])
def test_markets_other_than_usdt_perpetuals_are_refused(symbol: str) -> None:
    with pytest.raises(ValueError, match=r"USDT-margined perpetuals only|serves no dated futures"):
        exchanges.get("gateio_futures").check_symbol(symbol)
