"""Fault: a Redis outage under load must not leave memory behind (a private redis-server).

The writer retries its batch for as long as Redis is away.  What a failed attempt built (the
encoded commands) must go when the attempt does: kept alive by a reference cycle (an exception
whose traceback holds the frames that hold the batch), it waits for the cycle collector, which
runs late on a large heap, and an outage of 20 s at 1,000 symbols left tens of MB behind.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import redis
import trio

from tests.conftest import make_config, start_daemon, start_fake, until_redis_up
from tests.processes import RedisServer
from tickerd.layout import RedisLayout
from tickerd.testing import FakeKraken
from tickerd.writer import RedisWriter

SYMBOLS = [f"S{i:04d}/USD" for i in range(1000)]
OUTAGE = 20.0
MiB = 1024 * 1024


async def push_round(kraken: FakeKraken, price: float) -> None:
    for symbol in SYMBOLS:
        await kraken.push(symbol, last=price)


async def until_stored(writer: RedisWriter, client: redis.Redis, price: float) -> None:
    """Return once every symbol's stored last price is ``price``.  (Redis is read without a
    checkpoint between the read and the wait, so no batch can slip between them.)"""
    layout = RedisLayout()
    while True:
        stored = layout.read_tickers(client, "kraken")
        if len(stored) == len(SYMBOLS) and all(r["last"] == price for r in stored.values()):
            return
        await writer.flushed()


@pytest.mark.timeout(120)
async def test_a_redis_outage_under_load_leaves_no_memory_behind(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config("", {"kraken": kraken}, {"kraken": SYMBOLS}, redis={"url": redis_server.url})
    daemon = await start_daemon(nursery, config)
    writer = daemon.writer
    client = redis.Redis.from_url(redis_server.url)
    with trio.fail_after(30):
        await kraken.wait_until(lambda: all(kraken.is_subscribed(s) for s in SYMBOLS))
        await push_round(kraken, 1.0)
        await until_stored(writer, client, 1.0)

    # From here the cycle collector is off: memory that only it would free (a failed
    # attempt's data caught in a reference cycle) stays counted, whenever it would have run.
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        redis_server.kill()
        price, end = 1.0, trio.current_time() + OUTAGE
        while trio.current_time() < end:  # the feed keeps pushing through the whole outage
            price += 1.0
            await push_round(kraken, price)
            await trio.sleep(1.0)
        assert writer.redis_up is False
        redis_server.start()
        with trio.fail_after(30):
            await until_redis_up(writer, True)
            await until_stored(writer, client, price)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
        client.close()
    assert grown < 2 * MiB, f"{grown / MiB:.1f} MiB still held after the outage"
