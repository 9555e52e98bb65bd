"""A symbol that leaves the desired set leaves Redis: exactly its field, nothing else's."""

from __future__ import annotations

import redis
import trio

import tickerd
from tests.conftest import make_config, start_daemon, start_fake, stored
from tickerd.layout import RedisLayout, encode
from tickerd.model import Ticker
from tickerd.testing import FakeBinance, FakeKraken

#: A field of the same hash that another program writes (fullon's own writer, say).
OTHERS: dict[str, object] = {"symbol": "XRP/USD", "exchange": "kraken", "last": 0.5}
OTHER = "XRP/USD"


async def until_stored(
    daemon: tickerd.TickerDaemon, client: redis.Redis, prefix: str, exchange: str, symbols: set[str]
) -> None:
    """Return once exactly ``symbols`` of ours are stored for ``exchange`` (Redis is read
    without a checkpoint before the wait, so no batch slips between the read and the wait)."""
    layout = RedisLayout(prefix)
    with trio.fail_after(10):
        while set(layout.read_tickers(client, exchange)) - {OTHER} != symbols:
            await daemon.writer.flushed()


async def test_remove_deletes_exactly_its_field_and_drops_its_queued_value(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]})
    daemon = await start_daemon(nursery, config)
    redis_client.hset(RedisLayout(prefix).tickers("kraken"), OTHER, encode(OTHERS))
    await until_stored(daemon, redis_client, prefix, "kraken", {"BTC/USD", "ETH/USD"})

    # A ticker already queued when the symbol goes must not be written after its deletion.
    daemon.writer.sink.send_nowait([Ticker("kraken", "BTC/USD", last=3.0)])
    daemon.remove("kraken", "BTC/USD")
    await until_stored(daemon, redis_client, prefix, "kraken", {"ETH/USD"})
    await kraken.push("ETH/USD", last=7.0)  # a later batch: BTC/USD stays gone
    with trio.fail_after(10):
        while (stored(redis_client, prefix, "kraken", "ETH/USD") or {}).get("last") != 7.0:
            await daemon.writer.flushed()

    assert stored(redis_client, prefix, "kraken", "BTC/USD") is None
    assert stored(redis_client, prefix, "kraken", OTHER) == OTHERS
    assert ("kraken", "BTC/USD") not in daemon.writer.last_seen
    assert ("kraken", "ETH/USD") in daemon.writer.last_seen


async def test_an_exchange_removed_by_apply_takes_only_our_fields_along(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    symbols = {"kraken": ["BTC/USD", "ETH/USD"], "binance": ["BTC/USDT"]}
    daemon = await start_daemon(nursery, make_config(prefix, {"kraken": kraken, "binance": binance}, symbols))
    redis_client.hset(RedisLayout(prefix).tickers("kraken"), OTHER, encode(OTHERS))
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT"))
    await binance.push("BTC/USDT", bid=5.0)
    await until_stored(daemon, redis_client, prefix, "kraken", {"BTC/USD", "ETH/USD"})
    await until_stored(daemon, redis_client, prefix, "binance", {"BTC/USDT"})

    await daemon.apply({"binance": daemon.config.exchanges["binance"]})
    await until_stored(daemon, redis_client, prefix, "kraken", set())

    assert RedisLayout(prefix).read_tickers(redis_client, "kraken") == {OTHER: OTHERS}
    assert stored(redis_client, prefix, "binance", "BTC/USDT") is not None
    assert daemon.writer.written_symbols("kraken") == set()
