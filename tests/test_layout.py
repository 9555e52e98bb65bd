"""The Redis layout: key names under a prefix, the stored record, the read helpers (real Redis)."""

from __future__ import annotations

import attrs
import redis

from tests.conftest import execute
from tickerd.layout import RedisLayout
from tickerd.model import Removal, Ticker


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


#: A ticker with every field set, and one with most absent and a ``time`` whose text forms
#: differ between JSON (``1e-7``) and Python's ``str`` (``1e-07``, fullon's ``ticker_time``).
FULL = Ticker(
    "kraken", "BTC/USD", 64321.5, 64321.4, 64321.6, 0.5, 1.25, 1234.5678, 65000.0, 63000.1, -12.5, -0.0194,
    1764474000.123456, 1764474000.2,
)  # fmt: skip
BARE = Ticker("bitfinex", "ETH/USD:USDT", last=3000.0, received_ts=1e-7)
PERPETUAL = attrs.evolve(
    FULL,
    symbol="BTC/USD:BTC",
    mark_price=64330.25,
    index_price=64329.0,
    funding_rate=-0.0001,
    next_funding_ts=1764478800.0,
    open_interest=0.0,
    sequence=8123456789,
)


def test_records_are_byte_for_byte_what_readers_have_always_read() -> None:
    """The exact bytes, key order included: readers (fullon_cache, scripts comparing payloads,
    caches keyed on them) see the same record whatever the encoder's internals become."""
    extended, fullon = RedisLayout(), RedisLayout(kind="fullon")
    assert extended.encode_ticker(FULL) == (
        b'{"symbol":"BTC/USD","exchange":"kraken","price":64321.5,"bid":64321.4,"ask":64321.6,'
        b'"last":64321.5,"volume":1234.5678,"time":1764474000.123456,"change":-12.5,"percentage":-0.0194,'
        b'"bid_size":0.5,"ask_size":1.25,"volume_24h":1234.5678,"high_24h":65000.0,"low_24h":63000.1,'
        b'"change_24h":-12.5,"change_pct_24h":-0.0194,"exchange_ts":1764474000.123456,'
        b'"received_ts":1764474000.2'
        b',"mark_price":null,"index_price":null,"funding_rate":null,"next_funding_ts":null,"open_interest":null,'
        b'"sequence":null}'
    )
    assert extended.encode_ticker(BARE) == (
        b'{"symbol":"ETH/USD:USDT","exchange":"bitfinex","price":3000.0,"bid":null,"ask":null,'
        b'"last":3000.0,"volume":null,"time":1e-7,"change":null,"percentage":null,"bid_size":null,'
        b'"ask_size":null,"volume_24h":null,"high_24h":null,"low_24h":null,"change_24h":null,'
        b'"change_pct_24h":null,"exchange_ts":null,"received_ts":1e-7'
        b',"mark_price":null,"index_price":null,"funding_rate":null,"next_funding_ts":null,"open_interest":null,'
        b'"sequence":null}'
    )
    # The derivative fields come last: the keys readers have always read keep their order.
    assert extended.encode_ticker(PERPETUAL).endswith(
        b'"received_ts":1764474000.2,"mark_price":64330.25,"index_price":64329.0,"funding_rate":-0.0001,'
        b'"next_funding_ts":1764478800.0,"open_interest":0.0,"sequence":8123456789}'
    )
    assert fullon.encode_ticker(PERPETUAL) == fullon.encode_ticker(attrs.evolve(FULL, symbol="BTC/USD:BTC"))
    assert fullon.encode_ticker(FULL) == (
        b'{"symbol":"BTC/USD","exchange":"kraken","price":64321.5,"volume":1234.5678,'
        b'"time":1764474000.123456,"bid":64321.4,"ask":64321.6,"last":64321.5,"change":-12.5,'
        b'"percentage":-0.0194}'
    )
    assert fullon.encode_ticker(BARE) == (
        b'{"symbol":"ETH/USD:USDT","exchange":"bitfinex","price":3000.0,"volume":null,"time":1e-7,'
        b'"bid":null,"ask":null,"last":3000.0,"change":null,"percentage":null}'
    )


def test_commands_are_exactly_the_ones_always_sent() -> None:
    """Every command of a mixed batch (two exchanges, a removal), in order, argument by argument."""
    batch: dict[tuple[str, str], Ticker | Removal] = {
        ("kraken", "BTC/USD"): FULL,
        ("bitfinex", "ETH/USD:USDT"): BARE,
        ("kraken", "ETH/USD"): Removal("kraken", "ETH/USD"),
        ("bitfinex", "X/USD"): Removal("bitfinex", "X/USD"),
        ("kraken", "SOL/USD"): attrs.evolve(FULL, symbol="SOL/USD"),
    }
    for kind, times in (("extended", []), ("fullon", [
        ["MSET", "p:ticker_time:kraken:BTC/USD", "1764474000.123456", "p:ticker_time:bitfinex:ETH/USD:USDT",
         "1e-07", "p:ticker_time:kraken:SOL/USD", "1764474000.123456"],
        ["DEL", "p:ticker_time:kraken:ETH/USD", "p:ticker_time:bitfinex:X/USD"],
    ])):  # fmt: skip
        layout = RedisLayout("p:", kind)
        full, bare, sol = (
            layout.encode_ticker(t) for t in (FULL, BARE, attrs.evolve(FULL, symbol="SOL/USD"))
        )
        assert [list(command) for command in layout.ticker_commands(batch)] == [
            ["HSET", "p:tickers:kraken", "BTC/USD", full, "SOL/USD", sol],
            ["HSET", "p:tickers:bitfinex", "ETH/USD:USDT", bare],
            ["HDEL", "p:tickers:kraken", "ETH/USD"],
            ["HDEL", "p:tickers:bitfinex", "X/USD"],
            *times,
            ["PUBLISH", "p:ticker_updates:kraken:BTC/USD", full],
            ["PUBLISH", "p:ticker_updates:bitfinex:ETH/USD:USDT", bare],
            ["PUBLISH", "p:ticker_updates:kraken:SOL/USD", sol],
        ]
    assert RedisLayout("p:").ticker_commands({}) == []
    removal = RedisLayout("p:", "fullon").ticker_commands({("kraken", "X/USD"): Removal("kraken", "X/USD")})
    assert [list(command) for command in removal] == [
        ["HDEL", "p:tickers:kraken", "X/USD"],
        ["DEL", "p:ticker_time:kraken:X/USD"],
    ]
