"""The Redis writer: layout, coalescing, and surviving a Redis restart (private server)."""

from __future__ import annotations

import redis
import trio

from tests.conftest import REDIS_URL, execute, make_config, start_daemon, start_fake, stored, until_redis_up
from tests.processes import RedisServer
from tickerd.layout import RedisLayout
from tickerd.model import Ticker
from tickerd.testing import FakeKraken
from tickerd.writer import RedisWriter
from tickerd.writer.loop import CHANNEL_SIZE


async def test_batch_layout_is_fullon_compatible(redis_client: redis.Redis, prefix: str) -> None:
    layout = RedisLayout(prefix)
    ticker = Ticker(
        "kraken", "BTC/USD", last=10.0, bid=9.5, ask=10.5, volume_24h=3.0, received_ts=1700000000.5
    )
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(layout.updates("kraken", "BTC/USD"))
    pubsub.get_message(timeout=1)
    await execute(layout.ticker_commands({("kraken", "BTC/USD"): ticker}))
    record = stored(redis_client, prefix, "kraken", "BTC/USD")
    assert record is not None
    assert {
        k: record[k] for k in ("symbol", "exchange", "price", "bid", "ask", "last", "volume", "time")
    } == {
        "symbol": "BTC/USD",
        "exchange": "kraken",
        "price": 10.0,
        "bid": 9.5,
        "ask": 10.5,
        "last": 10.0,
        "volume": 3.0,
        "time": 1700000000.5,
    }
    message = pubsub.get_message(timeout=2)
    assert message is not None and layout.decode_ticker(message["data"]) == record
    pubsub.close()


async def test_a_burst_is_coalesced_to_the_latest_value(redis_client: redis.Redis, prefix: str) -> None:
    writer = RedisWriter(REDIS_URL, RedisLayout(prefix))
    for i in range(0, 5000, 2):  # one item per socket read, as the feeds send them
        writer.sink.send_nowait([Ticker("kraken", f"S{j % 10}/USD", last=float(j)) for j in (i, i + 1)])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        with trio.fail_after(10):
            while writer.written < 10:
                await writer.flushed()
        nursery.cancel_scope.cancel()
    assert writer.written == 10 and writer.coalesced == 4990
    assert (stored(redis_client, prefix, "kraken", "S9/USD") or {}).get("last") == 4999.0


async def test_the_channel_is_drained_while_redis_is_away(prefix: str) -> None:
    """The drain task files what the feeds send while the flush task backs off: three
    channels' worth of reads go in without the sender waiting on Redis, and what is held is
    the latest value of each symbol."""
    writer = RedisWriter("redis://127.0.0.1:1/0", RedisLayout(prefix), grace=0.1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        with trio.fail_after(10):
            for i in range(3 * CHANNEL_SIZE):
                await writer.sink.send([Ticker("kraken", f"S{i % 10}/USD", last=float(i))])
        await trio.testing.wait_all_tasks_blocked()
        assert not writer.redis_up
        assert writer.sink.statistics().current_buffer_used == 0
        nursery.cancel_scope.cancel()
    assert writer.unwritten == 10


async def test_redis_restart_mid_stream_keeps_the_latest_values(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(
        "", {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]}, redis={"url": redis_server.url}
    )
    daemon = await start_daemon(nursery, config)
    client = redis.Redis.from_url(redis_server.url)
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))
    await kraken.push("BTC/USD", last=1.0)
    with trio.fail_after(10):
        while (stored(client, "", "kraken", "BTC/USD") or {}).get("last") != 1.0:
            await daemon.writer.flushed()

    redis_server.kill()
    for price in (2.0, 3.0, 4.0):
        await kraken.push("BTC/USD", last=price)
    await kraken.push("ETH/USD", last=40.0)
    with trio.fail_after(10):  # it may have met the outage while the pushes went out
        await until_redis_up(daemon.writer, False)
    assert daemon.health().writer.redis_up is False

    redis_server.start()  # an empty server: everything must be written again
    with trio.fail_after(15):
        await until_redis_up(daemon.writer, True)
    assert (stored(client, "", "kraken", "BTC/USD") or {}).get("last") == 4.0
    assert (stored(client, "", "kraken", "ETH/USD") or {}).get("last") == 40.0
    assert daemon.health().writer.redis_up is True
    client.close()


async def test_a_busy_writer_sends_batches_half_a_window_apart(
    redis_client: redis.Redis, prefix: str, threaded_clock: trio.testing.MockClock
) -> None:
    """``feed.batch_window`` bounds the writes too: what arrives within half a window of the
    last batch waits for that, and goes out as one write; a batch after a quiet spell goes at
    once.  (The clock jumps once the loop has idled 5 ms of real time: Redis answers first.)"""
    window = 0.02
    writer = RedisWriter(REDIS_URL, RedisLayout(prefix), window=window)
    batches: list[set[str]] = []
    writer.batch_written.connect(lambda written: batches.append({symbol for _, symbol in written[0]}))

    def last(symbol: str) -> object:
        return (stored(redis_client, prefix, "kraken", symbol) or {}).get("last")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        writer.sink.send_nowait([Ticker("kraken", "A/USD", last=1.0)])
        await trio.testing.wait_all_tasks_blocked()  # A went at once: nothing was sent before it
        writer.sink.send_nowait([Ticker("kraken", "B/USD", last=2.0)])
        await writer.flushed()  # A's replies, read as B came
        assert trio.current_time() < window / 2
        await trio.testing.wait_all_tasks_blocked()
        assert last("B/USD") is None  # within half a window of A: it waits
        writer.sink.send_nowait([Ticker("kraken", "C/USD", last=3.0)])
        while writer.batches < 2:
            await writer.flushed()
        assert (last("A/USD"), last("B/USD"), last("C/USD")) == (1.0, 2.0, 3.0)
        assert batches == [{"A/USD"}, {"B/USD", "C/USD"}]  # one write for both
        assert trio.current_time() >= window / 2
        nursery.cancel_scope.cancel()
