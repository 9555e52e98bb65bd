"""The Redis layout: key names under a prefix, the stored record, the read helpers (real Redis)."""

from __future__ import annotations

import redis

from tests.conftest import execute
from tickerd.layout import RedisLayout
from tickerd.model import Ticker


def test_key_names_are_the_fullon_ones_under_the_prefix() -> None:
    layout = RedisLayout("ns:")
    assert layout.tickers("kraken") == "ns:tickers:kraken"
    assert layout.updates("kraken", "BTC/USD") == "ns:ticker_updates:kraken:BTC/USD"
    assert layout.updates_pattern() == "ns:ticker_updates:*"
    assert layout.updates_pattern("kraken") == "ns:ticker_updates:kraken:*"
    assert RedisLayout().tickers("binance") == "tickers:binance"  # fullon readers use no prefix


def test_record_carries_fullon_fields_and_every_ticker_field() -> None:
    layout = RedisLayout()
    ticker = Ticker("kraken", "BTC/USD", last=10.0, bid=9.5, volume_24h=3.0, received_ts=1.5)
    record = layout.decode_ticker(layout.encode_ticker(ticker))
    assert (record["price"], record["last"], record["volume"], record["time"]) == (10.0, 10.0, 3.0, 1.5)
    assert record["ask"] is None and record["received_ts"] == 1.5
    assert layout.decode_ticker(layout.encode_ticker(Ticker("kraken", "X/Y", exchange_ts=7.0)))["time"] == 7.0


def test_commands_write_each_hash_before_any_publish() -> None:
    layout = RedisLayout("p:")
    batch = {
        ("kraken", "A/USD"): Ticker("kraken", "A/USD", last=1.0),
        ("binance", "B/USDT"): Ticker("binance", "B/USDT", last=2.0),
        ("kraken", "C/USD"): Ticker("kraken", "C/USD", last=3.0),
    }
    commands = layout.ticker_commands(batch)
    assert [tuple(command[:2]) for command in commands] == [
        ("HSET", "p:tickers:kraken"),
        ("HSET", "p:tickers:binance"),
        ("PUBLISH", "p:ticker_updates:kraken:A/USD"),
        ("PUBLISH", "p:ticker_updates:binance:B/USDT"),
        ("PUBLISH", "p:ticker_updates:kraken:C/USD"),
    ]
    kraken_hash = commands[0]
    assert kraken_hash[2::2] == ["A/USD", "C/USD"]
    assert kraken_hash[3] is commands[2][2]  # one encoding per ticker, shared by HSET and PUBLISH


async def test_read_helpers_see_what_the_commands_store(redis_client: redis.Redis, prefix: str) -> None:
    layout = RedisLayout(prefix)
    batch = {
        ("kraken", "A/USD"): Ticker("kraken", "A/USD", last=1.0),
        ("binance", "B/USDT"): Ticker("binance", "B/USDT", last=2.0),
    }
    await execute(layout.ticker_commands(batch))
    assert (layout.read_ticker(redis_client, "kraken", "A/USD") or {}).get("last") == 1.0
    assert layout.read_ticker(redis_client, "kraken", "B/USDT") is None
    assert {s: r["last"] for s, r in layout.read_tickers(redis_client, "binance").items()} == {"B/USDT": 2.0}
    assert sorted(r["symbol"] for r in layout.read_all_tickers(redis_client)) == ["A/USD", "B/USDT"]
    assert RedisLayout(prefix + "other:").read_all_tickers(redis_client) == []
    layout.delete_tickers(redis_client, ["kraken", "binance"])
    assert layout.read_all_tickers(redis_client) == []
