"""End to end: fake exchanges → tickerd → real Redis."""

from __future__ import annotations

import redis
import trio

from tests.conftest import Updates, make_config, start_daemon, start_fake, stored
from tickerd.testing import FakeBinance, FakeKraken


async def test_kraken_tickers_reach_redis_with_their_values(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]}))
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD") and kraken.is_subscribed("ETH/USD"))

    await kraken.push(
        "BTC/USD", last=64000.5, bid=63999.9, ask=64001.1, bid_size=0.25, ask_size=3.0, volume=812.5
    )
    record = await updates.wait_for(lambda r: r["symbol"] == "BTC/USD" and r["last"] == 64000.5)

    assert record["exchange"] == "kraken"
    assert (record["price"], record["bid"], record["ask"]) == (64000.5, 63999.9, 64001.1)
    assert (record["bid_size"], record["ask_size"], record["volume"]) == (0.25, 3.0, 812.5)
    assert stored(redis_client, prefix, "kraken", "BTC/USD") == record
    assert stored(redis_client, prefix, "kraken", "ETH/USD") is not None  # from the snapshot


async def test_binance_book_and_stats_merge_into_one_ticker(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, updates: Updates
) -> None:
    binance = await start_fake(nursery, FakeBinance())
    await start_daemon(nursery, make_config(prefix, {"binance": binance}, {"binance": ["BTC/USDT"]}))
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT"))

    await binance.push_stats("BTC/USDT", last=65000.0, volume=1500.0, high=66000.0, low=63000.0)
    await updates.wait_for(lambda r: r["last"] == 65000.0)
    await binance.push("BTC/USDT", bid=64999.0, ask=65001.0, bid_size=1.25, ask_size=0.5)
    record = await updates.wait_for(lambda r: r["bid"] == 64999.0)

    assert record["last"] == 65000.0  # the book update keeps the last price from @ticker
    assert (record["ask"], record["bid_size"], record["ask_size"]) == (65001.0, 1.25, 0.5)
    assert (record["volume"], record["high_24h"], record["low_24h"]) == (1500.0, 66000.0, 63000.0)
    assert stored(redis_client, prefix, "binance", "BTC/USDT") == record
